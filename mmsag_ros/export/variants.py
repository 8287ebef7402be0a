"""Each reduced-precision variant of a bundle: made, judged against fp32, kept or refused.

A variant is made (:mod:`~mmsag_ros.export.precision`) and judged on the validation split
(:mod:`~mmsag_ros.export.variant_score`) one attempt after another, from the fastest form to
the most precise, until one is within its bar. Its manifest entry records every attempt's
conversion and scores; a refused variant's file is deleted and its entry keeps the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmsag_ros.bundle.files import sha256_file
from mmsag_ros.bundle.preprocess import PreprocessSpec
from mmsag_ros.data.dataset import AnnotatedSplit
from mmsag_ros.export.precision import convert_fp16, quantize_int8
from mmsag_ros.export.variant_score import (
    VariantScore,
    describe_accuracy,
    onnx_scores,
    score_variant,
    scored_forms,
)

__all__ = ["VariantJudge", "reduced_variant"]

_log = logging.getLogger(__name__)


def _attempts(precision: str, int8_head: bool) -> list[dict[str, bool]]:
    """The conversions to try, in order; the first within the bar is kept.

    int8 goes from fastest to most precise: everything in int8 (on the demo's
    EfficientNet-Lite0 the int8 head is what takes the CPU speed-up from about 1.5x to 2x),
    then the head in fp32, then also the stem and the last convolution in fp32 (on one demo
    model those two cost 4 mAP points in int8).
    """
    if precision != "int8":
        return [{}]
    ladder = [{"head": False, "ends_fp32": False}, {"head": False, "ends_fp32": True}]
    return [{"head": True, "ends_fp32": False}, *ladder] if int8_head else ladder


@dataclass(frozen=True)
class VariantJudge:
    """What every reduced variant of one export is judged by: fp32's scores on validation."""

    validation: AnnotatedSplit
    fp32_scores: np.ndarray
    spec: PreprocessSpec
    thresholds: np.ndarray
    progress: bool = False

    def scores(self, precision: str, path: Path, bar_points: float) -> dict[str, VariantScore]:
        """Each accuracy record of the variant at ``path`` (:func:`scored_forms`) against fp32."""
        return {
            record: score_variant(
                precision,
                self.fp32_scores,
                onnx_scores(
                    path,
                    self.validation,
                    self.spec,
                    precision=precision,
                    as_written=as_written,
                    progress=self.progress,
                ),
                self.validation,
                self.thresholds,
                bar_points=bar_points,
            )
            for record, as_written in scored_forms(precision).items()
        }


def _attempt_name(precision: str, attempt: dict[str, bool]) -> str:
    if precision != "int8":
        return precision
    if attempt["ends_fp32"]:
        return "int8 (head, stem, last conv fp32)"
    return "int8 (head int8)" if attempt["head"] else "int8 (head fp32)"


def reduced_variant(
    precision: str,
    fp32_path: Path,
    path: Path,
    *,
    judge: VariantJudge,
    bar_points: float,
    calibration: Callable[[], np.ndarray],
    calib_method: str,
    int8_head: bool,
    step: Callable[[str], AbstractContextManager[None]],
) -> dict[str, Any]:
    """Make the ``precision`` variant of ``fp32_path`` at ``path``; its manifest entry.

    Kept when ``judge`` finds it within ``bar_points`` of fp32. ``calibration`` gives the int8
    calibration images (loaded on first use); ``step(name)`` times and logs each stage.
    """
    tried: list[dict[str, Any]] = []
    for attempt in _attempts(precision, int8_head):
        name = _attempt_name(precision, attempt)
        with step(f"{name} variant"):
            if precision == "fp16":
                conversion = convert_fp16(fp32_path, path)
            else:
                conversion = quantize_int8(
                    fp32_path, path, calibration=calibration(), method=calib_method, **attempt
                )
        with step(f"score {name} on validation"):
            scores = judge.scores(precision, path, bar_points)
        attempt_entry = {
            "conversion": conversion,
            **{record: score.to_dict() for record, score in scores.items()},
        }
        tried.append(attempt_entry)
        accepted = all(score.accepted for score in scores.values())
        if accepted:
            break
        _log.info("%s attempt missed the bar: %s", precision, describe_accuracy(attempt_entry))
    entry: dict[str, Any] = dict(tried[-1])
    if len(tried) > 1:
        entry["attempts"] = tried
    summary = describe_accuracy(entry)
    if accepted:
        _log.info("%s variant accepted: %s", precision, summary)
        return {"file": path.name, "sha256": sha256_file(path), "accepted": True, **entry}
    path.unlink()
    _log.warning("%s variant REFUSED, not kept: %s", precision, summary)
    return {"file": None, "accepted": False, "reason": summary, **entry}
