"""The box attention loss: it moves each class's attention onto its objects, and is configured.

Trained twice on the synthetic conveyor set, with and without the loss, to compare where the
class attention maps put their mass.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from train.training_helpers import training_config

from mmsag_ros.data.dataset import MultiLabelImageDataset
from mmsag_ros.data.transforms import EvalTransform
from mmsag_ros.errors import ConfigError
from mmsag_ros.train.dataset_splits import load_train_val
from mmsag_ros.train.distributed import DistributedContext
from mmsag_ros.train.run import prepare_training

pytestmark = pytest.mark.slow


def _attention_mass_on_boxes(model, split) -> float:
    """Mean share of each present class's attention that lies on its objects' cells."""
    grid = model.config.input_size // model.backbone.stride
    dataset = MultiLabelImageDataset(split, EvalTransform(model.spec), box_grid=grid)
    masses = []
    with torch.no_grad():
        for image, target, _, masks in dataset:
            maps = model.eval()(torch.from_numpy(image)[None])["attention"][0].numpy()
            present = (target == 1) & (masks.reshape(len(target), -1).sum(-1) > 0)
            masses += list((maps * masks).reshape(len(target), -1).sum(-1)[present])
    return float(np.mean(masses))


def test_the_box_attention_loss_puts_class_attention_on_the_objects(synth_root, tmp_path):
    masses = {}
    for weight in (0.0, 5.0):
        config = training_config(
            synth_root,
            tmp_path / str(weight),
            "epochs=4",
            "model.freeze_stages=6",
            f"optim.attention_weight={weight}",
        )
        trainer = prepare_training(config, device=torch.device("cpu"), context=DistributedContext())
        trainer.fit()
        _, val_split = load_train_val(config.data, seed=config.seed)
        masses[weight] = _attention_mass_on_boxes(trainer.model, val_split)
    # Measured: about 0.07 (barely above uniform) without the loss, 0.34 with it.
    assert masses[5.0] > masses[0.0] + 0.15, masses


def test_the_box_attention_loss_needs_a_weight_and_attention_maps(synth_root, tmp_path, caplog):
    config = training_config(synth_root, tmp_path, "optim.attention_weight=-1")
    with pytest.raises(ConfigError, match="must be 0 or more"):
        prepare_training(config, device=torch.device("cpu"), context=DistributedContext())
    # The linear baseline has no maps to teach: the default weight is said to be unused.
    flags = "{semantic_attention: false, fusion: false, static_graph: false, dynamic_graph: false}"
    config = training_config(synth_root, tmp_path, f"model.overrides={flags}")
    assert config.optim.attention_weight == 1.0
    trainer = prepare_training(config, device=torch.device("cpu"), context=DistributedContext())
    assert trainer.train_loader.dataset.box_grid is None
    assert "attention_weight=1 is not used" in caplog.text
