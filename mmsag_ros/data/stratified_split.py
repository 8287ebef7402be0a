"""Seeded, label-stratified train/validation split of a multi-label dataset.

Checkpoint selection and threshold calibration need a validation split carved out of the
training data (never the test split). A random split can leave a rare class with no validation
positive at all; iterative stratification (Sechidis, Tsoumakas and Vlahavas, 2011) hands out the
images of the rarest remaining class first, each to the part that still needs the most of that
class, so every class keeps roughly its share in both parts.
"""

from __future__ import annotations

import numpy as np

from mmsag_ros.data.dataset import AnnotatedSplit
from mmsag_ros.errors import ConfigError, DatasetError

__all__ = ["split_validation", "stratified_indices"]

_TRAIN, _VAL = 0, 1


def _pick(need: np.ndarray, tie_break: np.ndarray, rng: np.random.Generator) -> int:
    """Index of the largest ``need``, ties broken by ``tie_break``, then at random."""
    best = np.flatnonzero(need == need.max())
    if best.size > 1:
        best = best[tie_break[best] == tie_break[best].max()]
    return int(best[0] if best.size == 1 else rng.choice(best))


def stratified_indices(
    targets: np.ndarray, *, fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices of an N x C target array into train and validation parts.

    Only entries equal to 1 count as positives (0 and -1 = ignore do not).

    Args:
        targets: N x C targets (1 positive, 0 negative, -1 ignore).
        fraction: Share of the rows for validation, in (0, 1).
        seed: Seed of the tie-breaking and ordering randomness; same seed, same split.

    Returns:
        Sorted train indices and sorted validation indices; disjoint, together all N rows.
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"validation fraction must be in (0, 1), got {fraction}")
    positives = np.asarray(targets) == 1
    if positives.ndim != 2:
        raise DatasetError(f"targets must be an N x C array, got shape {positives.shape}")
    num_rows = positives.shape[0]
    if num_rows < 2:
        raise DatasetError(f"cannot split {num_rows} image(s) into train and validation parts")
    num_val = min(max(round(fraction * num_rows), 1), num_rows - 1)
    share = np.array([num_rows - num_val, num_val], np.float64) / num_rows
    rng = np.random.default_rng(seed)

    need_total = share * num_rows
    need_label = np.outer(share, positives.sum(axis=0)).astype(np.float64)  # 2 x C
    left_per_label = positives.sum(axis=0)
    part = np.full(num_rows, -1, np.int64)

    def assign(row: int, to: int) -> None:
        part[row] = to
        need_total[to] -= 1
        need_label[to, positives[row]] -= 1
        left_per_label[positives[row]] -= 1

    while (left_per_label > 0).any():
        active = np.flatnonzero(left_per_label > 0)
        rarest = active[left_per_label[active] == left_per_label[active].min()]
        label = int(rng.choice(rarest))
        rows = np.flatnonzero((part < 0) & positives[:, label])
        for row in rng.permutation(rows):
            assign(int(row), _pick(need_label[:, label], need_total, rng))
    # Images with no positive label only balance the sizes.
    for row in rng.permutation(np.flatnonzero(part < 0)):
        assign(int(row), _pick(need_total, need_total, rng))
    return np.flatnonzero(part == _TRAIN), np.flatnonzero(part == _VAL)


def split_validation(
    split: AnnotatedSplit, *, fraction: float = 0.2, seed: int = 0
) -> tuple[AnnotatedSplit, AnnotatedSplit]:
    """Carve a label-stratified validation part out of ``split``.

    Args:
        split: The annotated training data.
        fraction: Share of the images for validation, in (0, 1).
        seed: Same seed, same split (on every rank and every rerun).

    Returns:
        ``(train, val)``, named ``<name>-train`` and ``<name>-val``, samples in their original
        order; disjoint and together exactly the input's samples.

    Raises:
        ConfigError: ``fraction`` outside (0, 1).
        DatasetError: Fewer than two images.
    """
    train_rows, val_rows = stratified_indices(split.targets(), fraction=fraction, seed=seed)
    return (
        split.subset(train_rows.tolist(), name=f"{split.name}-train"),
        split.subset(val_rows.tolist(), name=f"{split.name}-val"),
    )
