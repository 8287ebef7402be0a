"""FrameWorker and SorterStats on their own, without DDS: every offered frame is settled once.

The worker runs a real Classifier on a tiny real bundle; ``worker_support.GatedClassifier``
holds a batch inside inference or makes it raise, so stop, restart and failure paths are
driven deterministically: each test waits on a condition (the ledger settling, the gate being
reached), never on a fixed pause.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from peer_frames import jpeg_scans
from runtime.runtime_helpers import make_bundle
from sensor_msgs.msg import CompressedImage, Image
from worker_support import WAIT_S, GatedClassifier, Publisher, frame_msg, frame_pixels, settled

from mmsag_ros.camera.decode import (
    MAX_JPEG_SCANS,
    compressed_header,
    compressed_image_size,
    decode_frame,
)
from mmsag_ros.errors import ImageConversionError
from mmsag_ros.ros.diagnostics import NodeState, SorterStats, StatsSnapshot, sorter_status
from mmsag_ros.ros.worker import FrameWorker
from mmsag_ros.runtime.classifier import Classifier


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("worker") / "tiny", seed=0)


@pytest.fixture
def classifier(bundle_dir):
    with Classifier(bundle_dir, backend="onnxruntime", device="cpu") as classifier:
        yield classifier


def balanced(s: StatsSnapshot) -> bool:
    return s.received == s.published + s.dropped + s.rejected + s.failed + s.in_flight


def make_worker(classifier, stats, publisher, **kwargs) -> tuple[FrameWorker, list[str]]:
    rejects: list[str] = []
    worker = FrameWorker(
        classifier,
        stats=stats,
        publish=publisher,
        on_reject=lambda camera, reason: rejects.append(reason),
        **kwargs,
    )
    return worker, rejects


def test_every_frame_is_published_dropped_or_rejected(classifier):
    stats, publisher = SorterStats(), Publisher()
    gated = GatedClassifier(classifier)
    worker, rejects = make_worker(gated, stats, publisher)
    worker.start()
    try:
        gated.gate.clear()
        worker.offer("cam_a", frame_msg(0))
        assert gated.reached.wait(WAIT_S)
        # While frame 0 is held in inference, cam_a's slot is overwritten twice, cam_b waits.
        for index in (1, 2):
            worker.offer("cam_a", frame_msg(index))
        bad = frame_msg(3)
        bad.encoding = "32FC1"  # a depth encoding: not a camera image the model takes
        worker.offer("cam_b", bad)
        waiting = stats.snapshot(stale_after_s=1.0)
        assert (waiting.in_flight, waiting.dropped) == (3, 1)
        assert balanced(waiting)
        gated.gate.set()
        final = settled(stats)
    finally:
        assert worker.stop(WAIT_S)
    assert sorted(publisher.labels) == ["cam/0", "cam/2"]
    assert (final.received, final.published, final.dropped, final.rejected) == (4, 2, 1, 1)
    assert final.failed == 0 and balanced(final)
    assert "32FC1" in rejects[0]
    expected = classifier.classify_one(frame_pixels(2), "rgb")
    np.testing.assert_allclose(publisher.labels["cam/2"].scores, expected.scores, atol=1e-5)


def test_stop_counts_waiting_frames_and_a_stuck_batch_keeps_the_classifier(classifier):
    stats, publisher = SorterStats(), Publisher()
    gated = GatedClassifier(classifier)
    worker, _ = make_worker(gated, stats, publisher)
    worker.start()
    gated.gate.clear()
    worker.offer("cam_a", frame_msg(0))
    assert gated.reached.wait(WAIT_S)
    worker.offer("cam_a", frame_msg(1))  # waits in its slot behind the held batch
    # The batch is stuck: stop() says so instead of pretending the thread ended.
    assert worker.stop(timeout_s=0.0) is False
    assert worker.running
    after_stop = stats.snapshot(stale_after_s=1.0)
    assert (after_stop.dropped, after_stop.in_flight) == (1, 1)  # frame 1 dropped, 0 held
    worker.offer("cam_a", frame_msg(2))  # arrives after stop: dropped at once, never queued
    assert stats.snapshot(stale_after_s=1.0).dropped == 2
    # Nobody may close the classifier under the running batch; the worker does it at exit.
    worker.close_classifier_when_done()
    assert not gated.closed.is_set() and classifier.backend.loaded
    gated.gate.set()
    assert worker.stop(WAIT_S)
    assert gated.closed.is_set() and not classifier.backend.loaded
    final = settled(stats)
    assert (final.received, final.published, final.dropped) == (3, 1, 2)
    assert balanced(final)


def test_a_worker_runs_once_and_a_new_one_takes_over(classifier):
    stats, publisher = SorterStats(), Publisher()
    first, _ = make_worker(classifier, stats, publisher, generation=1)
    first.start()
    first.offer("cam", frame_msg(0))
    settled(stats)
    assert first.stop(WAIT_S)
    with pytest.raises(RuntimeError, match="started already"):
        first.start()
    taken: list[int] = []
    second, _ = make_worker(
        classifier, stats, lambda frame, _: taken.append(frame.generation) or 0.5, generation=2
    )
    second.start()
    try:
        second.offer("cam", frame_msg(1))
        final = settled(stats)
    finally:
        assert second.stop(WAIT_S)
    assert taken == [2]
    assert (final.received, final.published) == (2, 2) and balanced(final)


def test_a_replacement_classifier_takes_over_between_two_batches(bundle_dir, classifier):
    stats = SorterStats()
    used: dict[str, object] = {}
    old = GatedClassifier(classifier)
    new = GatedClassifier(Classifier(bundle_dir, backend="onnxruntime", device="cpu"))

    def publish(frame, _) -> float:
        used[frame.msg.header.frame_id] = frame.classifier
        return 0.5

    worker, _ = make_worker(old, stats, publish)
    worker.start()
    try:
        old.gate.clear()
        worker.offer("cam", frame_msg(0))
        assert old.reached.wait(WAIT_S)
        # Offered while frame 0 is inside the old model: the replacement waits for the batch,
        # and a newer one supersedes it (a second swap on an idle belt), closing it.
        stale = GatedClassifier(Classifier(bundle_dir, backend="onnxruntime", device="cpu"))
        worker.replace_classifier(stale)
        worker.replace_classifier(new)
        assert stale.closed.is_set()
        worker.offer("cam", frame_msg(1))
        assert not old.closed.is_set()
        old.gate.set()
        settled(stats)
        worker.offer("cam", frame_msg(2))
        final = settled(stats)
    finally:
        assert worker.stop(WAIT_S)
    # Each frame labelled once, by one model; the replaced one closed by the worker, the new
    # one left open for its owner.
    assert used == {"cam/0": old, "cam/1": new, "cam/2": new}
    assert (final.received, final.published) == (3, 3) and balanced(final)
    assert old.closed.is_set() and not new.closed.is_set() and worker.classifier is new
    new.close()


def test_a_replacement_still_waiting_at_stop_leaves_the_old_model_to_the_worker(classifier):
    stats, publisher = SorterStats(), Publisher()
    old = GatedClassifier(classifier)
    new = GatedClassifier(classifier)
    worker, _ = make_worker(old, stats, publisher)
    worker.start()
    worker.replace_classifier(new)  # no frame ever comes: it never takes over
    assert worker.stop(WAIT_S)
    # The owner holds the new model; the old one was the worker's alone, so it closed it.
    assert old.closed.is_set() and not new.closed.is_set()


def test_inference_and_publish_exceptions_fail_frames_with_the_reason(classifier):
    stats, publisher = SorterStats(), Publisher()
    gated = GatedClassifier(classifier)
    worker, _ = make_worker(gated, stats, publisher)
    worker.start()
    try:
        gated.fail_with = MemoryError("CUDA out of memory")
        worker.offer("cam", frame_msg(0))
        failed = settled(stats)
        assert (failed.failed, failed.published) == (1, 0)
        assert "CUDA out of memory" in failed.last_failure
        assert failed.last_failure.startswith("inference failed: MemoryError")
        # The worker survived: the next frames classify; one of them cannot be published.
        gated.fail_with = None
        publisher.fail_ids = {"cam/2"}
        worker.offer("cam", frame_msg(1))
        settled(stats)
        worker.offer("cam", frame_msg(2))
        final = settled(stats)
    finally:
        assert worker.stop(WAIT_S)
    assert sorted(publisher.labels) == ["cam/1"]
    assert (final.received, final.published, final.failed) == (3, 1, 2)
    assert final.last_failure == "publish failed: RuntimeError: the labels publisher is not active"
    assert balanced(final)


def test_frames_above_max_input_pixels_are_rejected_before_decoding(classifier):
    stats, publisher = SorterStats(), Publisher()
    worker, rejects = make_worker(classifier, stats, publisher, max_input_pixels=100 * 100)
    big = np.zeros((200, 300, 3), np.uint8)
    worker.start()
    try:
        worker.offer("cam", CompressedImage(format="png", data=cv2.imencode(".png", big)[1]))
        settled(stats)
        worker.offer("cam", frame_msg(5, size=(120, 90)))  # raw frames obey the limit too
        settled(stats)
        worker.offer("cam", frame_msg(6, size=(80, 60)))
        final = settled(stats)
    finally:
        assert worker.stop(WAIT_S)
    assert (final.rejected, final.published) == (2, 1)
    assert "300x200 = 60000 pixels exceeds max_input_pixels 10000" in rejects[0]
    assert "120x90" in rejects[1]


@pytest.mark.parametrize(
    ("ext", "params"),
    [
        (".png", []),
        (".jpg", []),
        (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        (".jpg", [cv2.IMWRITE_JPEG_OPTIMIZE, 1]),
    ],
)
def test_compressed_image_size_reads_the_header_only(ext, params):
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), np.uint8)
    data = cv2.imencode(ext, image, params)[1].tobytes()
    assert compressed_image_size(data) == (53, 37)
    # A header alone is enough: the pixel data is not needed to tell the size.
    assert compressed_image_size(data[: min(len(data), 700)]) == (53, 37)


def test_compressed_image_size_of_real_camera_jpegs():
    bag = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "trashnet"
    photos = sorted(bag.glob("*/*.jpg"))[:5]
    if not photos:
        pytest.skip(f"no real photos at {bag}")
    for photo in photos:
        data = photo.read_bytes()
        height, width = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[:2]
        assert compressed_image_size(data) == (width, height), photo


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"garbage" * 10, "neither PNG nor JPEG"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "IHDR"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "without a frame header"),
    ],
)
def test_compressed_image_size_refuses_what_is_not_an_image(data, match):
    with pytest.raises(ImageConversionError, match=match):
        compressed_image_size(data)
    with pytest.raises(ImageConversionError):
        decode_frame(CompressedImage(format="jpeg", data=data))


def test_jpegs_of_too_many_progressive_scans_are_refused_before_decoding():
    image = np.random.default_rng(0).integers(0, 256, (240, 320, 3), np.uint8)
    baseline = cv2.imencode(".jpg", image)[1].tobytes()
    progressive = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert compressed_header(baseline) == (320, 240, 1)
    spans = jpeg_scans(progressive)
    assert 1 < len(spans) <= MAX_JPEG_SCANS
    assert compressed_header(progressive) == (320, 240, len(spans))
    assert decode_frame(CompressedImage(format="jpeg", data=progressive))[0].shape == (240, 320, 3)
    # The last refinement scan repeated: a small file that makes the decoder pass over the
    # image once per copy.
    start, end = spans[-1]
    hostile = progressive[:end] + progressive[start:end] * 3000 + progressive[end:]
    assert compressed_header(hostile)[2] == MAX_JPEG_SCANS + 1  # counting stops there
    with pytest.raises(ImageConversionError, match=f"more than {MAX_JPEG_SCANS} scans"):
        decode_frame(CompressedImage(format="jpeg", data=hostile))


def test_a_jpeg_size_is_found_past_large_exif_and_icc_blocks():
    image = np.random.default_rng(1).integers(0, 256, (90, 120, 3), np.uint8)
    data = cv2.imencode(".jpg", image)[1].tobytes()
    icc = b"".join(b"\xff\xe2" + (60_002).to_bytes(2, "big") + bytes(60_000) for _ in range(4))
    tagged = data[:2] + icc + data[2:]  # 240 kB of APP2 before the frame header
    assert compressed_image_size(tagged) == (120, 90)
    decoded, _ = decode_frame(CompressedImage(format="jpeg", data=tagged))
    assert np.array_equal(decoded, cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))


def test_frames_of_absurd_byte_counts_are_refused():
    with pytest.raises(ImageConversionError, match="pads a 3-byte rgb8 row by more than a row"):
        decode_frame(Image(width=1, height=1, encoding="rgb8", step=50_000_000,
                           data=bytes(50_000_000)))  # fmt: skip
    padded = Image(width=4, height=2, encoding="mono8", step=64, data=bytes(128))  # aligned rows
    assert decode_frame(padded)[0].shape == (2, 4, 1)
    png = cv2.imencode(".png", np.zeros((50, 50, 3), np.uint8))[1].tobytes()
    with pytest.raises(ImageConversionError, match="exceeds 8 bytes per pixel"):
        decode_frame(CompressedImage(format="png", data=png + bytes(90_000)), max_pixels=10_000)


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
