"""The debug overlay: a frame with per-class scores, the attention heat map and peak markers.

Pure numpy and OpenCV (no ROS), so the sorter node's ``debug_image`` and offline tools draw the
same picture and it can be tested on plain arrays. Attention maps live on the square model
input; :func:`attention_heat_map` maps them back onto the frame with one affine warp that undoes
the bundle's resize policy (stretch or letterbox), so the heat lies where the peaks of
:func:`~mmsag_ros.pointing.attention_peaks` say.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from mmsag_ros.bundle.preprocess import PreprocessSpec, _letterbox_geometry, to_rgb
from mmsag_ros.errors import ImageConversionError

if TYPE_CHECKING:
    from mmsag_ros.runtime.classifier import Prediction

__all__ = ["OUTPUT_ORDERS", "attention_heat_map", "draw_overlay"]

OUTPUT_ORDERS = ("bgr", "rgb")

# Colours in BGR; flipped for RGB output.
_POSITIVE_BGR = (60, 220, 60)
_NEGATIVE_BGR = (220, 220, 220)
_MARKER_BGR = (255, 255, 255)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def attention_heat_map(
    attention: np.ndarray, *, source_size: tuple[int, int], spec: PreprocessSpec
) -> np.ndarray:
    """Resample one class's attention map onto the source frame.

    Args:
        attention: h x w map over the square model input (a softmax over positions).
        source_size: (width, height) of the frame the model input was made from, in pixels.
        spec: The preprocessing that made the model input; under ``letterbox`` the padding is
            cut away, under ``stretch`` the map is stretched back to the frame's aspect.

    Returns:
        height x width float32 in [0, 1], scaled from the map's minimum (0) to its maximum (1)
        (all zeros for a flat map).

    Raises:
        ValueError: ``attention`` is not a non-empty 2-D map or the size is not positive.
    """
    grid = np.asarray(attention, dtype=np.float32)
    width, height = source_size
    if grid.ndim != 2 or 0 in grid.shape:
        raise ValueError(f"attention must be one h x w map, got shape {grid.shape}")
    if width < 1 or height < 1:
        raise ValueError(f"source_size must be positive (width, height), got {source_size}")
    grid_h, grid_w = grid.shape
    size = spec.input_size
    if spec.resize == "stretch":
        content_w, content_h, left, top = size, size, 0, 0
    else:
        content_w, content_h, left, top = _letterbox_geometry(width, height, size)
    # Inverse map, destination pixel (u, v) -> grid index: the centre u + 0.5 of a frame pixel
    # lies at left + (u + 0.5) * content_w / width input pixels, and grid index j covers input
    # pixels around (j + 0.5) * size / grid_w.
    sx = content_w * grid_w / (width * size)
    sy = content_h * grid_h / (height * size)
    bx = (left + 0.5 * content_w / width) * grid_w / size - 0.5
    by = (top + 0.5 * content_h / height) * grid_h / size - 0.5
    matrix = np.array([[sx, 0.0, bx], [0.0, sy, by]], np.float64)
    heat = cv2.warpAffine(
        grid,
        matrix,
        (width, height),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    low, high = float(grid.min()), float(grid.max())
    if high - low <= 0.0:
        return np.zeros((height, width), np.float32)
    heat -= low
    heat *= 1.0 / (high - low)
    return np.clip(heat, 0.0, 1.0, out=heat)


def _heat_classes(prediction: Prediction) -> list[int]:
    """Every decided class, or the top-scoring one when none is decided."""
    decided = [int(c) for c in np.flatnonzero(prediction.decisions)]
    return decided or [int(np.argmax(prediction.scores))]


def _blend_heat(canvas: np.ndarray, heat: np.ndarray, *, alpha: float) -> None:
    colours = cv2.applyColorMap(np.round(heat * 255.0).astype(np.uint8), cv2.COLORMAP_JET)
    weight = (alpha * heat)[:, :, None]
    # Cold regions keep the frame untouched; hot ones take the colour map's red.
    blended = canvas * (1.0 - weight) + colours * weight
    np.copyto(canvas, np.clip(np.rint(blended), 0, 255).astype(np.uint8))


def _draw_scores(
    canvas: np.ndarray, prediction: Prediction, names: Sequence[str], *, scale: float
) -> None:
    thickness = max(1, round(scale * 2))
    line_h = max(8, round(26 * scale))
    lines = [
        (f"{'*' if decided else ' '} {name} {score:.2f}", bool(decided))
        for name, score, decided in zip(names, prediction.scores, prediction.decisions, strict=True)
    ]
    width = max(cv2.getTextSize(text, _FONT, scale, thickness)[0][0] for text, _ in lines)
    panel_w, panel_h = width + 2 * line_h // 3, line_h * len(lines) + line_h // 3
    region = canvas[:panel_h, :panel_w]
    # Darken behind the text so it reads on bright conveyor belts.
    region[...] = (region.astype(np.uint16) * 2 // 5).astype(np.uint8)
    for row, (text, decided) in enumerate(lines):
        colour = _POSITIVE_BGR if decided else _NEGATIVE_BGR
        origin = (line_h // 3, line_h * (row + 1))
        cv2.putText(
            canvas, text, origin, _FONT, scale, colour, thickness + int(decided), cv2.LINE_AA
        )


def _draw_peaks(
    canvas: np.ndarray, prediction: Prediction, names: Sequence[str], *, scale: float
) -> None:
    if prediction.peaks is None:
        return
    height, width = canvas.shape[:2]
    size = max(6, round(min(width, height) / 12))
    thickness = max(1, round(scale * 2))
    for c in np.flatnonzero(prediction.decisions):
        x_norm, y_norm, _ = prediction.peaks[c]
        point = (
            min(int(x_norm * width), width - 1),
            min(int(y_norm * height), height - 1),
        )
        cv2.drawMarker(canvas, point, _MARKER_BGR, cv2.MARKER_CROSS, size, thickness + 1)
        cv2.drawMarker(canvas, point, _POSITIVE_BGR, cv2.MARKER_CROSS, size, thickness)
        label_at = (point[0] + size // 2 + 2, point[1] - size // 2)
        cv2.putText(canvas, names[c], label_at, _FONT, scale, _POSITIVE_BGR, thickness)


def draw_overlay(
    image: np.ndarray,
    prediction: Prediction,
    *,
    names: Sequence[str],
    spec: PreprocessSpec,
    color_order: str = "bgr",
    output_order: str = "bgr",
    heat_alpha: float = 0.5,
) -> np.ndarray:
    """Draw scores, the attention heat map and peak markers on a copy of a frame.

    The heat map combines (per-pixel maximum) the maps of every decided class, or shows the
    top-scoring class when none is decided. Each decided class gets a cross at its attention
    peak. The score panel lists every class by display name; decided ones are green and
    starred.

    Args:
        image: The frame the prediction was made from (uint8, H x W or H x W x C).
        prediction: Its :class:`~mmsag_ros.runtime.classifier.Prediction`; without attention
            maps only scores and peaks are drawn.
        names: One display name per class, in label order.
        spec: The bundle's preprocessing spec (its resize policy places the heat map).
        color_order: Channel order of ``image`` (``rgb``, ``bgr``, ``rgba``, ``bgra``,
            ``mono``).
        output_order: ``bgr`` or ``rgb``: the channel order of the returned image.
        heat_alpha: Opacity of the heat map at its hottest, in [0, 1].

    Returns:
        A new H x W x 3 uint8 image in ``output_order``; ``image`` is not modified.

    Raises:
        ImageConversionError: The image does not match ``color_order`` or the prediction's
            source size, or ``output_order`` is unknown.
        ValueError: ``names`` or ``heat_alpha`` do not fit the prediction.
    """
    if output_order not in OUTPUT_ORDERS:
        raise ImageConversionError(
            f"unknown output order {output_order!r}; expected one of {', '.join(OUTPUT_ORDERS)}"
        )
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    rgb = to_rgb(image, color_order)
    height, width = rgb.shape[:2]
    if (width, height) != tuple(prediction.source_size):
        raise ImageConversionError(
            f"image is {width}x{height} but the prediction was made on a "
            f"{prediction.source_size[0]}x{prediction.source_size[1]} frame; pass the same frame"
        )
    if len(names) != len(prediction.scores):
        raise ValueError(f"{len(names)} names for {len(prediction.scores)} classes")
    if not 0.0 <= heat_alpha <= 1.0:
        raise ValueError(f"heat_alpha must lie in [0, 1], got {heat_alpha}")
    # Draw in BGR (OpenCV's colour map and the colour constants), convert once at the end.
    canvas = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if prediction.attention is not None and heat_alpha > 0.0:
        heat = np.zeros((height, width), np.float32)
        for c in _heat_classes(prediction):
            np.maximum(
                heat,
                attention_heat_map(prediction.attention[c], source_size=(width, height), spec=spec),
                out=heat,
            )
        _blend_heat(canvas, heat, alpha=heat_alpha)
    scale = max(0.35, min(1.0, height / 600))
    _draw_peaks(canvas, prediction, names, scale=scale)
    _draw_scores(canvas, prediction, names, scale=scale)
    return canvas if output_order == "bgr" else cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)
