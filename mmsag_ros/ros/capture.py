"""Capture on the robot: the frames worth labelling, with the node's label, in a ring of bags.

:class:`CaptureRules` picks frames: a class whose score lies within ``margin`` of its
threshold, at least ``many_classes`` classes within ``wide_margin`` of theirs, or a random
``sample_rate`` share of all frames (an unbiased view). :class:`FrameCapture` writes each picked
frame and its ``MultiLabel`` into rosbag2 (mcap) bags under one folder, on a thread of its own:
the labelling path only puts two message references on a bounded queue, and a full queue
skips the frame (counted) instead of waiting. Captures are rate-limited; each bag holds up to
``frames_per_bag`` frames, and once a bag is closed the oldest bags are deleted until the folder
is within ``max_bytes`` again (the bag being written is not counted: keep it small).
``mmsag bag export-frames`` turns the bags into a labelling folder.
"""

from __future__ import annotations

import contextlib
import queue
import random
import re
import shutil
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mmsag_ros.errors import ConfigError

__all__ = ["CAPTURE_LABELS_TOPIC", "CaptureRules", "FrameCapture", "bag_bytes"]

CAPTURE_LABELS_TOPIC = "/waste/labels"
_QUEUE_SIZE = 64
# capture_s<sequence>_<UTC time>: the sequence orders the ring (continued from the bags on disk),
# since a robot that boots with a wrong clock would otherwise delete its newest bags first.
_BAG_NAME = re.compile(r"capture_s(\d+)_")
_PRIVATE = 0o750  # frames of a plant's belt are not for every account on the robot
_MULTILABEL_TYPE = "mmsag_ros/msg/MultiLabel"


@dataclass(frozen=True)
class CaptureRules:
    """Which labelled frames are worth a person's time.

    Attributes:
        margin: A frame with a class scored within this of its threshold is captured.
        many_classes: So is one with at least this many classes within ``wide_margin`` of
            their thresholds (0 turns the rule off).
        wide_margin: The margin of the ``many_classes`` rule.
        sample_rate: Share of all frames captured at random, whatever their scores.
    """

    margin: float = 0.05
    many_classes: int = 3
    wide_margin: float = 0.15
    sample_rate: float = 0.01

    def __post_init__(self) -> None:
        for name in ("margin", "wide_margin", "sample_rate"):
            value = getattr(self, name)
            if not (np.isfinite(value) and 0.0 <= value <= 1.0):
                raise ConfigError(f"capture_{name} must lie in [0, 1], got {value}")
        if self.many_classes < 0:
            raise ConfigError(f"capture_many_classes must be >= 0, got {self.many_classes}")

    def reasons(self, scores: np.ndarray, thresholds: np.ndarray, draw: float) -> tuple[str, ...]:
        """Why a frame with these scores is captured (empty: it is not); ``draw`` in [0, 1)."""
        distance = np.abs(np.asarray(scores) - np.asarray(thresholds))
        reasons = []
        if (distance <= self.margin).any():
            reasons.append("near_threshold")
        if self.many_classes and int((distance <= self.wide_margin).sum()) >= self.many_classes:
            reasons.append("many_near_threshold")
        if draw < self.sample_rate:
            reasons.append("random_sample")
        return tuple(reasons)


def bag_bytes(path: Path) -> int:
    """Bytes of a bag folder's files."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


class FrameCapture:
    """A ring of capture bags under ``directory``, written by a thread of its own.

    Args:
        directory: Where the bags go (created); bags already there count towards the cap.
        image_type: ``sensor_msgs/msg/Image`` or ``sensor_msgs/msg/CompressedImage``.
        max_rate_hz: At most this many captured frames a second (0: no cap).
        max_bytes: The folder's cap; the oldest bags go first.
        frames_per_bag: Frames per bag before the next one starts.
        seed: Seed of the random sample (None: fresh).
    """

    def __init__(
        self,
        directory: Path,
        *,
        image_type: str,
        max_rate_hz: float = 2.0,
        max_bytes: int = 1_000_000_000,
        frames_per_bag: int = 200,
        seed: int | None = None,
    ) -> None:
        if max_rate_hz < 0 or max_bytes < 1 or frames_per_bag < 1:
            raise ConfigError(
                "capture_max_rate_hz must be >= 0, capture_max_mb and capture_frames_per_bag "
                f"at least 1; got {max_rate_hz}, {max_bytes} bytes, {frames_per_bag}"
            )
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=_PRIVATE)
        except OSError as err:
            raise ConfigError(f"cannot create capture_dir {self.directory}: {err}") from err
        self.image_type = image_type
        self.max_rate_hz = max_rate_hz
        self.max_bytes = max_bytes
        self.frames_per_bag = frames_per_bag
        self.random = random.Random(seed)
        self._queue: queue.Queue[tuple[str, Any, Any] | None] = queue.Queue(_QUEUE_SIZE)
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._last_capture_s = -float("inf")
        self._sequence = max((_sequence_of(p) for p in self._bags()), default=0)
        self._error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sorter-capture", daemon=True)
        self._thread.start()

    def draw(self) -> float:
        """A uniform draw in [0, 1) for :meth:`CaptureRules.reasons`."""
        return self.random.random()

    def offer(self, topic: str, frame: Any, label: Any, reasons: Sequence[str]) -> bool:
        """Queue a picked frame and its label; False if the rate cap or a full queue skips it.

        Never blocks: this runs on the labelling path.
        """
        now = time.monotonic()
        with self._lock:
            if self.max_rate_hz and now - self._last_capture_s < 1.0 / self.max_rate_hz:
                self._counts["over_rate"] += 1
                return False
            try:
                self._queue.put_nowait((topic, frame, label))
            except queue.Full:
                self._counts["queue_full"] += 1
                return False
            self._last_capture_s = now
            self._counts.update(reasons)
        return True

    def counts(self) -> dict[str, int]:
        """Frames written, skipped (over the rate cap, queue full), per reason, bags deleted."""
        with self._lock:
            return dict(self._counts)

    @property
    def error(self) -> str:
        """The last write error, until a frame is written again; captures go on in a new bag."""
        return self._error

    def describe(self) -> str:
        """``<directory>: <count> <n>, ...`` for diagnostics."""
        text = ", ".join(f"{key} {value}" for key, value in sorted(self.counts().items()))
        return f"{self.directory}: {text or 'nothing yet'}"

    def close(self, timeout_s: float = 30.0) -> bool:
        """Write what is queued, close the bag and stop the thread; False if it is still busy.

        Waits at most ``timeout_s``, even for a hung disk with a full queue.
        """
        self._stop.set()
        with contextlib.suppress(queue.Full):  # then the thread stops once the queue is empty
            self._queue.put_nowait(None)
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _bags(self) -> list[Path]:
        """Bag folders, oldest first (by sequence; folders of older names before them)."""
        bags = [p for p in self.directory.glob("capture_*") if p.is_dir()]
        return sorted(bags, key=lambda p: (_sequence_of(p), p.name))

    def _enforce_cap(self) -> None:
        try:
            bags = self._bags()
        except OSError:
            return
        sizes = {bag: bag_bytes(bag) for bag in bags}
        total = sum(sizes.values())
        for bag in bags:
            if total <= self.max_bytes:
                break
            shutil.rmtree(bag, ignore_errors=True)
            total -= sizes[bag]
            with self._lock:
                self._counts["bags_deleted"] += 1

    def _open(self) -> tuple[Any, dict[str, Any], Any]:
        from mmsag_ros.bag.typestore import mmsag_typestore
        from mmsag_ros.bag.writer import bag_writer

        self._sequence += 1
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        path = self.directory / f"capture_s{self._sequence:08d}_{stamp}"
        writer = bag_writer(path)
        try:
            writer.open()
            path.chmod(_PRIVATE)
            labels = writer.add_connection(
                CAPTURE_LABELS_TOPIC, _MULTILABEL_TYPE, typestore=mmsag_typestore()
            )
        except BaseException:
            self._close(writer)
            raise
        return writer, {}, labels

    def _close(self, writer: Any, frames: int = 0) -> None:
        """Close a bag, or remove it when it cannot be closed (it would lack footer and metadata).

        The ``frames`` of a removed bag count as failed writes, not as captured.
        """
        try:
            writer.close()
        except Exception as err:
            self._error = self._error or f"{type(err).__name__}: {err}"
            shutil.rmtree(writer.path, ignore_errors=True)
            with self._lock:
                self._counts["bags_discarded"] += 1
                self._counts["captured"] -= frames
                self._counts["write_failed"] += frames

    def _run(self) -> None:
        from rclpy.serialization import serialize_message

        from mmsag_ros.bag.typestore import mmsag_typestore

        writer = None
        cameras: dict[str, Any] = {}
        labels = None
        in_bag = 0
        self._enforce_cap()  # the cap holds from the start, for bags an earlier run left
        while True:
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._stop.is_set():
                    break
                continue
            if item is None:
                break
            topic, frame, label = item
            try:
                if writer is None:
                    writer, cameras, labels = self._open()
                    in_bag = 0
                if topic not in cameras:
                    cameras[topic] = writer.add_connection(
                        topic, self.image_type, typestore=mmsag_typestore()
                    )
                log_ns = time.time_ns()
                writer.write(cameras[topic], log_ns, serialize_message(frame))
                writer.write(labels, log_ns, serialize_message(label))
                in_bag += 1
                self._error = ""  # writing works again; write_failed keeps the history
                with self._lock:
                    self._counts["captured"] += 1
                if in_bag >= self.frames_per_bag:
                    closing, writer = writer, None
                    self._close(closing, in_bag)
                    self._enforce_cap()
            except Exception as err:  # a full disk or a removed folder must not stop labelling
                self._error = f"{type(err).__name__}: {err}"
                with self._lock:
                    self._counts["write_failed"] += 1
                if writer is not None:
                    closing, writer = writer, None
                    self._close(closing, in_bag)
                self._enforce_cap()
        if writer is not None:
            self._close(writer, in_bag)
        self._enforce_cap()


def _sequence_of(bag: Path) -> int:
    match = _BAG_NAME.match(bag.name)
    return int(match.group(1)) if match else 0
