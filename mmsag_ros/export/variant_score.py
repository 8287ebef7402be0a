"""Judging a reduced-precision variant against fp32, and the record of how it scored.

Each variant is scored with ONNX Runtime against fp32 on the validation split (never the test
split): mAP difference, how often the per-class decisions agree at the bundle's thresholds,
and the largest score difference (:class:`VariantScore`). A variant is accepted within its bar
(:data:`~mmsag_ros.export.settings.DEFAULT_BARS`, in mAP points) and otherwise refused with
those numbers. Reading a record back (:func:`describe_accuracy`) loads neither OpenCV, torch
nor ONNX Runtime.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmsag_ros.bundle.schema import PRECISIONS
from mmsag_ros.errors import ConfigError, DatasetError
from mmsag_ros.metrics import mean_average_precision
from mmsag_ros.progress import progress_bar

if TYPE_CHECKING:
    from mmsag_ros.bundle.preprocess import PreprocessSpec
    from mmsag_ros.data.dataset import AnnotatedSplit

__all__ = [
    "ACCURACY_RECORDS",
    "VariantScore",
    "check_validation_split",
    "describe_accuracy",
    "onnx_scores",
    "score_variant",
    "scored_forms",
]


def check_validation_split(split: AnnotatedSplit) -> None:
    """DatasetError unless ``split`` can judge a variant (images with positive labels)."""
    if len(split) == 0 or not (split.targets() == 1).any():
        raise DatasetError(
            f"validation split {split.name!r} has no positive labels, so a variant and fp32 "
            "cannot be compared; validate on a split with positives"
        )


@dataclass(frozen=True)
class VariantScore:
    """How a reduced-precision variant scored against fp32 on the validation split.

    Attributes:
        precision: ``fp16`` or ``int8``.
        fp32_map: mAP of the fp32 model, in [0, 1].
        variant_map: mAP of the variant on the same images.
        map_drop_points: ``100 * (fp32_map - variant_map)``; negative when the variant scored
            higher.
        decision_agreement: Fraction of (image, class) decisions, at the bundle's thresholds,
            that equal fp32's.
        max_score_diff: Largest |variant score - fp32 score| over all images and classes.
        bar_points: The accepted drop, in mAP points.
        split: Name of the validation split.
        images: Images scored.
    """

    precision: str
    fp32_map: float
    variant_map: float
    map_drop_points: float
    decision_agreement: float
    max_score_diff: float
    bar_points: float
    split: str
    images: int

    @property
    def accepted(self) -> bool:
        """Whether the mAP drop is within the bar."""
        # The epsilon keeps a drop of exactly the bar (0.80 -> 0.79) on the accepted side.
        return self.map_drop_points <= self.bar_points + 1e-9

    def summary(self) -> str:
        """One line with every number, for logs, the export table and refusals."""
        sign = "<=" if self.accepted else ">"
        return (
            f"mAP {100 * self.variant_map:.2f} vs fp32 {100 * self.fp32_map:.2f} (drop "
            f"{self.map_drop_points:.2f} {sign} {self.bar_points:.2f} points), decisions agree "
            f"{100 * self.decision_agreement:.2f}%, max score diff {self.max_score_diff:.4f} "
            f"on {self.images} images of {self.split!r}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``accuracy`` record."""
        return asdict(self)


#: A variant's accuracy records in its manifest entry, by how its file was run for each. The
#: int8 file is also scored as written, its Q/DQ computed literally: the arithmetic TensorRT
#: runs, which the CPU session's rewrites (:mod:`mmsag_ros.onnx_session`) refine.
ACCURACY_RECORDS = {"accuracy": "CPU session", "accuracy_as_written": "as written (TensorRT)"}


def scored_forms(precision: str) -> dict[str, bool]:
    """The accuracy records a ``precision`` variant gets, each with its ``as_written`` flag."""
    return (
        {"accuracy": False, "accuracy_as_written": True}
        if precision == "int8"
        else {"accuracy": False}
    )


def describe_accuracy(entry: Mapping[str, Any]) -> str:
    """A variant's manifest accuracy records on one line (a label on each when there are two)."""
    present = [key for key in ACCURACY_RECORDS if key in entry]
    return "; ".join(
        VariantScore(**entry[key]).summary()
        if len(present) == 1
        else f"{ACCURACY_RECORDS[key]}: {VariantScore(**entry[key]).summary()}"
        for key in present
    )


def score_variant(
    precision: str,
    fp32_scores: np.ndarray,
    variant_scores: np.ndarray,
    split: AnnotatedSplit,
    thresholds: np.ndarray,
    *,
    bar_points: float,
) -> VariantScore:
    """Compare a variant's validation scores with fp32's (see :class:`VariantScore`).

    Raises:
        ConfigError: An unknown precision, a negative bar, or score arrays of other shapes.
        DatasetError: The split has no positive labels.
    """
    if precision not in PRECISIONS[1:]:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS[1:])}: {precision!r}")
    if not (math.isfinite(bar_points) and bar_points >= 0):
        raise ConfigError(f"the {precision} bar must be >= 0 mAP points, got {bar_points}")
    if fp32_scores.shape != variant_scores.shape or fp32_scores.shape[0] != len(split):
        raise ConfigError(
            f"score shapes {fp32_scores.shape} and {variant_scores.shape} do not match the "
            f"{len(split)} images of {split.name!r}"
        )
    check_validation_split(split)
    limits = np.asarray(thresholds, dtype=np.float64)
    if limits.shape != (fp32_scores.shape[1],):
        raise ConfigError(
            f"{limits.size} thresholds for {fp32_scores.shape[1]} classes; give one per class"
        )
    targets = split.targets()
    fp32_map = mean_average_precision(fp32_scores, targets)
    variant_map = mean_average_precision(variant_scores, targets)
    agree = (fp32_scores >= limits) == (variant_scores >= limits)
    return VariantScore(
        precision=precision,
        fp32_map=float(fp32_map),
        variant_map=float(variant_map),
        map_drop_points=float(100.0 * (fp32_map - variant_map)),
        decision_agreement=float(agree.mean()),
        max_score_diff=float(np.abs(variant_scores - fp32_scores).max()),
        bar_points=float(bar_points),
        split=split.name,
        images=len(split),
    )


def onnx_scores(
    onnx_path: Path,
    split: AnnotatedSplit,
    spec: PreprocessSpec,
    *,
    precision: str = "fp32",
    as_written: bool = False,
    input_name: str = "images",
    batch_size: int = 8,
    progress: bool = False,
) -> np.ndarray:
    """Sigmoid scores (N x C) of an ONNX variant over ``split``, preprocessed as at inference.

    The session is opened as the node opens it (:func:`mmsag_ros.onnx_session.open_session`),
    or with ``as_written`` as TensorRT computes the file.
    """
    # Here, not at the top: formatting a score must not load OpenCV, torch or ONNX Runtime.
    from mmsag_ros.data.dataset import MultiLabelImageDataset
    from mmsag_ros.data.transforms import EvalTransform
    from mmsag_ros.onnx_session import open_session

    session = open_session(onnx_path, precision=precision, as_written=as_written)
    dataset = MultiLabelImageDataset(split, EvalTransform(spec))
    logits = []
    starts = range(0, len(dataset), batch_size)
    desc = f"score {precision}{' as written' if as_written else ''}"
    for start in progress_bar(starts, desc=desc, unit="batch", enabled=progress):
        batch = np.stack([dataset[i][0] for i in range(start, min(start + batch_size, len(split)))])
        logits.append(session.run(["logits"], {input_name: batch})[0])
    stacked = np.concatenate(logits).astype(np.float64)
    return 1.0 / (1.0 + np.exp(-stacked))
