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
        attended, _ = self.attention(queries, keys, keys, need_weights=False)
        hidden = self.norm1(queries + attended)
        return self.norm2(hidden + self.ffn(hidden))
