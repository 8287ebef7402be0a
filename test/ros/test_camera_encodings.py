"""Every camera encoding decodes a known pattern to the expected colours (no cv_bridge here)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from mmsag_ros.camera.decode import decode_frame
from mmsag_ros.camera.encodings import CAMERA_ENCODINGS, camera_array
from mmsag_ros.errors import ImageConversionError

HEIGHT, WIDTH = 8, 12
# Left half orange, right half teal (RGB), so a swapped channel or a mosaic off by a pixel shows.
ORANGE, TEAL = (230, 120, 20), (20, 160, 150)


def _scene() -> np.ndarray:
    rgb = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    rgb[:, : WIDTH // 2], rgb[:, WIDTH // 2 :] = ORANGE, TEAL
    return rgb


def _message(encoding: str, pixels: np.ndarray, *, bigendian: bool = False) -> Image:
    data = np.ascontiguousarray(pixels)
    row = data.nbytes // HEIGHT
    return Image(height=HEIGHT, width=WIDTH, encoding=encoding, is_bigendian=bigendian,
                 step=row, data=data.tobytes())  # fmt: skip


def _bayer(rgb: np.ndarray, order: str) -> np.ndarray:
    """The mosaic a sensor with this 2x2 colour order records (ROS naming: rows, left first)."""
    channel = {"r": 0, "g": 1, "b": 2}
    mosaic = np.empty(rgb.shape[:2], np.uint8)
    for (dy, dx), colour in zip(((0, 0), (0, 1), (1, 0), (1, 1)), order, strict=True):
        mosaic[dy::2, dx::2] = rgb[dy::2, dx::2, channel[colour]]
    return mosaic


def _yuv422(rgb: np.ndarray, layout: str) -> np.ndarray:
    # BT.601 video range, as cameras send it (Y 16-235, U and V 16-240).
    matrix = np.array(
        [[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]]
    )
    yuv = (rgb.astype(np.float64) @ matrix.T / 255 + (16, 128, 128)).round().astype(np.int32)
    y, u, v = yuv[..., 0], yuv[..., 1], yuv[..., 2]
    u2 = ((u[:, 0::2] + u[:, 1::2]) // 2).astype(np.uint8)
    v2 = ((v[:, 0::2] + v[:, 1::2]) // 2).astype(np.uint8)
    y0, y1 = y[:, 0::2].astype(np.uint8), y[:, 1::2].astype(np.uint8)
    quads = (u2, y0, v2, y1) if layout == "uyvy" else (y0, u2, y1, v2)
    return np.stack(quads, axis=-1).reshape(HEIGHT, WIDTH * 2)


def _as_rgb(image: np.ndarray, order: str) -> np.ndarray:
    if order == "bgr":
        return image[..., ::-1]
    if order == "mono":
        return np.repeat(image, 3, axis=2)
    return image[..., :3]


def _cases():
    rgb = _scene()
    wide = rgb.astype(np.uint16) * 257  # 8-bit v -> 16-bit v.v: the top byte is v again
    yield "rgb8", rgb, 0
    yield "bgr8", rgb[..., ::-1], 0
    yield "rgb16", wide, 0
    yield "bgr16", wide[..., ::-1], 0
    for order in ("rggb", "bggr", "gbrg", "grbg"):
        yield f"bayer_{order}8", _bayer(rgb, order), 0
        yield f"bayer_{order}16", _bayer(rgb, order).astype(np.uint16) * 257, 0
    yield "yuv422", _yuv422(rgb, "uyvy"), 6
    yield "uyvy", _yuv422(rgb, "uyvy"), 6
    yield "yuv422_yuy2", _yuv422(rgb, "yuyv"), 6
    yield "yuyv", _yuv422(rgb, "yuyv"), 6


@pytest.mark.parametrize(("encoding", "pixels", "tolerance"), list(_cases()))
def test_each_encoding_decodes_the_pattern_to_its_colours(encoding, pixels, tolerance):
    image, order = decode_frame(_message(encoding, pixels))
    rgb = _as_rgb(image, order).astype(int)
    assert rgb.shape == (HEIGHT, WIDTH, 3)
    # Away from the seam (demosaicing and chroma subsampling blend across it).
    for columns, colour in ((slice(1, WIDTH // 2 - 2), ORANGE), (slice(WIDTH // 2 + 2, -1), TEAL)):
        inner = rgb[1:-1, columns]
        assert np.abs(inner - colour).max() <= tolerance, (encoding, inner[0, 0], colour)


def test_every_listed_encoding_has_a_case_and_mono16_keeps_the_top_byte():
    covered = {encoding for encoding, _, _ in _cases()} | {"mono8", "mono16", "rgba8", "bgra8"}
    assert covered == set(CAMERA_ENCODINGS)
    ramp = (np.arange(HEIGHT * WIDTH, dtype=np.uint16) * 601).reshape(HEIGHT, WIDTH)
    little, order = camera_array(_message("mono16", ramp))
    big, _ = camera_array(_message("mono16", ramp.byteswap(), bigendian=True))
    assert order == "mono" and np.array_equal(little[..., 0], (ramp >> 8).astype(np.uint8))
    assert np.array_equal(big, little)


def test_bad_raw_frames_are_refused_with_the_reason():
    with pytest.raises(ImageConversionError, match="unsupported image encoding 'bayer_xyzw8'"):
        decode_frame(_message("bayer_xyzw8", np.zeros((HEIGHT, WIDTH), np.uint8)))
    odd = Image(height=2, width=3, encoding="yuyv", step=6, data=bytes(12))
    with pytest.raises(ImageConversionError, match="even width"):
        decode_frame(odd)
    short = _message("mono16", np.zeros((HEIGHT, WIDTH), np.uint16))
    short.data = short.data[:-2]
    with pytest.raises(ImageConversionError, match="expected step x height"):
        decode_frame(short)
    assert decode_frame(CompressedImage(format="png", data=cv2.imencode(".png", _scene())[1]))
