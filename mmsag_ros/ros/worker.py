"""Latest-frame slots and the inference thread of the sorter node.

Subscription callbacks only drop the newest message of each camera into its slot (a frame that
was still waiting is overwritten and counted as dropped), so the executor never queues frames.
One worker thread takes every waiting frame at once, decodes them, classifies them as one batch
and hands each prediction to a publish callback: latency stays bounded by one inference however
slow the model is compared with the cameras.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image

from mmsag_ros.errors import ImageConversionError
from mmsag_ros.ros.conversions import image_to_array
from mmsag_ros.runtime.classifier import Classifier, Prediction

__all__ = ["COLOR_ORDERS", "Frame", "FrameWorker", "decode_frame"]

_log = logging.getLogger(__name__)

COLOR_ORDERS: dict[str, str] = {
    "rgb8": "rgb",
    "bgr8": "bgr",
    "mono8": "mono",
    "rgba8": "rgba",
    "bgra8": "bgra",
}
_COMPRESSED_FORMATS = ("jpeg", "jpg", "png")


@dataclass
class Frame:
    """One waiting camera message and when it arrived (monotonic seconds).

    ``image`` and ``color_order`` are filled by the worker once the message is decoded, so the
    publish callback can draw on the frame without decoding it again.
    """

    camera: str
    msg: Image | CompressedImage
    received_s: float
    image: np.ndarray | None = None
    color_order: str = ""


def decode_frame(msg: Image | CompressedImage) -> tuple[np.ndarray, str]:
    """Turn a camera message into a uint8 array and its colour order for the classifier.

    Raw images are viewed without a copy; JPEG and PNG are decoded with OpenCV (BGR out).

    Raises:
        ImageConversionError: Unknown encoding or format, inconsistent sizes, truncated or
            corrupt data, an empty frame.
    """
    if isinstance(msg, Image):
        order = COLOR_ORDERS.get(msg.encoding)
        if order is None:
            raise ImageConversionError(
                f"unsupported image encoding {msg.encoding!r}; expected one of "
                f"{', '.join(COLOR_ORDERS)}"
            )
        return image_to_array(msg), order
    fmt = msg.format.lower()
    if fmt and not any(name in fmt for name in _COMPRESSED_FORMATS):
        raise ImageConversionError(
            f"unsupported compressed format {msg.format!r}; expected jpeg or png"
        )
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise ImageConversionError("empty compressed image (no data)")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ImageConversionError(
            f"could not decode {data.size} bytes of {msg.format or 'compressed'} data "
            "(corrupt or truncated)"
        )
    return image, "bgr"


class FrameWorker:
    """Newest-frame slots per camera plus the thread that classifies and publishes them.

    Args:
        classifier: Used only from the worker thread.
        publish: Called from the worker thread with ``(frame, prediction)`` for every frame.
        on_drop: Called with the camera name when a waiting frame is overwritten.
        on_reject: Called with ``(camera, reason)`` for a frame that cannot be decoded.
        max_rate_hz: Cap on inference batches per second; 0 means no cap.
    """

    def __init__(
        self,
        classifier: Classifier,
        *,
        publish: Callable[[Frame, Prediction], None],
        on_drop: Callable[[str], None],
        on_reject: Callable[[str, str], None],
        max_rate_hz: float = 0.0,
    ) -> None:
        self._classifier = classifier
        self._publish = publish
        self._on_drop = on_drop
        self._on_reject = on_reject
        self._slots: dict[str, Frame] = {}
        self._cond = threading.Condition()
        self._stop = False
        self._max_rate_hz = max_rate_hz
        self._pending_thresholds: np.ndarray | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the worker thread (a no-op when it already runs)."""
        if self._thread is not None:
            return
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="sorter-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread after its current batch and forget waiting frames."""
        with self._cond:
            self._stop = True
            self._slots.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def offer(self, camera: str, msg: Any) -> None:
        """Keep ``msg`` as the newest frame of ``camera`` (called from subscription callbacks)."""
        frame = Frame(camera, msg, time.monotonic())
        with self._cond:
            overwritten = camera in self._slots
            self._slots[camera] = frame
            self._cond.notify()
        if overwritten:
            self._on_drop(camera)

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
        if thresholds is not None:
            self._classifier.set_thresholds(thresholds)
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
        last_start = -float("inf")
        while self._wait_for_rate(last_start):
            frames = self._take()
            if frames is None:
                return
            last_start = time.monotonic()
            try:
                self._process(frames)
            except Exception:
                _log.exception("sorter worker: batch of %d frame(s) failed", len(frames))

    def _process(self, frames: list[Frame]) -> None:
        good: list[Frame] = []
        images: list[np.ndarray] = []
        orders: list[str] = []
        for frame in frames:
            try:
                image, order = decode_frame(frame.msg)
            except ImageConversionError as err:
                self._on_reject(frame.camera, str(err))
                continue
            frame.image, frame.color_order = image, order
            good.append(frame)
            images.append(image)
            orders.append(order)
        if not good:
            return
        try:
            predictions = self._classifier.classify(images, color_orders=orders)
        except ImageConversionError:
            # One frame the decoder passed but preprocessing refused: retry one by one so the
            # others of the batch still get their labels.
            for frame, image, order in zip(good, images, orders, strict=True):
                try:
                    prediction = self._classifier.classify_one(image, order)
                except ImageConversionError as err:
                    self._on_reject(frame.camera, str(err))
                    continue
                self._publish(frame, prediction)
            return
        for frame, prediction in zip(good, predictions, strict=True):
            self._publish(frame, prediction)
