"""Drift watch: does the belt still look like what the model was exported with?

Over a sliding window of the last ``window`` labelled frames, each class's positive rate and
mean score are compared with the validation statistics the bundle records
(:class:`~mmsag_ros.bundle.drift_reference.Reference`), and the frames' brightness and contrast with
the training images'. A ratio beyond ``factor`` (or below ``1 / factor``) is a finding.

Rates near zero would make ratios meaningless (0.5 % against 0.1 % is "5x"), so rates and
scores are compared with :data:`RATE_FLOOR` added to both sides: a class never decided in
validation is flagged once it is decided in about ``factor x RATE_FLOOR`` of the frames.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmsag_ros.bundle.drift_reference import Reference, frame_brightness_contrast
from mmsag_ros.errors import ConfigError

__all__ = ["RATE_FLOOR", "DriftFinding", "DriftReport", "DriftWatch", "check_drift_options"]

RATE_FLOOR = 0.05
MIN_WINDOW = 10


def check_drift_options(window: int, factor: float) -> None:
    """ConfigError unless ``window`` >= MIN_WINDOW and ``factor`` is 0 (off) or above 1."""
    if window < MIN_WINDOW:
        raise ConfigError(f"drift_window must be at least {MIN_WINDOW} frames, got {window}")
    if not (factor == 0.0 or factor > 1.0) or not np.isfinite(factor):
        raise ConfigError(f"drift_factor must be 0 (off) or above 1, got {factor}")


@dataclass(frozen=True)
class DriftFinding:
    """One statistic that moved: ``what`` is ``ratio`` times its reference."""

    what: str
    ratio: float
    now: float
    reference: float
    reference_of: str  # "validation" or "training"

    def __str__(self) -> str:
        return (
            f"{self.what} {self.ratio:.2f}x {self.reference_of} "
            f"({self.now:.3g} vs {self.reference:.3g})"
        )


@dataclass(frozen=True)
class DriftReport:
    """The window's verdict: how full it is and what moved beyond the factor (worst first)."""

    frames: int
    window: int
    findings: tuple[DriftFinding, ...] = ()

    @property
    def full(self) -> bool:
        """Whether the window holds ``window`` frames (only then are findings reported)."""
        return self.frames >= self.window

    def describe(self) -> str:
        """One line for diagnostics: the findings, or "" when nothing moved."""
        return "; ".join(str(f) for f in self.findings)


class DriftWatch:
    """The sliding window of one model's frames against that model's reference.

    ``add`` is called from the inference thread, ``report`` from the diagnostics timer.

    Args:
        reference: The bundle's reference statistics.
        names: Class display names, in model order.
        model_id: The model whose labels count (frames of another one, e.g. during a swap,
            are left out).
        window: Frames in the sliding window.
        factor: Ratio beyond which a statistic is reported; must be above 1.
    """

    def __init__(
        self,
        reference: Reference,
        names: Sequence[str],
        *,
        model_id: str,
        window: int = 300,
        factor: float = 2.0,
    ) -> None:
        check_drift_options(window, factor)
        if factor == 0.0:
            raise ConfigError("a DriftWatch needs a factor above 1 (0 turns the watch off)")
        self.reference = reference
        self.names = tuple(names)
        self.model_id = model_id
        self.window = window
        self.factor = factor
        self._lock = threading.Lock()
        self._decisions: deque[np.ndarray] = deque(maxlen=window)
        self._scores: deque[np.ndarray] = deque(maxlen=window)
        self._inputs: deque[tuple[float, float]] = deque(maxlen=window)

    def add(
        self, image: np.ndarray, color_order: str, scores: np.ndarray, decisions: np.ndarray
    ) -> None:
        """Count one labelled frame (its pixels, scores and decisions)."""
        measured = frame_brightness_contrast(image, color_order)
        with self._lock:
            self._decisions.append(np.asarray(decisions, bool))
            self._scores.append(np.asarray(scores, np.float64))
            self._inputs.append(measured)

    def _finding(
        self, what: str, now: float, reference: float, of: str, floor: float
    ) -> DriftFinding | None:
        ratio = (now + floor) / (reference + floor) if reference + floor > 0 else 1.0
        if ratio > self.factor or ratio < 1.0 / self.factor:
            return DriftFinding(what, ratio, now, reference, of)
        return None

    def report(self) -> DriftReport:
        """The window's findings, worst first; none until the window is full."""
        with self._lock:
            frames = len(self._inputs)
            if frames < self.window:
                return DriftReport(frames, self.window)
            rates = np.stack(self._decisions).mean(axis=0)
            scores = np.stack(self._scores).mean(axis=0)
            brightness, contrast = np.mean(self._inputs, axis=0)
        ref = self.reference
        candidates = [
            self._finding(f"{name} positive rate", rate, ref_rate, "validation", RATE_FLOOR)
            for name, rate, ref_rate in zip(self.names, rates, ref.positive_rate, strict=True)
        ]
        candidates += [
            self._finding(f"{name} mean score", score, ref_score, "validation", RATE_FLOOR)
            for name, score, ref_score in zip(self.names, scores, ref.mean_score, strict=True)
        ]
        candidates.append(self._finding("brightness", brightness, ref.brightness, "training", 1.0))
        candidates.append(self._finding("contrast", contrast, ref.contrast, "training", 1.0))
        findings = sorted(
            (f for f in candidates if f is not None), key=lambda f: -max(f.ratio, 1 / f.ratio)
        )
        return DriftReport(frames, self.window, tuple(findings))
