"""Tiny real artifacts for export and runtime tests: a checkpoint, a synthetic VOC set, a bundle.

The checkpoint holds a freshly initialised MM-SAG network (ResNet-18 trunk at 96 px, narrow
head, every stage on) written in the trainer's checkpoint format; nothing is trained. Other
test folders may import the plain functions (``from export.conftest import
write_tiny_checkpoint``) since ``test`` is on the path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mmsag_ros.data.labels import MLKW_LABELS, LabelSet
from mmsag_ros.data.synth import generate_dataset
from mmsag_ros.export.bundle import export_bundle
from mmsag_ros.export.manifest import Bundle
from mmsag_ros.model import ModelConfig, build_model
from mmsag_ros.train.checkpoint import save_checkpoint

TINY_CONFIG: dict[str, Any] = {
    "name": "tiny_r18_96",
    "backbone": "resnet18",
    "input_size": 96,
    "width": 64,
    "num_heads": 4,
    "ffn_dim": 128,
    "attention_dim": 64,
    "embedding_source": "learnable",
    "embedding_dim": 32,
}


def write_tiny_checkpoint(
    path: Path, *, labels: LabelSet = MLKW_LABELS, seed: int = 0, **overrides: Any
) -> Path:
    """Write a checkpoint of a freshly initialised tiny model (fields as the trainer writes)."""
    torch.manual_seed(seed)
    config = ModelConfig(**{**TINY_CONFIG, **overrides})
    model = build_model(config, num_labels=len(labels))
    thresholds = [round(float(t), 3) for t in np.linspace(0.3, 0.7, len(labels))]
    ap = [0.5] * (len(labels) - 1) + [float("nan")]  # a class without positives, as happens
    payload = {
        "epoch": 3,
        "model_name": config.name,
        "model_config": config.to_dict(),
        "model_state": model.state_dict(),
        "labels": labels.to_dict(),
        "spec": model.spec.to_dict(),
        "thresholds": thresholds,
        "metrics": {"val": {"map": 0.5, "ap": ap}},
        "train_config": {"seed": seed},
        "optimizer": {"state": {}, "param_groups": []},
        "scheduler": {},
        "scaler": {},
        "best_map": 0.5,
        "best_thresholds": thresholds,
    }
    return save_checkpoint(Path(path), payload)


def write_synthetic_voc(root: Path, *, num_trainval: int = 30, seed: int = 0) -> Path:
    """A small synthetic conveyor dataset in the VOC layout (train/val/trainval splits)."""
    generate_dataset(root, num_trainval=num_trainval, num_test=0, image_size=(128, 96), seed=seed)
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("checkpoint") / "best.pt")


@pytest.fixture(scope="session")
def synthetic_voc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_voc(tmp_path_factory.mktemp("voc"))


@pytest.fixture(scope="session")
def tiny_bundle(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """A bundle exported with defaults (attention on, parity on synthetic frames)."""
    return export_bundle(
        tiny_checkpoint, tmp_path_factory.mktemp("bundles") / "tiny", progress=False
    )
