"""Session fixtures for the runtime tests: two tiny bundles and real synthetic frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from runtime_helpers import make_bundle

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
    from mmsag_ros.export.manifest import load_bundle

    return load_bundle(bundle_dir)


@pytest.fixture(scope="session")
def frames() -> list[np.ndarray]:
    """Real synthetic conveyor frames (RGB uint8), odd sizes included."""
    rng = np.random.default_rng(7)
    sizes = [(160, 120), (641, 479), (200, 200), (97, 130)]
    return [render_scene(rng, image_size=size)[0] for size in sizes]
