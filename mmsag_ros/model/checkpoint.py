"""Checkpoints: everything needed to resume training or rebuild the model for export.

A checkpoint holds only tensors and plain data, so it loads with
``torch.load(weights_only=True)``: opening a checkpoint never runs code. Files are written to a
unique temporary name and renamed into place (:mod:`mmsag_ros.atomic`), so a crash never leaves a
half-written checkpoint and two writers never truncate each other's file. The checkpoint format
sits with the model (not the trainer) because three layers read it: training resumes from it,
export turns it into a bundle and the torch backend runs a bundle's slim copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mmsag_ros.atomic import atomic_target
from mmsag_ros.bundle.labels import LabelSet
from mmsag_ros.bundle.preprocess import PreprocessSpec
from mmsag_ros.errors import ConfigError, ModelNotFoundError

if TYPE_CHECKING:
    from mmsag_ros.model import MMSAG

__all__ = ["CHECKPOINT_FORMAT", "Checkpoint", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint, its plain-data parts already parsed."""

    path: Path
    epoch: int
    model_name: str
    model_config: dict[str, Any]
    model_state: dict[str, torch.Tensor]
    labels: LabelSet
    spec: PreprocessSpec
    thresholds: list[float]
    metrics: dict[str, Any]
    train_config: dict[str, Any]
    raw: dict[str, Any]

    def build_model(self) -> MMSAG:
        """Rebuild the network and load its weights (no pretrained files are read)."""
        from mmsag_ros.model import ModelConfig, build_model

        model = build_model(
            ModelConfig.from_dict(self.model_config),
            num_labels=len(self.labels),
            label_embeddings=None,
            adjacency=None,
        )
        # Embeddings and adjacency are buffers in the state dict: loading restores them too.
        try:
            model.load_state_dict(self.model_state)
        except RuntimeError as err:
            raise ConfigError(
                f"checkpoint {self.path} does not match its model config: {err}"
            ) from err
        return model.eval()


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically; adds the format version."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(path) as temporary:
        torch.save({"format_version": CHECKPOINT_FORMAT, **payload}, temporary)
    return path


def load_checkpoint(path: Path, *, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint safely; clear errors for missing, foreign or too-new files."""
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"checkpoint {path} does not exist")
    try:
        raw = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated files, pickles with code, non-torch files
        raise ConfigError(f"cannot load checkpoint {path}: {err}") from err
    if not isinstance(raw, dict) or "format_version" not in raw:
        raise ConfigError(f"{path} is not an mmsag_ros checkpoint (no format_version)")
    if raw["format_version"] > CHECKPOINT_FORMAT:
        raise ConfigError(
            f"{path} has checkpoint format {raw['format_version']}, this version reads up to"
            f" {CHECKPOINT_FORMAT}: upgrade mmsag_ros"
        )
    try:
        return Checkpoint(
            path=path,
            epoch=int(raw["epoch"]),
            model_name=str(raw["model_name"]),
            model_config=raw["model_config"],
            model_state=raw["model_state"],
            labels=LabelSet.from_dict(raw["labels"]),
            spec=PreprocessSpec.from_dict(raw["spec"]),
            thresholds=[float(t) for t in raw["thresholds"]],
            metrics=raw.get("metrics", {}),
            train_config=raw.get("train_config", {}),
            raw=raw,
        )
    except KeyError as err:
        raise ConfigError(f"checkpoint {path} lacks the field {err}") from None
