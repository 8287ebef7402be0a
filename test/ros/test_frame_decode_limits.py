"""A compressed frame's size read from its header alone, and hostile frames refused before decoding.

PNG and JPEG headers are parsed without decoding the pixels (progressive scans, large EXIF and
ICC blocks, real camera photos); frames that are not images, that hold too many scans or that
claim absurd byte counts fail with an ImageConversionError instead of reaching the decoder.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from peer_frames import jpeg_scans
from sensor_msgs.msg import CompressedImage, Image

from mmsag_ros.camera.decode import (
    MAX_JPEG_SCANS,
    compressed_header,
    compressed_image_size,
    decode_frame,
)
from mmsag_ros.errors import ImageConversionError


@pytest.mark.parametrize(
    ("ext", "params"),
    [
        (".png", []),
        (".jpg", []),
        (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        (".jpg", [cv2.IMWRITE_JPEG_OPTIMIZE, 1]),
    ],
)
def test_compressed_image_size_reads_the_header_only(ext, params):
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), np.uint8)
    data = cv2.imencode(ext, image, params)[1].tobytes()
    assert compressed_image_size(data) == (53, 37)
    # A header alone is enough: the pixel data is not needed to tell the size.
    assert compressed_image_size(data[: min(len(data), 700)]) == (53, 37)


def test_compressed_image_size_of_real_camera_jpegs():
    bag = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "trashnet"
    photos = sorted(bag.glob("*/*.jpg"))[:5]
    if not photos:
        pytest.skip(f"no real photos at {bag}")
    for photo in photos:
        data = photo.read_bytes()
        height, width = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[:2]
        assert compressed_image_size(data) == (width, height), photo


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"garbage" * 10, "neither PNG nor JPEG"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "IHDR"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "without a frame header"),
    ],
)
def test_compressed_image_size_refuses_what_is_not_an_image(data, match):
    with pytest.raises(ImageConversionError, match=match):
        compressed_image_size(data)
    with pytest.raises(ImageConversionError):
        decode_frame(CompressedImage(format="jpeg", data=data))


def test_jpegs_of_too_many_progressive_scans_are_refused_before_decoding():
    image = np.random.default_rng(0).integers(0, 256, (240, 320, 3), np.uint8)
    baseline = cv2.imencode(".jpg", image)[1].tobytes()
    progressive = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert compressed_header(baseline) == (320, 240, 1)
    spans = jpeg_scans(progressive)
    assert 1 < len(spans) <= MAX_JPEG_SCANS
    assert compressed_header(progressive) == (320, 240, len(spans))
    assert decode_frame(CompressedImage(format="jpeg", data=progressive))[0].shape == (240, 320, 3)
    # The last refinement scan repeated: a small file that makes the decoder pass over the
    # image once per copy.
    start, end = spans[-1]
    hostile = progressive[:end] + progressive[start:end] * 3000 + progressive[end:]
    assert compressed_header(hostile)[2] == MAX_JPEG_SCANS + 1  # counting stops there
    with pytest.raises(ImageConversionError, match=f"more than {MAX_JPEG_SCANS} scans"):
        decode_frame(CompressedImage(format="jpeg", data=hostile))


def test_a_jpeg_size_is_found_past_large_exif_and_icc_blocks():
    image = np.random.default_rng(1).integers(0, 256, (90, 120, 3), np.uint8)
    data = cv2.imencode(".jpg", image)[1].tobytes()
    icc = b"".join(b"\xff\xe2" + (60_002).to_bytes(2, "big") + bytes(60_000) for _ in range(4))
    tagged = data[:2] + icc + data[2:]  # 240 kB of APP2 before the frame header
    assert compressed_image_size(tagged) == (120, 90)
    decoded, _ = decode_frame(CompressedImage(format="jpeg", data=tagged))
    assert np.array_equal(decoded, cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))


def test_frames_of_absurd_byte_counts_are_refused():
    with pytest.raises(ImageConversionError, match="pads a 3-byte rgb8 row by more than a row"):
        decode_frame(Image(width=1, height=1, encoding="rgb8", step=50_000_000,
                           data=bytes(50_000_000)))  # fmt: skip
    padded = Image(width=4, height=2, encoding="mono8", step=64, data=bytes(128))  # aligned rows
    assert decode_frame(padded)[0].shape == (2, 4, 1)
    png = cv2.imencode(".png", np.zeros((50, 50, 3), np.uint8))[1].tobytes()
    with pytest.raises(ImageConversionError, match="exceeds 8 bytes per pixel"):
        decode_frame(CompressedImage(format="png", data=png + bytes(90_000)), max_pixels=10_000)
