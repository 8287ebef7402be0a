"""Camera messages to arrays: raw images through :mod:`.encodings`, JPEG and PNG through OpenCV.

A compressed frame's header is read before it is decoded, so that a small file announcing a
huge image, or a progressive JPEG of thousands of scans, is refused for what it would cost
instead of stalling every camera. Messages are read by their fields, so rclpy's messages and
rosbags' alike work, and nothing here needs ROS.
"""

from __future__ import annotations

import re
import struct
from typing import Any

import cv2
import numpy as np

from mmsag_ros.camera.encodings import camera_array
from mmsag_ros.errors import ImageConversionError

__all__ = [
    "DEFAULT_MAX_INPUT_PIXELS",
    "MAX_JPEG_SCANS",
    "compressed_header",
    "compressed_image_size",
    "decode_frame",
]

_COMPRESSED_FORMATS = ("jpeg", "jpg", "png")
# 4096 x 4096 (16 MP): above every common belt camera; 48 MB decoded at most.
DEFAULT_MAX_INPUT_PIXELS = 16_777_216


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_JPEG_SOS, _JPEG_EOI = 0xDA, 0xD9
# A scan's entropy-coded data ends at the first 0xFF that is neither stuffing (FF 00) nor a
# restart marker (FF D0-D7).
_JPEG_SEGMENT_END = re.compile(rb"\xff[^\x00\xd0-\xd7]")
#: Most scans a JPEG may have. Baseline JPEGs have 1 (3 when not interleaved), libjpeg's
#: progressive ones 10; every scan is another pass over the whole image, so a small file of
#: thousands of scans would hold the worker for seconds.
MAX_JPEG_SCANS = 32
# Most bytes a frame may carry per allowed pixel (raw: 16-bit RGBA and row padding).
_MAX_BYTES_PER_PIXEL = 8


def _jpeg_size_and_scans(data: memoryview) -> tuple[int, int, int]:
    """Walk a JPEG's segments (past any EXIF or ICC block) to its size and scan count.

    Counting stops beyond :data:`MAX_JPEG_SCANS`; a truncated file is read as far as it goes.
    """
    size, scans, offset = None, 0, 2
    while offset + 4 <= len(data) and scans <= MAX_JPEG_SCANS:
        if data[offset] != 0xFF:
            raise ImageConversionError(f"corrupt JPEG header (no marker at byte {offset})")
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in _JPEG_STANDALONE:
            offset += 2
            continue
        if marker == _JPEG_EOI:
            break
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        if marker in _JPEG_SOF and size is None and offset + 9 <= len(data):
            height, width = struct.unpack(">HH", data[offset + 5 : offset + 9])
            size = (width, height)
        offset += 2 + length
        if marker == _JPEG_SOS:
            scans += 1
            end = _JPEG_SEGMENT_END.search(data, offset)
            offset = end.start() if end else len(data)
    if size is None:
        raise ImageConversionError("JPEG data without a frame header (truncated or corrupt)")
    return (*size, scans)


def compressed_header(data: bytes | memoryview) -> tuple[int, int, int]:
    """``(width, height, scans)`` from a PNG or JPEG header, without decoding any pixel.

    A PNG counts as one scan; a JPEG's scans are counted up to one beyond
    :data:`MAX_JPEG_SCANS`.

    Raises:
        ImageConversionError: Neither a PNG nor a JPEG, or no size in the header.
    """
    head = bytes(data[:24])  # the rest is walked in place: no copy of the frame per frame
    if head.startswith(_PNG_SIGNATURE):
        if len(head) < 24 or head[12:16] != b"IHDR":
            raise ImageConversionError("PNG data without an IHDR header (truncated or corrupt)")
        return (*struct.unpack(">II", head[16:24]), 1)
    if not head.startswith(b"\xff\xd8"):
        raise ImageConversionError("compressed data is neither PNG nor JPEG (no signature)")
    return _jpeg_size_and_scans(memoryview(data))


def compressed_image_size(data: bytes | memoryview) -> tuple[int, int]:
    """``(width, height)`` of a PNG or JPEG (see :func:`compressed_header`)."""
    width, height, _ = compressed_header(data)
    return width, height


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageConversionError(
            f"frame of {width}x{height} = {width * height} pixels exceeds max_input_pixels "
            f"{max_pixels}; raise the parameter if the camera really sends such frames",
            kind="oversize",
        )


def _check_bytes(size: int, max_pixels: int) -> None:
    if size > _MAX_BYTES_PER_PIXEL * max_pixels:
        raise ImageConversionError(
            f"frame of {size} bytes exceeds {_MAX_BYTES_PER_PIXEL} bytes per pixel of "
            f"max_input_pixels {max_pixels}",
            kind="oversize",
        )


def decode_frame(msg: Any, max_pixels: int = DEFAULT_MAX_INPUT_PIXELS) -> tuple[np.ndarray, str]:
    """Turn a camera message into a uint8 array and its colour order for the classifier.

    8-bit raw images are viewed without a copy, Bayer, YUV and 16-bit ones converted
    (:mod:`~mmsag_ros.camera.encodings`); JPEG and PNG are decoded with OpenCV (BGR out)
    once their header says they fit in ``max_pixels`` with few enough scans, so a small file
    announcing a huge image cannot make the decoder allocate gigabytes, nor stall it.

    Raises:
        ImageConversionError: Unknown encoding or format, inconsistent sizes, truncated or
            corrupt data, an empty frame, more than ``max_pixels`` pixels.
    """
    if hasattr(msg, "encoding"):  # sensor_msgs/Image; CompressedImage has a format
        _check_pixels(msg.width, msg.height, max_pixels)
        _check_bytes(max(len(msg.data), msg.step * msg.height), max_pixels)
        return camera_array(msg)
    fmt = msg.format.lower()
    if fmt and not any(name in fmt for name in _COMPRESSED_FORMATS):
        raise ImageConversionError(
            f"unsupported compressed format {msg.format!r}; expected jpeg or png", kind="encoding"
        )
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise ImageConversionError("empty compressed image (no data)", kind="layout")
    _check_bytes(data.size, max_pixels)
    width, height, scans = compressed_header(memoryview(data))
    _check_pixels(width, height, max_pixels)
    if scans > MAX_JPEG_SCANS:
        raise ImageConversionError(
            f"JPEG of more than {MAX_JPEG_SCANS} scans (progressive): each scan is another pass "
            "over the image, so decoding it could stall every camera",
            kind="oversize",
        )
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ImageConversionError(
            f"could not decode {data.size} bytes of {msg.format or 'compressed'} data "
            "(corrupt or truncated)"
        )
    return image, "bgr"
