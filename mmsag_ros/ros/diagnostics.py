"""The sorter's frame accounting and its ``/diagnostics`` status.

Every frame the node receives gets a ticket and ends in exactly one outcome: published,
dropped (overwritten by a newer frame of its camera, or still waiting when the worker stopped),
rejected (undecodable or too large) or failed (inference or publishing raised, with the
reason). Until then it is in flight. Callbacks and the worker thread settle tickets, the
diagnostics timer reads them, all under one lock, so every snapshot satisfies

    received == published + dropped + rejected + failed + in_flight

Rates and latency percentiles cover the time since the previous report; counts are totals
since the node started.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from mmsag_ros.errors import REJECTION_KINDS

__all__ = ["NodeState", "SorterStats", "StatsSnapshot", "diagnostic_array", "sorter_status"]

_MAX_LATENCIES = 4096
# A camera's rate is judged only over a window long enough for this many expected frames:
# counting whole frames over a shorter one is too coarse.
_MIN_EXPECTED_FRAMES = 5


@dataclass(frozen=True)
class StatsSnapshot:
    """Counters read together under the stats lock, plus the window since the last snapshot."""

    received: int
    published: int
    dropped: int
    rejected: int
    failed: int
    # Rejected frames by what was wrong with them (REJECTION_KINDS), since the node started.
    rejected_by_kind: dict[str, int]
    in_flight: int
    oldest_in_flight_age_s: float
    last_failure: str
    last_rejection: str
    debug_images: int
    window_s: float
    window_received: int
    window_published: int
    window_rejected: int
    window_failed: int
    latencies_ms: np.ndarray
    stale_cameras: tuple[str, ...]
    # Seconds since the last label, or since the counters started when none was published.
    since_last_label_s: float
    # Each watched camera's frames per second over the window (since activate, if later).
    camera_rates_hz: tuple[tuple[str, float], ...] = ()
    rate_window_s: float = 0.0


class SorterStats:
    """Thread-safe ledger of the frames of one sorter node (all its configure cycles)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock  # seconds, monotonic
        self._lock = threading.Lock()
        self._cameras: tuple[str, ...] = ()
        self._in_flight: dict[int, float] = {}  # ticket -> monotonic time received
        self._next_ticket = 0
        self._received = self._debug_images = 0
        self._totals = dict.fromkeys(("published", "dropped", "rejected", "failed"), 0)
        self._last_failure = self._last_rejection = ""
        self._rejected_by_kind: Counter[str] = Counter()
        self._latencies_ms: deque[float] = deque(maxlen=_MAX_LATENCIES)
        self._window_start_s = self._watch_start_s = clock()
        self._window: dict[str, int] = {}  # counts since the last snapshot, by outcome
        self._window_frames: Counter[str] = Counter()  # frames since the last snapshot, by camera
        self._last_frame_s: dict[str, float] = {}
        self._last_label_s: float | None = None

    def watch(self, cameras: tuple[str, ...]) -> None:
        """Start watching ``cameras`` for staleness (at activate); silence counts from now."""
        with self._lock:
            self._cameras = cameras
            self._last_frame_s = {}
            self._last_label_s = None
            self._window_frames = Counter()
            self._watch_start_s = self._clock()

    def frame_received(self, camera: str) -> int:
        """Open a ticket for a frame arriving from ``camera``; returns the ticket."""
        now = self._clock()
        with self._lock:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._in_flight[ticket] = now
            self._received += 1
            self._window["received"] = self._window.get("received", 0) + 1
            self._last_frame_s[camera] = now
            self._window_frames[camera] += 1
        return ticket

    def _settle(self, ticket: int, outcome: str) -> bool:
        # Called with the lock held. A ticket settles once; a second outcome is refused.
        if self._in_flight.pop(ticket, None) is None:
            return False
        self._totals[outcome] += 1
        self._window[outcome] = self._window.get(outcome, 0) + 1
        return True

    def frame_dropped(self, ticket: int) -> bool:
        """Settle a frame overwritten by a newer one, or discarded when the worker stopped."""
        with self._lock:
            return self._settle(ticket, "dropped")

    def frame_rejected(self, ticket: int, reason: str, kind: str) -> bool:
        """Settle a frame that could not be decoded or was refused before inference.

        ``kind`` is what was wrong with it (:data:`~mmsag_ros.errors.REJECTION_KINDS`).
        """
        with self._lock:
            settled = self._settle(ticket, "rejected")
            if settled:
                self._last_rejection = reason
                self._rejected_by_kind[kind] += 1
        return settled

    def frame_failed(self, ticket: int, reason: str) -> bool:
        """Settle a frame whose inference or publication raised; ``reason`` is kept."""
        with self._lock:
            settled = self._settle(ticket, "failed")
            if settled:
                self._last_failure = reason
        return settled

    def label_published(self, ticket: int, latency_ms: float) -> bool:
        """Settle a frame whose MultiLabel went out, with its end-to-end latency."""
        now = self._clock()
        with self._lock:
            settled = self._settle(ticket, "published")
            if settled:
                self._latencies_ms.append(latency_ms)
                self._last_label_s = now
        return settled

    def debug_image_published(self) -> None:
        """Count a published debug overlay."""
        with self._lock:
            self._debug_images += 1

    def snapshot(self, *, stale_after_s: float, new_window: bool = True) -> StatsSnapshot:
        """Read every counter at once; with ``new_window``, start the next rate window."""
        now = self._clock()
        with self._lock:
            oldest = min(self._in_flight.values(), default=now)
            stale = tuple(
                camera
                for camera in self._cameras
                if now - self._last_frame_s.get(camera, self._watch_start_s) > stale_after_s
            )
            rate_window_s = max(now - max(self._window_start_s, self._watch_start_s), 1e-9)
            snapshot = StatsSnapshot(
                received=self._received,
                **self._totals,
                rejected_by_kind={k: self._rejected_by_kind[k] for k in REJECTION_KINDS},
                in_flight=len(self._in_flight),
                oldest_in_flight_age_s=now - oldest,
                last_failure=self._last_failure,
                last_rejection=self._last_rejection,
                debug_images=self._debug_images,
                window_s=max(now - self._window_start_s, 1e-9),
                window_received=self._window.get("received", 0),
                window_published=self._window.get("published", 0),
                window_rejected=self._window.get("rejected", 0),
                window_failed=self._window.get("failed", 0),
                latencies_ms=np.array(self._latencies_ms, dtype=np.float64),
                stale_cameras=stale,
                since_last_label_s=now - (self._last_label_s or self._watch_start_s),
                camera_rates_hz=tuple(
                    (c, self._window_frames[c] / rate_window_s) for c in self._cameras
                ),
                rate_window_s=rate_window_s,
            )
            if new_window:
                self._latencies_ms.clear()
                self._window_start_s = now
                self._window = {}
                self._window_frames = Counter()
        return snapshot


@dataclass(frozen=True)
class NodeState:
    """What the node itself knows beyond the frame counters, for its diagnostics status."""

    name: str
    hardware_id: str
    lifecycle_state: str
    configure_error: str = ""
    backend: str = ""
    model_id: str = ""
    # Cameras whose topic carries another message type than the node subscribes to.
    type_mismatches: tuple[str, ...] = ()
    # Matched subscribers of the outputs: is anyone listening (and drawing debug images)?
    labels_subscribers: int = 0
    debug_image_subscribers: int = 0
    # Matched publishers of the camera topic with the fewest (0: some camera has no source).
    camera_publishers: int = 0
    # The drift watch: (window fill or why it is off, findings beyond the factor or "").
    drift: tuple[str, str] = ("", "")
    # The frame capture: (its counts, or "off"; its last write error or "").
    capture: tuple[str, str] = ("off", "")
    # A model swap: "loading <bundle> for <s> s" while one loads, the last one's failure
    # until the next one succeeds, how many took over since the node started.
    model_swap: str = ""
    swap_error: str = ""
    swaps: int = 0
    # Exceptions a callback raised into the executor (which kept spinning), and the last one.
    callback_errors: int = 0
    callback_error: str = ""
    # The frame rate every camera should send (0: no check) and the share it may be off by.
    expected_rate_hz: float = 0.0
    rate_tolerance: float = 0.2


def _judged_rates(state: NodeState, stats: StatsSnapshot) -> tuple[tuple[str, float], ...]:
    """Each camera's rate, when a rate is expected and the window is long enough to tell."""
    expected = state.expected_rate_hz
    if not expected or stats.rate_window_s * expected < _MIN_EXPECTED_FRAMES:
        return ()
    return stats.camera_rates_hz


def _silent(state: NodeState, stats: StatsSnapshot) -> str:
    """Cameras that sent nothing in a window that should have held frames (ERROR)."""
    silent = [camera for camera, rate in _judged_rates(state, stats) if rate == 0.0]
    if not silent:
        return ""
    return (
        f"no frames from {', '.join(silent)} in {stats.rate_window_s:.1f} s "
        f"(expected {state.expected_rate_hz:g} Hz)"
    )


def _off_rate(state: NodeState, stats: StatsSnapshot) -> str:
    """Cameras sending outside the expected rate, e.g. "/cam 3.0 Hz (expected 30 Hz ± 20%)"."""
    expected, tolerance = state.expected_rate_hz, state.rate_tolerance
    off = [
        f"{camera} {rate:.1f} Hz"
        for camera, rate in _judged_rates(state, stats)
        if rate > 0.0 and abs(rate - expected) > tolerance * expected
    ]
    if not off:
        return ""
    return f"{', '.join(off)} (expected {expected:g} Hz ± {tolerance:.0%})"


def _level(state: NodeState, stats: StatsSnapshot, stale_after_s: float) -> tuple[bytes, str]:
    if state.lifecycle_state != "active":
        if state.configure_error:
            return DiagnosticStatus.ERROR, f"configure failed: {state.configure_error}"
        # Not labelling is worth a look, whether a lifecycle manager or a person left it so.
        return DiagnosticStatus.WARN, f"{state.lifecycle_state}: not labelling"
    if state.type_mismatches:
        return DiagnosticStatus.ERROR, f"wrong message type on {', '.join(state.type_mismatches)}"
    # As diagnostic_updater's FrequencyStatus: no events at all is an error, a rate off the
    # expected one a warning.
    if silent := _silent(state, stats):
        return DiagnosticStatus.ERROR, silent
    # Frames keep arriving but no label has gone out for a whole staleness period.
    if (
        stats.window_received
        and not stats.window_published
        and stats.since_last_label_s > stale_after_s
    ):
        reason = f": {stats.last_failure}" if stats.window_failed else ""
        return DiagnosticStatus.ERROR, f"input arriving, no labels for {stale_after_s:g} s{reason}"
    problems = []
    if stats.window_failed:
        problems.append(f"{stats.window_failed} failed ({stats.last_failure})")
    if stats.window_rejected:
        problems.append(f"{stats.window_rejected} rejected ({stats.last_rejection})")
    if stats.in_flight and stats.oldest_in_flight_age_s > stale_after_s:
        problems.append(f"a frame in flight for {stats.oldest_in_flight_age_s:.1f} s")
    if stats.stale_cameras:
        problems.append(f"stale: {', '.join(stats.stale_cameras)}")
    if off_rate := _off_rate(state, stats):
        problems.append(f"off rate: {off_rate}")
    if state.capture[1]:
        problems.append(f"capture: {state.capture[1]}")
    if state.drift[1]:
        problems.append(f"drift: {state.drift[1]}")
    if state.swap_error:
        problems.append(f"model {state.swap_error}; still running {state.model_id}")
    if state.callback_errors:
        problems.append(f"{state.callback_errors} callback error(s) ({state.callback_error})")
    if problems:
        return DiagnosticStatus.WARN, "; ".join(problems)
    return DiagnosticStatus.OK, "running"


def sorter_status(state: NodeState, stats: StatsSnapshot, stale_after_s: float) -> DiagnosticStatus:
    """The node's DiagnosticStatus: level and message from its state and counters, every value.

    ERROR: a failed configure, a camera topic of the wrong type, a camera silent for a whole
    window while ``expected_rate_hz`` is set, or frames arriving with no labels going out.
    WARN: not active, rejected or failed frames in the last window, a frame in flight longer
    than ``stale_after_s``, stale cameras, cameras off their expected rate (rates are judged
    once the window holds five expected frames), drift beyond the factor, a failed model swap,
    a callback that raised. The keys are the same in every state.
    """
    level, message = _level(state, stats, stale_after_s)
    latencies = stats.latencies_ms
    if latencies.size:
        p50, p95, p99 = (f"{v:.2f}" for v in np.percentile(latencies, [50, 95, 99]))
    else:
        p50 = p95 = p99 = "n/a"
    active = state.lifecycle_state == "active"
    values = {
        "lifecycle_state": state.lifecycle_state,
        "configure_error": state.configure_error,
        "input_rate_hz": f"{stats.window_received / stats.window_s:.2f}",
        "output_rate_hz": f"{stats.window_published / stats.window_s:.2f}",
        "latency_p50_ms": p50,
        "latency_p95_ms": p95,
        "latency_p99_ms": p99,
        "received": str(stats.received),
        "published": str(stats.published),
        "dropped": str(stats.dropped),
        "rejected": str(stats.rejected),
        "failed": str(stats.failed),
        **{f"rejected_{k}": str(n) for k, n in stats.rejected_by_kind.items()},
        "in_flight": str(stats.in_flight),
        "oldest_in_flight_age_s": f"{stats.oldest_in_flight_age_s:.3f}",
        "last_failure": stats.last_failure,
        "last_rejection": stats.last_rejection,
        "debug_images_published": str(stats.debug_images),
        "stale_cameras": ",".join(stats.stale_cameras) if active else "",
        "camera_rates_hz": (
            ",".join(f"{c}={r:.2f}" for c, r in stats.camera_rates_hz) if active else ""
        ),
        "type_mismatches": ",".join(state.type_mismatches),
        "labels_subscribers": str(state.labels_subscribers),
        "debug_image_subscribers": str(state.debug_image_subscribers),
        "camera_publishers": str(state.camera_publishers),
        "backend": state.backend,
        "model_id": state.model_id,
        "capture": state.capture[0],
        "capture_error": state.capture[1],
        "drift_window": state.drift[0],
        "drift": state.drift[1],
        "model_swap": state.model_swap,
        "model_swap_error": state.swap_error,
        "model_swaps": str(state.swaps),
        "callback_errors": str(state.callback_errors),
        "last_callback_error": state.callback_error,
    }
    return DiagnosticStatus(
        level=level,
        name=state.name,
        message=message,
        hardware_id=state.hardware_id,
        values=[KeyValue(key=k, value=v) for k, v in values.items()],
    )


def diagnostic_array(status: DiagnosticStatus, stamp: object) -> DiagnosticArray:
    """Wrap one status in a stamped DiagnosticArray."""
    message = DiagnosticArray(status=[status])
    message.header.stamp = stamp
    return message
