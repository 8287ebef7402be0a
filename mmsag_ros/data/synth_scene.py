"""One synthetic conveyor-belt frame: belt, waste objects, shadows, occlusion, camera.

A top-down view of a rubber belt carrying zero to five objects of MLKW's classes (drawn by
:mod:`mmsag_ros.data.synth_objects`) with a co-occurrence structure loosely modelled on MLKW:
plastic often with bottles, waste bags with plastic film, metal and glass rarer, a few empty
frames. Objects get a random pose and scale, may overlap or run off the frame or under the
belt's side guards; annotations give each object's visible extent and mark it difficult when
less than 30% of it shows. Then a lighting gradient, white balance, blur and sensor noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from mmsag_ros.bundle.labels import MLKW_LABELS, LabelSet
from mmsag_ros.data.synth_objects import SYNTH_CLASSES, object_radius_range, render_object
from mmsag_ros.errors import ConfigError

__all__ = [
    "Layer",
    "SceneObject",
    "annotate",
    "camera_effects",
    "check_synth_labels",
    "composite",
    "draw_belt",
    "frame_mask",
    "render_scene",
]

# How many objects a frame holds (0..5).
_COUNT_P = (0.06, 0.24, 0.28, 0.22, 0.13, 0.07)
# Relative frequency of each class when drawn on its own.
_BASE_WEIGHT = {
    "plastic": 0.26, "waste_bag": 0.16, "bottle": 0.15, "carton": 0.13, "lile": 0.1,
    "shoe": 0.08, "metal": 0.07, "galss": 0.05,
}  # fmt: skip
# Chance that a further object is a companion of one already in the frame, and the companions.
_COMPANION_P = 0.55
_COMPANIONS = {
    "plastic": {"bottle": 3, "plastic": 2, "waste_bag": 1, "lile": 1},
    "bottle": {"plastic": 4, "bottle": 1, "galss": 1, "metal": 1},
    "waste_bag": {"plastic": 4, "bottle": 1, "shoe": 1},
    "carton": {"lile": 2, "carton": 2, "plastic": 1},
    "lile": {"carton": 2, "plastic": 2, "lile": 1},
    "shoe": {"waste_bag": 2, "shoe": 1, "plastic": 1},
    "metal": {"bottle": 2, "metal": 1, "plastic": 1},
    "galss": {"bottle": 2, "galss": 1, "metal": 1},
}
_DIFFICULT_VISIBLE = 0.3  # visible fraction under which an object is marked difficult
_DROP_VISIBLE = 0.06  # ... and under which it is not annotated at all (hidden)
_OPAQUE = 128  # opacity from which a covering object hides what lies below


@dataclass(frozen=True)
class SceneObject:
    """One annotated object of a rendered frame.

    Attributes:
        name: Class name.
        bbox: Visible extent as VOC 1-based inclusive pixels (xmin, ymin, xmax, ymax).
        difficult: Heavily occluded or cut off (less than 30% visible).
        truncated: Partly outside the frame or under the belt's side guards.
        visible_fraction: Visible pixels over the object's full area.
    """

    name: str
    bbox: tuple[int, int, int, int]
    difficult: bool
    truncated: bool
    visible_fraction: float


@dataclass(frozen=True)
class Layer:
    """One placed object before annotation: its footprint and what it hides below it."""

    name: str
    frame: np.ndarray  # in-frame footprint
    cover: np.ndarray  # pixels it hides from the layers below
    full_px: int  # footprint including any part outside the frame


def _sample_classes(rng: np.random.Generator, names: tuple[str, ...]) -> list[str]:
    count = int(rng.choice(len(_COUNT_P), p=_COUNT_P))
    base = np.array([_BASE_WEIGHT[n] for n in names])
    chosen: list[str] = []
    for _ in range(count):
        weights = base
        if chosen and rng.random() < _COMPANION_P:
            partners = _COMPANIONS[chosen[int(rng.integers(len(chosen)))]]
            companion = np.array([partners.get(n, 0.0) for n in names], np.float64)
            if companion.sum() > 0:
                weights = companion
        chosen.append(names[int(rng.choice(len(names), p=weights / weights.sum()))])
    return chosen


def draw_belt(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A rubber belt seen from above: float32 RGB, height x width x 3, values near 40-120."""
    shade = rng.uniform(42, 112)
    tint = rng.uniform(-4, 4, 3)
    coarse = rng.normal(0, 1, (height // 24 + 2, width // 24 + 2)).astype(np.float32)
    belt = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC) * rng.uniform(2, 5)
    belt += rng.standard_normal((height, width), np.float32) * rng.uniform(2, 6)
    belt += rng.standard_normal((height, 1), np.float32) * rng.uniform(0.5, 2.5)  # wear streaks
    for _ in range(int(rng.integers(0, 3))):  # transverse seams
        x = rng.uniform(0, width)
        skew = rng.uniform(-0.05, 0.05) * height
        seam = np.array([[x - skew, 0], [x + skew, height]], np.int32)
        cv2.polylines(belt, [seam], False, -rng.uniform(8, 18), max(1, width // 200), cv2.LINE_AA)
    image = np.repeat((belt + shade)[..., None], 3, axis=2) + tint.astype(np.float32)
    return image


def _draw_guards(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Steel side guards over the belt edges; returns the mask they cover."""
    height = image.shape[0]
    mask = np.zeros(image.shape[:2], bool)
    steel = rng.uniform(120, 190)
    for top in (True, False):
        if rng.random() < 0.45:
            depth = max(2, round(height * rng.uniform(0.03, 0.09)))
            rows = slice(0, depth) if top else slice(height - depth, height)
            ramp = np.linspace(0.8, 1.15, depth, dtype=np.float32)[:: 1 if top else -1]
            image[rows] = steel * ramp[:, None, None]
            edge = depth - 1 if top else height - depth
            image[edge] *= 0.5
            mask[rows] = True
    return mask


def composite(
    image: np.ndarray, patch_rgb: np.ndarray, alpha: np.ndarray, x0: int, y0: int
) -> None:
    """Blend a square patch (uint8 ``alpha``) into float ``image`` at ``(x0, y0)``, clipped."""
    h, w = image.shape[:2]
    side = alpha.shape[0]
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if ix0 >= ix1 or iy0 >= iy1:
        return
    a = alpha[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0, None].astype(np.float32) / 255.0
    region = image[iy0:iy1, ix0:ix1]
    region *= 1.0 - a
    region += a * patch_rgb[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]


def frame_mask(shape: tuple[int, int], patch_mask: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """A square patch's boolean mask placed at ``(x0, y0)`` in a frame of ``shape``."""
    h, w = shape
    side = patch_mask.shape[0]
    out = np.zeros(shape, bool)
    ix0, iy0, ix1, iy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if ix0 < ix1 and iy0 < iy1:
        out[iy0:iy1, ix0:ix1] = patch_mask[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
    return out


def camera_effects(
    rng: np.random.Generator,
    image: np.ndarray,
    *,
    blur_sigma: tuple[float, float] = (0.35, 0.9),
    motion_blur: float = 0.2,
    noise: tuple[float, float] = (1.5, 5.0),
    lighting: bool = True,
) -> np.ndarray:
    """Lighting gradient, white balance, blur and sensor noise; returns uint8 RGB.

    ``blur_sigma`` and ``noise`` are ranges (pixels, 8-bit levels; a sigma of 0 is no blur),
    ``motion_blur`` a chance, ``lighting`` switches the gradient, vignette and white balance.
    The defaults are the drawn scenes' and the first composer's camera.
    """
    h, w = image.shape[:2]
    xs = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
    ys = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    direction = rng.uniform(0, 2 * math.pi)
    light = 1.0 + rng.uniform(0.1, 0.35) * (xs * math.cos(direction) + ys * math.sin(direction))
    light -= rng.uniform(0.0, 0.5) * (xs * xs + ys * ys)
    gain = rng.uniform(0.85, 1.15) * rng.uniform(0.94, 1.06, 3).astype(np.float32)
    if lighting:
        image *= light[..., None] * gain.astype(np.float32)
    if rng.random() < motion_blur:  # belt motion
        k = int(rng.integers(3, 6))
        image = cv2.filter2D(image, -1, np.full((1, k), 1.0 / k, np.float32))
    sigma = rng.uniform(*blur_sigma)
    if sigma > 0:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    grain = rng.standard_normal(image.shape, np.float32)
    grain *= rng.uniform(*noise)
    image += grain
    image += 0.5  # round to nearest on the cast below
    return np.clip(image, 0, 255, out=image).astype(np.uint8)


def render_scene(
    rng: np.random.Generator,
    *,
    image_size: tuple[int, int] = (320, 240),
    labels: LabelSet = MLKW_LABELS,
) -> tuple[np.ndarray, list[SceneObject]]:
    """Render one synthetic conveyor frame.

    Args:
        rng: The frame's generator; the same state gives the same frame.
        image_size: (width, height) in pixels.
        labels: Classes that may appear (a subset of MLKW's names).

    Returns:
        The RGB uint8 image (height x width x 3) and its annotated objects, bottom to top.
    """
    width, height = image_size
    names = check_synth_labels(labels)
    short = min(width, height)
    image = draw_belt(rng, width, height)
    shadow_dir = rng.uniform(0, 2 * math.pi)
    shadow_strength = rng.uniform(0.2, 0.45)
    placed = []
    for name in _sample_classes(rng, names):
        low, high = object_radius_range(name)
        radius = short * rng.uniform(low, high)
        placed.append((radius * rng.uniform(0.7, 1.3), name, radius))
    placed.sort(key=lambda item: -item[0])  # larger items mostly lie underneath
    layers: list[Layer] = []
    for _, name, radius in placed:
        center = (rng.uniform(-0.02, 1.02) * width, rng.uniform(0.02, 0.98) * height)
        patch = render_object(
            name,
            rng,
            center_xy=center,
            radius_px=radius,
            angle_rad=rng.uniform(0, 2 * math.pi),
            mirror=bool(rng.random() < 0.5),
        )
        offset = (0.05 * radius + 1) * np.array([math.cos(shadow_dir), math.sin(shadow_dir)])
        shift = np.array([[1, 0, offset[0]], [0, 1, offset[1]]], np.float32)
        side = patch.alpha.shape[0]
        shadow = cv2.warpAffine(patch.alpha, shift, (side, side)).astype(np.float32)
        shadow = cv2.GaussianBlur(shadow, (0, 0), 0.06 * radius + 0.8)
        composite(image, np.zeros_like(patch.color), shadow * shadow_strength, patch.x0, patch.y0)
        composite(image, patch.color.astype(np.float32), patch.alpha, patch.x0, patch.y0)
        footprint = patch.alpha >= 24
        frame = frame_mask((height, width), footprint, patch.x0, patch.y0)
        cover = frame_mask((height, width), patch.alpha >= _OPAQUE, patch.x0, patch.y0)
        layers.append(Layer(name, frame, cover, int(footprint.sum())))
    guards = _draw_guards(rng, image)
    objects = annotate(layers, guards)
    return camera_effects(rng, image), objects


def annotate(layers: list[Layer], guards: np.ndarray) -> list[SceneObject]:
    """Visible boxes of ``layers`` (bottom to top) under ``guards``; hidden ones are dropped."""
    objects = []
    hidden = guards.copy()
    # Walk from the top layer down, accumulating what covers each object.
    for layer in reversed(layers):
        visible = layer.frame & ~hidden
        hidden |= layer.cover
        visible_px = int(visible.sum())
        fraction = visible_px / max(layer.full_px, 1)
        if fraction < _DROP_VISIBLE or visible_px < 4:
            continue
        rows = np.flatnonzero(visible.any(axis=1))
        cols = np.flatnonzero(visible.any(axis=0))
        bbox = (int(cols[0]) + 1, int(rows[0]) + 1, int(cols[-1]) + 1, int(rows[-1]) + 1)
        in_frame = int((layer.frame & ~guards).sum())
        objects.append(
            SceneObject(
                name=layer.name,
                bbox=bbox,
                difficult=fraction < _DIFFICULT_VISIBLE,
                truncated=in_frame < 0.95 * layer.full_px,
                visible_fraction=round(fraction, 4),
            )
        )
    return objects[::-1]


def check_synth_labels(labels: LabelSet) -> tuple[str, ...]:
    """Return the label set's names; ConfigError if the generator cannot draw one of them."""
    unknown = [n for n in labels.names if n not in SYNTH_CLASSES]
    if unknown:
        raise ConfigError(
            f"the synthetic generator cannot draw {unknown}; use a label set whose names are "
            f"among {', '.join(SYNTH_CLASSES)}"
        )
    return labels.names
