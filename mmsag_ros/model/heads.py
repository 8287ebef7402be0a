"""Per-class classifiers: one weight vector and bias per class node."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["PerClassLinear"]


class PerClassLinear(nn.Module):
    """Score each class node with its own linear classifier: B x C x d -> B x C.

    Unlike one shared ``nn.Linear(d, 1)``, class c reads only its own node with its own
    weights (a C x d matrix and C biases), as in ADD-GCN's and SSGRL's final layers.
    """

    def __init__(self, num_labels: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_labels, dim))
        self.bias = nn.Parameter(torch.empty(num_labels))
        bound = 1.0 / math.sqrt(dim)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, nodes: torch.Tensor) -> torch.Tensor:
        """Logits B x C from class nodes B x C x d."""
        return (nodes * self.weight).sum(-1) + self.bias
