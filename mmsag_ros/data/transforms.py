"""Training augmentation and the evaluation transform, both built from a PreprocessSpec.

Evaluation uses :func:`mmsag_ros.bundle.preprocess.preprocess` itself, the function the node
runs. Training adds ML-GCN's recipe in front of the same normalisation: resize to a larger
square (512 for a 448 model), crop a random multi-scale window, resize it to the input size,
flip horizontally at random. What a top-down belt camera allows can join it: vertical flips,
quarter turns and lighting changes (a belt has no "up" and its lamps age).

Both transforms also carry object boxes through (:meth:`TrainTransform.apply`): each box comes
out in the output's coordinates with the fraction of it still visible, so labels can follow
the crop (:func:`mmsag_ros.data.dataset.visible_targets`).
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
    source_to_input,
)
from mmsag_ros.errors import ConfigError

__all__ = ["EvalTransform", "TrainTransform", "move_boxes"]

# Crop side as a fraction of the resized image, drawn independently for width and height
# among neighbouring scales (ML-GCN's MultiScaleCrop with max_distort=1).
_CROP_SCALES = (1.0, 0.875, 0.75, 0.66, 0.5)

Boxes = np.ndarray
"""K x 5 float32 rows ``(label, x0, y0, x1, y1)``, corners normalised to [0, 1] of the image."""


def _input_boxes(boxes: Boxes, width: int, height: int, spec: PreprocessSpec) -> Boxes:
    """Source boxes in the normalised coordinates of ``spec``'s S x S input."""
    out = boxes.astype(np.float32, copy=True)
    out[:, 1], out[:, 2] = source_to_input(boxes[:, 1], boxes[:, 2], width, height, spec)
    out[:, 3], out[:, 4] = source_to_input(boxes[:, 3], boxes[:, 4], width, height, spec)
    return out


def move_boxes(
    boxes: Boxes,
    window: tuple[float, float, float, float],
    *,
    hflip: bool = False,
    vflip: bool = False,
    turns: int = 0,
) -> tuple[Boxes, np.ndarray]:
    """Boxes after cropping ``window`` (left, top, width, height; normalised), flips, turns.

    ``turns`` counts quarter turns as :func:`numpy.rot90` makes them (counter-clockwise).
    Returns the boxes clipped to the output and each one's visible fraction of its area.
    """
    left, top, width, height = window
    out = boxes.astype(np.float32, copy=True)
    out[:, [1, 3]] = np.clip((boxes[:, [1, 3]] - left) / width, 0.0, 1.0)
    out[:, [2, 4]] = np.clip((boxes[:, [2, 4]] - top) / height, 0.0, 1.0)
    area = (boxes[:, 3] - boxes[:, 1]) * (boxes[:, 4] - boxes[:, 2])
    kept = (out[:, 3] - out[:, 1]) * (out[:, 4] - out[:, 2]) * width * height
    visible = np.where(area > 0, kept / np.maximum(area, 1e-12), 0.0).astype(np.float32)
    x0, y0, x1, y1 = (out[:, i].copy() for i in range(1, 5))
    if hflip:
        x0, x1 = 1 - x1, 1 - x0
    if vflip:
        y0, y1 = 1 - y1, 1 - y0
    for _ in range(turns % 4):
        # np.rot90 sends the pixel at (x, y) to (y, 1 - x).
        x0, y0, x1, y1 = y0, 1 - x1, y1, 1 - x0
    out[:, 1], out[:, 2], out[:, 3], out[:, 4] = x0, y0, x1, y1
    return out, visible


class EvalTransform:
    """RGB uint8 image -> normalised 3 x S x S float32, exactly as at inference."""

    def __init__(self, spec: PreprocessSpec) -> None:
        self.spec = spec

    def __call__(self, image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Transform one image; ``rng`` is accepted for symmetry and unused."""
        return preprocess(image, self.spec)

    def apply(
        self, image: np.ndarray, rng: np.random.Generator | None, boxes: Boxes
    ) -> tuple[np.ndarray, Boxes, np.ndarray]:
        """Transform an image and its boxes: every box stays whole (visible fraction 1)."""
        height, width = image.shape[:2]
        moved = _input_boxes(boxes, width, height, self.spec)
        return preprocess(image, self.spec), moved, np.ones(len(boxes), np.float32)


class TrainTransform:
    """RGB uint8 image -> randomly cropped, flipped, normalised 3 x S x S float32.

    Args:
        spec: The model's preprocessing.
        scale_size: Side of the square the crop is taken from (default S * 512 / 448).
        flip: Mirror left to right with probability 1/2.
        vflip: Mirror top to bottom with probability 1/2.
        rot90: Turn by a random number of quarter turns.
        lighting: Strength s of lighting changes: brightness and contrast scaled by up to
            1 +- s, each channel's gain by up to 1 +- s/2 (a lamp's colour). 0 turns them off.
    """

    def __init__(
        self,
        spec: PreprocessSpec,
        *,
        scale_size: int | None = None,
        flip: bool = True,
        vflip: bool = False,
        rot90: bool = False,
        lighting: float = 0.0,
    ) -> None:
        if not 0.0 <= lighting < 1.0:
            raise ConfigError(f"augment.lighting must lie in [0, 1), got {lighting}")
        self.spec = spec
        self.scale_size = scale_size or round(spec.input_size * 512 / 448)
        self.flip, self.vflip, self.rot90, self.lighting = flip, vflip, rot90, lighting

    def __call__(self, image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Transform one image with randomness drawn from ``rng``."""
        return self.apply(image, rng, None)[0]

    def apply(
        self, image: np.ndarray, rng: np.random.Generator | None, boxes: Boxes | None
    ) -> tuple[np.ndarray, Boxes | None, np.ndarray | None]:
        """Transform an image and its boxes (None: no boxes) with randomness from ``rng``.

        Returns the model input, the boxes in its coordinates and each box's visible fraction.
        """
        rng = rng or np.random.default_rng()
        base_spec = replace(self.spec, input_size=self.scale_size)
        base = resize_to_input(image, base_spec)
        # The draws keep ML-GCN's order, so the crop and flip of a seed do not depend on
        # which of the belt augmentations are on.
        i = int(rng.integers(len(_CROP_SCALES)))
        j = int(np.clip(i + rng.integers(-1, 2), 0, len(_CROP_SCALES) - 1))
        crop_w = round(self.scale_size * _CROP_SCALES[i])
        crop_h = round(self.scale_size * _CROP_SCALES[j])
        left = int(rng.integers(self.scale_size - crop_w + 1))
        top = int(rng.integers(self.scale_size - crop_h + 1))
        crop = base[top : top + crop_h, left : left + crop_w]
        size = self.spec.input_size
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR)
        hflip = self.flip and rng.random() < 0.5
        if hflip:
            crop = crop[:, ::-1]
        vflip = self.vflip and rng.random() < 0.5
        if vflip:
            crop = crop[::-1]
        turns = int(rng.integers(4)) if self.rot90 else 0
        crop = np.rot90(crop, turns)
        if self.lighting:
            crop = _change_lighting(crop, rng, self.lighting)
        out = normalize_into(crop, self.spec, np.empty((3, size, size), np.float32))
        if boxes is None:
            return out, None, None
        height, width = image.shape[:2]
        window = tuple(v / self.scale_size for v in (left, top, crop_w, crop_h))
        moved, visible = move_boxes(
            _input_boxes(boxes, width, height, base_spec),
            window,  # type: ignore[arg-type]
            hflip=hflip,
            vflip=vflip,
            turns=turns,
        )
        return out, moved, visible


def _change_lighting(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Brighter or darker, more or less contrast, a warmer or colder lamp; uint8 out."""
    brightness, contrast = rng.uniform(1 - strength, 1 + strength, size=2)
    gains = rng.uniform(1 - strength / 2, 1 + strength / 2, size=3).astype(np.float32)
    pixels = image.astype(np.float32)
    mean = float(pixels.mean())
    pixels = (pixels - mean) * np.float32(contrast) + mean
    pixels *= np.float32(brightness) * gains
    return np.clip(pixels, 0, 255).round().astype(np.uint8)
