"""Fixtures for the training tests: the synthetic conveyor set and one real 3-epoch run.

Per session, so every module that needs them shares one of each (the run takes minutes); no
test writes into the set or the run's folder.
"""

from __future__ import annotations

import pytest
from train.training_helpers import training_config

from mmsag_ros.data.synth import generate_dataset
from mmsag_ros.train.run import run_training


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "conveyor"
    generate_dataset(root, num_trainval=120, num_test=40, image_size=(160, 120), seed=11)
    return root


@pytest.fixture(scope="session")
def trained(synth_root, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("run")
    summary = run_training(training_config(synth_root, out_dir, "epochs=3"))
    return summary
