"""Named MM-SAG configurations and the front doors :func:`create_model` / :func:`build_model`.

Each named configuration pins its backbone and input size (the name says them); anything
else in :class:`~mmsag_ros.model.configs.ModelConfig` is an override, which is how ablations
are expressed (``create_model("mmsag_r18_224", num_labels=8, fusion=False)``).
"""

from __future__ import annotations

import difflib
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmsag_ros.errors import ConfigError
from mmsag_ros.model.backbones import create_backbone
from mmsag_ros.model.configs import ModelConfig
from mmsag_ros.model.mmsag import MMSAG
from mmsag_ros.model.registry import get_backbone_entry, get_model_builder, register_model

__all__ = [
    "build_model",
    "create_model",
    "mmsag_effl0_224",
    "mmsag_effl0_448",
    "mmsag_effl1_240",
    "mmsag_mnv3_448",
    "mmsag_r18_224",
    "mmsag_r50_448",
    "mmsag_r101_448",
]


_Array = np.ndarray | torch.Tensor


def _create_mmsag(
    name: str,
    pinned: dict[str, Any],
    *,
    num_labels: int,
    label_embeddings: _Array | None = None,
    adjacency: _Array | None = None,
    pretrained: bool = True,
    weights: Path | str | None = None,
    **overrides: Any,
) -> MMSAG:
    for key, value in pinned.items():
        if key in overrides and overrides[key] != value:
            raise ConfigError(
                f"{name} pins {key}={value!r} but {key}={overrides[key]!r} was given; pick "
                "a configuration with that value (list_models()) or leave it out"
            )
        overrides.pop(key, None)
    known = [f.name for f in fields(ModelConfig) if f.name not in pinned and f.name != "name"]
    for key in overrides:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown model option {key!r} for {name}{hint}")
    if label_embeddings is not None:
        width = int(np.shape(label_embeddings)[-1])
        if overrides.get("embedding_dim", width) != width:
            raise ConfigError(
                f"embedding_dim={overrides['embedding_dim']} contradicts the label embeddings' "
                f"width {width}; leave embedding_dim out"
            )
        overrides["embedding_dim"] = width
    elif overrides.get("semantic_attention", True):
        source = overrides.get("embedding_source", "learnable")
        if source != "learnable":
            raise ConfigError(
                f"embedding_source={source!r} needs label_embeddings (from embed_labels); "
                "pass them, or use embedding_source='learnable'"
            )
        overrides["embedding_source"] = "learnable"
    entry = get_backbone_entry(pinned["backbone"])
    # A pretrained trunk is fed exactly the normalisation its weights were trained with.
    overrides.setdefault("normalization", entry.normalization)
    config = ModelConfig(name=name, **pinned, **overrides)
    has_packaged = entry.has_pretrained
    if pretrained and weights is None and not has_packaged:
        # A 448 px ResNet from random weights trains for days to what ImageNet gives at once:
        # starting there must be asked for, never fallen into.
        raise ConfigError(
            f"{name}: backbone {config.backbone} has no packaged ImageNet weights; give a local "
            "state-dict file (weights=PATH, model.weights=FILE in training) or ask for random "
            "initialisation with pretrained=False (model.pretrained=false)"
        )
    backbone = create_backbone(
        config.backbone,
        pretrained=bool(pretrained and weights is None and has_packaged),
        weights=Path(weights) if weights is not None else None,
    )
    return MMSAG(
        config,
        num_labels=num_labels,
        label_embeddings=label_embeddings,
        adjacency=adjacency,
        backbone=backbone,
    )


@register_model
def mmsag_r101_448(**kwargs: Any) -> MMSAG:
    """The paper's configuration: ResNet-101 at 448 px (14 x 14 map)."""
    return _create_mmsag("mmsag_r101_448", {"backbone": "resnet101", "input_size": 448}, **kwargs)


@register_model
def mmsag_r50_448(**kwargs: Any) -> MMSAG:
    """ResNet-50 at 448 px."""
    return _create_mmsag("mmsag_r50_448", {"backbone": "resnet50", "input_size": 448}, **kwargs)


@register_model
def mmsag_effl0_448(**kwargs: Any) -> MMSAG:
    """EfficientNet-Lite0 (packaged ImageNet weights) at 448 px."""
    pinned = {"backbone": "efficientnet_lite0", "input_size": 448}
    return _create_mmsag("mmsag_effl0_448", pinned, **kwargs)


@register_model
def mmsag_effl0_224(**kwargs: Any) -> MMSAG:
    """EfficientNet-Lite0 (packaged ImageNet weights) at 224 px: this project's default."""
    pinned = {"backbone": "efficientnet_lite0", "input_size": 224}
    return _create_mmsag("mmsag_effl0_224", pinned, **kwargs)


@register_model
def mmsag_effl1_240(**kwargs: Any) -> MMSAG:
    """EfficientNet-Lite1 (packaged ImageNet weights) at 240 px, the size it was trained at."""
    pinned = {"backbone": "efficientnet_lite1", "input_size": 240}
    return _create_mmsag("mmsag_effl1_240", pinned, **kwargs)


@register_model
def mmsag_r18_224(**kwargs: Any) -> MMSAG:
    """ResNet-18 at 224 px: small and fast, for Jetson-class devices and tests."""
    return _create_mmsag("mmsag_r18_224", {"backbone": "resnet18", "input_size": 224}, **kwargs)


@register_model
def mmsag_mnv3_448(**kwargs: Any) -> MMSAG:
    """MobileNetV3-Large at 448 px."""
    pinned = {"backbone": "mobilenet_v3_large", "input_size": 448}
    return _create_mmsag("mmsag_mnv3_448", pinned, **kwargs)


def create_model(
    name: str,
    *,
    num_labels: int,
    label_embeddings: _Array | None = None,
    adjacency: _Array | None = None,
    pretrained: bool = True,
    weights: Path | str | None = None,
    **overrides: Any,
) -> MMSAG:
    """Build a named configuration for ``num_labels`` classes.

    Args:
        name: A registered configuration (see :func:`~mmsag_ros.model.list_models`).
        num_labels: Number of classes C.
        label_embeddings: C x E label embeddings (:func:`~mmsag_ros.model.text.embed_labels`);
            None makes them learnable (``embedding_source='learnable'``).
        adjacency: Static C x C co-occurrence graph; None uses the identity.
        pretrained: Load the packaged ImageNet backbone weights (efficientnet_lite0 has
            them); for a backbone without them this is refused: pass ``weights`` or
            ``pretrained=False`` for random initialisation.
        weights: A local backbone state-dict file (torchvision/timm layout); takes the
            place of ``pretrained``.
        **overrides: Other :class:`ModelConfig` fields (``fusion=False``, ``width=256``...).
            None values are dropped, so unset CLI options keep the model's defaults.

    Raises:
        ModelNotFoundError: Unknown name (with close matches) or missing weights file.
        ConfigError: Unknown option, a contradicted pinned value (backbone, input_size),
            inconsistent embeddings/adjacency, or weights that do not fit.
    """
    builder = get_model_builder(name)
    kept = {k: v for k, v in overrides.items() if v is not None}
    return builder(
        num_labels=num_labels,
        label_embeddings=label_embeddings,
        adjacency=adjacency,
        pretrained=pretrained,
        weights=weights,
        **kept,
    )


def build_model(
    config: ModelConfig,
    *,
    num_labels: int,
    label_embeddings: _Array | None = None,
    adjacency: _Array | None = None,
) -> MMSAG:
    """Rebuild a network from its saved config, with randomly initialised weights.

    For checkpoints: no weights file is read; ``load_state_dict`` then restores everything,
    the label embeddings and the static adjacency included (both live in the state dict).
    """
    return MMSAG(
        config,
        num_labels=num_labels,
        label_embeddings=label_embeddings,
        adjacency=adjacency,
        backbone=create_backbone(config.backbone),
    )
