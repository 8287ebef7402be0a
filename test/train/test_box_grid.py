"""The box loss's mask grid is the attention maps' own, also where the stride does not divide."""

from __future__ import annotations

import pytest
import torch

from mmsag_ros.model import create_model
from mmsag_ros.train.config import load_config
from mmsag_ros.train.run import _attention_grid

SMALL = {"width": 32, "num_heads": 4, "ffn_dim": 64, "attention_dim": 16}


@pytest.mark.parametrize("name", ["mmsag_r18_224", "mmsag_effl1_240"])
def test_the_mask_grid_matches_the_attention_maps(name: str) -> None:
    model = create_model(name, num_labels=3, pretrained=False, label_embeddings=None, **SMALL)
    size = model.config.input_size
    with torch.no_grad():
        maps = model.eval()(torch.zeros(1, 3, size, size))["attention"]
    grid = _attention_grid(model, load_config(None, ["optim.attention_weight=1"]))
    assert maps.shape[-2:] == (grid, grid)
