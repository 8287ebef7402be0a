"""Contact sheets of a class's cutouts: a look at what the composer pastes onto the belt.

Each cutout sits on mid-grey, so a rim of the photo's white sheet (a halo) and a cut that
missed a pale or transparent item both show. Cutouts the sanity check faults get a red frame
and the problem's initial (``s`` small, ``t`` strip, ``r`` ragged); photos with nothing to cut
out get a dark tile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from mmsag_ros.data.cutout import Cutout
from mmsag_ros.errors import DatasetError

__all__ = ["contact_sheet", "write_contact_sheet"]

_GREY = 128
_RED = (220, 40, 40)
_INITIALS = {"small": "s", "strip": "t", "ragged": "r"}


def _tile(cut: Cutout, problem: str | None, side: int) -> np.ndarray:
    tile = np.full((side, side, 3), _GREY, np.uint8)
    if cut.kind == "empty":
        tile[:] = 40
        return tile
    height, width = cut.alpha.shape
    scale = (side - 6) / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    rgb = cv2.resize(cut.rgb, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    alpha = cv2.resize(cut.alpha, size, interpolation=cv2.INTER_AREA)[..., None] / 255.0
    y0, x0 = (side - size[1]) // 2, (side - size[0]) // 2
    window = tile[y0 : y0 + size[1], x0 : x0 + size[0]]
    window[:] = (rgb * alpha + window * (1 - alpha) + 0.5).astype(np.uint8)
    if problem is not None:
        cv2.rectangle(tile, (0, 0), (side - 1, side - 1), _RED, 2)
        initial = _INITIALS.get(problem, "?")
        cv2.putText(tile, initial, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, _RED, 2, cv2.LINE_AA)
    return tile


def contact_sheet(
    cutouts: Sequence[tuple[Cutout, str | None]], *, tile: int = 64, columns: int = 20
) -> np.ndarray:
    """The cutouts, each with its problem (or None), in a grid of ``tile``-pixel squares (RGB)."""
    columns = max(1, min(columns, len(cutouts)))
    rows = max(1, math.ceil(len(cutouts) / columns))
    sheet = np.full((rows * tile, columns * tile, 3), 255, np.uint8)
    for index, (cut, problem) in enumerate(cutouts):
        row, column = divmod(index, columns)
        sheet[row * tile : (row + 1) * tile, column * tile : (column + 1) * tile] = _tile(
            cut, problem, tile
        )
    return sheet


def write_contact_sheet(path: Path, cutouts: Sequence[tuple[Cutout, str | None]]) -> None:
    """Write :func:`contact_sheet` as a PNG; DatasetError if it cannot be written."""
    bgr = np.ascontiguousarray(contact_sheet(cutouts)[..., ::-1])
    if not cv2.imwrite(str(path), bgr):
        raise DatasetError(f"OpenCV could not write {path}; check the disk and permissions")
