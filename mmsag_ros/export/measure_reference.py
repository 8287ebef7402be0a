"""The reference statistics a bundle carries for the drift watch, measured at export.

See :mod:`mmsag_ros.bundle.drift_reference`; export measures them on the splits it already has.
"""

from __future__ import annotations

import cv2
import numpy as np

from mmsag_ros.bundle.drift_reference import Reference, frame_brightness_contrast
from mmsag_ros.data.dataset import AnnotatedSplit
from mmsag_ros.errors import DatasetError

__all__ = ["MAX_INPUT_IMAGES", "measure_reference"]

MAX_INPUT_IMAGES = 300  # spread over the split: enough for a mean, a second or two to read


def measure_reference(
    scores: np.ndarray,
    thresholds: np.ndarray,
    validation: AnnotatedSplit,
    training: AnnotatedSplit | None,
    *,
    validation_name: str = "validation",
) -> Reference:
    """Measure a bundle's :class:`Reference`.

    Class statistics come from the fp32 ``scores`` (N x C) on ``validation``, input
    statistics from the training images (the validation ones when ``training`` is None).

    Raises:
        DatasetError: An image of the input split cannot be read.
    """
    decided = scores >= np.asarray(thresholds)[None, :]
    source, name = (training, "training") if training is not None else (validation, "validation")
    picks = np.unique(np.linspace(0, len(source) - 1, min(MAX_INPUT_IMAGES, len(source)))
                      .round().astype(int))  # fmt: skip
    measured = []
    for index in picks:
        path = source.samples[index].image_path
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DatasetError(f"{path} is missing or cannot be decoded")
        measured.append(frame_brightness_contrast(image, "bgr"))
    brightness, contrast = np.mean(measured, axis=0)
    return Reference(
        positive_rate=decided.mean(axis=0),
        mean_score=scores.mean(axis=0),
        brightness=float(brightness),
        contrast=float(contrast),
        scores_from=(
            f"{validation_name} split, {len(scores)} images, fp32 at the bundle's thresholds"
        ),
        input_from=f"{name} split, {len(picks)} of {len(source)} images",
    )
