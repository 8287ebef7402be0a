"""mmsag bag eval --live: the node's labels carry the offline scores and the frames' headers.

Bags replayed through a real sorter node process over real DDS, label by label against the
Classifier and the offline evaluation: synthetic bags (mcap and db3), two cameras sharing
stamps, the cell's own parameter file, and the real camera bags beside the checkout.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from bag.bag_helpers import (
    CAMERAS,
    FPS,
    NUM_FRAMES,
    START_NS,
    check_accounting,
    truth_by_frame,
    two_camera_bag,
)
from rosbags.highlevel import AnyReader
from support import REPO, SHARED_DATA

from mmsag_ros.bag.bag_eval import evaluate_bag, write_bag_evaluation
from mmsag_ros.bag.frames import MULTILABEL_TYPE, iter_frames, stamp_to_ns
from mmsag_ros.bag.make import make_bag
from mmsag_ros.bag.typestore import mmsag_typestore
from mmsag_ros.bag.writer import bag_writer
from mmsag_ros.data.synth import generate_dataset
from mmsag_ros.live.live_eval import evaluate_bag_live
from mmsag_ros.live.replay import replay_through_sorter
from mmsag_ros.live.results import LiveRun
from mmsag_ros.metrics import MultiLabelMeter
from mmsag_ros.runtime.classifier import Classifier

REAL_BAGS = sorted((SHARED_DATA / "bags").glob("*_mcap"))
# A label's latency_ms counted from the bag's own stamps (2023) would be years: anything under
# a minute shows the node saw the frame restamped at publication.
RESTAMPED_LATENCY_BOUND_MS = 60_000


# This process's rclpy contexts and the node process share the test's own domain.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ros_domain")]


def _check_latencies(run: LiveRun) -> None:
    """Latency figures are positive and ordered; the node's count from the restamped frame."""
    summary = run.summary()
    for key in ("latency_ms", "node_latency_ms"):
        figures = summary[key]
        assert 0 < figures["p50"] <= figures["p95"] <= figures["p99"] <= figures["max"], key
    assert (run.latencies_ms > 0).all()
    nodes = run.node_latencies_ms
    assert ((nodes > 0) & (nodes < RESTAMPED_LATENCY_BOUND_MS)).all(), nodes
    assert all(label.inference_ms > 0 for label in run.labels)


def _labels_in(bag: Path) -> list[tuple[int, str, np.ndarray]]:
    with AnyReader([bag], default_typestore=mmsag_typestore()) as reader:
        return [
            (stamp_to_ns(m.header.stamp), m.header.frame_id, np.asarray(m.scores, np.float64))
            for c, _, raw in reader.messages()
            if c.msgtype == MULTILABEL_TYPE
            for m in [reader.deserialize(raw, c.msgtype)]
        ]


@pytest.mark.parametrize(
    ("storage", "compressed"), [("mcap", True), ("sqlite3", False)], ids=["mcap-jpeg", "db3-rgb8"]
)
def test_live_scores_equal_offline_frame_by_frame(dataset, bundle, tmp_path, storage, compressed):
    bag = tmp_path / "bag"
    make_bag(dataset, bag, storage=storage, compressed=compressed, fps=FPS, start_ns=START_NS)
    offline = evaluate_bag(bag, bundle, backend="onnxruntime", batch_size=4)
    arrivals = []
    live = evaluate_bag_live(
        bag,
        bundle,
        backend="onnxruntime",
        record=tmp_path / "recorded",
        on_label=lambda label, target: arrivals.append((label.stamp_ns, target)),
    )
    run = live.live
    assert run is not None and not run.interrupted and run.labels
    check_accounting(run)
    assert run.backend == "onnxruntime@cpu" and run.model_id == live.model_id

    # Label by label: the frame's recorded header, the Classifier's scores and the frame's
    # truth, although the node saw the frames restamped.
    offline_rows = {stamp: row for row, stamp in enumerate(offline.stamps_ns.tolist())}
    rows = [offline_rows[label.stamp_ns] for label in run.labels]
    assert len(set(rows)) == len(rows) and set(live.frame_ids) == {"camera_optical_frame"}
    np.testing.assert_array_equal(live.stamps_ns, offline.stamps_ns[rows])
    np.testing.assert_allclose(live.scores, offline.scores[rows], atol=1e-5)
    np.testing.assert_array_equal(live.targets, offline.targets[rows])
    meter = MultiLabelMeter(len(offline.labels))
    meter.update(offline.scores[rows], offline.targets[rows])
    expected = meter.compute(run.labels[0].thresholds)
    assert live.report.map == pytest.approx(expected.map, abs=1e-6)
    assert [s for s, _ in arrivals] == live.stamps_ns.tolist()
    # The node's own peaks are scored against the boxes of the images its frames show.
    for label in run.labels:
        assert label.peaks.shape == (len(offline.labels), 3)
        assert [tuple(points[0]) for points in label.instances] == list(map(tuple, label.peaks))
    assert live.pointing.images == len(rows)
    if len(rows) == NUM_FRAMES:  # nothing dropped: the very frames the offline run scored
        assert live.pointing.to_dict() == offline.pointing.to_dict()
    for (_, target), row in zip(arrivals, rows, strict=True):
        np.testing.assert_array_equal(target, offline.targets[row])
    _check_latencies(run)

    # The recording holds the labels, with the frames' recorded headers.
    recorded = _labels_in(tmp_path / "recorded")
    assert [(s, f) for s, f, _ in recorded] == [(lb.stamp_ns, lb.frame_id) for lb in run.labels]
    for (_, _, scores), row in zip(recorded, rows, strict=True):
        np.testing.assert_allclose(scores, offline.scores[row], atol=1e-5)

    out = tmp_path / "report"
    text = write_bag_evaluation(live, out)
    assert f"{NUM_FRAMES} frames sent" in text and "latency, frame published" in text
    assert "the node's latency_ms" in text
    summary = json.loads((out / "report.json").read_text())
    assert summary["mode"] == "live" and summary["live"]["labelled"] == len(run.labels)
    assert summary["live"]["latency_ms"]["p50"] == pytest.approx(np.median(run.latencies_ms))
    assert summary["live"]["node_latency_ms"]["p50"] == pytest.approx(
        np.median(run.node_latencies_ms)
    )
    assert (out / "latency_histogram.png").stat().st_size > 10_000
    with (out / "scores.csv").open() as stream:
        table = list(csv.reader(stream))
    assert table[0][:2] == ["stamp_ns", "frame_id"]
    keys = [(label.stamp_ns, label.frame_id) for label in run.labels]
    assert [(int(row[0]), row[1]) for row in table[1:]] == keys


def test_two_cameras_with_shared_stamps_are_scored_against_their_own_truth(
    dataset, bundle, tmp_path, tmp_path_factory
):
    other = tmp_path_factory.mktemp("live_synth_right") / "data"
    generate_dataset(other, num_trainval=1, num_test=NUM_FRAMES, image_size=(160, 120), seed=9)
    datasets = dict(zip(CAMERAS, (dataset, other), strict=True))
    bag = tmp_path / "two_cameras"
    two_camera_bag(datasets, bag, fps=FPS, start_ns=START_NS)
    frames = {(f.stamp_ns, f.frame_id): f for f in iter_frames(bag)}
    assert len(frames) == 2 * NUM_FRAMES and len({stamp for stamp, _ in frames}) == NUM_FRAMES
    classifier = Classifier(bundle, backend="onnxruntime")
    truth = truth_by_frame(datasets, classifier.labels, fps=FPS, start_ns=START_NS)

    evaluation = evaluate_bag_live(bag, bundle, backend="onnxruntime")
    run = evaluation.live
    assert run is not None and run.labels and evaluation.unmatched == 0
    check_accounting(run)
    assert {label.frame_id for label in run.labels} <= set(CAMERAS)
    # Each label has its own camera's scores and truth: with the stamp alone, one camera's
    # frames would be scored against the other's truth.
    for label, stamp, frame_id, target in zip(
        run.labels, evaluation.stamps_ns, evaluation.frame_ids, evaluation.targets, strict=True
    ):
        frame = frames[label.stamp_ns, label.frame_id]
        expected = classifier.classify_one(frame.image, frame.color_order).scores
        np.testing.assert_allclose(label.scores, expected, atol=1e-5)
        assert (stamp, frame_id) == (label.stamp_ns, label.frame_id)
        np.testing.assert_array_equal(target, truth[stamp, frame_id])


def test_the_cells_parameter_file_is_used_but_cannot_redirect_the_replay(dataset, bundle, tmp_path):
    bag = tmp_path / "bag"
    make_bag(dataset, bag, compressed=True, fps=FPS, start_ns=START_NS)
    # The shipped file, as a cell would edit it: its bundle and camera topics name nothing here.
    cell = yaml.safe_load((REPO / "config" / "sorter.yaml").read_text())
    cell["/**"]["ros__parameters"].update(threshold=0.0, backend="onnxruntime")
    params = tmp_path / "cell.yaml"
    params.write_text(yaml.safe_dump(cell))
    evaluation = evaluate_bag_live(bag, bundle, params_file=params)
    run = evaluation.live
    assert run is not None and run.labels
    assert run.backend == "onnxruntime@cpu"
    assert all(label.decisions.all() and (label.thresholds == 0).all() for label in run.labels)
    # Metrics are taken at the thresholds the node decided with: everything is predicted.
    assert evaluation.report.thresholds == (0.0,) * len(evaluation.labels)
    assert evaluation.report.at_threshold["OR"] == pytest.approx(1.0)


@pytest.mark.skipif(not REAL_BAGS, reason="shared camera bags not present")
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_real_camera_bags_give_one_label_per_frame_with_its_header(bundle, tmp_path, storage):
    # Headers and scores are the subject here, not best-effort transport: a frame a loaded
    # machine drops on its way would leave a one-frame bag with nothing to check.
    params = tmp_path / "reliable.yaml"
    node_qos = {"image_reliability": "reliable", "image_depth": 10}
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": node_qos}}))
    classifier = Classifier(bundle, backend="onnxruntime")
    for bag in REAL_BAGS:
        if storage == "sqlite3":
            bag = _db3_copy(bag, tmp_path / f"{bag.name}_db3")
        frames = list(iter_frames(bag))
        run = replay_through_sorter(bag, bundle, backend="onnxruntime", params_file=params)
        check_accounting(run)
        assert run.sent == len(frames) and run.labels
        # Labels come in frame order, each with its frame's recorded header and scores.
        position = {(f.stamp_ns, f.frame_id): index for index, f in enumerate(frames)}
        indices = [position[label.stamp_ns, label.frame_id] for label in run.labels]
        assert indices == sorted(set(indices))
        for label, index in zip(run.labels, indices, strict=True):
            frame = frames[index]
            expected = classifier.classify_one(frame.image, frame.color_order).scores
            np.testing.assert_allclose(label.scores, expected, atol=1e-5)


_PLAY_THEN_REPLAY = """
import json, sys
from pathlib import Path
from mmsag_ros.live.replay import replay_through_sorter
from mmsag_ros.live.play import play_bag

bag, bundle = Path(sys.argv[1]), Path(sys.argv[2])
play_bag(bag)  # nobody listens: only this process's first participant matters
run = replay_through_sorter(bag, bundle, backend="onnxruntime")
print(json.dumps({"sent": run.sent, "labels": len(run.labels), "received": run.node.received}))
"""


@pytest.mark.skipif(not REAL_BAGS, reason="shared camera bags not present")
def test_a_process_without_the_dds_profile_still_delivers_camera_frames(bundle, ros_env):
    # Fast DDS reads its profile at a process's first participant. A player created before the
    # live replay must already carry the shipped profile, or the camera frame, too large for
    # the default shared-memory segment, is lost on its way to the node.
    bag = min(REAL_BAGS, key=lambda path: sum(1 for _ in iter_frames(path)))
    env = {k: v for k, v in ros_env.items() if k != "FASTDDS_DEFAULT_PROFILES_FILE"}
    done = subprocess.run(
        [sys.executable, "-c", _PLAY_THEN_REPLAY, str(bag), str(bundle)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    frames = sum(1 for _ in iter_frames(bag))
    assert counts == {"sent": frames, "labels": frames, "received": frames}


def _db3_copy(bag: Path, copy: Path) -> Path:
    store = mmsag_typestore()
    with (
        AnyReader([bag], default_typestore=store) as reader,
        bag_writer(copy, "sqlite3") as writer,
    ):
        out = {
            c.id: writer.add_connection(c.topic, c.msgtype, typestore=store)
            for c in reader.connections
        }
        for connection, timestamp, raw in reader.messages():
            writer.write(out[connection.id], timestamp, raw)
    return copy
