from __future__ import annotations

import numpy as np
import pytest

from mmsag_ros.bundle.preprocess import PreprocessSpec
from mmsag_ros.errors import ConfigError
from mmsag_ros.pointing import attention_peaks
from mmsag_ros.runtime.postprocess import check_thresholds, decide, sigmoid


def test_sigmoid_is_stable_and_matches_the_formula():
    x = np.array([-1000.0, -30.0, -1.5, 0.0, 2.0, 30.0, 1000.0])
    with np.errstate(over="raise"):  # the naive formula would overflow here
        y = sigmoid(x)
    assert y.dtype == np.float32
    assert np.all(np.isfinite(y))
    moderate = np.abs(x) < 50
    np.testing.assert_allclose(y[moderate], 1 / (1 + np.exp(-x[moderate])), rtol=1e-6)
    assert y[0] == 0.0 and y[-1] == 1.0
    np.testing.assert_allclose(sigmoid(-x), 1 - y, atol=1e-7)


def test_decisions_include_the_threshold_itself():
    scores = np.array([[0.2, 0.5, 0.9]], np.float32)
    thresholds = np.array([0.2, 0.6, 0.5], np.float32)
    assert decide(scores, thresholds).tolist() == [[True, False, True]]


def test_check_thresholds_accepts_one_value_per_class():
    values = check_thresholds([0.0, 0.25, 1.0], 3)
    assert values.dtype == np.float32 and values.tolist() == [0.0, 0.25, 1.0]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([0.5, 0.5], "expected 3 thresholds"),
        ([0.5, 1.5, 0.2], r"in \[0, 1\], got \[1.5\]"),
        ([0.5, -0.1, 0.2], r"in \[0, 1\]"),
        ([0.5, float("nan"), 0.2], r"in \[0, 1\], got \[nan\]"),
        (["a", "b", "c"], "must be 3 numbers"),
    ],
)
def test_check_thresholds_rejects_bad_values(values, message):
    with pytest.raises(ConfigError, match=message):
        check_thresholds(values, 3)


def _peaked_maps(grid_h, grid_w, cells):
    """Softmax-like maps with most of the mass on one cell per class."""
    maps = np.full((len(cells), grid_h, grid_w), 0.01, np.float32)
    for c, (row, col) in enumerate(cells):
        maps[c, row, col] = 1.0
    return maps / maps.sum(axis=(1, 2), keepdims=True)


def test_peaks_under_stretch_are_cell_centres():
    spec = PreprocessSpec(input_size=224, resize="stretch")
    maps = _peaked_maps(7, 7, [(0, 0), (3, 5), (6, 6)])
    peaks = attention_peaks(maps, source_size=(1280, 720), spec=spec)
    assert peaks.shape == (3, 3) and peaks.dtype == np.float32
    np.testing.assert_allclose(peaks[:, 0], [0.5 / 7, 5.5 / 7, 6.5 / 7], rtol=1e-6)
    np.testing.assert_allclose(peaks[:, 1], [0.5 / 7, 3.5 / 7, 6.5 / 7], rtol=1e-6)
    np.testing.assert_allclose(peaks[:, 2], maps.reshape(3, -1).max(axis=1))


def test_peaks_under_letterbox_undo_the_padding():
    # A 2:1 frame in a 200 px square: content is 200 x 100 with 50 px bands above and below.
    spec = PreprocessSpec(input_size=200, resize="letterbox")
    maps = _peaked_maps(4, 4, [(1, 0), (2, 3), (0, 2)])
    peaks = attention_peaks(maps, source_size=(400, 200), spec=spec)
    # Row 1 centre: input y = 1.5 / 4 * 200 = 75 px -> (75 - 50) / 100 of the frame.
    np.testing.assert_allclose(peaks[0, :2], [0.5 / 4, 0.25], rtol=1e-6)
    # Row 2 centre: 125 px -> 0.75; column 3 centre spans the full width: x = 3.5 / 4.
    np.testing.assert_allclose(peaks[1, :2], [3.5 / 4, 0.75], rtol=1e-6)
    # Row 0 lies on the top band: clamped to the frame's top edge.
    np.testing.assert_allclose(peaks[2, :2], [2.5 / 4, 0.0], atol=1e-7)


def test_peaks_reject_maps_without_a_class_axis():
    spec = PreprocessSpec(input_size=64)
    with pytest.raises(ValueError, match="C x h x w"):
        attention_peaks(np.ones((7, 7), np.float32), source_size=(64, 64), spec=spec)
