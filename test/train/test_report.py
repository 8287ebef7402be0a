"""The plain-text metrics table and the PNG plots (PR curves, latency histogram)."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from mmsag_ros.bundle.labels import MLKW_LABELS, LabelSet
from mmsag_ros.errors import ConfigError
from mmsag_ros.metrics import METRIC_KEYS, MultiLabelMeter, calibrate_thresholds
from mmsag_ros.report import format_report_table, plot_latency_histogram, plot_pr_curves


def make_data(seed: int, n: int = 80, c: int = 8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, c)) < 0.3).astype(np.float32)
    scores = 1 / (1 + np.exp(-(rng.normal(size=(n, c)) + 2 * targets)))
    targets[:2] = 1
    targets[rng.random((n, c)) < 0.05] = -1
    return scores, targets


def make_report(scores, targets):
    meter = MultiLabelMeter(scores.shape[1])
    meter.update(scores, targets)
    return meter.compute(calibrate_thresholds(scores, targets))


def pct(value: float) -> str:
    return f"{100 * value:.2f}"


def test_table_lists_every_class_and_the_right_numbers():
    scores, targets = make_data(0)
    targets[:, 7] = np.where(targets[:, 7] == 1, 0, targets[:, 7])  # "glass" without positives
    report = make_report(scores, targets)
    table = format_report_table(report, MLKW_LABELS)
    lines = table.splitlines()
    assert lines[0].startswith(f"{report.num_samples} samples, 8 classes")
    class_lines = []
    for c, name in enumerate(MLKW_LABELS.display_names):
        line = next(x for x in lines if re.match(rf"{re.escape(name)}\s{{2,}}", x))
        class_lines.append(line)
        ap_cell, threshold_cell = line[len(name) :].split()
        expected_ap = "n/a" if c == 7 else pct(report.ap[c])
        assert ap_cell == expected_ap
        assert float(threshold_cell) == pytest.approx(report.thresholds[c], abs=5e-4)
    # Right-aligned columns: every class row ends at the same column.
    assert len({len(line) for line in class_lines}) == 1
    assert next(x for x in lines if x.startswith("mAP")).split()[1] == pct(report.map)
    header = next(x for x in lines if x.split() == list(METRIC_KEYS))
    rows = {"at thresholds": report.at_threshold, "at 0.5": report.at_half, "top-3": report.top3}
    for title, values in rows.items():
        line = next(x for x in lines if x.startswith(title))
        assert line[len(title) :].split() == [pct(values[key]) for key in METRIC_KEYS]
        assert len(line) == len(header)


def test_table_with_two_classes_says_top_2():
    scores, targets = make_data(1, c=2)
    labels = LabelSet.from_names(["metal", "galss"], {"galss": "glass"})
    table = format_report_table(make_report(scores, targets), labels)
    assert "glass" in table and "galss" not in table and "top-2" in table


def test_table_rejects_a_label_set_of_another_size():
    scores, targets = make_data(2, c=3)
    with pytest.raises(ConfigError, match="report has 3 classes but the label set 8"):
        format_report_table(make_report(scores, targets), MLKW_LABELS)


def read_png(path) -> np.ndarray:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def test_pr_curves_png(tmp_path):
    scores, targets = make_data(3)
    targets[:, 2] = np.where(targets[:, 2] == 1, -1, targets[:, 2])  # a class with no curve
    path = plot_pr_curves(scores, targets, MLKW_LABELS, tmp_path / "plots" / "pr.png")
    assert path == tmp_path / "plots" / "pr.png"
    image = read_png(path)
    height, width = image.shape[:2]
    assert 400 <= height <= 1200 and 700 <= width <= 2000
    # Coloured curves, not a blank canvas: many pixels are neither white nor grey.
    spread = image.max(axis=2).astype(int) - image.min(axis=2)
    assert (spread > 60).sum() > 2000


def test_pr_curves_reject_scores_of_another_width(tmp_path):
    scores, targets = make_data(4, c=5)
    with pytest.raises(ConfigError, match=r"do not fit the label set's 8 classes"):
        plot_pr_curves(scores, targets, MLKW_LABELS, tmp_path / "pr.png")
    assert not (tmp_path / "pr.png").exists()


def test_latency_histogram_png(tmp_path):
    latencies = np.random.default_rng(5).gamma(4.0, 3.0, size=500)
    path = plot_latency_histogram(latencies.tolist(), tmp_path / "lat.png", title="onnxruntime")
    image = read_png(path)
    height, width = image.shape[:2]
    assert 300 <= height <= 1000 and 500 <= width <= 1600
    # The histogram bars are tab:blue (BGR roughly 180, 119, 31).
    blueish = (image[..., 0] > 150) & (image[..., 2] < 120)
    assert blueish.sum() > 1000


@pytest.mark.parametrize(
    ("latencies", "message"),
    [([], "no latencies to plot"), ([1.0, -2.0, float("nan")], "2 of 3 latencies")],
)
def test_latency_histogram_rejects_bad_input(tmp_path, latencies, message):
    with pytest.raises(ConfigError, match=message):
        plot_latency_histogram(latencies, tmp_path / "lat.png", title="x")
