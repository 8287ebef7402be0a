"""Attention fusion of image and text: class features attend to visual and label tokens.

Queries are the class features V (B x C x d); keys and values are the concatenation of the
visual tokens P (the feature map projected to d, B x N x d) and the label tokens T (the label
embeddings projected to d, C x d, shared by the batch). A learnable type embedding marks each
key as visual or textual, so attention can weigh the modalities differently (our addition;
the map has no position code so one model serves any input size). Post-norm transformer
block: multi-head attention + residual + LayerNorm, then a 2-layer GELU feed-forward +
residual + LayerNorm.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

__all__ = ["AttentionFusion"]


class AttentionFusion(nn.Module):
    """One cross-attention block from class queries to image and label tokens.

    Args:
        dim: Model width d (queries, keys, values).
        in_channels: Channels Cf of the backbone feature map.
        embed_dim: Width E of the label embeddings.
        num_heads: Attention heads; must divide ``dim``.
        ffn_dim: Hidden width of the feed-forward network.
        dropout: Dropout on attention weights and feed-forward output.
    """

    def __init__(
        self,
        dim: int,
        *,
        in_channels: int,
        embed_dim: int,
        num_heads: int = 8,
        ffn_dim: int = 1024,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.visual_proj = nn.Conv2d(in_channels, dim, kernel_size=1)
        self.label_proj = nn.Linear(embed_dim, dim)
        self.token_type = nn.Parameter(torch.zeros(2, dim))
        nn.init.normal_(self.token_type, std=0.02)
        self.attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(ffn_dim, dim),
            nn.Dropout(dropout),
        )
        self.norm2 = nn.LayerNorm(dim)

    def tokens(self, features: torch.Tensor, label_embeddings: torch.Tensor) -> torch.Tensor:
        """Keys/values [P ; T]: B x (N + C) x d."""
        visual = self.visual_proj(features).flatten(2).transpose(1, 2) + self.token_type[0]
        label = self.label_proj(label_embeddings.to(visual.dtype)) + self.token_type[1]
        label = label.unsqueeze(0).expand(visual.shape[0], -1, -1)
        return torch.cat([visual, label], dim=1)

    def forward(
        self, queries: torch.Tensor, features: torch.Tensor, label_embeddings: torch.Tensor
    ) -> torch.Tensor:
        """Fuse class features V (B x C x d) with image and labels into H (B x C x d)."""
        keys = self.tokens(features, label_embeddings)
        attended = self.cross_attention(queries, keys)
        hidden = self.norm1(queries + attended)
        return self.norm2(hidden + self.ffn(hidden))

    def cross_attention(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """``self.attention(queries, keys, keys)``, written out over the module's parameters.

        ``nn.MultiheadAttention`` splits its packed input projection at run time by sizes it
        reads off the inputs, so the exported graph slices and transposes the projection
        weights on every call, and an int8 quantizer sees those weights as activations. Split
        by the known width here, the slices fold into constant weights at export.
        """
        mha, dim = self.attention, self.attention.embed_dim
        weight, bias = mha.in_proj_weight, mha.in_proj_bias
        query = functional.linear(queries, weight[:dim], bias[:dim])
        key = functional.linear(keys, weight[dim : 2 * dim], bias[dim : 2 * dim])
        value = functional.linear(keys, weight[2 * dim :], bias[2 * dim :])
        # B x tokens x d -> B x heads x tokens x d/heads
        query, key, value = (
            t.unflatten(-1, (mha.num_heads, mha.head_dim)).transpose(1, 2)
            for t in (query, key, value)
        )
        weights = ((query * mha.head_dim**-0.5) @ key.transpose(-2, -1)).softmax(dim=-1)
        weights = functional.dropout(weights, p=mha.dropout, training=self.training)
        attended = (weights @ value).transpose(1, 2).flatten(2)
        return mha.out_proj(attended)
