"""Label statistics, P(j|i), ML-GCN adjacency, tables, heat map and `mmsag data stats`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from support import SHARED_DATA

from mmsag_ros.bundle.labels import MLKW_LABELS, LabelSet
from mmsag_ros.cli import data_stats
from mmsag_ros.data.dataset import AnnotatedSplit, Sample
from mmsag_ros.data.stats import (
    conditional_probability,
    format_adjacency,
    format_statistics,
    label_statistics,
    mlgcn_adjacency,
    plot_cooccurrence,
)
from mmsag_ros.data.voc import write_voc_lists
from mmsag_ros.errors import ConfigError, DatasetError

TACO = SHARED_DATA / "annotations" / "taco" / "annotations.json"
LABELS = LabelSet.from_names(["bottle", "cap", "can", "shoe"], {"cap": "bottle cap"})
# Rows are images; -1 is an ignored entry.
TARGETS = np.array(
    [
        [1, 1, 0, 0],
        [1, 1, 0, 0],
        [1, 0, 1, 0],
        [1, -1, 0, 0],
        [0, 1, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 1, -1],
    ],
    np.float32,
)


def _split(targets: np.ndarray = TARGETS, labels: LabelSet = LABELS) -> AnnotatedSplit:
    samples = tuple(Sample(Path(f"/nowhere/{i}.jpg"), row, str(i)) for i, row in enumerate(targets))
    return AnnotatedSplit(labels, samples, "trainval", "/nowhere")


def test_counts_cooccurrence_and_cardinality():
    stats = label_statistics(_split())
    positive = TARGETS == 1
    assert stats.num_images == 7
    np.testing.assert_array_equal(stats.counts, [4, 3, 2, 0])
    np.testing.assert_allclose(stats.frequency, np.array([4, 3, 2, 0]) / 7)
    np.testing.assert_array_equal(stats.ignored, [0, 1, 0, 1])
    for i in range(4):
        for j in range(4):
            both = int((positive[:, i] & positive[:, j]).sum())
            assert stats.cooccurrence[i, j] == both
    assert stats.cooccurrence[0, 1] == 2 and stats.cooccurrence[1, 0] == 2
    assert stats.cardinality_mean == pytest.approx(9 / 7)
    assert stats.cardinality_max == 2 and stats.images_without_labels == 1
    np.testing.assert_array_equal(label_statistics(TARGETS).cooccurrence, stats.cooccurrence)
    assert json.loads(json.dumps(stats.to_dict()))["counts"] == [4, 3, 2, 0]


def test_empty_and_malformed_targets():
    stats = label_statistics(np.zeros((0, 3), np.float32))
    assert stats.num_images == 0 and stats.cardinality_max == 0
    np.testing.assert_array_equal(stats.frequency, [0, 0, 0])
    with pytest.raises(DatasetError, match="N x C"):
        label_statistics(np.zeros(3))


def test_conditional_probability():
    probability = conditional_probability(label_statistics(TARGETS))
    # P(cap | bottle) = 2/4, P(bottle | cap) = 2/3, P(can | bottle) = 1/4.
    assert probability[0, 1] == pytest.approx(0.5)
    assert probability[1, 0] == pytest.approx(2 / 3)
    assert probability[0, 2] == pytest.approx(0.25)
    np.testing.assert_allclose(np.diag(probability), [1, 1, 1, 0])
    np.testing.assert_array_equal(probability[3], 0)  # no positive "shoe": nothing known


def test_mlgcn_adjacency_follows_the_recipe():
    stats = label_statistics(TARGETS)
    adjacency = mlgcn_adjacency(stats, threshold=0.4, reweight=0.2)
    assert adjacency.dtype == np.float32 and adjacency.shape == (4, 4)
    # bottle -> cap (0.5); cap -> bottle (0.67); can -> bottle (0.5); shoe has no neighbour.
    expected = np.array(
        [
            [0.8, 0.2, 0.0, 0.0],
            [0.2, 0.8, 0.0, 0.0],
            [0.2, 0.0, 0.8, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )
    np.testing.assert_allclose(adjacency, expected, atol=1e-6)
    np.testing.assert_allclose(adjacency.sum(axis=1), 1.0, atol=1e-6)


def test_adjacency_spreads_p_over_several_neighbours_and_threshold_is_inclusive():
    stats = label_statistics(TARGETS)
    adjacency = mlgcn_adjacency(stats, threshold=0.25, reweight=0.3)
    # bottle: P(cap|bottle) = 0.5 and P(can|bottle) = 0.25 (== t) are both edges.
    np.testing.assert_allclose(adjacency[0], [0.7, 0.15, 0.15, 0.0], atol=1e-6)
    np.testing.assert_allclose(adjacency[3], [0, 0, 0, 1])
    strict = mlgcn_adjacency(stats, threshold=0.26, reweight=0.3)
    np.testing.assert_allclose(strict[0], [0.7, 0.3, 0.0, 0.0], atol=1e-6)
    identity = mlgcn_adjacency(stats, threshold=1.0, reweight=0.0)
    np.testing.assert_allclose(identity, np.eye(4))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 0.0}, "threshold must be in"),
        ({"threshold": 1.2}, "threshold must be in"),
        ({"reweight": 1.0}, "re-weighting p must be in"),
        ({"reweight": -0.1}, "re-weighting p must be in"),
    ],
)
def test_adjacency_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        mlgcn_adjacency(label_statistics(TARGETS), **kwargs)


def test_format_statistics_small_label_set():
    text = format_statistics(label_statistics(TARGETS), LABELS)
    assert "images: 7" in text and "images without labels: 1" in text
    assert "bottle cap" in text and "co-occurrence" in text
    # Per-class rows are the ones with a share in percent.
    rows = {line.split()[1]: line.split() for line in text.splitlines() if "%" in line}
    assert rows["bottle"][-3:] == ["4", "57.1%", "0"]
    assert rows["cap"][-3:] == ["3", "42.9%", "1"]
    assert "most frequent pairs (of 2 that co-occur)" in text
    with pytest.raises(DatasetError, match="3 labels for statistics of 4 classes"):
        format_statistics(label_statistics(TARGETS), LabelSet.from_names(["a", "b", "c"]))


def test_format_statistics_wide_label_set_lists_pairs_only():
    rng = np.random.default_rng(0)
    targets = (rng.random((50, 20)) < 0.2).astype(np.float32)
    labels = LabelSet.from_names([f"class_{i}" for i in range(20)])
    text = format_statistics(label_statistics(targets), labels)
    assert "co-occurrence (images with both" not in text
    assert "most frequent pairs" in text and "class_19" in text


def test_format_adjacency_lists_edges_and_isolated_classes():
    stats = label_statistics(TARGETS)
    text = format_adjacency(mlgcn_adjacency(stats), stats, LABELS, threshold=0.4)
    assert "3 edges, 1 of 4 classes with no neighbour" in text
    assert "self-loop only: shoe" in text
    edge = next(line for line in text.splitlines() if line.startswith("can "))
    assert edge.split()[1:] == ["bottle", "0.50", "0.200"]


def test_plot_cooccurrence_writes_a_png(tmp_path):
    path = plot_cooccurrence(label_statistics(TARGETS), LABELS, tmp_path / "sub" / "co.png")
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 200 and image.shape[1] > 200
    with pytest.raises(DatasetError, match="labels for statistics"):
        plot_cooccurrence(label_statistics(TARGETS), MLKW_LABELS, tmp_path / "x.png")


def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    data_stats.add_arguments(parser)
    return data_stats.run(parser.parse_args(argv))


def test_cli_on_a_voc_tree_needs_no_images(tmp_path, capsys):
    voc = tmp_path / "mlkw" / "VOCdevkit" / "VOC2007"
    rng = np.random.default_rng(2)
    targets = (rng.random((30, 8)) < 0.3).astype(np.float32)
    names = [f"{i:06d}" for i in range(30)]
    write_voc_lists(voc, "trainval", MLKW_LABELS, names, targets)
    out = tmp_path / "out"
    code = _run_cli(["--format", "voc", "--path", str(tmp_path / "mlkw"), "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "tetra pak carton" in printed and "label graph (ML-GCN" in printed
    report = json.loads((out / "stats.json").read_text())
    expected = label_statistics(targets)
    assert report["labels"]["names"] == list(MLKW_LABELS.names)
    assert report["statistics"]["counts"] == expected.counts.tolist()
    assert report["statistics"]["cooccurrence"] == expected.cooccurrence.tolist()
    np.testing.assert_allclose(report["adjacency"]["matrix"], mlgcn_adjacency(expected))
    assert cv2.imread(str(out / "cooccurrence.png")) is not None


def test_cli_on_a_csv_table_with_options(tmp_path):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("filename,a,b\nx.jpg,1,1\ny.jpg,1,0\nz.jpg,0,1\n")
    out = tmp_path / "out"
    argv = ["--format", "csv", "--path", str(csv_path), "--out", str(out)]
    assert _run_cli([*argv, "--threshold", "0.6", "--reweight", "0.1"]) == 0
    report = json.loads((out / "stats.json").read_text())
    assert report["adjacency"]["threshold"] == 0.6
    np.testing.assert_allclose(report["adjacency"]["matrix"], np.eye(2))
    assert _run_cli([*argv, "--threshold", "0.5", "--reweight", "0.1"]) == 0
    report = json.loads((out / "stats.json").read_text())
    np.testing.assert_allclose(report["adjacency"]["matrix"], [[0.9, 0.1], [0.1, 0.9]], atol=1e-6)


def test_cli_reports_dataset_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        _run_cli(["--format", "voc", "--path", str(tmp_path / "missing")])
    with pytest.raises(ConfigError, match="threshold"):
        csv_path = tmp_path / "l.csv"
        csv_path.write_text("filename,a\nx.jpg,1\n")
        _run_cli(["--format", "csv", "--path", str(csv_path), "--threshold", "2"])


@pytest.mark.skipif(not TACO.is_file(), reason="TACO annotations not available here")
@pytest.mark.parametrize(("level", "num_classes"), [("category", 60), ("supercategory", 28)])
def test_cli_on_real_taco(tmp_path, capsys, level, num_classes):
    out = tmp_path / level
    argv = ["--format", "coco", "--path", str(TACO), "--level", level, "--out", str(out)]
    assert _run_cli(argv) == 0
    printed = capsys.readouterr().out
    assert "images: 1500" in printed and f"{num_classes} classes" in printed
    report = json.loads((out / "stats.json").read_text())
    assert len(report["labels"]["names"]) == num_classes
    assert report["statistics"]["num_images"] == 1500
    matrix = np.array(report["adjacency"]["matrix"])
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-5)
    assert cv2.imread(str(out / "cooccurrence.png")) is not None
