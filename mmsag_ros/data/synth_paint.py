"""Drawing toolkit for the synthetic objects: a patch painter in object-local coordinates.

Objects are drawn into a square patch (colour + per-pixel opacity) in a local frame where the
object fits inside the unit circle and ``x`` runs along its long axis; the painter maps that
frame to pixels (rotation, scale, mirror) and draws anti-aliased OpenCV primitives with
sub-pixel precision. Used by :mod:`mmsag_ros.data.synth_objects`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import cv2
import numpy as np

__all__ = [
    "WHITE",
    "ObjectPatch",
    "Painter",
    "Rgb",
    "blob",
    "box",
    "ellipse",
    "jitter",
    "mix",
    "pick",
    "rect",
    "scaled",
    "segment",
    "wiggle",
]

_SHIFT = 4  # sub-pixel bits for cv2 drawing calls
_ONE = 1 << _SHIFT

Rgb = tuple[int, int, int]
_T = TypeVar("_T")


@dataclass(frozen=True)
class ObjectPatch:
    """One rendered object.

    Attributes:
        x0: Image column of the patch's left edge (may be negative: the patch can overhang).
        y0: Image row of the patch's top edge (may be negative).
        color: Patch colour, RGB uint8, side x side x 3.
        alpha: Patch opacity, uint8, side x side; 0 outside the object.
    """

    x0: int
    y0: int
    color: np.ndarray
    alpha: np.ndarray


class Painter:
    """Draws in an object's local frame (unit circle) onto a colour + opacity patch.

    Args:
        center_xy: Object centre in image pixels.
        radius_px: Pixels per local unit (the radius of the enclosing circle).
        angle_rad: Rotation of the local ``x`` axis.
        mirror: Flip the local ``y`` axis.
    """

    def __init__(
        self, center_xy: tuple[float, float], radius_px: float, angle_rad: float, mirror: bool
    ) -> None:
        half = math.ceil(radius_px * 1.1) + 3
        side = 2 * half
        self.x0 = math.floor(center_xy[0]) - half
        self.y0 = math.floor(center_xy[1]) - half
        self.radius_px = radius_px
        self._center = np.array([center_xy[0] - self.x0, center_xy[1] - self.y0])
        c, s = math.cos(angle_rad), math.sin(angle_rad)
        flip = -1.0 if mirror else 1.0
        self._matrix = radius_px * np.array([[c, -s * flip], [s, c * flip]])
        self.color = np.zeros((side, side, 3), np.uint8)
        self.alpha = np.zeros((side, side), np.uint8)

    def patch(self) -> ObjectPatch:
        """The finished object."""
        return ObjectPatch(self.x0, self.y0, self.color, self.alpha)

    def _pts(self, local: np.ndarray) -> np.ndarray:
        px = np.asarray(local, np.float64) @ self._matrix.T + self._center
        return np.round(px * _ONE).astype(np.int32)

    def width(self, units: float) -> int:
        """Line width in pixels for a width given in local units (at least 1)."""
        return max(1, round(units * self.radius_px))

    def base(self, polys: Sequence[np.ndarray], rgb: Rgb, alpha: int = 255) -> None:
        """Start the object: colour everywhere, opacity inside ``polys``."""
        self.color[:] = rgb
        for poly in polys:
            self.fill(poly, None, alpha)

    def fill(self, poly: np.ndarray, rgb: Rgb | None, alpha: int | None = None) -> None:
        """Fill a polygon with a colour and/or an opacity (None leaves that layer alone)."""
        pts = [self._pts(poly)]
        if rgb is not None:
            cv2.fillPoly(self.color, pts, rgb, cv2.LINE_AA, _SHIFT)
        if alpha is not None:
            cv2.fillPoly(self.alpha, pts, alpha, cv2.LINE_AA, _SHIFT)

    def line(
        self,
        pts: np.ndarray,
        rgb: Rgb | None,
        alpha: int | None = None,
        *,
        width: float = 0.02,
        closed: bool = False,
    ) -> None:
        """Draw a polyline of ``width`` local units."""
        ipts = [self._pts(pts)]
        thickness = self.width(width)
        if rgb is not None:
            cv2.polylines(self.color, ipts, closed, rgb, thickness, cv2.LINE_AA, _SHIFT)
        if alpha is not None:
            cv2.polylines(self.alpha, ipts, closed, alpha, thickness, cv2.LINE_AA, _SHIFT)

    def keep_within(self, footprint: np.ndarray) -> None:
        """Limit the opacity to ``footprint`` (details must not grow the object)."""
        np.minimum(self.alpha, footprint, out=self.alpha)

    def local_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Local (u, v) coordinates of every patch pixel, for smooth shading."""
        side = self.alpha.shape[0]
        ys, xs = np.mgrid[0:side, 0:side].astype(np.float32)
        inv = np.linalg.inv(self._matrix).astype(np.float32)
        dx, dy = xs - self._center[0], ys - self._center[1]
        return inv[0, 0] * dx + inv[0, 1] * dy, inv[1, 0] * dx + inv[1, 1] * dy

    def shade(self, gain: np.ndarray, add: np.ndarray | float = 0.0) -> None:
        """Multiply the colour by ``gain`` and add ``add`` (both per pixel, broadcast)."""
        out = self.color.astype(np.float32) * gain[..., None]
        out += np.asarray(add, np.float32)[..., None] if np.ndim(add) else add
        self.color[:] = np.clip(out, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- geometry and colour helpers


def ellipse(cx: float, cy: float, ax: float, ay: float, n: int = 28) -> np.ndarray:
    """Polygon approximating an axis-aligned ellipse."""
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    return np.stack([cx + ax * np.cos(t), cy + ay * np.sin(t)], axis=1)


def rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Axis-aligned rectangle as a 4-point polygon."""
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


def blob(rng: np.random.Generator, n: int, ax: float, ay: float, rough: float) -> np.ndarray:
    """A closed irregular outline: an ellipse with random low harmonics and vertex jitter."""
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    r = np.ones(n)
    for k in (2, 3, 5):
        r += rough / k * rng.uniform(0.5, 1.5) * np.cos(k * t + rng.uniform(0, 2 * math.pi))
    r += rng.uniform(-rough / 2, rough / 2, n)
    pts = np.stack([ax * r * np.cos(t), ay * r * np.sin(t)], axis=1)
    return pts / max(1.0, np.hypot(pts[:, 0], pts[:, 1]).max() / max(ax, ay))


def pick(rng: np.random.Generator, options: Sequence[tuple[float, _T]]) -> _T:
    """One choice from (weight, choice) pairs."""
    weights = np.array([w for w, _ in options], np.float64)
    return options[int(rng.choice(len(options), p=weights / weights.sum()))][1]


def jitter(rgb: Rgb, rng: np.random.Generator, amount: float = 12.0) -> Rgb:
    """``rgb`` shifted at random in brightness and slightly in hue."""
    shift = rng.uniform(-amount, amount) + rng.uniform(-amount / 3, amount / 3, 3)
    r, g, b = np.clip(np.array(rgb, np.float64) + shift, 0, 255).round().astype(int)
    return int(r), int(g), int(b)


def scaled(rgb: Rgb, factor: float) -> Rgb:
    """``rgb`` times ``factor``, clipped to 0..255."""
    r, g, b = (int(min(255, max(0, round(c * factor)))) for c in rgb)
    return r, g, b


def mix(a: Rgb, b: Rgb, t: float) -> Rgb:
    """Linear blend from ``a`` (t=0) to ``b`` (t=1)."""
    r, g, bb = (round(x * (1 - t) + y * t) for x, y in zip(a, b, strict=True))
    return r, g, bb


def wiggle(
    rng: np.random.Generator, p0: np.ndarray, p1: np.ndarray, n: int, amp: float
) -> np.ndarray:
    """A jittered polyline of ``n`` points from ``p0`` to ``p1``."""
    pts = np.linspace(p0, p1, n)
    pts[1:-1] += rng.normal(0, amp, (n - 2, 2))
    return pts


WHITE: Rgb = (245, 248, 250)


def segment(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """A straight line from (x0, y0) to (x1, y1) as a 2-point polyline."""
    return np.array([[x0, y0], [x1, y1]], np.float64)


def box(
    rng: np.random.Generator, aspect: tuple[float, float], jitter_units: float
) -> tuple[float, float, np.ndarray]:
    """A box outline filling the unit circle, its corners slightly displaced.

    Returns:
        Half length, half width and the 4-point outline.
    """
    r = rng.uniform(*aspect)
    a = 0.96 / math.sqrt(1 + r * r)
    b = a * r
    return a, b, rect(-a, -b, a, b) + rng.uniform(-jitter_units, jitter_units, (4, 2))
