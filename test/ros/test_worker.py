"""FrameWorker on its own, without DDS: every offered frame is settled once.

The worker runs a real Classifier on a tiny real bundle; ``worker_support.GatedClassifier``
holds a batch inside inference or makes it raise, so stop, restart and failure paths are
driven deterministically: each test waits on a condition (the ledger settling, the gate being
reached), never on a fixed pause.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from ros.worker_support import (
    WAIT_S,
    GatedClassifier,
    Publisher,
    balanced,
    frame_msg,
    frame_pixels,
    settled,
)
from runtime.runtime_helpers import make_bundle
from sensor_msgs.msg import CompressedImage

from mmsag_ros.ros.diagnostics import SorterStats
from mmsag_ros.ros.worker import FrameWorker
from mmsag_ros.runtime.classifier import Classifier


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("worker") / "tiny", seed=0)


@pytest.fixture
def classifier(bundle_dir):
    with Classifier(bundle_dir, backend="onnxruntime", device="cpu") as classifier:
        yield classifier


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
