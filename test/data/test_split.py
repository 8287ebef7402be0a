"""Stratified validation split: disjoint, complete, seeded, class shares kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmsag_ros.bundle.labels import LabelSet
from mmsag_ros.data.dataset import AnnotatedSplit, Sample
from mmsag_ros.data.stratified_split import split_validation, stratified_indices
from mmsag_ros.errors import ConfigError, DatasetError

RATES = (0.5, 0.3, 0.12, 0.05, 0.02, 0.01)


def _targets(num: int = 600, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    targets = (rng.random((num, len(RATES))) < RATES).astype(np.float32)
    # Correlated labels, as in real data: class 4 mostly comes with class 0.
    targets[targets[:, 4] == 1, 0] = 1
    targets[rng.random(targets.shape) < 0.03] = -1  # ignored entries are no positives
    return targets


def _split(targets: np.ndarray) -> AnnotatedSplit:
    labels = LabelSet.from_names([f"c{i}" for i in range(targets.shape[1])])
    samples = tuple(
        Sample(Path(f"/data/img_{i}.jpg"), row.astype(np.float32), f"img_{i}")
        for i, row in enumerate(targets)
    )
    return AnnotatedSplit(labels, samples, "trainval", "/data")


def test_parts_are_disjoint_complete_and_ordered():
    split = _split(_targets())
    train, val = split_validation(split, fraction=0.2, seed=3)
    train_ids = [s.image_id for s in train.samples]
    val_ids = [s.image_id for s in val.samples]
    assert not set(train_ids) & set(val_ids)
    assert sorted(train_ids + val_ids) == sorted(s.image_id for s in split.samples)
    order = {s.image_id: i for i, s in enumerate(split.samples)}
    assert [order[i] for i in val_ids] == sorted(order[i] for i in val_ids)
    assert train.name == "trainval-train" and val.name == "trainval-val"
    assert train.labels == split.labels and val.source == split.source
    assert abs(len(val) - 120) <= 1


def test_same_seed_same_split_other_seed_other_split():
    targets = _targets()
    first = stratified_indices(targets, fraction=0.2, seed=7)
    again = stratified_indices(targets, fraction=0.2, seed=7)
    other = stratified_indices(targets, fraction=0.2, seed=8)
    np.testing.assert_array_equal(first[1], again[1])
    np.testing.assert_array_equal(first[0], again[0])
    assert not np.array_equal(first[1], other[1])


@pytest.mark.parametrize(("fraction", "seed"), [(0.2, 0), (0.1, 1), (0.3, 2), (0.5, 3)])
def test_every_class_keeps_its_share(fraction, seed):
    targets = _targets(seed=seed)
    train_rows, val_rows = stratified_indices(targets, fraction=fraction, seed=seed)
    positives = targets == 1
    for c in range(targets.shape[1]):
        total = positives[:, c].sum()
        in_val = positives[val_rows, c].sum()
        assert abs(in_val - fraction * total) <= 1, (c, total, in_val)
        assert in_val + positives[train_rows, c].sum() == total
    assert abs(len(val_rows) - fraction * len(targets)) <= 1


def test_stratification_beats_a_random_split_on_rare_classes():
    targets = _targets(seed=4)
    positives = targets == 1
    _, val_rows = stratified_indices(targets, fraction=0.2, seed=4)
    rng = np.random.default_rng(4)
    random_val = rng.permutation(len(targets))[: len(val_rows)]

    def error(rows: np.ndarray) -> float:
        return float(np.abs(positives[rows].sum(0) - 0.2 * positives.sum(0)).sum())

    assert error(val_rows) <= 6
    assert error(val_rows) < error(random_val)


def test_rare_class_lands_in_both_parts():
    targets = np.zeros((50, 2), np.float32)
    targets[:5, 1] = 1  # five images of a rare class
    targets[:, 0] = 1
    train_rows, val_rows = stratified_indices(targets, fraction=0.2, seed=0)
    assert targets[val_rows, 1].sum() == 1 and targets[train_rows, 1].sum() == 4
    assert len(val_rows) == 10


def test_images_without_labels_balance_the_sizes():
    targets = np.zeros((40, 3), np.float32)
    targets[:4, 0] = 1
    train_rows, val_rows = stratified_indices(targets, fraction=0.25, seed=1)
    assert len(val_rows) == 10 and len(train_rows) == 30
    assert targets[val_rows, 0].sum() == 1


def test_two_images_split_one_and_one():
    train_rows, val_rows = stratified_indices(np.eye(2, dtype=np.float32), fraction=0.01, seed=0)
    assert len(train_rows) == 1 and len(val_rows) == 1


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1.5])
def test_fraction_must_be_inside_zero_one(fraction):
    with pytest.raises(ConfigError, match=r"validation fraction must be in \(0, 1\)"):
        split_validation(_split(_targets(20)), fraction=fraction)


def test_too_few_images():
    with pytest.raises(DatasetError, match=r"cannot split 1 image"):
        split_validation(_split(_targets(1)))


def test_targets_must_be_a_matrix():
    with pytest.raises(DatasetError, match="N x C"):
        stratified_indices(np.ones(5), fraction=0.2)
