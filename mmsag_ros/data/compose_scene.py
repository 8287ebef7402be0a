"""One belt scene laid out from cut-out photos, in a named style.

A scene is drawn in steps: cut the photo's object out, scale, rotate and mirror it, find a spot
where it overlaps earlier objects within bounds, drop its shadow, paste it, and pass the frame
through a camera. :class:`ComposeStyle` names each step's setting, so that a step can be
switched off and its cost in class signal measured (``bench/linear_probe.py``), and so that the
first composer's scenes stay reproducible as a fixed test reference (:data:`COMPOSE_STYLES`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mmsag_ros.data.cutout import CUTOUT_KINDS, Cutout, cut_out, cutout_problem
from mmsag_ros.data.synth_scene import (
    Layer,
    SceneObject,
    annotate,
    camera_effects,
    composite,
    draw_belt,
    frame_mask,
)
from mmsag_ros.errors import ConfigError, DatasetError

__all__ = ["COMPOSE_STYLES", "ComposeStyle", "Cutouts", "compose_style", "render_scene"]

_PLACEMENT_TRIES = 30  # spots tried for one object
_OBJECT_TRIES = 4  # objects drawn per wanted one (empty cutouts and crowded belts skip)
_SIZE_RANGE = (0.3, 0.55)  # object's longer side, a fraction of the scene's shorter side


@dataclass(frozen=True)
class ComposeStyle:
    """How each composing step is done.

    Every style draws from the same random stream, so a style that changes only pixels
    (camera, shadows, edge inset) keeps every object where the other put it; one that changes
    sizes or which cutouts are usable (enlarging, the check) places them differently.

    Attributes:
        name: The style's name, recorded in ``composed.json``.
        rotation: Turn objects by any angle in the belt plane (else keep the photo's upright).
        max_enlarge: Largest enlargement of a photo's object (None: any). An object drawn
            larger than it was photographed is only a blurred copy.
        edge_inset: Pull each cutout's feathered edge this many photo pixels into the object,
            so that no rim of the photo's light sheet (a halo) is pasted onto the belt.
        check_cutouts: Leave out cutouts that fail :func:`~mmsag_ros.data.cutout.cutout_problem`
            (strips, scattered fragments, items the cut missed).
        shadows: Drop a soft shadow under each object.
        camera: Pass the frame through the camera model (light, white balance, blur, noise).
        camera_lighting: The camera model's light gradient, vignette and white balance.
        blur_sigma: Range of the camera's Gaussian blur, in scene pixels.
        motion_blur: Chance of a short horizontal motion blur (a strobed belt camera has little).
        noise: Range of the sensor noise's standard deviation, in 8-bit levels.
    """

    name: str
    rotation: bool = True
    max_enlarge: float | None = None
    edge_inset: float = 0.0
    check_cutouts: bool = False
    shadows: bool = True
    camera: bool = True
    camera_lighting: bool = True
    blur_sigma: tuple[float, float] = (0.35, 0.9)
    motion_blur: float = 0.2
    noise: tuple[float, float] = (1.5, 5.0)

    def replace(self, **changes: object) -> ComposeStyle:
        """A copy with some steps set differently (an ablation)."""
        return dataclasses.replace(self, **changes)


#: ``original``: the first composer (December 2026), the default, kept so its test scenes stay
#: a fixed reference. ``belt``: what a strobed top-down belt camera shows; the probe finds more
#: class signal in it, a trained model no better score on the fixed test split
#: (bench/results/linear_probe_styles.txt, train_budget_photos_belt_2026-12-07.txt).
COMPOSE_STYLES: Mapping[str, ComposeStyle] = {
    "original": ComposeStyle("original"),
    "belt": ComposeStyle(
        "belt",
        max_enlarge=1.0,
        edge_inset=2.0,
        check_cutouts=True,
        blur_sigma=(0.2, 0.5),
        motion_blur=0.05,
    ),
}


def compose_style(style: str | ComposeStyle) -> ComposeStyle:
    """The style of that name (or the style itself); ConfigError names the known ones."""
    if isinstance(style, ComposeStyle):
        return style
    if style not in COMPOSE_STYLES:
        raise ConfigError(
            f"unknown compose style {style!r}; choose one of {', '.join(COMPOSE_STYLES)}"
        )
    return COMPOSE_STYLES[style]


def _photo_rng(path: Path) -> np.random.Generator:
    # A photo's sheet outline depends on the photo alone, not on the order it is first used.
    digest = hashlib.sha256(path.name.encode("utf-8")).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


class Cutouts:
    """Each photo cut out and checked once, on first use.

    Attributes:
        kinds: cutout kind -> photos cut so far.
        rejected: problem -> names of the photos left out by the check (when ``check``).
    """

    def __init__(self, check: bool) -> None:
        self._check = check
        self._cache: dict[Path, tuple[Cutout, str | None]] = {}
        self.kinds = dict.fromkeys(CUTOUT_KINDS, 0)
        self.rejected: dict[str, list[str]] = {}

    def inspect(self, path: Path) -> tuple[Cutout, str | None]:
        """The photo's cutout, whatever its kind, and what the check finds wrong with it."""
        if path not in self._cache:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise DatasetError(f"cannot decode photo {path}; remove it or replace the file")
            cut = cut_out(bgr, _photo_rng(path))
            problem = cutout_problem(cut) if cut.kind != "empty" else None
            self.kinds[cut.kind] += 1
            if problem is not None and self._check:
                self.rejected.setdefault(problem, []).append(path.name)
            self._cache[path] = cut, problem
        return self._cache[path]

    def seen(self, path: Path) -> bool:
        """Whether the photo was cut (drawn for a scene) so far."""
        return path in self._cache

    def get(self, path: Path) -> Cutout | None:
        """The usable cutout of a photo, or None (nothing to cut, or it failed the check)."""
        cut, problem = self.inspect(path)
        if cut.kind == "empty" or (problem is not None and self._check):
            return None
        return cut


def _square_patch(
    cut: Cutout, rng: np.random.Generator, long_side: float, style: ComposeStyle
) -> tuple[np.ndarray, np.ndarray]:
    """The cutout scaled, rotated and maybe mirrored, on a square canvas (rgb float, alpha)."""
    height, width = cut.alpha.shape
    scale = long_side / max(height, width)
    if style.max_enlarge is not None:
        scale = min(scale, style.max_enlarge)
    rgb, alpha = cut.rgb, cut.alpha
    if style.edge_inset > 0:
        # Eroding the feathered opacity moves its whole ramp inwards, sheet rim and all.
        radius = math.ceil(style.edge_inset)
        alpha = cv2.erode(alpha, np.ones((2 * radius + 1, 2 * radius + 1), np.uint8))
    if rng.random() < 0.5:
        rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
    side = math.ceil(math.hypot(height, width) * scale) + 2
    angle = rng.uniform(0, 360)  # drawn in every style, so that the rest of the scene is the same
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle if style.rotation else 0, scale)
    matrix[:, 2] += (side / 2 - width / 2, side / 2 - height / 2)
    warp = {"dsize": (side, side), "flags": cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR}
    patch_rgb = cv2.warpAffine(np.ascontiguousarray(rgb), matrix, **warp)
    patch_alpha = cv2.warpAffine(np.ascontiguousarray(alpha), matrix, **warp)
    gain = rng.uniform(0.85, 1.1)  # the belt's light is not the photo studio's
    return patch_rgb.astype(np.float32) * gain, patch_alpha


def _place(
    rng: np.random.Generator,
    footprint: np.ndarray,
    size: tuple[int, int],
    placed: Sequence[np.ndarray],
    max_overlap: float,
) -> tuple[int, int, np.ndarray] | None:
    width, height = size
    side = footprint.shape[0]
    area = int(footprint.sum())
    for _ in range(_PLACEMENT_TRIES):
        # The centre stays inside the frame; up to about a third of an object may run off it.
        x0 = round(rng.uniform(0.05, 0.95) * width - side / 2)
        y0 = round(rng.uniform(0.05, 0.95) * height - side / 2)
        frame = frame_mask((height, width), footprint, x0, y0)
        if frame.sum() < 0.65 * area:
            continue
        if all(
            (frame & other).sum() <= max_overlap * min(frame.sum(), other.sum()) for other in placed
        ):
            return x0, y0, frame
    return None


def _draw_cutout(
    rng: np.random.Generator, candidates: Sequence[Path], cutouts: Cutouts
) -> Cutout | None:
    """A usable cutout of one class (None if every draw had nothing usable).

    Photos without a usable object are drawn again within the class, so that a class with many
    of them keeps its share of the objects.
    """
    for _ in range(_OBJECT_TRIES * 4):
        cut = cutouts.get(candidates[int(rng.integers(len(candidates)))])
        if cut is not None:
            return cut
    return None


def _drop_shadow(
    image: np.ndarray, alpha: np.ndarray, x0: int, y0: int, long_side: float, light: tuple
) -> None:
    direction, strength = light
    offset = (0.04 * long_side + 1) * np.array([math.cos(direction), math.sin(direction)])
    shift = np.array([[1, 0, offset[0]], [0, 1, offset[1]]], np.float32)
    side = alpha.shape[0]
    shadow = cv2.warpAffine(alpha, shift, (side, side)).astype(np.float32)
    shadow = cv2.GaussianBlur(shadow, (0, 0), 0.04 * long_side + 0.8)
    composite(image, np.zeros((side, side, 3), np.float32), shadow * strength, x0, y0)


def render_scene(
    rng: np.random.Generator,
    photos: Mapping[str, Sequence[Path]],
    cutouts: Cutouts,
    size: tuple[int, int],
    max_objects: int,
    max_overlap: float,
    style: ComposeStyle,
) -> tuple[np.ndarray, list[SceneObject]]:
    """One scene of 1 to ``max_objects`` objects: RGB uint8 image and its visible boxes."""
    width, height = size
    image = draw_belt(rng, width, height)
    names = sorted(photos)
    light = (rng.uniform(0, 2 * math.pi), rng.uniform(0.2, 0.4))  # shadows' direction, depth
    layers: list[Layer] = []
    frames: list[np.ndarray] = []
    wanted = int(rng.integers(1, max_objects + 1))
    for _ in range(_OBJECT_TRIES * wanted):
        if len(layers) == wanted:
            break
        name = names[int(rng.integers(len(names)))]
        cut = _draw_cutout(rng, photos[name], cutouts)
        if cut is None:
            continue
        long_side = rng.uniform(*_SIZE_RANGE) * min(width, height)
        patch_rgb, alpha = _square_patch(cut, rng, long_side, style)
        footprint = alpha >= 24
        spot = _place(rng, footprint, size, frames, max_overlap)
        if spot is None:
            continue
        x0, y0, frame = spot
        if style.shadows:
            _drop_shadow(image, alpha, x0, y0, long_side, light)
        composite(image, patch_rgb, alpha, x0, y0)
        cover = frame_mask((height, width), alpha >= 128, x0, y0)
        layers.append(Layer(name, frame, cover, int(footprint.sum())))
        frames.append(frame)
    objects = annotate(layers, np.zeros((height, width), bool))
    if not style.camera:
        return np.clip(image + 0.5, 0, 255).astype(np.uint8), objects
    camera = {"blur_sigma": style.blur_sigma, "motion_blur": style.motion_blur}
    camera.update(noise=style.noise, lighting=style.camera_lighting)
    return camera_effects(rng, image, **camera), objects
