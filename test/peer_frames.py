"""Frames for the sorter peer (test/sorter_peer.py) and the tests that check its runs.

Everything is derived from an index or built from scratch, so a test can rebuild offline any
frame the peer sent: :func:`make_frame` (synthetic conveyor scenes, their size and encoding
cycling), :func:`compressed_frames` (a bag's JPEGs, then synthetic ones), the bad compressed
frames of ``BAD_COMPRESSED``, the hostile compressed and raw frames a node must refuse cheaply
(:func:`hostile_frames`, :func:`hostile_raw_frames`), and valid frames that must still be
labelled (:func:`large_icc_jpeg`, :func:`bayer_rggb8_fields`).
"""

from __future__ import annotations

import cv2
import numpy as np

from mmsag_ros.data.synth_scene import render_scene

ENCODINGS = ("rgb8", "bgr8", "mono8", "rgba8", "bgra8")


def make_frame(index: int) -> tuple[np.ndarray, str]:
    """The frame with this index: a synthetic conveyor scene, its size and encoding cycling."""
    size = (96 + 16 * (index % 4), 72 + 8 * (index % 3))
    rgb = render_scene(np.random.default_rng(index), image_size=size)[0]
    encoding = ENCODINGS[index % len(ENCODINGS)]
    if encoding == "bgr8":
        return np.ascontiguousarray(rgb[:, :, ::-1]), encoding
    if encoding == "mono8":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), encoding
    if encoding in ("rgba8", "bgra8"):
        base = rgb if encoding == "rgba8" else rgb[:, :, ::-1]
        alpha = np.full((*rgb.shape[:2], 1), 255, np.uint8)
        return np.ascontiguousarray(np.concatenate([base, alpha], axis=2)), encoding
    return rgb, encoding


def compressed_frames(bag_dir: str | None) -> list[tuple[int, str, bytes]]:
    """``(index, format, data)`` of the compressed frames: the bag's JPEGs, then synthetic ones."""
    frames = []
    if bag_dir:
        from pathlib import Path

        from rosbags.highlevel import AnyReader

        with AnyReader([Path(bag_dir)]) as reader:
            connections = [c for c in reader.connections if c.msgtype.endswith("CompressedImage")]
            for connection, _, raw in reader.messages(connections=connections):
                msg = reader.deserialize(raw, connection.msgtype)
                frames.append((len(frames), msg.format, bytes(msg.data)))
    for index in range(len(frames), len(frames) + 3):
        bgr = np.ascontiguousarray(make_frame(5 * index)[0][..., :3])  # index % 5 == 0: rgb8
        fmt = "png" if index % 2 else "jpeg"
        frames.append((index, fmt, cv2.imencode(f".{fmt}", bgr[:, :, ::-1])[1].tobytes()))
    return frames


# Bad compressed frames: truncated JPEG, garbage, empty data, an unsupported format, and a
# small PNG announcing more pixels than the test's max_input_pixels (OVERSIZED_MAX_PIXELS).
BAD_COMPRESSED = (
    (900, "jpeg", "truncated"),
    (901, "jpeg", "garbage"),
    (902, "png", "empty"),
    (903, "tiff", "valid"),
    (904, "png", "oversized"),
)
OVERSIZED_MAX_PIXELS = 1_000_000


def oversized_png() -> bytes:
    """2000 x 1000 black pixels: a few kB of PNG, 2 MP decoded, twice the test's limit."""
    return cv2.imencode(".png", np.zeros((1000, 2000), np.uint8))[1].tobytes()


def jpeg_scans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each SOS segment of a JPEG with its entropy-coded data."""
    spans, offset = [], 2
    while data[offset + 1] != 0xD9:
        end = offset + 2 + int.from_bytes(data[offset + 2 : offset + 4], "big")
        if data[offset + 1] == 0xDA:
            while not (data[end] == 0xFF and data[end + 1] not in (0, *range(0xD0, 0xD8))):
                end += 1
            spans.append((offset, end))
        offset = end
    return spans


def hostile_frames() -> list[tuple[str, str, bytes]]:
    """``(what, format, data)`` of compressed frames an attacker or a broken camera could send.

    Each is refused by the node, cheaply, from what its header says (see the issue's proofs):
    a small progressive JPEG that repeats its last scan 3000 times (seconds of decoding), a
    PNG announcing more pixels than allowed, data that is no image, nothing at all, a TIFF.
    """
    # A flat 1280 x 720 frame: 42 kB with its last scan (12 bytes) repeated, 2.3 s to decode.
    flat = np.full((720, 1280, 3), 90, np.uint8)
    progressive = cv2.imencode(".jpg", flat, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    start, end = jpeg_scans(progressive)[-1]
    scans = progressive[:end] + progressive[start:end] * 3000 + progressive[end:]
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8)
    return [
        ("3000 progressive scans", "jpeg", scans),
        ("announces 2 MP", "png", oversized_png()),
        ("garbage", "jpeg", b"\xff\xd8" + b"garbage" * 50),
        ("no data", "jpeg", b""),
        ("a tiff", "tiff", cv2.imencode(".png", image)[1].tobytes()),
    ]


_TO_BGR = {"rgb8": cv2.COLOR_RGB2BGR, "rgba8": cv2.COLOR_RGBA2BGR, "bgra8": cv2.COLOR_BGRA2BGR}


def jpeg_of(index: int) -> bytes:
    """The frame with this index (see :func:`make_frame`) as a JPEG."""
    frame, encoding = make_frame(index)
    if encoding in _TO_BGR:
        frame = cv2.cvtColor(frame, _TO_BGR[encoding])
    return cv2.imencode(".jpg", frame)[1].tobytes()


def large_icc_jpeg() -> bytes:
    """A valid JPEG with 240 kB of ICC profile before its frame header: must be labelled."""
    data = jpeg_of(3)
    icc = b"".join(b"\xff\xe2" + (60_002).to_bytes(2, "big") + bytes(60_000) for _ in range(4))
    return data[:2] + icc + data[2:]


def hostile_raw_frames() -> list[tuple[str, dict]]:
    """``(what, Image fields)`` of raw frames a broken driver or an attacker could send.

    Each is refused from its fields alone, before any pixel is touched: a depth encoding, a 1x1
    frame padding its row to 4 MB, data shorter than its rows, an odd width in YUYV, a frame of
    2.2 MP against the test's 1 MP limit.
    """
    return [
        ("a 32FC1 depth frame", dict(width=4, height=4, encoding="32FC1", step=16, data=bytes(64))),
        (
            "1x1 with a 4 MB step",
            dict(width=1, height=1, encoding="rgb8", step=4_000_000, data=bytes(4_000_000)),
        ),
        (
            "data shorter than its rows",
            dict(width=64, height=48, encoding="rgb8", step=192, data=bytes(10)),
        ),
        ("yuyv of odd width", dict(width=3, height=2, encoding="yuyv", step=6, data=bytes(12))),
        (
            "2.2 MP",
            dict(width=2000, height=1100, encoding="mono8", step=2000, data=bytes(2_200_000)),
        ),
    ]


def bayer_rggb8_fields(rgb: np.ndarray) -> dict:
    """Image fields of ``rgb`` as a machine-vision camera's RGGB Bayer mosaic (valid)."""
    height, width = (rgb.shape[0] // 2) * 2, (rgb.shape[1] // 2) * 2
    mosaic = np.empty((height, width), np.uint8)
    mosaic[0::2, 0::2] = rgb[0:height:2, 0:width:2, 0]
    mosaic[0::2, 1::2] = rgb[0:height:2, 1:width:2, 1]
    mosaic[1::2, 0::2] = rgb[1:height:2, 0:width:2, 1]
    mosaic[1::2, 1::2] = rgb[1:height:2, 1:width:2, 2]
    return dict(
        width=width, height=height, encoding="bayer_rggb8", step=width, data=mosaic.tobytes()
    )
