"""The debug overlay on plain arrays: heat map placement, colour order, scores and markers."""

from __future__ import annotations

import numpy as np
import pytest

from mmsag_ros.bundle.preprocess import PreprocessSpec
from mmsag_ros.errors import ImageConversionError
from mmsag_ros.pointing import attention_peaks
from mmsag_ros.runtime.classifier import Classifier, Prediction, StageTimings
from mmsag_ros.runtime.overlay import attention_heat_map, draw_overlay

NAMES = ("Plastic bottle", "Glass", "Metal can")
GRID = 8
SOURCE = (160, 80)  # width, height: 2:1, so stretch and letterbox place the heat differently


def _attention(cells: list[tuple[int, int]]) -> np.ndarray:
    """One softmax map per class, sharply peaked at the class's (row, col) cell."""
    logits = np.zeros((len(cells), GRID, GRID), np.float32)
    for c, (row, col) in enumerate(cells):
        logits[c, row, col] = 6.0
    flat = np.exp(logits.reshape(len(cells), -1))
    return (flat / flat.sum(axis=1, keepdims=True)).reshape(logits.shape)


def _prediction(
    spec: PreprocessSpec,
    *,
    scores: list[float],
    thresholds: float = 0.5,
    attention: np.ndarray | None,
    size: tuple[int, int] = SOURCE,
) -> Prediction:
    score_array = np.array(scores, np.float32)
    peaks = None if attention is None else attention_peaks(attention, source_size=size, spec=spec)
    return Prediction(
        scores=score_array,
        decisions=score_array >= thresholds,
        thresholds=np.full(len(scores), thresholds, np.float32),
        peaks=peaks,
        source_size=size,
        timings=StageTimings(1, 0.0, 0.0, 0.0),
        attention=attention,
    )


def _expected_peak_px(spec: PreprocessSpec, row: int, col: int) -> tuple[float, float]:
    """Where a cell's centre lands in the frame, computed by hand from the resize geometry."""
    width, height = SOURCE
    size = spec.input_size
    x_in, y_in = (col + 0.5) * size / GRID, (row + 0.5) * size / GRID
    if spec.resize == "stretch":
        return x_in / size * width, y_in / size * height
    scale = size / max(width, height)
    content_w, content_h = width * scale, height * scale
    left, top = (size - content_w) / 2, (size - content_h) / 2
    return (x_in - left) / scale, (y_in - top) / scale


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
@pytest.mark.parametrize("cell", [(4, 6), (3, 1)])
def test_heat_map_is_hottest_where_the_attention_peaks(resize, cell):
    spec = PreprocessSpec(input_size=64, resize=resize)
    attention = _attention([cell])
    heat = attention_heat_map(attention[0], source_size=SOURCE, spec=spec)
    assert heat.shape == (SOURCE[1], SOURCE[0]) and heat.dtype == np.float32
    assert 0.8 < heat.max() <= 1.0 and heat.min() >= 0.0
    y_px, x_px = np.unravel_index(np.argmax(heat), heat.shape)
    expected_x, expected_y = _expected_peak_px(spec, *cell)
    # The hottest pixel is the one whose centre is nearest the cell centre.
    assert abs(x_px + 0.5 - expected_x) <= 1.0
    assert abs(y_px + 0.5 - expected_y) <= 1.0
    # And it agrees with the peaks the classifier reports.
    peak = attention_peaks(attention, source_size=SOURCE, spec=spec)[0]
    assert abs(x_px + 0.5 - peak[0] * SOURCE[0]) <= 1.0
    assert abs(y_px + 0.5 - peak[1] * SOURCE[1]) <= 1.0


def test_letterbox_and_stretch_place_the_same_map_differently():
    attention = _attention([(1, 1)])[0]
    spots = {}
    for resize in ("stretch", "letterbox"):
        spec = PreprocessSpec(input_size=64, resize=resize)
        heat = attention_heat_map(attention, source_size=SOURCE, spec=spec)
        spots[resize] = np.unravel_index(np.argmax(heat), heat.shape)
    # Row 1 of 8 is inside the letterbox's top padding of a 2:1 frame: clamped to row 0.
    assert spots["letterbox"][0] == 0
    assert spots["stretch"][0] == pytest.approx(
        _expected_peak_px(PreprocessSpec(64), 1, 1)[1], abs=1
    )


def test_flat_attention_gives_no_heat():
    spec = PreprocessSpec(input_size=32)
    heat = attention_heat_map(np.full((4, 4), 1 / 16, np.float32), source_size=(20, 10), spec=spec)
    assert heat.shape == (10, 20) and not heat.any()


def _grey_frame_with_marker_square() -> np.ndarray:
    """Mid grey RGB frame with a pure red square far from every heat spot and the panel."""
    rgb = np.full((SOURCE[1], SOURCE[0], 3), 128, np.uint8)
    rgb[70:78, 4:12] = (255, 0, 0)
    return rgb


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
def test_overlay_keeps_shape_dtype_and_colour_order(resize):
    spec = PreprocessSpec(input_size=64, resize=resize)
    # No class decided: the top-scoring class (index 1) shows its heat, no marker is drawn.
    prediction = _prediction(
        spec, scores=[0.1, 0.4, 0.2], attention=_attention([(0, 0), (4, 6), (0, 7)])
    )
    rgb = _grey_frame_with_marker_square()
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    before = rgb.copy()
    outputs = {
        ("rgb", "rgb"): draw_overlay(
            rgb, prediction, names=NAMES, spec=spec, color_order="rgb", output_order="rgb"
        ),
        ("rgb", "bgr"): draw_overlay(rgb, prediction, names=NAMES, spec=spec, color_order="rgb"),
        ("bgr", "bgr"): draw_overlay(bgr, prediction, names=NAMES, spec=spec, color_order="bgr"),
        ("bgr", "rgb"): draw_overlay(
            bgr, prediction, names=NAMES, spec=spec, color_order="bgr", output_order="rgb"
        ),
    }
    np.testing.assert_array_equal(rgb, before)  # the source frame is not touched
    for (_, out_order), out in outputs.items():
        assert out.shape == (SOURCE[1], SOURCE[0], 3) and out.dtype == np.uint8
        red = (255, 0, 0) if out_order == "rgb" else (0, 0, 255)
        # The red square is far from the heat: it keeps its colour in the output's order.
        assert tuple(out[74, 8]) == red
    np.testing.assert_array_equal(outputs["rgb", "rgb"], outputs["bgr", "rgb"])
    np.testing.assert_array_equal(outputs["rgb", "bgr"], outputs["bgr", "bgr"])
    np.testing.assert_array_equal(outputs["rgb", "rgb"], outputs["rgb", "bgr"][:, :, ::-1])
    # The heat of class 1 is hottest (red in the colour map) at its peak, grey far from it.
    out = outputs["rgb", "rgb"].astype(int)
    x, y = (prediction.peaks[1, :2] * SOURCE).astype(int)
    assert out[y, x, 0] > out[y, x, 2] + 60, out[y, x]
    x0, y0 = (prediction.peaks[0, :2] * SOURCE).astype(int)
    assert abs(out[min(y0 + 40, 79), x0 + 2] - 128).max() <= 2  # class 0's spot stays cold


def _green_pixels(image_bgr: np.ndarray) -> int:
    b, g, r = (image_bgr[..., k].astype(int) for k in range(3))
    return int(np.count_nonzero((g > r + 60) & (g > b + 60)))


def test_decided_classes_are_highlighted_and_marked_at_their_peaks():
    spec = PreprocessSpec(input_size=64, resize="letterbox")
    attention = _attention([(4, 1), (4, 6), (5, 3)])
    frame = np.full((SOURCE[1], SOURCE[0], 3), 128, np.uint8)
    none = _prediction(spec, scores=[0.1, 0.3, 0.2], attention=attention)
    two = _prediction(spec, scores=[0.1, 0.9, 0.7], attention=attention)
    plain = draw_overlay(frame, none, names=NAMES, spec=spec, heat_alpha=0.0)
    marked = draw_overlay(frame, two, names=NAMES, spec=spec, heat_alpha=0.0)
    panel = (slice(0, 30), slice(0, 100))
    assert _green_pixels(plain[panel]) == 0
    assert _green_pixels(marked[panel]) > 0
    for c in (1, 2):  # a green cross centre on each decided class's peak
        x, y = (two.peaks[c, :2] * SOURCE).astype(int)
        assert tuple(marked[y, x]) == (60, 220, 60)
    x, y = (two.peaks[0, :2] * SOURCE).astype(int)
    assert tuple(marked[y, x]) == (128, 128, 128)  # undecided: no marker


def test_overlay_without_attention_draws_scores_only():
    spec = PreprocessSpec(input_size=32)
    prediction = _prediction(spec, scores=[0.9, 0.1, 0.1], attention=None)
    frame = np.full((SOURCE[1], SOURCE[0]), 90, np.uint8)
    out = draw_overlay(frame, prediction, names=NAMES, spec=spec, color_order="mono")
    assert out.shape == (SOURCE[1], SOURCE[0], 3)
    assert (out[40:, :] == 90).all()  # below the score panel nothing changed


def test_overlay_errors_name_the_bad_value():
    spec = PreprocessSpec(input_size=32)
    prediction = _prediction(spec, scores=[0.9, 0.1, 0.1], attention=_attention([(0, 0)] * 3))
    frame = np.zeros((SOURCE[1], SOURCE[0], 3), np.uint8)
    with pytest.raises(ImageConversionError, match="image is 80x80 but the prediction"):
        draw_overlay(frame[:, :80], prediction, names=NAMES, spec=spec)
    with pytest.raises(ImageConversionError, match="unknown output order 'hsv'"):
        draw_overlay(frame, prediction, names=NAMES, spec=spec, output_order="hsv")
    with pytest.raises(ImageConversionError, match="does not match colour order 'mono'"):
        draw_overlay(frame, prediction, names=NAMES, spec=spec, color_order="mono")
    with pytest.raises(ValueError, match="2 names for 3 classes"):
        draw_overlay(frame, prediction, names=NAMES[:2], spec=spec)
    with pytest.raises(ValueError, match=r"heat_alpha must lie in \[0, 1\], got 1.5"):
        draw_overlay(frame, prediction, names=NAMES, spec=spec, heat_alpha=1.5)
    with pytest.raises(ValueError, match="one h x w map"):
        attention_heat_map(np.zeros((2, 4, 4)), source_size=(10, 10), spec=spec)
    with pytest.raises(ValueError, match="source_size must be positive"):
        attention_heat_map(np.zeros((4, 4)), source_size=(0, 10), spec=spec)


def test_classifier_predictions_carry_their_attention_maps(bundle_dir, frames):
    with Classifier(bundle_dir, backend="onnxruntime", device="cpu") as classifier:
        prediction = classifier.classify_one(frames[0])
        spec, count = classifier.spec, len(classifier.labels)
        names = classifier.labels.display_names
        without = Classifier(bundle_dir, backend="onnxruntime", device="cpu", peaks=False)
        with without:
            assert without.classify_one(frames[0]).attention is None
    attention = prediction.attention
    assert attention is not None and attention.ndim == 3 and attention.shape[0] == count
    assert not attention.flags.writeable
    np.testing.assert_allclose(attention.reshape(count, -1).sum(axis=1), 1.0, atol=1e-4)
    peaks = attention_peaks(attention, source_size=prediction.source_size, spec=spec)
    np.testing.assert_array_equal(peaks, prediction.peaks)
    out = draw_overlay(frames[0], prediction, names=names, spec=spec, color_order="rgb")
    assert out.shape == frames[0].shape and out.dtype == np.uint8
