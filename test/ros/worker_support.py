"""Helpers for driving the sorter's worker deterministically in-process (not collected)."""

from __future__ import annotations

import threading
import time

import numpy as np

from mmsag_ros.ros.conversions import array_to_image
from mmsag_ros.ros.diagnostics import SorterStats, StatsSnapshot
from mmsag_ros.ros.worker import Frame
from mmsag_ros.runtime.classifier import Classifier, Prediction

WAIT_S = 60.0  # generous: only reached when something is broken


class GatedClassifier:
    """A real Classifier whose batches can be held at a gate or made to raise."""

    def __init__(self, classifier: Classifier) -> None:
        self.inner = classifier
        self.gate = threading.Event()
        self.gate.set()
        self.reached = threading.Event()
        self.fail_with: Exception | None = None
        self.closed = threading.Event()

    def classify_each(self, images, color_orders):
        self.reached.set()
        assert self.gate.wait(WAIT_S), "the test never opened the gate"
        if self.fail_with is not None:
            raise self.fail_with
        return self.inner.classify_each(images, color_orders=color_orders)

    def set_thresholds(self, thresholds) -> None:
        self.inner.set_thresholds(thresholds)

    def close(self) -> None:
        self.closed.set()
        self.inner.close()


class Publisher:
    """The publish callback: records labels, can raise for chosen frame ids."""

    def __init__(self) -> None:
        self.labels: dict[str, Prediction] = {}
        self.fail_ids: set[str] = set()

    def __call__(self, frame: Frame, prediction: Prediction) -> float:
        if frame.msg.header.frame_id in self.fail_ids:
            raise RuntimeError("the labels publisher is not active")
        self.labels[frame.msg.header.frame_id] = prediction
        return 1.0


def frame_pixels(index: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    """The rgb8 pixels of frame ``index``, ``size`` = (width, height)."""
    return np.random.default_rng(index).integers(0, 256, (size[1], size[0], 3), np.uint8)


def frame_msg(index: int, size: tuple[int, int] = (64, 48)):
    msg = array_to_image(frame_pixels(index, size), "rgb8")
    msg.header.frame_id = f"cam/{index}"
    return msg


def balanced(s: StatsSnapshot) -> bool:
    """Every frame received is published, dropped, rejected, failed or still in flight."""
    return s.received == s.published + s.dropped + s.rejected + s.failed + s.in_flight


def settled(stats: SorterStats) -> StatsSnapshot:
    """Wait until nothing is in flight; returns that snapshot."""
    deadline = time.monotonic() + WAIT_S
    snapshot = stats.snapshot(stale_after_s=1.0)
    while snapshot.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)  # polling a condition, not waiting for one to come true by itself
        snapshot = stats.snapshot(stale_after_s=1.0)
    assert snapshot.in_flight == 0, snapshot
    return snapshot
