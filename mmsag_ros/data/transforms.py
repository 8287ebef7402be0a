"""Training augmentation and the evaluation transform, both built from a PreprocessSpec.

Evaluation uses :func:`mmsag_ros.bundle.preprocess.preprocess` itself, the function the node
runs. Training adds ML-GCN's recipe in front of the same normalisation: resize to a larger
square (512 for a 448 model), crop a random multi-scale window, resize it to the input size,
flip horizontally at random.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from mmsag_ros.bundle.preprocess import (
    PreprocessSpec,
    normalize_into,
    preprocess,
    resize_to_input,
)

__all__ = ["EvalTransform", "TrainTransform"]

# Crop side as a fraction of the resized image, drawn independently for width and height
# among neighbouring scales (ML-GCN's MultiScaleCrop with max_distort=1).
_CROP_SCALES = (1.0, 0.875, 0.75, 0.66, 0.5)


class EvalTransform:
    """RGB uint8 image -> normalised 3 x S x S float32, exactly as at inference."""

    def __init__(self, spec: PreprocessSpec) -> None:
        self.spec = spec

    def __call__(self, image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Transform one image; ``rng`` is accepted for symmetry and unused."""
        return preprocess(image, self.spec)


class TrainTransform:
    """RGB uint8 image -> randomly cropped, flipped, normalised 3 x S x S float32."""

    def __init__(
        self, spec: PreprocessSpec, *, scale_size: int | None = None, flip: bool = True
    ) -> None:
        self.spec = spec
        self.scale_size = scale_size or round(spec.input_size * 512 / 448)
        self.flip = flip

    def __call__(self, image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Transform one image with randomness drawn from ``rng``."""
        rng = rng or np.random.default_rng()
        base = resize_to_input(image, replace(self.spec, input_size=self.scale_size))
        i = int(rng.integers(len(_CROP_SCALES)))
        j = int(np.clip(i + rng.integers(-1, 2), 0, len(_CROP_SCALES) - 1))
        crop_w = round(self.scale_size * _CROP_SCALES[i])
        crop_h = round(self.scale_size * _CROP_SCALES[j])
        left = int(rng.integers(self.scale_size - crop_w + 1))
        top = int(rng.integers(self.scale_size - crop_h + 1))
        crop = base[top : top + crop_h, left : left + crop_w]
        size = self.spec.input_size
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR)
        if self.flip and rng.random() < 0.5:
            crop = crop[:, ::-1]
        return normalize_into(crop, self.spec, np.empty((3, size, size), np.float32))
