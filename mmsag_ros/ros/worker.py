"""Latest-frame slots and the inference thread of the sorter node.

Subscription callbacks only drop the newest message of each camera into its slot (a frame that
was still waiting is overwritten and counted as dropped), so the executor never queues frames.
One worker thread takes every waiting frame at once, decodes them, classifies them as one batch
and hands each prediction to a publish callback: latency stays bounded by one inference however
slow the model is compared with the cameras.

Every frame offered is settled exactly once in :class:`~mmsag_ros.ros.diagnostics.SorterStats`:
published, dropped, rejected or failed (with the reason), never silently lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from mmsag_ros.camera.decode import DEFAULT_MAX_INPUT_PIXELS, decode_frame
from mmsag_ros.errors import ImageConversionError
from mmsag_ros.ros.diagnostics import SorterStats
from mmsag_ros.runtime.classifier import Classifier, Prediction

__all__ = ["Frame", "FrameWorker"]

_log = logging.getLogger(__name__)


@dataclass
class Frame:
    """One waiting camera message and its ledger ticket (which also holds its arrival time).

    ``image`` and ``color_order`` are filled by the worker once the message is decoded, so the
    publish callback can draw on the frame without decoding it again. ``generation`` names the
    worker that took the frame, so a worker left over from an earlier activation cannot
    publish through a later one's output. ``classifier`` is the model that labelled it (set
    when the worker takes the frame): across a model swap, its label names that model.
    """

    camera: str
    msg: Image | CompressedImage
    ticket: int = -1
    generation: int = 0
    image: np.ndarray | None = None
    color_order: str = ""
    classifier: Classifier | None = None


def _reason(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


class FrameWorker:
    """Newest-frame slots per camera plus the thread that classifies and publishes them.

    Args:
        classifier: Used only from the worker thread, and by one worker at a time.
        stats: The ledger every offered frame is settled in.
        publish: Called from the worker thread with ``(frame, prediction)``; returns the
            frame's end-to-end latency in ms once its label is out, raises when it could not
            be published (the frame is then counted as failed with that reason).
        on_reject: Called with ``(camera, reason)`` for a frame that cannot be decoded.
        max_rate_hz: Cap on inference batches per second; 0 means no cap.
        max_input_pixels: Frames with more pixels are rejected before decoding.
        generation: Stamped on every frame this worker takes (see :class:`Frame`).
    """

    def __init__(
        self,
        classifier: Classifier,
        *,
        stats: SorterStats,
        publish: Callable[[Frame, Prediction], float],
        on_reject: Callable[[str, str], None],
        max_rate_hz: float = 0.0,
        max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS,
        generation: int = 0,
    ) -> None:
        self._classifier = classifier
        self._stats = stats
        self._publish = publish
        self._on_reject = on_reject
        self._max_input_pixels = max_input_pixels
        self.generation = generation
        self._slots: dict[str, Frame] = {}
        self._cond = threading.Condition()
        self._stop = False
        self._exited = False
        self._close_on_exit = False
        self._max_rate_hz = max_rate_hz
        self._pending_thresholds: np.ndarray | None = None
        self._pending_classifier: Classifier | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the worker thread is alive (it may still be finishing a batch after stop)."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the worker thread; a worker runs once (make a new one to restart)."""
        if self._thread is not None:
            raise RuntimeError("this FrameWorker was started already; create a new one")
        self._thread = threading.Thread(
            target=self._run, name=f"sorter-worker-{self.generation}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float | None = None) -> bool:
        """Stop taking frames; waiting ones are counted as dropped. True once the thread ended.

        A batch already in inference finishes first; its frames are settled like any other.
        False means the thread is still inside that batch after ``timeout_s``: it ends on its
        own, and its classifier must not be used or closed by anyone else meanwhile (see
        :meth:`close_classifier_when_done`).
        """
        with self._cond:
            self._stop = True
            waiting = list(self._slots.values())
            self._slots.clear()
            self._cond.notify_all()
        for frame in waiting:
            self._stats.frame_dropped(frame.ticket)
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def close_classifier_when_done(self) -> None:
        """Close the classifier, now or when the thread ends, and any replacement still waiting."""
        with self._cond:
            pending, self._pending_classifier = self._pending_classifier, None
            # Not ``running``: a thread past its last look at the flag may still be alive.
            if self._thread is not None and not self._exited:
                self._close_on_exit = True
            else:
                self._classifier.close()
        if pending is not None:
            pending.close()

    def replace_classifier(self, classifier: Classifier) -> None:
        """Label from the next batch on with ``classifier`` (loaded, warmed, its thresholds set).

        The batch in inference finishes with the current model, so every frame is labelled by
        exactly one of the two. The worker then closes the model it replaced. Thresholds queued
        before this call were meant for the replaced model and are discarded. A replacement
        still waiting (no frame came since: an idle belt) is superseded and closed here.
        """
        with self._cond:
            stale, self._pending_classifier = self._pending_classifier, classifier
            self._pending_thresholds = None
        if stale is not None and stale is not classifier:
            stale.close()

    @property
    def classifier(self) -> Classifier:
        """The model labelling the worker's batches (the replacement once it took over)."""
        return self._classifier

    def offer(self, camera: str, msg: Any) -> None:
        """Keep ``msg`` as the newest frame of ``camera`` (called from subscription callbacks)."""
        ticket = self._stats.frame_received(camera)
        frame = Frame(camera, msg, ticket, self.generation)
        with self._cond:
            if self._stop:
                overwritten: Frame | None = frame  # too late: the worker is stopping
            else:
                overwritten = self._slots.get(camera)
                self._slots[camera] = frame
                self._cond.notify()
        if overwritten is not None:
            self._stats.frame_dropped(overwritten.ticket)

    def set_max_rate_hz(self, rate_hz: float) -> None:
        """Change the inference rate cap (0 = none) from any thread."""
        self._max_rate_hz = rate_hz

    def set_thresholds(self, thresholds: np.ndarray) -> None:
        """Queue validated thresholds; the worker applies them before its next batch."""
        with self._cond:
            self._pending_thresholds = thresholds

    def _take(self) -> list[Frame] | None:
        with self._cond:
            while not self._slots and not self._stop:
                self._cond.wait()
            if self._stop:
                return None
            frames = list(self._slots.values())
            self._slots.clear()
            thresholds, self._pending_thresholds = self._pending_thresholds, None
            replaced = None
            if self._pending_classifier is not None:
                replaced, self._classifier = self._classifier, self._pending_classifier
                self._pending_classifier = None
        if replaced is not None:
            replaced.close()  # only this thread ever used it, and its last batch is done
        if thresholds is not None:
            self._classifier.set_thresholds(thresholds)
        for frame in frames:
            frame.classifier = self._classifier
        return frames

    def _wait_for_rate(self, last_start: float) -> bool:
        rate = self._max_rate_hz
        if rate <= 0.0:
            return True
        with self._cond:
            # Frames arriving meanwhile overwrite their slots: the cap drops, never queues.
            remaining = last_start + 1.0 / rate - time.monotonic()
            if remaining > 0.0:
                self._cond.wait_for(lambda: self._stop, timeout=remaining)
            return not self._stop

    def _run(self) -> None:
        try:
            last_start = -float("inf")
            while self._wait_for_rate(last_start):
                frames = self._take()
                if frames is None:
                    return
                last_start = time.monotonic()
                try:
                    self._process(frames)
                except Exception as err:
                    # A bug in this loop itself: whatever was not settled yet failed.
                    _log.exception("sorter worker: batch of %d frame(s) failed", len(frames))
                    for frame in frames:
                        self._stats.frame_failed(frame.ticket, _reason(err))
        finally:
            with self._cond:
                self._exited = True
                close = self._close_on_exit
                # Stopped before a replacement took over: the owner holds the new model, the
                # old one is this worker's to close.
                replaced = self._pending_classifier is not None
            if close or replaced:
                self._classifier.close()

    def _decoded(self, frames: list[Frame]) -> list[Frame]:
        good = []
        for frame in frames:
            try:
                frame.image, frame.color_order = decode_frame(frame.msg, self._max_input_pixels)
            except ImageConversionError as err:
                self._stats.frame_rejected(frame.ticket, str(err), err.kind)
                self._on_reject(frame.camera, str(err))
                continue
            good.append(frame)
        return good

    def _classify(self, frames: list[Frame]) -> list[tuple[Frame, Prediction]]:
        # A frame the decoder passed but preprocessing refuses costs only itself.
        results = self._classifier.classify_each(
            [frame.image for frame in frames], color_orders=[f.color_order for f in frames]
        )
        classified = []
        for frame, result in zip(frames, results, strict=True):
            if isinstance(result, ImageConversionError):
                self._stats.frame_rejected(frame.ticket, str(result), result.kind)
                self._on_reject(frame.camera, str(result))
            else:
                classified.append((frame, result))
        return classified

    def _process(self, frames: list[Frame]) -> None:
        good = self._decoded(frames)
        if not good:
            return
        try:
            results = self._classify(good)
        except Exception as err:
            reason = f"inference failed: {_reason(err)}"
            _log.error("sorter worker: %s (%d frame(s))", reason, len(good))
            for frame in good:
                self._stats.frame_failed(frame.ticket, reason)
            return
        for frame, prediction in results:
            try:
                latency_ms = self._publish(frame, prediction)
            except Exception as err:
                self._stats.frame_failed(frame.ticket, f"publish failed: {_reason(err)}")
                continue
            self._stats.label_published(frame.ticket, latency_ms)
