"""The MM-SAG network: backbone -> semantic attention -> attention fusion -> label graph.

Stages switch off through :class:`~mmsag_ros.model.configs.ModelConfig` flags, giving the
ablation ladder linear / +semantic attention / +fusion / full:

* ``semantic_attention`` off: backbone + global average pooling + ``nn.Linear`` (one head).
* attention on, the rest off: the attention head ``y_sam`` on V is the only head.
* fusion and/or graph on: a second per-class head reads Z = graph(fusion(V)) (each stage
  skipped when off); ``logits`` is the mean of the two heads, the loss sums theirs.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from mmsag_ros.bundle.preprocess import NORMALIZATIONS, PreprocessSpec
from mmsag_ros.errors import ConfigError
from mmsag_ros.model.backbones import Backbone, create_backbone
from mmsag_ros.model.configs import ModelConfig
from mmsag_ros.model.fusion import AttentionFusion
from mmsag_ros.model.graph import LabelGraph, check_adjacency
from mmsag_ros.model.heads import PerClassLinear
from mmsag_ros.model.semantic_attention import SemanticAttention

__all__ = ["MMSAG"]

_log = logging.getLogger(__name__)

# Everything after the backbone; rebuilt by reset_head.
_HEAD_MODULES = ("classifier", "semantic_attention", "sam_head", "fusion", "graph", "node_head")


class MMSAG(nn.Module):
    """Multi-Modal Semantic-Aware Graph multi-label classifier.

    ``forward`` returns a dict: ``logits`` (B x C, mean of the active heads),
    ``head_logits`` (tuple of B x C tensors, one per head, for the loss) and, when semantic
    attention is on, ``attention`` (B x C x h x w maps, each summing to 1).

    Args:
        config: Structure and stage switches.
        num_labels: Number of classes C.
        label_embeddings: C x E label text embeddings; needed with semantic attention unless
            ``config.embedding_source`` is ``learnable`` (random init). None otherwise leaves
            zeros to be overwritten by ``load_state_dict``.
        adjacency: Static C x C co-occurrence graph for ``static_graph`` (None: identity).
        backbone: A built backbone (with its weights); None builds ``config.backbone`` with
            random initialisation.
    """

    def __init__(
        self,
        config: ModelConfig,
        *,
        num_labels: int,
        label_embeddings: np.ndarray | torch.Tensor | None = None,
        adjacency: np.ndarray | torch.Tensor | None = None,
        backbone: Backbone | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone if backbone is not None else create_backbone(config.backbone)
        if self.backbone.name != config.backbone:
            raise ConfigError(
                f"backbone {self.backbone.name!r} given for a config naming {config.backbone!r}"
            )
        self.num_labels = 0
        self._build_head(num_labels, label_embeddings, adjacency)

    @property
    def spec(self) -> PreprocessSpec:
        """Input size and normalisation this model expects (its trunk's own mean/std, stretch)."""
        mean, std = NORMALIZATIONS[self.config.normalization]
        return PreprocessSpec(input_size=self.config.input_size, mean=mean, std=std)

    def _embedding_tensor(
        self, values: np.ndarray | torch.Tensor | None, num_labels: int
    ) -> torch.Tensor:
        size = (num_labels, self.config.embedding_dim)
        if values is None:
            if self.config.learnable_embeddings:
                # Random rows of about unit norm, the scale of normalised sentence embeddings.
                return torch.randn(size) / self.config.embedding_dim**0.5
            return torch.zeros(size)
        tensor = torch.as_tensor(np.asarray(values, dtype=np.float32))
        if tuple(tensor.shape) != size:
            raise ConfigError(
                f"label embeddings have shape {tuple(tensor.shape)}; expected {size} "
                "(one row per class, embedding_dim columns)"
            )
        if not torch.isfinite(tensor).all():
            raise ConfigError("label embeddings contain NaN or inf")
        return tensor

    def _build_head(
        self,
        num_labels: int,
        label_embeddings: np.ndarray | torch.Tensor | None,
        adjacency: np.ndarray | torch.Tensor | None,
    ) -> None:
        if isinstance(num_labels, bool) or not isinstance(num_labels, int) or num_labels < 1:
            raise ConfigError(f"num_labels must be a positive integer, got {num_labels!r}")
        cfg, channels = self.config, self.backbone.out_channels
        device = next(self.backbone.parameters()).device
        # Check every input before tearing down the current head (reset_head stays atomic).
        if adjacency is not None:
            adjacency = check_adjacency(adjacency, num_labels)
        embeddings = None
        if cfg.semantic_attention:
            embeddings = self._embedding_tensor(label_embeddings, num_labels).to(device)
        self.num_labels = num_labels
        for name in _HEAD_MODULES:
            setattr(self, name, None)
        if embeddings is None:
            self.classifier = nn.Linear(channels, num_labels)
        else:
            if cfg.learnable_embeddings:
                self.label_embeddings = nn.Parameter(embeddings)
            else:
                # A frozen constant: saved in checkpoints, exported into the graph.
                self.register_buffer("label_embeddings", embeddings)
            self.semantic_attention = SemanticAttention(
                channels,
                cfg.embedding_dim,
                attention_dim=cfg.attention_dim,
                out_dim=cfg.width,
            )
            self.sam_head = PerClassLinear(num_labels, cfg.width)
            if cfg.fusion:
                self.fusion = AttentionFusion(
                    cfg.width,
                    in_channels=channels,
                    embed_dim=cfg.embedding_dim,
                    num_heads=cfg.num_heads,
                    ffn_dim=cfg.ffn_dim,
                    dropout=cfg.dropout,
                )
            if cfg.static_graph or cfg.dynamic_graph:
                self.graph = LabelGraph(
                    num_labels,
                    cfg.width,
                    adjacency=adjacency,
                    static=cfg.static_graph,
                    dynamic=cfg.dynamic_graph,
                )
            if cfg.has_node_head:
                self.node_head = PerClassLinear(num_labels, cfg.width)
        if adjacency is not None and not cfg.static_graph:
            _log.info("static_graph is off: the adjacency given is not used")
        # reset_head may run after .to(device): new parts follow the backbone.
        for name in _HEAD_MODULES:
            part = getattr(self, name)
            if part is not None:
                part.to(device)

    def reset_head(
        self,
        num_labels: int,
        *,
        label_embeddings: np.ndarray | torch.Tensor | None = None,
        adjacency: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        """Rebuild everything after the backbone for a new label set (fine-tuning).

        The backbone keeps its weights; attention, fusion, graph, heads and the label
        embeddings start afresh for ``num_labels`` classes.
        """
        self._build_head(num_labels, label_embeddings, adjacency)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone feature map B x Cf x S/32 x S/32 of a normalised image batch."""
        return self.backbone(x)

    def forward_head(self, features: torch.Tensor) -> dict[str, Any]:
        """Class logits (and attention maps) from a backbone feature map."""
        if self.classifier is not None:
            logits = self.classifier(features.mean(dim=(2, 3)))
            return {"logits": logits, "head_logits": (logits,)}
        embeddings = self.label_embeddings
        class_features, maps = self.semantic_attention(features, embeddings)
        heads = [self.sam_head(class_features)]
        if self.node_head is not None:
            nodes = class_features
            if self.fusion is not None:
                nodes = self.fusion(nodes, features, embeddings)
            if self.graph is not None:
                nodes = self.graph(nodes)
            heads.append(self.node_head(nodes))
        logits = heads[0] if len(heads) == 1 else torch.stack(heads).mean(dim=0)
        return {"logits": logits, "head_logits": tuple(heads), "attention": maps}

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        """Logits, per-head logits and attention maps of a normalised image batch."""
        return self.forward_head(self.forward_features(x))

    def param_groups(
        self, lr: float, *, backbone_lr_mult: float = 0.1, weight_decay: float = 1e-4
    ) -> list[dict[str, Any]]:
        """Optimizer parameter groups: backbone at ``lr * backbone_lr_mult``, the rest at ``lr``.

        Each part is split in two: tensors of one dimension or less (biases, norm scales,
        per-class head biases) get no weight decay, as in timm; matrices and kernels get
        ``weight_decay``. Frozen tensors are left out; empty groups are dropped. Every group
        carries a ``name`` (``backbone``, ``backbone_no_decay``, ``head``, ``head_no_decay``).
        """
        groups: dict[str, list[nn.Parameter]] = {
            "backbone": [],
            "backbone_no_decay": [],
            "head": [],
            "head_no_decay": [],
        }
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            part = "backbone" if name.startswith("backbone.") else "head"
            groups[part if param.ndim > 1 else f"{part}_no_decay"].append(param)
        return [
            {
                "name": name,
                "params": params,
                "lr": lr * (backbone_lr_mult if name.startswith("backbone") else 1.0),
                "weight_decay": 0.0 if name.endswith("no_decay") else weight_decay,
            }
            for name, params in groups.items()
            if params
        ]
