"""Multi-label losses that skip ignored targets: ASL (default) and binary cross-entropy.

Targets are float tensors of 1 (positive), 0 (negative) and -1 (ignore, e.g. VOC
"difficult"); ignored entries contribute nothing, neither to the sum nor to the count.

Reduction (both losses, so they are interchangeable at one learning rate): the per-element
losses are **summed over classes and averaged over the batch** (``batch_mean``), i.e. the sum
over valid elements divided by the batch size B. This keeps ASL's per-class sum (Ridnik et al.
sum over every element; their focusing makes per-element means tiny) while making the scale
independent of the batch size, so learning rates carry over between batch sizes and DDP
world sizes. ``sum`` (ASL's original) and ``mean`` (over valid elements, torch's default)
are available too.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias
from torch import nn

from mmsag_ros.errors import ConfigError

__all__ = [
    "LOSSES",
    "REDUCTIONS",
    "AsymmetricLoss",
    "BCEWithIgnore",
    "attention_box_loss",
    "build_loss",
    "multi_head_loss",
]

REDUCTIONS = ("batch_mean", "sum", "mean")


def _check(logits: torch.Tensor, targets: torch.Tensor) -> None:
    if logits.shape != targets.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape"
        )


def _reduce(per_element: torch.Tensor, valid: torch.Tensor, reduction: str) -> torch.Tensor:
    # where(), not a product with the mask: nothing from an ignored entry (not even a NaN)
    # reaches the sum.
    total = torch.where(valid, per_element, torch.zeros_like(per_element)).sum()
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / valid.sum().clamp(min=1)
    return total / max(per_element.shape[0], 1)


class _IgnoringLoss(nn.Module):
    def __init__(self, reduction: str) -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ConfigError(
                f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}"
            )
        self.reduction = reduction

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Reduced loss of B x C logits against B x C targets in {1, 0, -1}."""
        _check(logits, targets)
        targets = targets.to(logits.dtype)
        valid = targets >= 0
        return _reduce(self.elementwise(logits, targets.clamp(min=0)), valid, self.reduction)


class AsymmetricLoss(_IgnoringLoss):
    """Asymmetric loss for multi-label classification (Ridnik et al., ICCV 2021).

    With p = sigmoid(x) and the shifted negative probability p_m = max(p - clip, 0)::

        positive: -(1 - p)^gamma_pos * log(p)
        negative: -p_m^gamma_neg * log(1 - p_m)

    The shift discards very easy negatives entirely (p < clip) and the stronger focusing on
    negatives down-weights the many easy ones, which suits few positives per image.

    Args:
        gamma_neg: Focusing exponent for negatives.
        gamma_pos: Focusing exponent for positives.
        clip: Probability margin subtracted from negatives (0 disables the shift).
        eps: Lower bound inside the logarithms.
        reduction: ``batch_mean`` (default), ``sum`` or ``mean``; see the module docstring.
    """

    def __init__(
        self,
        gamma_neg: float = 4.0,
        gamma_pos: float = 0.0,
        clip: float = 0.05,
        eps: float = 1e-8,
        *,
        reduction: str = "batch_mean",
    ) -> None:
        super().__init__(reduction)
        if gamma_neg < 0 or gamma_pos < 0 or not 0 <= clip < 1 or eps <= 0:
            raise ConfigError(
                f"ASL needs gamma_neg, gamma_pos >= 0, 0 <= clip < 1 and eps > 0; got "
                f"{gamma_neg}, {gamma_pos}, {clip}, {eps}"
            )
        self.gamma_neg, self.gamma_pos, self.clip, self.eps = gamma_neg, gamma_pos, clip, eps

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-element ASL for targets in {0, 1}."""
        prob = torch.sigmoid(logits)
        prob_neg = (prob - self.clip).clamp(min=0) if self.clip > 0 else prob
        loss_pos = -torch.log(prob.clamp(min=self.eps))
        loss_neg = -torch.log((1 - prob_neg).clamp(min=self.eps))
        if self.gamma_pos:
            loss_pos = loss_pos * (1 - prob).pow(self.gamma_pos)
        if self.gamma_neg:
            loss_neg = loss_neg * prob_neg.pow(self.gamma_neg)
        return targets * loss_pos + (1 - targets) * loss_neg


class BCEWithIgnore(_IgnoringLoss):
    """Binary cross-entropy on logits, skipping targets of -1.

    Args:
        reduction: ``batch_mean`` (default), ``sum`` or ``mean``; see the module docstring.
    """

    def __init__(self, *, reduction: str = "batch_mean") -> None:
        super().__init__(reduction)

    def elementwise(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-element BCE for targets in {0, 1}."""
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


LOSSES: dict[str, Callable[..., nn.Module]] = {"asl": AsymmetricLoss, "bce": BCEWithIgnore}


def build_loss(name: str, **kwargs: Any) -> nn.Module:
    """A loss by name (``asl`` or ``bce``), with keyword options for its constructor.

    Raises:
        ConfigError: Unknown name (with the closest match) or invalid options.
    """
    try:
        factory = LOSSES[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(LOSSES), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"unknown loss {name!r}{hint} Known losses: {', '.join(LOSSES)}"
        ) from None
    try:
        return factory(**kwargs)
    except TypeError as err:
        raise ConfigError(f"invalid options {kwargs} for loss {name!r}: {err}") from err


def multi_head_loss(
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    head_logits: Sequence[torch.Tensor],
    targets: torch.Tensor,
) -> torch.Tensor:
    """Sum of ``loss`` over the model's heads (each B x C against the same targets).

    Raises:
        ValueError: No heads.
    """
    if not head_logits:
        raise ValueError("multi_head_loss needs at least one head's logits")
    total = loss(head_logits[0], targets)
    for logits in head_logits[1:]:
        total = total + loss(logits, targets)
    return total


def attention_box_loss(
    maps: torch.Tensor, masks: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """How far each present class's attention is from its objects: mean ``-log(mass on boxes)``.

    ``maps`` are the B x C x h x w class attention maps (each a softmax over positions),
    ``masks`` the B x C x h x w 0/1 maps of where each class's objects lie
    (:func:`~mmsag_ros.data.dataset.box_masks`). Only positive labels with a non-empty mask
    count; with none in the batch the loss is a zero that still has a gradient path.
    """
    if maps.shape != masks.shape:
        raise ValueError(
            f"attention maps {tuple(maps.shape)} and masks {tuple(masks.shape)} differ"
        )
    counted = (targets == 1) & (masks.flatten(2).sum(-1) > 0)
    mass = (maps.float() * masks).flatten(2).sum(-1)
    loss = -torch.log(mass.clamp_min(1e-6))
    return (loss * counted).sum() / counted.sum().clamp_min(1)
