"""Fixtures for the live bag tests (test_bag_live_*.py): a synthetic test split, a tiny bundle.

Per session, so the three live modules share one of each; no test writes into either.
test_bag_label.py and test_bag_make_eval.py define module fixtures of the same names, which
take precedence in those modules.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bag.bag_helpers import NUM_FRAMES
from runtime.runtime_helpers import make_bundle

from mmsag_ros.data.synth import generate_dataset


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("live_synth") / "data"
    generate_dataset(root, num_trainval=1, num_test=NUM_FRAMES, image_size=(160, 120), seed=8)
    return root


@pytest.fixture(scope="session")
def bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("live_bundle") / "tiny", seed=6)
