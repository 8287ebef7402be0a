"""Metrics against scikit-learn, and the meter's exactness under a real 2-process gloo group."""

from __future__ import annotations

import datetime
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
)
from torch.utils.data import DistributedSampler

from mmsag_ros.errors import ConfigError, DatasetError
from mmsag_ros.metrics import (
    METRIC_KEYS,
    MetricReport,
    MultiLabelMeter,
    average_precision,
    calibrate_thresholds,
    label_metrics,
    mean_average_precision,
    pr_curve,
    topk_metrics,
)


def make_data(
    seed: int, n: int = 60, c: int = 5, *, ties: bool = False, ignore: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, c)) < 0.35).astype(np.float32)
    # Scores correlate with the targets, so AP is neither trivial nor chance.
    scores = 1 / (1 + np.exp(-(rng.normal(size=(n, c)) + 1.5 * targets)))
    if ties:
        scores = np.round(scores, 1)
    if ignore:
        targets[rng.random((n, c)) < ignore] = -1
    targets[:2] = 1  # every class keeps a positive
    return scores, targets


def sklearn_ap(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    out = []
    for c in range(scores.shape[1]):
        keep = targets[:, c] != -1
        out.append(average_precision_score(targets[keep, c] == 1, scores[keep, c]))
    return np.array(out)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize(("ties", "ignore"), [(False, 0.0), (True, 0.0), (True, 0.2)])
def test_average_precision_matches_sklearn(seed, ties, ignore):
    scores, targets = make_data(seed, ties=ties, ignore=ignore)
    ap = average_precision(scores, targets)
    np.testing.assert_allclose(ap, sklearn_ap(scores, targets), rtol=0, atol=1e-10)
    assert mean_average_precision(scores, targets) == pytest.approx(ap.mean(), abs=1e-12)


def test_average_precision_is_the_same_for_logits_and_probabilities():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(40, 3)) * 3
    targets = (rng.random((40, 3)) < 0.5).astype(np.float32)
    targets[0] = 1
    np.testing.assert_allclose(
        average_precision(logits, targets), average_precision(1 / (1 + np.exp(-logits)), targets)
    )


def test_class_without_positives_is_nan_and_left_out_of_the_mean(caplog):
    scores, targets = make_data(7, c=4)
    targets[:, 2] = np.where(targets[:, 2] == 1, -1, targets[:, 2])  # only negatives/ignored
    ap = average_precision(scores, targets)
    assert math.isnan(ap[2]) and not np.isnan(ap[[0, 1, 3]]).any()
    with caplog.at_level(logging.WARNING, logger="mmsag_ros.metrics"):
        mean = mean_average_precision(scores, targets)
    assert mean == pytest.approx(sklearn_ap(scores[:, [0, 1, 3]], targets[:, [0, 1, 3]]).mean())
    assert "[2]" in caplog.text
    assert math.isnan(mean_average_precision(scores, np.zeros_like(targets)))


@pytest.mark.parametrize("ignore", [0.0, 0.25])
def test_pr_curve_matches_sklearn(ignore):
    scores, targets = make_data(11, ties=True, ignore=ignore)
    keep = targets[:, 0] != -1
    precision, recall = pr_curve(scores[:, 0], targets[:, 0])
    ref_p, ref_r, _ = precision_recall_curve(targets[keep, 0] == 1, scores[keep, 0])
    np.testing.assert_allclose(precision, ref_p[:-1][::-1], atol=1e-12)
    np.testing.assert_allclose(recall, ref_r[:-1][::-1], atol=1e-12)


def sklearn_family(predicted: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """The CP..OF1 family from scikit-learn, skipping -1 entries class by class."""
    per_p, per_r = [], []
    for c in range(targets.shape[1]):
        keep = targets[:, c] != -1
        y, p = targets[keep, c] == 1, predicted[keep, c]
        per_p.append(precision_score(y, p, zero_division=0))
        per_r.append(recall_score(y, p, zero_division=0))
    keep = targets != -1
    y, p = targets[keep] == 1, predicted[keep]
    cp, cr = float(np.mean(per_p)), float(np.mean(per_r))
    return {
        "CP": cp,
        "CR": cr,
        "CF1": 2 * cp * cr / (cp + cr) if cp + cr else 0.0,
        "OP": precision_score(y, p, zero_division=0),
        "OR": recall_score(y, p, zero_division=0),
        "OF1": f1_score(y, p, zero_division=0),
    }


@pytest.mark.parametrize("seed", [0, 1])
def test_label_metrics_match_sklearn_macro_and_micro(seed):
    scores, targets = make_data(seed, c=6)
    targets[:, 5] = 0  # a class without positives: recall 0 by the zero-division rule
    thresholds = np.array([0.5, 0.3, 0.7, 2.0, 0.6, 0.5])  # class 3 never predicted
    got = label_metrics(scores, targets, thresholds)
    assert tuple(got) == METRIC_KEYS
    predicted = scores >= thresholds
    y = targets.astype(int)
    assert got["CP"] == pytest.approx(
        precision_score(y, predicted, average="macro", zero_division=0)
    )
    assert got["CR"] == pytest.approx(recall_score(y, predicted, average="macro", zero_division=0))
    assert got["OP"] == pytest.approx(precision_score(y, predicted, average="micro"))
    assert got["OR"] == pytest.approx(recall_score(y, predicted, average="micro"))
    assert got["OF1"] == pytest.approx(f1_score(y, predicted, average="micro"))
    assert got["CF1"] == pytest.approx(2 * got["CP"] * got["CR"] / (got["CP"] + got["CR"]))
    assert label_metrics(scores, targets, 0.4) == label_metrics(scores, targets, np.full(6, 0.4))


def test_label_metrics_skip_ignored_entries():
    scores, targets = make_data(3, ignore=0.3)
    got = label_metrics(scores, targets, 0.55)
    for key, value in sklearn_family(scores >= 0.55, targets).items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_label_metrics_zero_division_is_zero():
    scores, targets = make_data(4)
    assert label_metrics(scores, targets, 5.0) == dict.fromkeys(METRIC_KEYS, 0.0)


@pytest.mark.parametrize("k", [1, 3])
def test_topk_metrics_predict_exactly_the_top_k(k):
    scores, targets = make_data(9, c=5, ties=True, ignore=0.1)
    predicted = np.zeros(scores.shape, dtype=bool)
    for row, row_scores in enumerate(scores):
        ranked = sorted(range(5), key=lambda c, s=row_scores: (-s[c], c))
        predicted[row, ranked[:k]] = True
    got = topk_metrics(scores, targets, k=k)
    for key, value in sklearn_family(predicted, targets).items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def brute_force_best_f1(scores: np.ndarray, positive: np.ndarray) -> float:
    candidates = [*np.unique(scores), np.inf]
    return max(f1_score(positive, scores >= thr, zero_division=0) for thr in candidates)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_calibrated_thresholds_reach_the_best_f1(seed):
    scores, targets = make_data(seed, ties=seed == 1, ignore=0.1 if seed == 2 else 0.0)
    thresholds = calibrate_thresholds(scores, targets)
    for c in range(scores.shape[1]):
        keep = targets[:, c] != -1
        s, y = scores[keep, c], targets[keep, c] == 1
        assert f1_score(y, s >= thresholds[c]) == pytest.approx(brute_force_best_f1(s, y))


def test_calibration_takes_the_midpoint_and_keeps_default_without_positives():
    scores = np.array([[0.9, 0.9], [0.8, 0.1], [0.3, 0.2], [0.2, 0.4]])
    targets = np.array([[1, 0], [1, 0], [0, -1], [0, 0]])
    # Class 0 is separable between 0.8 and 0.3; class 1 has no positive.
    np.testing.assert_allclose(calibrate_thresholds(scores, targets), [0.55, 0.5])
    np.testing.assert_allclose(calibrate_thresholds(scores, targets, default=0.0), [0.55, 0.0])


def test_calibration_on_a_grid_picks_the_best_grid_value():
    scores, targets = make_data(6)
    grid = np.linspace(0.05, 0.95, 19)
    thresholds = calibrate_thresholds(scores, targets, grid=grid)
    for c in range(scores.shape[1]):
        y = targets[:, c] == 1
        f1s = [f1_score(y, scores[:, c] >= g, zero_division=0) for g in grid]
        assert thresholds[c] in grid
        assert f1_score(y, scores[:, c] >= thresholds[c]) == pytest.approx(max(f1s))


def test_meter_equals_the_functions_and_accepts_torch_tensors():
    scores, targets = make_data(12, n=30, c=4, ignore=0.1)
    logits = torch.from_numpy(np.log(scores / (1 - scores))).to(torch.bfloat16)
    meter = MultiLabelMeter(4, from_logits=True)
    for start in range(0, 30, 8):
        meter.update(logits[start : start + 8], torch.from_numpy(targets[start : start + 8]))
    assert meter.num_samples == 30
    probabilities = 1 / (1 + np.exp(-logits.float().numpy().astype(np.float64)))
    report = meter.compute()
    np.testing.assert_allclose(report.ap, average_precision(probabilities, targets), atol=1e-12)
    assert report.at_half == label_metrics(probabilities, targets, 0.5)
    thresholds = calibrate_thresholds(scores, targets)
    plain = MultiLabelMeter(4)
    plain.update(scores, targets)
    report = plain.compute(thresholds)
    assert report.map == pytest.approx(mean_average_precision(scores, targets))
    assert report.at_threshold == label_metrics(scores, targets, thresholds)
    assert report.at_half == label_metrics(scores, targets, 0.5)
    assert report.top3 == topk_metrics(scores, targets, k=3)
    assert report.thresholds == tuple(thresholds)
    assert report.num_samples == 30
    plain.reset()
    assert plain.num_samples == 0


def test_meter_drops_repeated_sample_indices_and_all_reduce_is_a_no_op_alone():
    scores, targets = make_data(13, n=20, c=3)
    once = MultiLabelMeter(3)
    once.update(scores, targets)
    meter = MultiLabelMeter(3)
    meter.update(scores[10:], targets[10:], indices=np.arange(10, 20))
    meter.update(scores[:12], targets[:12], indices=torch.arange(12))  # 10, 11 repeated
    assert meter.num_samples == 20
    meter.all_reduce()
    assert meter.compute().to_dict() == once.compute().to_dict()


def test_meter_takes_the_class_count_from_data_and_exposes_sorted_samples():
    scores, targets = make_data(18, n=12, c=3)
    meter = MultiLabelMeter()
    with pytest.raises(ConfigError, match=r"one \(N, C>=1\) shape"):
        meter.update(scores[:4], targets[:3])
    assert meter.num_classes is None
    order = np.random.default_rng(0).permutation(12)
    for batch in np.array_split(order, 3):
        meter.update(torch.from_numpy(scores[batch]), targets[batch], indices=batch)
    assert meter.num_classes == 3
    np.testing.assert_array_equal(meter.scores, scores)
    np.testing.assert_array_equal(meter.targets, targets)
    with pytest.raises(ConfigError, match="meter's 3 classes"):
        meter.update(scores[:, :2], targets[:, :2], indices=[0])


def test_report_to_dict_is_json_ready_with_nan_as_none():
    scores, targets = make_data(14, c=3)
    targets[:, 1] = 0
    meter = MultiLabelMeter(3)
    meter.update(scores, targets)
    report = meter.compute()
    assert isinstance(report, MetricReport)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["ap"][1] is None and data["ap"][0] == pytest.approx(report.ap[0])
    assert data["map"] == pytest.approx(report.map)
    assert data["top3"] == pytest.approx(report.top3) and data["num_samples"] == 60


def test_errors_name_the_bad_input():
    scores, targets = make_data(15, n=10, c=3)
    with pytest.raises(ConfigError, match=r"one \(N, C>=1\) shape"):
        average_precision(scores, targets[:, :2])
    with pytest.raises(ConfigError, match="NaN scores"):
        label_metrics(np.where(scores > 0.5, np.nan, scores), targets)
    with pytest.raises(DatasetError, match=r"found \[0.5\]"):
        average_precision(scores, np.full_like(targets, 0.5))
    with pytest.raises(ConfigError, match="thresholds must be 1 or 3 numbers"):
        label_metrics(scores, targets, [0.5, 0.5])
    with pytest.raises(ConfigError, match="k must be between 1 and"):
        topk_metrics(scores, targets, k=4)
    with pytest.raises(ConfigError, match="grid must be a non-empty 1-D"):
        calibrate_thresholds(scores, targets, grid=[])
    with pytest.raises(DatasetError, match="at least one positive"):
        pr_curve(scores[:, 0], np.zeros(10))


def test_meter_errors():
    scores, targets = make_data(16, n=6, c=3)
    with pytest.raises(ConfigError, match="at least 1"):
        MultiLabelMeter(0)
    meter = MultiLabelMeter(4)
    with pytest.raises(ConfigError, match="meter's 4 classes"):
        meter.update(scores, targets)
    meter = MultiLabelMeter(3)
    with pytest.raises(DatasetError, match="no samples to score"):
        meter.compute()
    with pytest.raises(ConfigError, match="5 sample indices for a batch of 6"):
        meter.update(scores, targets, indices=np.arange(5))
    meter.update(scores, targets, indices=np.arange(6))
    with pytest.raises(ConfigError, match="on every update"):
        meter.update(scores, targets)


# --- torch.distributed, two real processes -----------------------------------------------

SHARDS = {
    # DistributedSampler pads 11 samples to 12: rank 1 repeats sample 0.
    "sampler": None,
    "uneven": ([0, 1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 3]),
    "one_rank_empty": (list(range(11)), []),
}


def _ddp_worker(rank: int, init_file: str, out_dir: str, scores, targets, thresholds) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=2,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        for name, shards in SHARDS.items():
            if shards is None:
                mine = list(DistributedSampler(range(len(scores)), 2, rank, shuffle=False))
            else:
                mine = shards[rank]
            # The class count may come from the data, even on a rank that holds none.
            meter = MultiLabelMeter(None if name == "one_rank_empty" else scores.shape[1])
            for start in range(0, len(mine), 4):  # batches of 4, the last one short
                idx = np.array(mine[start : start + 4], dtype=np.int64)
                batch = torch.from_numpy(scores[idx]), torch.from_numpy(targets[idx])
                meter.update(*batch, indices=torch.from_numpy(idx))
            meter.all_reduce()
            report = meter.compute(thresholds).to_dict()
            Path(out_dir, f"{name}_{rank}.json").write_text(json.dumps(report))
            np.save(Path(out_dir, f"{name}_{rank}.npy"), np.hstack([meter.scores, meter.targets]))
    finally:
        dist.destroy_process_group()


def test_all_reduce_over_two_gloo_processes_equals_one_process(tmp_path):
    scores, targets = make_data(17, n=11, c=4, ties=True, ignore=0.1)
    thresholds = calibrate_thresholds(scores, targets)
    mp.spawn(
        _ddp_worker,
        args=(str(tmp_path / "init"), str(tmp_path), scores, targets, thresholds),
        nprocs=2,
        join=True,
    )
    single = MultiLabelMeter(4)
    single.update(scores, targets)
    expected = json.loads(json.dumps(single.compute(thresholds).to_dict()))
    assert expected["num_samples"] == 11
    for name in SHARDS:
        for rank in (0, 1):
            got = json.loads((tmp_path / f"{name}_{rank}.json").read_text())
            assert got == expected, (name, rank)
            # Every sample once, in sample order, on every rank.
            gathered = np.load(tmp_path / f"{name}_{rank}.npy")
            np.testing.assert_array_equal(gathered, np.hstack([scores, targets]))
