"""Model outputs -> scores and decisions; pure numpy, shared by all backends.

Every backend returns raw logits (and, when the bundle has them, per-class attention maps); the
sigmoid and the per-class thresholds are applied here once, and the peak positions computed by
:mod:`mmsag_ros.pointing` (where the evaluation that scores them finds them too), so the
numbers a user sees do not depend on which backend produced the logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmsag_ros.errors import ConfigError

__all__ = ["check_thresholds", "decide", "sigmoid"]


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, float32 out.

    ``1 / (1 + exp(-x))`` overflows for large negative x; evaluating ``exp(-|x|)`` only ever
    exponentiates non-positive numbers.
    """
    x = np.asarray(logits, dtype=np.float32)
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z)).astype(np.float32, copy=False)


def check_thresholds(thresholds: Sequence[float] | np.ndarray, num_classes: int) -> np.ndarray:
    """Validate per-class decision thresholds; return them as a new float32 array.

    Raises:
        ConfigError: Wrong count, non-finite values or values outside [0, 1].
    """
    try:
        values = np.array(thresholds, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"thresholds must be {num_classes} numbers, got {thresholds!r}") from err
    if values.shape != (num_classes,):
        raise ConfigError(
            f"expected {num_classes} thresholds (one per class), got {values.size}; "
            "give one value in [0, 1] per class, in label order"
        )
    bad = [float(v) for v in values if not (np.isfinite(v) and 0.0 <= v <= 1.0)]
    if bad:
        raise ConfigError(f"thresholds must lie in [0, 1], got {bad}")
    return values.astype(np.float32)


def decide(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per-class decisions: a class is present when its score reaches its threshold."""
    return np.asarray(scores) >= np.asarray(thresholds)
