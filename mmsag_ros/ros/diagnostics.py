"""Counters, rates and latency percentiles of the sorter, reported as a DiagnosticArray.

Counters are updated from the subscription callbacks and the worker thread, and read by the
diagnostics timer, so every access goes through one lock. Rates and latency percentiles cover
the time since the previous report; counts of dropped and rejected frames are totals.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

__all__ = ["SorterStats"]

_MAX_LATENCIES = 4096


class SorterStats:
    """Thread-safe counters of one sorter session (one configure)."""

    def __init__(self, cameras: tuple[str, ...]) -> None:
        self._lock = threading.Lock()
        self._cameras = cameras
        self._last_frame_s: dict[str, float] = {}
        self._received = 0
        self._published = 0
        self._dropped = 0
        self._rejected = 0
        self._debug_images = 0
        self._latencies_ms: deque[float] = deque(maxlen=_MAX_LATENCIES)
        self._window_start_s = time.monotonic()
        self._window_received = 0
        self._window_published = 0

    def frame_received(self, camera: str) -> None:
        """Count a frame arriving from ``camera``."""
        with self._lock:
            self._received += 1
            self._window_received += 1
            self._last_frame_s[camera] = time.monotonic()

    def frame_dropped(self, camera: str) -> None:
        """Count a waiting frame overwritten by a newer one."""
        with self._lock:
            self._dropped += 1

    def frame_rejected(self, camera: str) -> None:
        """Count a frame that could not be decoded."""
        with self._lock:
            self._rejected += 1

    def label_published(self, latency_ms: float) -> None:
        """Count a published MultiLabel and its end-to-end latency."""
        with self._lock:
            self._published += 1
            self._window_published += 1
            self._latencies_ms.append(latency_ms)

    def debug_image_published(self) -> None:
        """Count a published debug overlay."""
        with self._lock:
            self._debug_images += 1

    @property
    def rejected(self) -> int:
        """Frames rejected so far."""
        with self._lock:
            return self._rejected

    def report(
        self,
        *,
        name: str,
        backend: str,
        model_id: str,
        stale_after_s: float,
        active: bool,
    ) -> DiagnosticStatus:
        """Summarise the window since the previous report and start a new one."""
        now = time.monotonic()
        with self._lock:
            elapsed_s = max(now - self._window_start_s, 1e-9)
            input_hz = self._window_received / elapsed_s
            output_hz = self._window_published / elapsed_s
            latencies = np.array(self._latencies_ms, dtype=np.float64)
            self._latencies_ms.clear()
            self._window_start_s = now
            self._window_received = self._window_published = 0
            stale = [
                cam
                for cam in self._cameras
                if now - self._last_frame_s.get(cam, -float("inf")) > stale_after_s
            ]
            totals = (self._received, self._published, self._dropped, self._rejected)
            debug_images = self._debug_images
        if latencies.size:
            p50, p95, p99 = (f"{v:.2f}" for v in np.percentile(latencies, [50, 95, 99]))
        else:
            p50 = p95 = p99 = "n/a"
        status = DiagnosticStatus(name=name, hardware_id=model_id)
        if not active:
            status.level, status.message = DiagnosticStatus.OK, "inactive"
        elif stale:
            status.level, status.message = DiagnosticStatus.WARN, f"stale: {', '.join(stale)}"
        else:
            status.level, status.message = DiagnosticStatus.OK, "running"
        values = {
            "input_rate_hz": f"{input_hz:.2f}",
            "output_rate_hz": f"{output_hz:.2f}",
            "latency_p50_ms": p50,
            "latency_p95_ms": p95,
            "latency_p99_ms": p99,
            "received": str(totals[0]),
            "published": str(totals[1]),
            "dropped": str(totals[2]),
            "rejected": str(totals[3]),
            "debug_images_published": str(debug_images),
            "stale_cameras": ",".join(stale) if active else "",
            "backend": backend,
            "model_id": model_id,
        }
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        return status

    @staticmethod
    def array(status: DiagnosticStatus, stamp: object) -> DiagnosticArray:
        """Wrap one status in a stamped DiagnosticArray."""
        message = DiagnosticArray(status=[status])
        message.header.stamp = stamp
        return message
