"""The one preprocessing function: normalisation, colour orders, resize policies, geometry."""

from __future__ import annotations

import numpy as np
import pytest

from mmsag_ros.bundle.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PreprocessSpec,
    input_to_source,
    preprocess,
)
from mmsag_ros.data.transforms import EvalTransform, TrainTransform
from mmsag_ros.errors import ConfigError, ImageConversionError

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


def _tiled_image(rng: np.random.Generator, tiles: int, tile: int) -> tuple[np.ndarray, np.ndarray]:
    """RGB ``tiles`` x ``tiles`` tiles of ``tile`` x ``tile`` pixels, and each tile's mean.

    No pixel equals its tile's mean (picking one pixel per tile cannot pass), yet every
    aligned 2 x 2 square averages to it exactly, so an area shrink by halvings has no rounding.
    """
    means = rng.integers(2, 250, (tiles, tiles, 3))
    pattern = np.array([[3, -1], [-1, -1]])
    side = tiles * tile
    image = np.repeat(np.repeat(means, tile, axis=0), tile, axis=1)
    image += np.tile(pattern, (side // 2, side // 2))[:, :, None]
    return image.astype(np.uint8), means


@pytest.mark.parametrize(
    "transform",
    [preprocess, lambda image, spec: EvalTransform(spec)(image)],
    ids=["preprocess", "eval"],
)
def test_shrinking_averages_tiles_then_normalises_each_rgb_channel(transform):
    # Computed here from first principles, not by calling the library: a 4x shrink of a
    # 128 x 128 image is the mean of each 4 x 4 tile, then (v / 255 - mean) / std per channel,
    # channels first in R, G, B order.
    image, means = _tiled_image(np.random.default_rng(5), tiles=32, tile=4)
    spec = PreprocessSpec(32, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    expected = (means / 255.0 - np.array(spec.mean)) / np.array(spec.std)
    out = transform(image, spec)
    assert out.shape == (3, 32, 32) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected.transpose(2, 0, 1), atol=1e-5)


@pytest.mark.parametrize(
    "transform",
    [preprocess, lambda image, spec: EvalTransform(spec)(image)],
    ids=["preprocess", "eval"],
)
@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_a_flat_colour_keeps_its_value_per_channel_at_any_size(transform, resize):
    # Whatever the interpolation, a flat frame stays flat: channel c holds exactly
    # (v_c / 255 - mean_c) / std_c in the content area (upscaled 23 x 17 and shrunk 640 x 360).
    colour = np.array([200, 100, 30], np.uint8)
    spec = PreprocessSpec(32, resize=resize)
    expected = (colour / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    for width, height in ((23, 17), (640, 360)):
        out = transform(np.broadcast_to(colour, (height, width, 3)).copy(), spec)
        rows = round(height * 32 / width) if resize == "letterbox" else 32
        top = (32 - rows) // 2
        content = out[:, top : top + rows, :]
        for channel in range(3):
            np.testing.assert_allclose(content[channel], expected[channel], atol=1e-5)
        # The letterbox bands (mean colour) carry no signal.
        assert np.abs(out[:, :top, :]).max(initial=0.0) < 0.02
        assert np.abs(out[:, top + rows :, :]).max(initial=0.0) < 0.02


def test_train_transform_is_seeded():
    spec = PreprocessSpec(32)
    train = TrainTransform(spec)
    first = train(FRAME, np.random.default_rng(3))
    assert first.shape == (3, 32, 32) and first.dtype == np.float32
    np.testing.assert_array_equal(first, train(FRAME, np.random.default_rng(3)))
    assert not np.array_equal(first, train(FRAME, np.random.default_rng(4)))
