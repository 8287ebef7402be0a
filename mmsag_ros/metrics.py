"""Multi-label metrics: AP, mAP, CP/CR/CF1/OP/OR/OF1, threshold calibration, a DDP meter.

* ``scores`` is (N, C): one independent score per class, a sigmoid probability or a logit;
  never a softmax across classes, which would make the classes compete.
* ``targets`` is (N, C) with 1 = positive, 0 = negative, -1 = ignore (VOC "difficult"). An
  ignored entry counts for nothing in its class: not a positive, negative or prediction.
* A ratio with a zero denominator (no predictions, no positives) is 0, like scikit-learn's
  ``zero_division=0``. Only AP is NaN for a class without positives (it has no definition
  there); such classes are left out of mAP with a warning.
* A class is predicted when ``score >= threshold``, thresholds in the scores' space.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mmsag_ros.errors import ConfigError, DatasetError

__all__ = [
    "METRIC_KEYS",
    "MetricReport",
    "MultiLabelMeter",
    "average_precision",
    "calibrate_thresholds",
    "label_metrics",
    "mean_average_precision",
    "pr_curve",
    "topk_metrics",
]

_LOGGER = logging.getLogger(__name__)

METRIC_KEYS = ("CP", "CR", "CF1", "OP", "OR", "OF1")


def _check(scores: Any, targets: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate an (N, C) score/target pair; return float64 scores and int8 targets."""
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(targets)
    if s.ndim != 2 or s.shape != t.shape or s.shape[1] == 0:
        raise ConfigError(f"scores and targets need one (N, C>=1) shape, got {s.shape}, {t.shape}")
    if np.isnan(s).any():
        raise ConfigError(f"{int(np.isnan(s).sum())} NaN scores: fix the model output first")
    bad = ~np.isin(t, (-1, 0, 1))
    if bad.any():
        found = np.unique(t[bad])[:5].tolist()
        raise DatasetError(f"targets must be 1, 0 or -1 (ignore), found {found}; re-encode them")
    return s, t.astype(np.int8)


def _thresholds(thresholds: Any, num_classes: int) -> np.ndarray:
    thr = np.asarray(thresholds, dtype=np.float64)
    if thr.ndim == 0:
        thr = np.full(num_classes, float(thr))
    if thr.shape != (num_classes,) or np.isnan(thr).any():
        given = np.asarray(thresholds).tolist()
        raise ConfigError(f"thresholds must be 1 or {num_classes} numbers, no NaN; got {given}")
    return thr


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _f1(precision: float, recall: float) -> float:
    total = precision + recall
    return 2.0 * precision * recall / total if total > 0 else 0.0


def _curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, ...]:
    """Distinct scores (descending), cumulative TP and FP at each; ties are one point."""
    order = np.argsort(-scores, kind="mergesort")
    scores, positive = scores[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    tps = np.cumsum(positive)[last].astype(np.float64)
    return scores[last], tps, last + 1 - tps


def _columns(s: np.ndarray, t: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Each class with a positive: index, its non-ignored scores, which of them are positive."""
    for c in range(s.shape[1]):
        keep = t[:, c] != -1
        if (t[keep, c] == 1).any():
            yield c, s[keep, c], t[keep, c] == 1


def pr_curve(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision-recall points of one class, from the highest threshold down.

    Takes (N,) scores and targets of one class (-1 entries skipped) and returns
    ``(precision, recall)``: scikit-learn's ``precision_recall_curve`` in reverse order and
    without its artificial (precision 1, recall 0) end point. Raises DatasetError
    when the class has no positive sample (recall is undefined).
    """
    columns = list(_columns(*_check(np.reshape(scores, (-1, 1)), np.reshape(targets, (-1, 1)))))
    if not columns:
        raise DatasetError("a precision-recall curve needs at least one positive sample")
    _, tps, fps = _curve(*columns[0][1:])
    return tps / (tps + fps), tps / tps[-1]


def average_precision(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-class average precision: the step-wise area under the precision-recall curve.

    AP = sum over distinct thresholds of (R_n - R_{n-1}) * P_n, without interpolation, exactly
    as scikit-learn's ``average_precision_score``; tied scores form one operating point.
    Monotonic transforms of the scores (sigmoid vs logit) leave AP unchanged. -1 targets are
    skipped for their class. Returns (C,) AP in [0, 1], NaN for a class without positives.
    """
    s, t = _check(scores, targets)
    ap = np.full(s.shape[1], np.nan)
    for c, class_scores, positive in _columns(s, t):
        _, tps, fps = _curve(class_scores, positive)
        recall_steps = np.diff(tps / tps[-1], prepend=0.0)
        ap[c] = float(np.sum(recall_steps * tps / (tps + fps)))
    return ap


def _mean_ap(ap: np.ndarray) -> float:
    missing = np.flatnonzero(np.isnan(ap))
    if missing.size:
        _LOGGER.warning("mAP leaves out classes without positive samples: %s", missing.tolist())
    return math.nan if missing.size == ap.size else float(np.nanmean(ap))


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Mean of :func:`average_precision` over the classes that have positives (NaN if none)."""
    return _mean_ap(average_precision(scores, targets))


def _prf(predicted: np.ndarray, t: np.ndarray) -> dict[str, float]:
    """CP/CR/CF1 (per class, then averaged) and OP/OR/OF1 (pooled) of boolean predictions."""
    positive = t == 1
    tp = (predicted & positive).sum(axis=0)
    num_predicted = (predicted & (t != -1)).sum(axis=0)
    num_positive = positive.sum(axis=0)
    cp = float(_divide(tp, num_predicted).mean())
    cr = float(_divide(tp, num_positive).mean())
    op = float(_divide(tp.sum(), num_predicted.sum()))
    o_r = float(_divide(tp.sum(), num_positive.sum()))
    # CF1 from the averaged CP and CR (ML-GCN), not the mean of per-class F1.
    return {"CP": cp, "CR": cr, "CF1": _f1(cp, cr), "OP": op, "OR": o_r, "OF1": _f1(op, o_r)}


def label_metrics(
    scores: np.ndarray, targets: np.ndarray, thresholds: float | np.ndarray = 0.5
) -> dict[str, float]:
    """CP, CR, CF1, OP, OR, OF1 when class c is predicted where ``score >= thresholds[c]``.

    CP and CR average the per-class precision and recall over all C classes (scikit-learn's
    ``average="macro"``), CF1 = 2 CP CR / (CP + CR) as in ML-GCN; OP, OR and OF1 pool every
    (sample, class) decision (``average="micro"``). Zero denominators give 0; -1 entries are
    skipped. ``thresholds`` is one number for all classes or (C,) numbers, in the scores'
    space. Returns fractions in [0, 1] under the keys of :data:`METRIC_KEYS`.
    """
    s, t = _check(scores, targets)
    return _prf(s >= _thresholds(thresholds, s.shape[1]), t)


def topk_metrics(scores: np.ndarray, targets: np.ndarray, k: int = 3) -> dict[str, float]:
    """The :func:`label_metrics` family when every image predicts exactly its top-k classes.

    Ties are broken towards the lower class index. Raises ConfigError unless 1 <= k <= C.
    """
    s, t = _check(scores, targets)
    if not 1 <= k <= s.shape[1]:
        raise ConfigError(f"k must be between 1 and the number of classes {s.shape[1]}, got {k}")
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    predicted = np.zeros(s.shape, dtype=bool)
    np.put_along_axis(predicted, top, True, axis=1)
    return _prf(predicted, t)


def calibrate_thresholds(
    scores: np.ndarray,
    targets: np.ndarray,
    *,
    grid: np.ndarray | None = None,
    default: float = 0.5,
) -> np.ndarray:
    """Per-class thresholds that maximise each class's F1 on the given data.

    Run this on a *validation* split and store the result with the model; never calibrate on
    the test split, whose scores would then overstate what the robot achieves.

    Args:
        scores: (N, C) validation scores.
        targets: (N, C) validation targets in {1, 0, -1}; -1 entries are skipped.
        grid: Candidate thresholds for all classes. None finds the exact optimum over the
            distinct scores and returns the midpoint to the next lower score (same decisions on
            this data, widest margin). Ties go to the highest threshold.
        default: Threshold for classes without positives (0.0 suits logits).
    """
    s, t = _check(scores, targets)
    candidates = None if grid is None else np.asarray(grid, dtype=np.float64)
    if candidates is not None:
        if candidates.ndim != 1 or candidates.size == 0 or np.isnan(candidates).any():
            raise ConfigError(f"grid must be a non-empty 1-D list without NaN, got {grid!r}")
        candidates = np.unique(candidates)[::-1]
    thresholds = np.full(s.shape[1], float(default))
    for c, class_scores, positive in _columns(s, t):
        num_positive = int(positive.sum())
        if candidates is None:
            levels, tps, fps = _curve(class_scores, positive)
            best = int(np.argmax(2 * tps / (tps + fps + num_positive)))
            low = levels[best + 1] if best + 1 < levels.size else levels[best]
            mid = 0.5 * (levels[best] + low)
            # Rounding (adjacent floats) or -inf can put the midpoint onto the lower level.
            thresholds[c] = mid if np.isfinite(mid) and mid > low else levels[best]
        else:
            pos_sorted = np.sort(class_scores[positive])
            neg_sorted = np.sort(class_scores[~positive])
            tp = num_positive - np.searchsorted(pos_sorted, candidates, side="left")
            fp = neg_sorted.size - np.searchsorted(neg_sorted, candidates, side="left")
            thresholds[c] = candidates[int(np.argmax(2 * tp / (tp + fp + num_positive)))]
    return thresholds


@dataclass(frozen=True)
class MetricReport:
    """Everything one evaluation pass measured.

    Attributes:
        map: Mean AP over the classes with positives (NaN when none has).
        ap: Per-class AP in label order (NaN for classes without positives).
        thresholds: The per-class thresholds ``at_threshold`` was measured at.
        at_threshold: :func:`label_metrics` at ``thresholds``.
        at_half: :func:`label_metrics` at 0.5.
        top3: :func:`topk_metrics` with k = min(3, C).
        num_samples: Distinct samples scored.
    """

    map: float
    ap: tuple[float, ...]
    thresholds: tuple[float, ...]
    at_threshold: dict[str, float]
    at_half: dict[str, float]
    top3: dict[str, float]
    num_samples: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready plain data (lists, dicts, floats); NaN becomes None."""
        return _plain(asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, float):
        return None if math.isnan(value) else value
    return value


def _to_numpy(value: Any) -> np.ndarray:
    """A numpy view of a numpy array, sequence or torch tensor (any device or float dtype)."""
    if hasattr(value, "detach"):
        value = value.detach()
        if value.is_floating_point() and value.element_size() < 4:
            value = value.float()  # numpy has no bfloat16; float64 stays float64
        return value.cpu().numpy()
    return np.asarray(value)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # exp of -|x| only: no overflow, and very negative logits keep distinct tiny values.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


class MultiLabelMeter:
    """Accumulates scores and targets over an evaluation pass and computes a MetricReport.

    Under DDP each rank updates with its own batches and their dataset sample indices;
    :meth:`all_reduce` gathers all ranks' samples and drops the repeats ``DistributedSampler``
    pads the last batch with, so results equal a single-process run. Repeated indices are
    dropped on one process too (the first is kept).

    ``num_classes`` (C) defaults to the first batch's; ``from_logits`` applies a sigmoid to
    incoming scores, so thresholds (0.5) are probabilities.
    """

    def __init__(self, num_classes: int | None = None, *, from_logits: bool = False) -> None:
        if num_classes is not None and num_classes < 1:
            raise ConfigError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = num_classes
        self.from_logits = from_logits
        self.reset()

    def reset(self) -> None:
        """Forget every sample (call at the start of each evaluation pass)."""
        self._scores: list[np.ndarray] = []
        self._targets: list[np.ndarray] = []
        self._indices: list[np.ndarray] | None = None

    def update(self, scores: Any, targets: Any, indices: Any = None) -> None:
        """Add a batch: (B, C) scores (logits if ``from_logits``), (B, C) targets in {1, 0, -1}.

        ``indices``, the (B,) dataset sample indices, make results exact under DDP; give them
        on every update or on none.
        """
        s, t = _check(_to_numpy(scores), _to_numpy(targets))
        if s.shape[1] != (self.num_classes or s.shape[1]):
            raise ConfigError(f"scores {s.shape} do not fit the meter's {self.num_classes} classes")
        if self._scores and (indices is None) != (self._indices is None):
            raise ConfigError("give sample indices on every update() or on none of them")
        if indices is not None:
            idx = _to_numpy(indices).astype(np.int64).reshape(-1)
            if idx.size != s.shape[0]:
                raise ConfigError(f"{idx.size} sample indices for a batch of {s.shape[0]}")
            self._indices = self._indices or []
            self._indices.append(idx)
        self.num_classes = s.shape[1]
        self._scores.append(_sigmoid(s) if self.from_logits else s)
        self._targets.append(t)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """All samples so far, deduplicated by sample index and sorted by it when known."""
        if not self._scores:
            c = self.num_classes or 0
            return np.empty((0, c)), np.empty((0, c), np.int8), None
        s, t = np.concatenate(self._scores), np.concatenate(self._targets)
        if self._indices is None:
            return s, t, None
        idx, first = np.unique(np.concatenate(self._indices), return_index=True)
        return s[first], t[first], idx

    @property
    def num_samples(self) -> int:
        """Distinct samples held (on this rank until :meth:`all_reduce`)."""
        return int(self._arrays()[0].shape[0])

    @property
    def scores(self) -> np.ndarray:
        """(N, C) scores held, one row per distinct sample, in sample order when indexed."""
        return self._arrays()[0]

    @property
    def targets(self) -> np.ndarray:
        """(N, C) targets in the row order of :attr:`scores`."""
        return self._arrays()[1]

    def all_reduce(self) -> None:
        """Gather every rank's samples onto every rank; a no-op unless torch.distributed runs.

        A collective: call it on all ranks. Ranks may hold different numbers of samples.
        Without sample indices the padded repeats cannot be found, and a warning says so.
        """
        import torch.distributed as dist  # lazy: the metrics must not need torch

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        local = self._arrays()
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, local)
        parts = [p for p in gathered if p[0].shape[0] > 0]
        kinds = {p[2] is None for p in parts}
        widths = {p[0].shape[1] for p in parts} | ({self.num_classes} - {None})
        if len(kinds) > 1 or len(widths) > 1:
            raise ConfigError(
                f"ranks must agree on the class count (got {sorted(widths)}) and all give sample "
                f"indices or none ({'mixed' if len(kinds) > 1 else 'agreed'})"
            )
        if kinds == {True}:
            _LOGGER.warning("no sample indices: samples padded by DistributedSampler count twice")
        self.reset()
        self.num_classes = widths.pop() if widths else None
        if parts:
            self._scores = [p[0] for p in parts]
            self._targets = [p[1] for p in parts]
            self._indices = None if kinds == {True} else [p[2] for p in parts]

    def compute(self, thresholds: float | np.ndarray | None = None) -> MetricReport:
        """Metrics over the samples held; ``thresholds`` (default 0.5) feed ``at_threshold``."""
        s, t, _ = self._arrays()
        if s.shape[0] == 0:
            raise DatasetError("no samples to score: empty evaluation set or no update() call")
        ap = average_precision(s, t)
        thr = _thresholds(0.5 if thresholds is None else thresholds, s.shape[1])
        return MetricReport(
            map=_mean_ap(ap),
            ap=tuple(float(v) for v in ap),
            thresholds=tuple(float(v) for v in thr),
            at_threshold=_prf(s >= thr, t),
            at_half=_prf(s >= 0.5, t),
            top3=topk_metrics(s, t, k=min(3, s.shape[1])),
            num_samples=int(s.shape[0]),
        )
