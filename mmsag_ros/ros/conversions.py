"""Conversions between ROS image messages and numpy arrays, without cv_bridge.

Incoming frames are viewed in place (``np.frombuffer`` on the message's buffer) wherever the
memory layout allows it, so a 1280x720 frame costs no copy until preprocessing reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from mmsag_ros.errors import ImageConversionError
from mmsag_ros.msg import AttentionPeak, InstancePeaks, MultiLabel

if TYPE_CHECKING:
    from mmsag_ros.runtime.classifier import Prediction

__all__ = [
    "CHANNELS",
    "array_to_image",
    "image_rows",
    "image_to_array",
    "prediction_to_message",
]

# Supported 8-bit encodings and their channel counts.
CHANNELS: dict[str, int] = {"mono8": 1, "rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4}


# Row padding a camera may add (DMA and SIMD alignment: at most a page).
_MAX_ROW_PADDING = 4096


def image_rows(msg: Image, bytes_per_pixel: int) -> np.ndarray:
    """The message's pixel rows without their padding, ``(height, width * bytes_per_pixel)``.

    A view of the message's buffer (strided when rows are padded). Raises ImageConversionError
    for an empty image and any disagreement between width, height, step and the data length.
    """
    height, width, step = msg.height, msg.width, msg.step
    if height == 0 or width == 0:
        raise ImageConversionError(f"empty image ({width}x{height})", kind="layout")
    row_bytes = width * bytes_per_pixel
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} is shorter than a {msg.encoding} row of width {width} "
            f"({row_bytes} bytes)",
            kind="layout",
        )
    if step - row_bytes > max(row_bytes, _MAX_ROW_PADDING):
        raise ImageConversionError(
            f"step {step} pads a {row_bytes}-byte {msg.encoding} row by more than a row (and "
            f"more than {_MAX_ROW_PADDING} bytes); no camera aligns rows that far",
            kind="layout",
        )
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != step * height:
        raise ImageConversionError(
            f"data holds {data.size} bytes, expected step x height = {step} x {height}"
            f" = {step * height}",
            kind="layout",
        )
    return data.reshape(height, step)[:, :row_bytes]


def image_to_array(msg: Image) -> np.ndarray:
    """View an 8-bit ``sensor_msgs/Image`` as an ``(height, width, channels)`` uint8 array.

    The array shares memory with the message (read-only) unless the message's rows are padded,
    in which case it is a strided view that skips the padding. Mono images keep a channel axis
    of length 1. Raises ImageConversionError for encodings other than :data:`CHANNELS`' and any
    disagreement between width, height, step and the data length. Other camera encodings
    (Bayer, YUV, 16-bit) go through :func:`mmsag_ros.ros.camera_encodings.camera_array`.
    """
    channels = CHANNELS.get(msg.encoding)
    if channels is None:
        raise ImageConversionError(
            f"unsupported image encoding {msg.encoding!r}; expected one of {', '.join(CHANNELS)}",
            kind="encoding",
        )
    return image_rows(msg, channels).reshape(msg.height, msg.width, channels)


def array_to_image(array: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """Build a ``sensor_msgs/Image`` from an ``(H, W)`` or ``(H, W, C)`` uint8 array."""
    channels = CHANNELS.get(encoding)
    if channels is None:
        raise ImageConversionError(
            f"unsupported image encoding {encoding!r}; expected one of {', '.join(CHANNELS)}"
        )
    if array.dtype != np.uint8:
        raise ImageConversionError(f"image array must be uint8, got {array.dtype}")
    shape_channels = 1 if array.ndim == 2 else array.shape[2] if array.ndim == 3 else -1
    if shape_channels != channels:
        raise ImageConversionError(
            f"array of shape {array.shape} does not match encoding {encoding!r}"
            f" ({channels} channel(s))"
        )
    height, width = array.shape[:2]
    msg = Image(
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * channels,
    )
    if header is not None:
        msg.header = header
    msg.data = np.ascontiguousarray(array).tobytes()
    return msg


def jpeg_image(bgr: np.ndarray, header: Header | None = None, quality: int = 90) -> CompressedImage:
    """A ``sensor_msgs/CompressedImage`` (``jpeg``) of a bgr8 ``(H, W, 3)`` array."""
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageConversionError(f"could not encode a {bgr.shape} array as JPEG")
    msg = CompressedImage(format="jpeg", data=data.tobytes())
    if header is not None:
        msg.header = header
    return msg


def prediction_to_message(
    prediction: Prediction, *, header: Header, model_id: str, class_names: Sequence[str]
) -> MultiLabel:
    """The MultiLabel for one classified frame; ``latency_ms`` is left for the publisher."""
    message = MultiLabel(
        header=header,
        model_id=model_id,
        class_names=list(class_names),
        scores=prediction.scores.tolist(),
        decisions=prediction.decisions.tolist(),
        thresholds=prediction.thresholds.tolist(),
        inference_time_ms=prediction.timings.inference_ms,
        image_width=prediction.source_size[0],
        image_height=prediction.source_size[1],
        contract_version=MultiLabel.CONTRACT_VERSION,
    )
    if prediction.peaks is not None:
        message.peaks = [
            AttentionPeak(x=float(x), y=float(y), strength=float(s)) for x, y, s in prediction.peaks
        ]
    if prediction.instances is not None:
        message.instances = [
            InstancePeaks(
                peaks=[
                    AttentionPeak(x=float(x), y=float(y), strength=float(s)) for x, y, s in points
                ]
            )
            for points in prediction.instances
        ]
    return message
