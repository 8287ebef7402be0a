"""Model outputs -> scores, decisions and attention peaks; pure numpy, shared by all backends.

Every backend returns raw logits (and, when the bundle has them, per-class attention maps); the
sigmoid, the per-class thresholds and the peak positions are computed here once, so the
numbers a user sees do not depend on which backend produced the logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmsag_ros.bundle.preprocess import PreprocessSpec, input_to_source
from mmsag_ros.errors import ConfigError

__all__ = ["attention_peaks", "check_thresholds", "decide", "sigmoid"]


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


def attention_peaks(
    attention: np.ndarray,
    *,
    source_size: tuple[int, int],
    spec: PreprocessSpec,
) -> np.ndarray:
    """Where each class's attention map peaks, in normalised source-image coordinates.

    Args:
        attention: C x h x w maps of one image (each a softmax over its h * w positions).
        source_size: (width, height) of the frame the input was made from, in pixels.
        spec: The preprocessing that made the model input; under ``letterbox`` the padding
            is undone, so coordinates refer to the original frame.

    Returns:
        C x 3 float32 rows ``(x, y, strength)``: x and y in [0, 1] (origin top-left) are the
        centre of the strongest cell, strength is the attention mass in that cell.
    """
    maps = np.asarray(attention)
    if maps.ndim != 3 or 0 in maps.shape:
        raise ValueError(f"attention must be C x h x w, got shape {maps.shape}")
    num_classes, grid_h, grid_w = maps.shape
    flat = maps.reshape(num_classes, grid_h * grid_w)
    best = flat.argmax(axis=1)
    rows, cols = np.divmod(best, grid_w)
    width, height = source_size
    peaks = np.empty((num_classes, 3), np.float32)
    for c in range(num_classes):
        # Each cell covers an equal share of the square model input: take its centre.
        x, y = input_to_source(
            (cols[c] + 0.5) / grid_w, (rows[c] + 0.5) / grid_h, width, height, spec
        )
        peaks[c] = (x, y, flat[c, best[c]])
    return peaks
