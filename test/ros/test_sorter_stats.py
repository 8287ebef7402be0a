"""SorterStats and the sorter's diagnostic status on their own, without DDS or a worker.

The ledger settles each frame's ticket once and stays balanced under threads; the status maps
every lifecycle state, failure and camera rate to its level, message and key values (a hand
clock moves the rate windows, so no test waits).
"""

from __future__ import annotations

import threading

from diagnostic_msgs.msg import DiagnosticStatus
from ros.worker_support import balanced

from mmsag_ros.ros.diagnostics import NodeState, SorterStats, StatsSnapshot, sorter_status


def test_stats_settle_each_ticket_once_and_stay_balanced_under_threads():
    stats = SorterStats()
    outcomes = ("published", "dropped", "rejected", "failed")

    def run(seed: int) -> None:
        for index in range(500):
            ticket = stats.frame_received(f"cam{seed}")
            outcome = outcomes[(index + seed) % 4]
            if outcome == "published":
                assert stats.label_published(ticket, 2.0)
            elif outcome == "dropped":
                assert stats.frame_dropped(ticket)
            elif outcome == "rejected":
                assert stats.frame_rejected(ticket, "corrupt", "corrupt")
            else:
                assert stats.frame_failed(ticket, "boom")
            # A second outcome for the same frame is refused, never counted.
            assert not stats.frame_dropped(ticket)

    snapshots: list[StatsSnapshot] = []
    threads = [threading.Thread(target=run, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        snapshots.append(stats.snapshot(stale_after_s=10.0, new_window=False))
    for thread in threads:
        thread.join()
    final = stats.snapshot(stale_after_s=10.0)
    assert all(balanced(s) for s in [*snapshots, final])
    assert (final.received, final.in_flight) == (2000, 0)
    assert final.published == final.dropped == final.rejected == final.failed == 500
    assert final.window_published == 500 and final.latencies_ms.size == 500
    assert stats.snapshot(stale_after_s=10.0).window_published == 0  # a new window began


def test_stats_report_in_flight_age_and_stale_cameras():
    stats = SorterStats()
    stats.watch(("cam_a", "cam_idle"))
    ticket = stats.frame_received("cam_a")
    later = stats.snapshot(stale_after_s=0.0)
    assert later.in_flight == 1 and later.oldest_in_flight_age_s > 0.0
    assert "cam_idle" in later.stale_cameras
    assert "cam_idle" not in stats.snapshot(stale_after_s=3600.0).stale_cameras
    stats.label_published(ticket, 1.0)
    assert stats.snapshot(stale_after_s=1.0).oldest_in_flight_age_s == 0.0


class _HandClock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_cameras_off_their_expected_rate_warn_once_a_window_can_tell():
    clock = _HandClock()
    stats = SorterStats(clock=clock)
    stats.watch(("/cell/cam_ok", "/cell/cam_slow", "/cell/cam_idle"))
    base = dict(name="s", hardware_id="s", lifecycle_state="active", expected_rate_hz=30.0)

    def second(ok_frames: int, slow_frames: int) -> None:
        clock.now += 1.0
        for _ in range(ok_frames):
            stats.label_published(stats.frame_received("/cell/cam_ok"), 1.0)
        for _ in range(slow_frames):
            stats.label_published(stats.frame_received("/cell/cam_slow"), 1.0)

    second(29, 3)
    status, values = _status(NodeState(**base), stats, stale_after_s=0.5)
    # As FrequencyStatus: a camera with no frame at all is an ERROR ...
    assert status.level == DiagnosticStatus.ERROR
    assert status.message == "no frames from /cell/cam_idle in 1.0 s (expected 30 Hz)"
    assert values["camera_rates_hz"] == "/cell/cam_ok=29.00,/cell/cam_slow=3.00,/cell/cam_idle=0.00"
    # ... one off the rate a WARN: 29 Hz is within 20 % of 30, 3 Hz is not.
    stats.watch(("/cell/cam_ok", "/cell/cam_slow"))
    second(29, 3)
    status, values = _status(NodeState(**base), stats, stale_after_s=0.5)
    assert status.level == DiagnosticStatus.WARN
    assert status.message == "off rate: /cell/cam_slow 3.0 Hz (expected 30 Hz ± 20%)"
    # Both fine, and the tolerance is the parameter's.
    second(30, 27)
    status, _ = _status(NodeState(**base), stats, stale_after_s=1.5)
    assert "off rate" not in status.message
    second(30, 27)
    status, _ = _status(NodeState(**base, rate_tolerance=0.05), stats, stale_after_s=1.5)
    assert "off rate: /cell/cam_slow 27.0 Hz (expected 30 Hz ± 5%)" in status.message
    # A window too short to hold five expected frames is not judged; no check when off.
    clock.now += 0.1
    assert "off rate" not in _status(NodeState(**base), stats, stale_after_s=1.5)[0].message
    second(0, 0)
    off = NodeState(**{**base, "expected_rate_hz": 0.0})
    assert "off rate" not in _status(off, stats, stale_after_s=1.5)[0].message


def _status(state: NodeState, stats: SorterStats, stale_after_s: float = 3600.0):
    status = sorter_status(state, stats.snapshot(stale_after_s=stale_after_s), stale_after_s)
    return status, {kv.key: kv.value for kv in status.values}


def test_status_levels_and_values_in_every_state():
    base = dict(name="/cell/sorter: sorter", hardware_id="/cell/sorter")
    stats = SorterStats()
    status, values = _status(NodeState(lifecycle_state="unconfigured", **base), stats)
    assert (status.level, status.message) == (DiagnosticStatus.WARN, "unconfigured: not labelling")
    assert status.hardware_id == "/cell/sorter"
    assert values["lifecycle_state"] == "unconfigured" and values["in_flight"] == "0"
    failed = NodeState(
        lifecycle_state="unconfigured", configure_error="model.onnx is missing", **base
    )
    status, values = _status(failed, stats)
    assert status.level == DiagnosticStatus.ERROR
    assert status.message == "configure failed: model.onnx is missing"
    assert values["configure_error"] == "model.onnx is missing"
    active = NodeState(lifecycle_state="active", backend="onnxruntime", model_id="m@1", **base)
    stats.watch(("cam",))
    stats.label_published(stats.frame_received("cam"), 1.0)
    assert _status(active, stats)[0].level == DiagnosticStatus.OK
    raised = NodeState(
        lifecycle_state="active", callback_errors=2, callback_error="KeyError: 'x'", **base
    )
    status, values = _status(raised, stats)
    assert (status.level, status.message) == (
        DiagnosticStatus.WARN,
        "2 callback error(s) (KeyError: 'x')",
    )
    assert (values["callback_errors"], values["last_callback_error"]) == ("2", "KeyError: 'x'")
    stats.frame_rejected(stats.frame_received("cam"), "empty compressed image (no data)", "layout")
    status, values = _status(active, stats)
    assert status.level == DiagnosticStatus.WARN
    assert status.message == "1 rejected (empty compressed image (no data))"
    assert values["rejected"] == "1"
    assert values["last_rejection"] == "empty compressed image (no data)"
    # Frames keep coming, none goes out: ERROR, with the reason of the failures.
    stats.watch(("cam",))
    stats.frame_failed(stats.frame_received("cam"), "inference failed: boom")
    stats.frame_received("cam")
    status, values = _status(active, stats, stale_after_s=0.0)
    assert status.level == DiagnosticStatus.ERROR
    assert "no labels" in status.message and "inference failed: boom" in status.message
    assert values["in_flight"] == "1" and values["last_failure"] == "inference failed: boom"
    mismatch = NodeState(lifecycle_state="active", type_mismatches=("/cam",), **base)
    status, values = _status(mismatch, stats)
    assert status.level == DiagnosticStatus.ERROR and "/cam" in status.message
    assert values["type_mismatches"] == "/cam"
    assert values["camera_publishers"] == "0"
    matched = NodeState(lifecycle_state="active", camera_publishers=2, **base)
    assert _status(matched, stats)[1]["camera_publishers"] == "2"
