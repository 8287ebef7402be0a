"""Cutting the one object of a product-style photo out of its plain, light background.

Photos such as TrashNet's show a single item on a white or light sheet, with soft shadows and
uneven light. The background's colour is read off the photo's border (its median and spread in
CIE Lab); pixels far from it seed GrabCut as probable object, border pixels near it as sure
background, and GrabCut's colour models settle the rest. The largest region (and regions at
least a fifth as large) is kept, its holes filled and its edge feathered.

Two outcomes are not an object on a sheet, and are said so rather than guessed at:

* ``sheet``: the item fills the photo (close-ups of cardboard or paper: the border is the item
  itself). The photo is then a flat piece of that material; it is cut to an irregular
  quadrilateral of most of the frame, as a torn or folded sheet lies on a belt.
* ``empty``: almost nothing differs from the background; the photo is not used.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["CUTOUT_KINDS", "CUTOUT_PROBLEMS", "Cutout", "cut_out", "cutout_problem"]

#: How a photo was cut: ``object`` (GrabCut), ``sheet`` (item fills the photo), ``empty``.
CUTOUT_KINDS = ("object", "sheet", "empty")

_WORK_SIDE = 192  # longer side of the working copy: GrabCut in ~20 ms, masks scaled back up
_BORDER = 0.04  # border band read as background, a fraction of the shorter side
_MIN_CONTRAST = 10.0  # Lab distance from the background that seeds "probable object"
_SHEET_BORDER_FOREGROUND = 0.55  # border share unlike the background colour: a filling item
_SHEET_AREA = 0.8  # object area fraction above which the item fills the photo
_MIN_AREA = 0.015  # below this the photo is empty
_SHEET_MAX_LIGHTNESS = 120.0  # a border darker than this (8-bit Lab L) is no light sheet
_SHEET_MIN_CHROMA = 20.0  # ... nor one more colourful than this (cardboard brown is ~25)
_LAB_WEIGHTS = (0.5, 1.0, 1.0)  # shading moves lightness; objects move colour too
_GRABCUT_ITERATIONS = 4

#: What :func:`cutout_problem` can find wrong with a cutout.
CUTOUT_PROBLEMS = ("small", "strip", "ragged")
_MIN_OBJECT_AREA = 0.025  # of the photo: smaller cuts are specks, or pieces of a missed item
_MAX_ELONGATION = 5.0  # longer over shorter side of the tightest rotated box
_MIN_SOLIDITY = 0.55  # object area over its convex hull's: lower is fragments, not an item


@dataclass(frozen=True)
class Cutout:
    """An object cut out of a photo, cropped to its extent.

    Attributes:
        rgb: uint8 RGB pixels of the crop (h x w x 3).
        alpha: uint8 opacity of the crop (h x w); 0 outside the object.
        kind: One of :data:`CUTOUT_KINDS`.
        area_fraction: Object pixels over photo pixels.
    """

    rgb: np.ndarray
    alpha: np.ndarray
    kind: str
    area_fraction: float


def _border_mask(shape: tuple[int, int]) -> np.ndarray:
    height, width = shape
    band = max(2, round(min(height, width) * _BORDER))
    mask = np.zeros(shape, bool)
    mask[:band], mask[-band:], mask[:, :band], mask[:, -band:] = True, True, True, True
    return mask


def _keep_main_regions(mask: np.ndarray) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), 8)
    if count <= 1:
        return np.zeros_like(mask)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero(areas >= 0.2 * areas.max())
    kept = np.isin(labels, keep)
    # Fill holes: background not reachable from the frame's edge is inside the object.
    padded = np.pad(kept.astype(np.uint8), 1)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 1)
    holes = (flood == 0)[1:-1, 1:-1]
    return kept | holes


def _border_colour(border_lab: np.ndarray) -> tuple[float, float]:
    """Median lightness and chroma of the border (OpenCV's 8-bit Lab scale)."""
    median = np.median(border_lab, axis=0)
    return float(median[0]), float(np.hypot(median[1] - 128.0, median[2] - 128.0))


def _distance_from_background(lab: np.ndarray, border: np.ndarray) -> np.ndarray:
    """Per-pixel distance from a smooth background fitted to the border.

    The sheet is lit unevenly (gradients, vignetting, soft shadows), so each Lab channel gets
    a quadratic surface in x and y fitted to the border pixels by least squares. Lightness
    counts less than colour: shading changes it, an object changes its colour as well.
    """
    height, width = lab.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    xs, ys = xs / width - 0.5, ys / height - 0.5
    basis = np.stack([np.ones_like(xs), xs, ys, xs * xs, ys * ys, xs * ys], axis=-1)
    coefficients, *_ = np.linalg.lstsq(basis[border], lab[border], rcond=None)
    residual = (lab - basis @ coefficients) * np.array(_LAB_WEIGHTS, np.float32)
    return np.linalg.norm(residual, axis=2)


def _sheet_alpha(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    height, width = shape
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    inset = rng.uniform(0.02, 0.16, (4, 2)) * np.array([width, height])
    toward = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]])
    polygon = (corners + toward * inset).astype(np.int32)
    alpha = np.zeros(shape, np.uint8)
    cv2.fillPoly(alpha, [polygon], 255, cv2.LINE_AA)
    return alpha


def cut_out(bgr: np.ndarray, rng: np.random.Generator) -> Cutout:
    """Cut the object out of one photo (OpenCV BGR uint8).

    Args:
        bgr: The photo.
        rng: Draws the outline of a ``sheet`` (the only random step).

    Returns:
        The cropped object with its opacity and how it was cut.
    """
    height, width = bgr.shape[:2]
    scale = _WORK_SIDE / max(height, width)
    small = cv2.resize(bgr, (round(width * scale), round(height * scale)), cv2.INTER_AREA)
    lab = cv2.cvtColor(small, cv2.COLOR_BGR2LAB).astype(np.float32)
    border = _border_mask(small.shape[:2])
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    light, chroma = _border_colour(lab[border])
    if light < _SHEET_MAX_LIGHTNESS or chroma > _SHEET_MIN_CHROMA:
        return _sheet(rgb, rng)  # the border is no light sheet: the item fills the photo
    distance = _distance_from_background(lab, border)
    spread = float(np.median(np.abs(distance[border] - np.median(distance[border]))))
    threshold = max(_MIN_CONTRAST, 4.0 * spread + float(np.median(distance[border])))
    unlike = distance > threshold
    if unlike[border].mean() > _SHEET_BORDER_FOREGROUND:
        return _sheet(rgb, rng)
    if unlike.mean() < _MIN_AREA:
        return Cutout(rgb[:0, :0], np.zeros((0, 0), np.uint8), "empty", float(unlike.mean()))
    seeds = np.full(small.shape[:2], cv2.GC_PR_BGD, np.uint8)
    seeds[unlike] = cv2.GC_PR_FGD
    seeds[border & ~unlike] = cv2.GC_BGD
    models = (np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64))
    # GrabCut's k-means draws from OpenCV's per-thread generator: reseed it so that a photo
    # is cut the same way whatever was cut before it.
    cv2.setRNGSeed(0)
    cv2.grabCut(small, seeds, None, *models, _GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_MASK)
    mask = (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)
    mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    mask = _keep_main_regions(mask.astype(bool))
    area = float(mask.mean())
    if area > _SHEET_AREA:
        return _sheet(rgb, rng)
    if area < _MIN_AREA:
        return Cutout(rgb[:0, :0], np.zeros((0, 0), np.uint8), "empty", area)
    full = cv2.resize(mask.astype(np.uint8) * 255, (width, height), cv2.INTER_LINEAR)
    alpha = cv2.GaussianBlur(full, (0, 0), max(0.8, 1.0 / scale))
    return _crop(rgb, alpha, "object", area)


def _sheet(rgb: np.ndarray, rng: np.random.Generator) -> Cutout:
    alpha = _sheet_alpha(rgb.shape[:2], rng)
    return _crop(rgb, alpha, "sheet", float((alpha > 127).mean()))


def _crop(rgb: np.ndarray, alpha: np.ndarray, kind: str, area: float) -> Cutout:
    rows = np.flatnonzero((alpha > 24).any(axis=1))
    cols = np.flatnonzero((alpha > 24).any(axis=0))
    window = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return Cutout(
        np.ascontiguousarray(rgb[window]), np.ascontiguousarray(alpha[window]), kind, area
    )


def cutout_problem(cut: Cutout) -> str | None:
    """What looks wrong with a cutout, one of :data:`CUTOUT_PROBLEMS`, or None.

    ``small``: the object covers under 2.5 % of its photo (a speck, or the part of a pale or
    transparent item the cut found). ``strip``: its tightest rotated box is over five times as
    long as wide (an edge or a shadow, rarely an item). ``ragged``: it fills under 55 % of its
    convex hull (scattered fragments). Sheets are whole photos and always pass.
    """
    if cut.kind == "sheet":
        return None
    if cut.kind == "empty" or cut.area_fraction < _MIN_OBJECT_AREA:
        return "small"
    points = cv2.findNonZero((cut.alpha >= 128).astype(np.uint8))
    if points is None:
        return "small"
    _, (width, height), _ = cv2.minAreaRect(points)
    if max(width, height) > _MAX_ELONGATION * max(min(width, height), 1.0):
        return "strip"
    hull = cv2.contourArea(cv2.convexHull(points))
    if len(points) < _MIN_SOLIDITY * hull:
        return "ragged"
    return None
