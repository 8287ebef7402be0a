"""The MM-SAG network in torch: backbones, label text, semantic attention, fusion, graph.

Front doors: :func:`create_model` (a named configuration, with packaged or local backbone
weights) and :func:`build_model` (rebuild from a checkpoint's :class:`ModelConfig`).
"""

from __future__ import annotations

from mmsag_ros.model.backbones import Backbone, create_backbone
from mmsag_ros.model.configs import ABLATION_FLAGS, ModelConfig
from mmsag_ros.model.factory import build_model, create_model
from mmsag_ros.model.mmsag import MMSAG
from mmsag_ros.model.registry import (
    list_backbones,
    list_models,
    register_backbone,
    register_model,
)
from mmsag_ros.model.text import embed_labels, label_phrases

__all__ = [
    "ABLATION_FLAGS",
    "MMSAG",
    "Backbone",
    "ModelConfig",
    "build_model",
    "create_backbone",
    "create_model",
    "embed_labels",
    "label_phrases",
    "list_backbones",
    "list_models",
    "register_backbone",
    "register_model",
]
