"""Language-guided semantic decoupling: one attention map and one feature vector per class.

For class c and feature-map position p (ADD-GCN / SSGRL style, guided by the label text)::

    a_cp = softmax_p( w^T tanh(W_v f_p * W_l l_c) )
    v_c  = Linear( sum_p a_cp f_p )

``*`` is the element-wise product of the projected visual feature and the projected label
embedding. The maps A (B x C x h x w) are the heat maps of the paper's Fig. 1.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SemanticAttention"]


class SemanticAttention(nn.Module):
    """Class-specific attention pooling of a feature map, guided by label embeddings.

    Args:
        in_channels: Channels Cf of the backbone feature map.
        embed_dim: Width E of the label embeddings.
        attention_dim: Width k of the joint space where visual and label features meet.
        out_dim: Width d of the returned class features.
    """

    def __init__(self, in_channels: int, embed_dim: int, *, attention_dim: int, out_dim: int):
        super().__init__()
        self.visual = nn.Conv2d(in_channels, attention_dim, kernel_size=1, bias=False)
        self.label = nn.Linear(embed_dim, attention_dim, bias=False)
        self.score = nn.Linear(attention_dim, 1)
        self.project = nn.Linear(in_channels, out_dim)

    def forward(
        self, features: torch.Tensor, label_embeddings: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend to ``features`` (B x Cf x h x w) once per label (C x E).

        Returns:
            Class features V (B x C x d) and attention maps A (B x C x h x w), each map
            summing to 1 over its h x w positions.
        """
        batch, _, height, width = features.shape
        visual = self.visual(features).flatten(2).transpose(1, 2)  # B x N x k
        label = self.label(label_embeddings.to(visual.dtype))  # C x k
        joint = torch.tanh(visual.unsqueeze(1) * label[None, :, None, :])  # B x C x N x k
        attention = self.score(joint).squeeze(-1).softmax(dim=-1)  # B x C x N
        pooled = attention @ features.flatten(2).transpose(1, 2)  # B x C x Cf
        maps = attention.reshape(batch, -1, height, width)
        return self.project(pooled), maps
