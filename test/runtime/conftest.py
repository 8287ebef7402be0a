"""Session fixtures for the runtime tests: tiny bundles (one with every variant), real frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from runtime_helpers import make_bundle, make_variant_bundle, write_voc

from mmsag_ros.data.synth_scene import render_scene


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
