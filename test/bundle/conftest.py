"""Fixtures for the manifest tests: one real variant bundle, an fp32-only one, copies to break.

The two bundles are exported once per session; tests only ever change their fresh copies.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from export.conftest import write_synthetic_voc, write_variant_bundle

from mmsag_ros.bundle.manifest import load_bundle, write_manifest
from mmsag_ros.bundle.schema import Bundle


@pytest.fixture(scope="session")
def variant_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """A real export with fp32, fp16 and int8, both reduced variants kept (bars of 100 points,
    which no mAP drop exceeds)."""
    work = tmp_path_factory.mktemp("manifest")
    voc = write_synthetic_voc(work / "voc")
    return write_variant_bundle(work / "variants", voc=voc, calib_images=8)


@pytest.fixture(scope="session")
def fp32_bundle(variant_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """The same bundle with fp32 only, as ``mmsag export`` writes it by default."""
    root = tmp_path_factory.mktemp("manifest") / "fp32"
    root.mkdir()
    for name in ("model.onnx", "model.pt"):
        shutil.copy(variant_bundle.root / name, root / name)
    write_manifest(root, {**variant_bundle.manifest, "variants": {}})
    return load_bundle(root)


@pytest.fixture
def bundle_copy(fp32_bundle: Bundle, tmp_path: Path) -> Path:
    return Path(shutil.copytree(fp32_bundle.root, tmp_path / "bundle"))


@pytest.fixture
def variants_copy(variant_bundle: Bundle, tmp_path: Path) -> Path:
    return Path(shutil.copytree(variant_bundle.root, tmp_path / "variants"))
