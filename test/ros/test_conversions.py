"""Image <-> numpy conversions: zero-copy views, padded rows, and clear rejection of bad frames."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sensor_msgs.msg import Image

from mmsag_ros.camera.encodings import CHANNELS, image_to_array
from mmsag_ros.errors import ImageConversionError
from mmsag_ros.ros.conversions import array_to_image


@pytest.mark.parametrize("encoding", sorted(CHANNELS))
def test_round_trip_every_encoding(encoding):
    channels = CHANNELS[encoding]
    shape = (7, 5) if channels == 1 else (7, 5, channels)
    array = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    msg = array_to_image(array, encoding)
    assert (msg.width, msg.height, msg.step) == (5, 7, 5 * channels)
    back = image_to_array(msg)
    assert back.shape == (7, 5, channels)
    np.testing.assert_array_equal(back.reshape(shape), array)


def test_view_shares_memory_with_the_message():
    msg = array_to_image(np.zeros((4, 6, 3), np.uint8), "rgb8")
    view = image_to_array(msg)
    assert np.shares_memory(view, np.frombuffer(msg.data, np.uint8))


def test_padded_rows_are_skipped():
    rows = np.arange(3 * 8, dtype=np.uint8).reshape(3, 8)  # 2 rgb pixels + 2 padding bytes
    msg = Image(height=3, width=2, encoding="rgb8", step=8, data=rows.tobytes())
    np.testing.assert_array_equal(image_to_array(msg), rows[:, :6].reshape(3, 2, 3))


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"encoding": "yuv422"}, "unsupported image encoding 'yuv422'"),
        ({"encoding": "16UC1"}, "unsupported image encoding"),
        ({"width": 0}, "empty image"),
        ({"step": 5}, "step 5 is shorter"),
        ({"data": bytes(10)}, "data holds 10 bytes, expected"),
    ],
)
def test_bad_frames_raise_a_clear_error(fields, match):
    good = dict(height=2, width=2, encoding="rgb8", step=6, data=bytes(12))
    with pytest.raises(ImageConversionError, match=match):
        image_to_array(Image(**{**good, **fields}))


def test_array_to_image_rejects_mismatched_arrays():
    with pytest.raises(ImageConversionError, match="does not match encoding 'rgb8'"):
        array_to_image(np.zeros((2, 2), np.uint8), "rgb8")
    with pytest.raises(ImageConversionError, match="must be uint8"):
        array_to_image(np.zeros((2, 2, 3), np.float32), "rgb8")


def test_a_rejection_keeps_its_kind_and_reason_across_a_pickle():
    # What a process pool or a multiprocessing queue does to an exception on its way back
    # (exception pickling carries the instance's attributes; the kind must not fall back to
    # the constructor's default).
    err = ImageConversionError("frame is 0x0; from camera a", kind="layout")
    back = pickle.loads(pickle.dumps(err))
    assert (type(back), str(back), back.kind, back.reason) == (
        ImageConversionError,
        "frame is 0x0; from camera a",
        "layout",
        "frame is 0x0",
    )
