"""The resolved description of an MM-SAG network, saved in every checkpoint.

A :class:`ModelConfig` holds everything needed to rebuild the module's structure (weights
come from the checkpoint). The number of classes is not part of it: it comes from the
checkpoint's ``LabelSet``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from mmsag_ros.bundle.preprocess import NORMALIZATIONS
from mmsag_ros.errors import ConfigError

__all__ = ["ABLATION_FLAGS", "ModelConfig"]

#: The stage switches, in pipeline order.
ABLATION_FLAGS = ("semantic_attention", "fusion", "static_graph", "dynamic_graph")


@dataclass(frozen=True)
class ModelConfig:
    """Structure of an MM-SAG network.

    Attributes:
        name: Named configuration it was created from (``mmsag_effl0_224``).
        backbone: Registered backbone name.
        input_size: Side S of the square input, pixels (feature map S/32 x S/32).
        width: Model width d of class features, tokens and graph nodes.
        num_heads: Attention heads in the fusion block; must divide ``width``.
        ffn_dim: Hidden width of the fusion feed-forward network.
        attention_dim: Width of the joint visual/label space in semantic attention.
        dropout: Dropout in the fusion block.
        semantic_attention: Class features from label-guided attention (off: the model is
            backbone + global average pooling + one linear layer, and the next three flags
            must be off too).
        fusion: Cross-attention of class features to visual and label tokens.
        static_graph: GCN step over the co-occurrence graph.
        dynamic_graph: GCN step over the per-image correlation graph.
        embedding_source: Where the label embeddings came from (``minilm``, ``learnable`` or
            a file name); ``learnable`` makes them a trained parameter, otherwise a constant.
        embedding_dim: Width E of the label embeddings.
        normalization: Input normalisation the trunk is fed, a key of
            :data:`~mmsag_ros.bundle.preprocess.NORMALIZATIONS`. New models take their
            backbone weights' own (:func:`~mmsag_ros.model.create_model`); the default is
            what every checkpoint saved before this field was trained with.
    """

    name: str
    backbone: str
    input_size: int
    width: int = 512
    num_heads: int = 8
    ffn_dim: int = 1024
    attention_dim: int = 512
    dropout: float = 0.1
    semantic_attention: bool = True
    fusion: bool = True
    static_graph: bool = True
    dynamic_graph: bool = True
    embedding_source: str = "minilm"
    embedding_dim: int = 384
    normalization: str = "imagenet"

    def __post_init__(self) -> None:
        for key in ("input_size", "width", "num_heads", "ffn_dim", "attention_dim"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key} must be a positive integer, got {value!r}")
        for key in ABLATION_FLAGS:
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"{key} must be true or false, got {getattr(self, key)!r}")
        if self.input_size < 32:
            raise ConfigError(
                f"input_size must be at least 32 pixels (the backbone stride), got "
                f"{self.input_size}"
            )
        if self.width % self.num_heads:
            raise ConfigError(
                f"width {self.width} is not divisible by num_heads {self.num_heads}; pick "
                "num_heads among the divisors of width (e.g. 4 or 8 for 512)"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.normalization not in NORMALIZATIONS:
            raise ConfigError(
                f"normalization must be one of {', '.join(NORMALIZATIONS)}, got "
                f"{self.normalization!r}"
            )
        if self.embedding_dim < 1:
            raise ConfigError(f"embedding_dim must be positive, got {self.embedding_dim}")
        later = [f for f in ABLATION_FLAGS[1:] if getattr(self, f)]
        if not self.semantic_attention and later:
            raise ConfigError(
                f"{', '.join(later)} need semantic_attention=True (their nodes are the class "
                "features it produces); switch them off too for the linear baseline"
            )

    @property
    def learnable_embeddings(self) -> bool:
        """Whether the label embeddings are a trained parameter rather than a constant."""
        return self.embedding_source == "learnable"

    @property
    def has_node_head(self) -> bool:
        """Whether a classifier reads the fused/graph nodes (besides the attention head)."""
        return self.fusion or self.static_graph or self.dynamic_graph

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON, YAML and checkpoints."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys fail with a suggestion.

        Raises:
            ConfigError: Unknown or missing keys, or invalid values.
        """
        known = [f.name for f in fields(cls)]
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"unknown model config key {key!r}{hint}")
        try:
            return cls(**dict(data))
        except TypeError as err:
            raise ConfigError(f"incomplete model config {dict(data)}: {err}") from err
