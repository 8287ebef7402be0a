"""Fixtures for the runtime tests: tiny bundles (one with every variant), real frames.

Per session: the bundles and frames. Per module: every variant's ONNX Runtime outputs. Per
test: a fresh user engine cache and a bundle copy whose ``engines`` folder cannot be written.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from runtime_helpers import (
    copy_bundle,
    make_bundle,
    make_variant_bundle,
    preprocess_batch,
    write_voc,
)

from mmsag_ros.data.synth_scene import render_scene

if TYPE_CHECKING:
    from mmsag_ros.bundle.schema import Bundle


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundles") / "tiny", seed=0)


@pytest.fixture(scope="session")
def other_bundle_dir(tmp_path_factory) -> Path:
    """Same architecture and classes, different weights."""
    return make_bundle(tmp_path_factory.mktemp("bundles") / "other", seed=1)


@pytest.fixture(scope="session")
def bundle(bundle_dir):
    from mmsag_ros.bundle.manifest import load_bundle

    return load_bundle(bundle_dir)


@pytest.fixture(scope="session")
def variant_bundle_dir(tmp_path_factory) -> Path:
    """A bundle exported with ``--precision fp32,fp16,int8`` (int8 calibrated on 16 images)."""
    voc = write_voc(tmp_path_factory.mktemp("voc") / "voc")
    return make_variant_bundle(tmp_path_factory.mktemp("bundles") / "variants", seed=3, voc=voc)


@pytest.fixture(scope="session")
def variant_bundle(variant_bundle_dir):
    from mmsag_ros.bundle.manifest import load_bundle

    bundle = load_bundle(variant_bundle_dir)
    assert set(bundle.variants) == {"fp32", "fp16", "int8"}, bundle.refused
    return bundle


@pytest.fixture(scope="session")
def frames() -> list[np.ndarray]:
    """Real synthetic conveyor frames (RGB uint8), odd sizes included."""
    rng = np.random.default_rng(7)
    sizes = [(160, 120), (641, 479), (200, 200), (97, 130)]
    return [render_scene(rng, image_size=size)[0] for size in sizes]


def _one_thread_outputs(backend, batch):
    with backend:
        return backend.infer(batch)


@pytest.fixture(scope="module")
def variant_outputs(variant_bundle, frames):
    """Outputs of every variant of the variant bundle on ONNX Runtime (one thread, CPU)."""
    from mmsag_ros.runtime.backends import create_backend

    batch = preprocess_batch(variant_bundle, frames)
    outputs = {}
    for precision in variant_bundle.variants:
        backend = create_backend(
            "onnxruntime", variant_bundle, precision=precision, intra_op_threads=1
        )
        outputs[precision] = _one_thread_outputs(backend, batch)
    return batch, outputs


@pytest.fixture
def user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``$XDG_CACHE_HOME`` in a fresh folder; returns where engines go in it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "mmsag_ros" / "engines"


def _make_engines_unwritable(bundle: Bundle, how: str) -> None:
    if how == "read-only folder":
        bundle.engines_dir.mkdir()
        bundle.engines_dir.chmod(0o555)
        if os.access(bundle.engines_dir, os.W_OK):  # root ignores the mode bits
            bundle.engines_dir.chmod(0o755)
            pytest.skip("running as root: a 0o555 folder stays writable")
    else:  # a regular file where the folder would be: it cannot be created on any account
        bundle.engines_dir.write_bytes(b"not a folder")


@pytest.fixture(params=["read-only folder", "file in the way"])
def read_only_bundle(request, bundle: Bundle, tmp_path: Path):
    """A copy of the bundle whose ``engines`` folder cannot be written to."""
    copy = copy_bundle(bundle, tmp_path / "read-only")
    _make_engines_unwritable(copy, request.param)
    yield copy
    if copy.engines_dir.is_dir():  # let pytest clean up
        copy.engines_dir.chmod(stat.S_IRWXU)
