"""Graph module over the class nodes: a static label graph, then a dynamic per-image one.

Convention: ``A[i, j]`` is the weight with which class node i receives the message of node j,
so one graph-convolution step is ``H' = act(Â H W)`` with ``Â`` a normalised ``A``.

* Static graph (ML-GCN): ``A`` comes from training-set co-occurrence (computed in ``data/``,
  self-loops included as ML-GCN adds them) and is normalised once at construction,
  ``Â = D^-1/2 A D^-1/2`` with ``D = diag(row sums of A)`` (:func:`normalize_adjacency`);
  ML-GCN does the same. Without an adjacency the identity is used, which makes the static
  step a per-node linear map.
* Dynamic graph (ADD-GCN): per image, ``A_d = sigmoid(Conv1d([global(H); H]))``, B x C x C,
  where ``global(H)`` is a projection of the node mean. Each row of ``A_d`` is divided by its
  sum before aggregation so the step averages its inputs whatever the class count.
* Residual: ``Z = H + GCN_dynamic(GCN_static(H))`` (each step optional).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mmsag_ros.errors import ConfigError

__all__ = ["LabelGraph", "check_adjacency", "normalize_adjacency"]


def normalize_adjacency(adjacency: torch.Tensor) -> torch.Tensor:
    """Symmetric degree normalisation ``D^-1/2 A D^-1/2`` with ``D`` the row sums of ``A``.

    Rows (and the matching columns) of classes with zero degree become zero instead of inf.
    """
    degree = adjacency.sum(dim=1)
    inv_sqrt = torch.where(degree > 0, degree.clamp(min=1e-12).rsqrt(), torch.zeros_like(degree))
    return inv_sqrt[:, None] * adjacency * inv_sqrt[None, :]


def check_adjacency(adjacency: np.ndarray | torch.Tensor, num_labels: int) -> torch.Tensor:
    """Validate a C x C adjacency (finite, non-negative) and return it as float32.

    Raises:
        ConfigError: Wrong shape, NaN/inf or negative weights.
    """
    matrix = torch.as_tensor(np.asarray(adjacency, dtype=np.float32))
    if matrix.shape != (num_labels, num_labels):
        raise ConfigError(
            f"adjacency has shape {tuple(matrix.shape)}; expected ({num_labels}, {num_labels}), "
            "one row and column per class in label order"
        )
    if not torch.isfinite(matrix).all() or (matrix < 0).any():
        raise ConfigError("adjacency weights must be finite and non-negative")
    return matrix


class LabelGraph(nn.Module):
    """Static then dynamic graph convolution over class nodes, with a residual.

    Args:
        num_labels: Number of class nodes C.
        dim: Node width d.
        adjacency: Static C x C co-occurrence graph (raw; normalised here); None -> identity.
        static: Run the static step.
        dynamic: Run the dynamic step.
        negative_slope: LeakyReLU slope after each step (ML-GCN and ADD-GCN use 0.2).
    """

    def __init__(
        self,
        num_labels: int,
        dim: int,
        *,
        adjacency: np.ndarray | torch.Tensor | None = None,
        static: bool = True,
        dynamic: bool = True,
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        if not (static or dynamic):
            raise ConfigError("LabelGraph needs static=True or dynamic=True (or no graph at all)")
        self.activation = nn.LeakyReLU(negative_slope)
        self.static_weight: nn.Linear | None = None
        self.global_proj: nn.Linear | None = None
        self.correlation: nn.Conv1d | None = None
        self.dynamic_weight: nn.Linear | None = None
        if static:
            raw = (
                torch.eye(num_labels)
                if adjacency is None
                else check_adjacency(adjacency, num_labels)
            )
            # A buffer: saved in checkpoints and exported as a constant.
            self.register_buffer("static_adjacency", normalize_adjacency(raw))
            self.static_weight = nn.Linear(dim, dim, bias=False)
        elif adjacency is not None:
            check_adjacency(adjacency, num_labels)
        if dynamic:
            self.global_proj = nn.Linear(dim, dim)
            self.correlation = nn.Conv1d(2 * dim, num_labels, kernel_size=1)
            self.dynamic_weight = nn.Linear(dim, dim, bias=False)

    def dynamic_adjacency(self, nodes: torch.Tensor) -> torch.Tensor:
        """Per-image correlation ``A_d`` (B x C x C, values in (0, 1)) of nodes B x C x d."""
        if self.global_proj is None or self.correlation is None:
            raise ConfigError("this graph was built with dynamic=False")
        summary = self.activation(self.global_proj(nodes.mean(dim=1)))  # B x d
        joined = torch.cat([summary.unsqueeze(1).expand_as(nodes), nodes], dim=-1)
        return torch.sigmoid(self.correlation(joined.transpose(1, 2)))

    def forward(self, nodes: torch.Tensor) -> torch.Tensor:
        """Z = H + graph(H) for class nodes H (B x C x d)."""
        x = nodes
        if self.static_weight is not None:
            x = self.activation(self.static_adjacency.to(x.dtype) @ self.static_weight(x))
        if self.dynamic_weight is not None:
            dynamic = self.dynamic_adjacency(x)
            dynamic = dynamic / dynamic.sum(dim=-1, keepdim=True)
            x = self.activation(dynamic @ self.dynamic_weight(x))
        return nodes + x
