"""The one preprocessing function: normalisation, colour orders, resize policies, geometry."""

from __future__ import annotations

import numpy as np
import pytest

from mmsag_ros.data.transforms import EvalTransform, TrainTransform
from mmsag_ros.errors import ConfigError, ImageConversionError
from mmsag_ros.runtime.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PreprocessSpec,
    input_to_source,
    preprocess,
)

RNG = np.random.default_rng(0)
FRAME = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)


def test_normalisation_matches_the_formula_at_input_size():
    spec = PreprocessSpec(16)
    image = RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    expected = (image.astype(np.float64) / 255 - IMAGENET_MEAN) / IMAGENET_STD
    np.testing.assert_allclose(preprocess(image, spec), expected.transpose(2, 0, 1), atol=1e-5)


@pytest.mark.parametrize(
    ("order", "convert"),
    [
        ("bgr", lambda rgb: rgb[:, :, ::-1]),
        ("rgba", lambda rgb: np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])),
        ("bgra", lambda rgb: np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 7, np.uint8)])),
    ],
)
@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_colour_orders_equal_the_rgb_frame(order, convert, resize):
    spec = PreprocessSpec(32, resize=resize)
    frame = np.ascontiguousarray(convert(FRAME))
    np.testing.assert_allclose(
        preprocess(frame, spec, color_order=order), preprocess(FRAME, spec), atol=1e-6
    )


def test_mono_is_replicated_to_three_channels():
    gray = FRAME[:, :, 1].copy()
    out = preprocess(gray, PreprocessSpec(32), color_order="mono")
    same = preprocess(np.dstack([gray] * 3), PreprocessSpec(32))
    np.testing.assert_allclose(out, same, atol=1e-6)
    np.testing.assert_allclose(
        preprocess(gray[:, :, None], PreprocessSpec(32), color_order="mono"), out
    )


def test_letterbox_keeps_aspect_and_pads_with_zero_signal():
    spec = PreprocessSpec(64, resize="letterbox")
    out = preprocess(np.full((32, 64, 3), 255, np.uint8), spec)  # 2:1 -> 64 x 32 band
    assert np.abs(out[:, :15, :]).max() < 0.02  # the padding normalises to ~0
    assert out[:, 20:44, :].min() > 1.5  # white content
    # A point in the content maps back into the source; padding clamps to the border.
    assert input_to_source(0.5, 0.5, 64, 32, spec) == pytest.approx((0.5, 0.5))
    assert input_to_source(0.0, 0.25, 64, 32, spec) == pytest.approx((0.0, 0.0))
    assert input_to_source(0.3, 0.4, 64, 32, PreprocessSpec(64)) == (0.3, 0.4)


def test_writes_into_a_preallocated_slot():
    spec = PreprocessSpec(32)
    batch = np.zeros((2, 3, 32, 32), np.float32)
    result = preprocess(FRAME, spec, out=batch[1])
    assert np.shares_memory(result, batch)
    np.testing.assert_array_equal(batch[1], preprocess(FRAME, spec))
    with pytest.raises(ValueError, match="out must be float32 of shape"):
        preprocess(FRAME, spec, out=np.zeros((3, 16, 16), np.float32))


@pytest.mark.parametrize(
    ("image", "order", "match"),
    [
        (FRAME.astype(np.float32), "rgb", "expected a uint8 image"),
        (FRAME, "yuv", "unknown colour order 'yuv'"),
        (FRAME, "bgra", "does not match colour order 'bgra'"),
        (np.zeros((0, 5, 3), np.uint8), "rgb", "does not match"),
    ],
)
def test_bad_frames_fail_clearly(image, order, match):
    with pytest.raises(ImageConversionError, match=match):
        preprocess(image, PreprocessSpec(32), color_order=order)


def test_spec_round_trip_and_validation():
    spec = PreprocessSpec(448, resize="letterbox")
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ConfigError, match="resize must be one of"):
        PreprocessSpec(224, resize="crop")
    with pytest.raises(ConfigError, match="at least 16"):
        PreprocessSpec(8)
    with pytest.raises(ConfigError, match="missing the field 'std'"):
        PreprocessSpec.from_dict({"input_size": 224, "mean": [0, 0, 0], "resize": "stretch"})


def test_eval_transform_is_preprocess_and_train_transform_is_seeded():
    spec = PreprocessSpec(32)
    np.testing.assert_array_equal(EvalTransform(spec)(FRAME), preprocess(FRAME, spec))
    train = TrainTransform(spec)
    first = train(FRAME, np.random.default_rng(3))
    assert first.shape == (3, 32, 32) and first.dtype == np.float32
    np.testing.assert_array_equal(first, train(FRAME, np.random.default_rng(3)))
    assert not np.array_equal(first, train(FRAME, np.random.default_rng(4)))
