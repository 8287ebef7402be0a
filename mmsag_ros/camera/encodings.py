"""Raw camera images (``sensor_msgs/Image`` fields) to the 8-bit arrays the classifier takes.

Machine-vision drivers publish Bayer mosaics by default, USB cameras YUV 4:2:2, depth-style and
scientific cameras 16-bit: each becomes a uint8 array and its colour order here. The 8-bit
colour and mono encodings are views of the message's buffer (no copy); the others are
converted once, with the conversions cv_bridge uses (OpenCV's Bayer codes are named one pixel
off from ROS's: ``bayer_rggb8`` is OpenCV's ``BayerBG``). 16-bit values keep their top byte.

Messages are read by their fields (``height``, ``width``, ``encoding``, ``is_bigendian``,
``step``, ``data``), so rclpy's messages and rosbags' alike work, and nothing here needs ROS.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from mmsag_ros.errors import ImageConversionError

__all__ = ["CAMERA_ENCODINGS", "CHANNELS", "camera_array", "image_rows", "image_to_array"]

# Supported 8-bit encodings and their channel counts.
CHANNELS: dict[str, int] = {"mono8": 1, "rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4}


# Row padding a camera may add (DMA and SIMD alignment: at most a page).
_MAX_ROW_PADDING = 4096


def image_rows(msg: Any, bytes_per_pixel: int) -> np.ndarray:
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


def image_to_array(msg: Any) -> np.ndarray:
    """View an 8-bit ``sensor_msgs/Image`` as an ``(height, width, channels)`` uint8 array.

    The array shares memory with the message (read-only) unless the message's rows are padded,
    in which case it is a strided view that skips the padding. Mono images keep a channel axis
    of length 1. Raises ImageConversionError for encodings other than :data:`CHANNELS`' and any
    disagreement between width, height, step and the data length. Other camera encodings
    (Bayer, YUV, 16-bit) go through :func:`camera_array`.
    """
    channels = CHANNELS.get(msg.encoding)
    if channels is None:
        raise ImageConversionError(
            f"unsupported image encoding {msg.encoding!r}; expected one of {', '.join(CHANNELS)}",
            kind="encoding",
        )
    return image_rows(msg, channels).reshape(msg.height, msg.width, channels)


# 8-bit encodings viewed in place (conversions.CHANNELS): encoding -> colour order, its name
# without the bit depth.
_VIEWED = {encoding: encoding.removesuffix("8") for encoding in CHANNELS}
# 16-bit encodings: encoding -> (channels, colour order).
_WIDE = {"mono16": (1, "mono"), "rgb16": (3, "rgb"), "bgr16": (3, "bgr")}
_BAYER = {
    "rggb": cv2.COLOR_BayerBG2BGR,
    "bggr": cv2.COLOR_BayerRG2BGR,
    "gbrg": cv2.COLOR_BayerGR2BGR,
    "grbg": cv2.COLOR_BayerGB2BGR,
}
# ROS's yuv422 is UYVY; yuv422_yuy2 and yuyv are YUYV.
_YUV = {
    "yuv422": cv2.COLOR_YUV2BGR_UYVY,
    "uyvy": cv2.COLOR_YUV2BGR_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2BGR_YUY2,
    "yuyv": cv2.COLOR_YUV2BGR_YUY2,
}

#: Every encoding a sorter takes.
CAMERA_ENCODINGS: tuple[str, ...] = (
    *_VIEWED,
    *_WIDE,
    *(f"bayer_{order}{bits}" for bits in (8, 16) for order in _BAYER),
    *_YUV,
)


def _top_bytes(msg: Any, channels: int) -> np.ndarray:
    """A 16-bit image's most significant bytes, ``(height, width, channels)`` uint8."""
    rows = image_rows(msg, 2 * channels)
    dtype = np.dtype(">u2" if msg.is_bigendian else "<u2")
    wide = np.ascontiguousarray(rows).view(dtype).reshape(msg.height, msg.width, channels)
    return (wide >> 8).astype(np.uint8)


def camera_array(msg: Any) -> tuple[np.ndarray, str]:
    """The frame as a ``(height, width, channels)`` uint8 array and its colour order.

    Raises:
        ImageConversionError: An encoding not in :data:`CAMERA_ENCODINGS`, sizes that disagree
            with the data, an odd width for YUV 4:2:2.
    """
    encoding = msg.encoding
    if encoding in _VIEWED:
        return image_to_array(msg), _VIEWED[encoding]
    if encoding in _WIDE:
        channels, order = _WIDE[encoding]
        return _top_bytes(msg, channels), order
    if encoding.startswith("bayer_") and encoding[6:10] in _BAYER and encoding[10:] in ("8", "16"):
        if encoding.endswith("16"):
            mosaic = _top_bytes(msg, 1)[..., 0]
        else:
            mosaic = np.ascontiguousarray(image_rows(msg, 1))
        return cv2.cvtColor(mosaic, _BAYER[encoding[6:10]]), "bgr"
    if encoding in _YUV:
        if msg.width % 2:
            raise ImageConversionError(
                f"{encoding} needs an even width, got {msg.width}", kind="layout"
            )
        packed = np.ascontiguousarray(image_rows(msg, 2)).reshape(msg.height, msg.width, 2)
        return cv2.cvtColor(packed, _YUV[encoding]), "bgr"
    raise ImageConversionError(
        f"unsupported image encoding {msg.encoding!r}; expected one of "
        f"{', '.join(CAMERA_ENCODINGS)}",
        kind="encoding",
    )
