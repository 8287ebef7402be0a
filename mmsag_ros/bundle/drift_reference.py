"""What the model saw at export, for telling later when the belt no longer looks like it.

Export records, in the manifest's ``reference`` section, each class's positive rate (decided at
the bundle's thresholds) and mean score on the validation split, and the brightness and
contrast of the training images. The sorter compares a sliding window of what it sees with
these (:mod:`mmsag_ros.runtime.drift`). Both sides measure a frame with
:func:`frame_brightness_contrast`, so the numbers are comparable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from mmsag_ros.errors import BundleError

__all__ = ["Reference", "frame_brightness_contrast", "parse_reference"]

# Every 4th row and column: a 1280x720 frame costs well under a millisecond, and the mean and
# spread of a natural image barely move.
_STRIDE = 4
_TO_GRAY = {
    "rgb": cv2.COLOR_RGB2GRAY,
    "bgr": cv2.COLOR_BGR2GRAY,
    "rgba": cv2.COLOR_RGBA2GRAY,
    "bgra": cv2.COLOR_BGRA2GRAY,
}


def frame_brightness_contrast(image: np.ndarray, color_order: str) -> tuple[float, float]:
    """Mean (brightness) and standard deviation (contrast) of a frame's grey levels, 0-255."""
    view = image[::_STRIDE, ::_STRIDE]
    if view.ndim == 3 and color_order != "mono":
        view = cv2.cvtColor(np.ascontiguousarray(view), _TO_GRAY[color_order])
    elif view.ndim == 3:
        view = view[..., 0]
    mean, std = cv2.meanStdDev(view)
    return float(mean[0, 0]), float(std[0, 0])


@dataclass(frozen=True)
class Reference:
    """The manifest's ``reference`` section.

    Attributes:
        positive_rate: (C,) fraction of validation images decided positive, per class.
        mean_score: (C,) mean validation score per class.
        brightness: Mean grey level of the training images.
        contrast: Mean grey-level standard deviation of the training images.
        scores_from: What the class statistics were measured on (split and image count).
        input_from: What the input statistics were measured on.
    """

    positive_rate: np.ndarray
    mean_score: np.ndarray
    brightness: float
    contrast: float
    scores_from: str
    input_from: str

    def to_dict(self) -> dict[str, Any]:
        """The manifest form."""
        return {
            "positive_rate": [float(v) for v in self.positive_rate],
            "mean_score": [float(v) for v in self.mean_score],
            "brightness": self.brightness,
            "contrast": self.contrast,
            "scores_from": self.scores_from,
            "input_from": self.input_from,
        }


def parse_reference(section: Any, num_classes: int, where: str) -> Reference | None:
    """The ``reference`` section of a manifest (None when the bundle has none).

    Raises:
        BundleError: A malformed section, or one for another number of classes.
    """
    if section is None:
        return None
    try:
        rates = np.asarray(section["positive_rate"], np.float64)
        scores = np.asarray(section["mean_score"], np.float64)
        brightness, contrast = float(section["brightness"]), float(section["contrast"])
        reference = Reference(
            rates, scores, brightness, contrast,
            str(section.get("scores_from", "")), str(section.get("input_from", "")),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as err:
        raise BundleError(f"{where}: malformed reference section ({err})") from err
    if rates.shape != (num_classes,) or scores.shape != (num_classes,):
        raise BundleError(
            f"{where}: reference statistics for {rates.size} classes, the bundle has {num_classes}"
        )
    values = [*rates, *scores, brightness, contrast]
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise BundleError(f"{where}: reference statistics must be finite and non-negative")
    return reference
