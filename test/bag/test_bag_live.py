"""mmsag bag eval --live: bags replayed through a real sorter node process over real DDS."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from runtime.runtime_helpers import make_bundle
from support import REPO, SHARED_DATA

from mmsag_ros.bag.evaluate import evaluate_bag, evaluate_bag_live, write_bag_evaluation
from mmsag_ros.bag.frames import IMAGE_TYPE, MULTILABEL_TYPE, iter_frames, stamp_to_ns
from mmsag_ros.bag.live import LiveLabel, format_live_label, replay_through_sorter
from mmsag_ros.bag.make import make_bag
from mmsag_ros.bag.typestore import mmsag_typestore
from mmsag_ros.data.synth import generate_dataset
from mmsag_ros.errors import BagError
from mmsag_ros.runtime.classifier import Classifier

REAL_BAGS = sorted((SHARED_DATA / "bags").glob("*_mcap"))
START_NS = 1_700_000_000_000_000_000
NUM_FRAMES = 10
FPS = 5.0  # far below what the tiny model sustains: no frame should be dropped


@pytest.fixture(autouse=True)
def _isolated_domain(ros_env, monkeypatch):
    """This process's rclpy contexts and the node process share the test's own domain."""
    for name in ("ROS_DOMAIN_ID", "FASTDDS_DEFAULT_PROFILES_FILE", "AMENT_PREFIX_PATH"):
        monkeypatch.setenv(name, ros_env[name])
    monkeypatch.setenv("PYTHONPATH", ros_env["PYTHONPATH"])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("live_synth") / "data"
    generate_dataset(root, num_trainval=1, num_test=NUM_FRAMES, image_size=(160, 120), seed=8)
    return root


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("live_bundle") / "tiny", seed=6)


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
    assert run is not None and run.complete and not run.interrupted
    assert run.sent == len(run.labels) == run.node.received == run.node.published == NUM_FRAMES
    assert run.node.dropped == run.node.rejected == run.not_received == run.stray_labels == 0
    assert run.backend == "onnxruntime@cpu" and run.model_id == live.model_id

    # Frame by frame: the same stamps, the same scores as the Classifier run in-process.
    np.testing.assert_array_equal(np.sort(live.stamps_ns), offline.stamps_ns)
    order = np.argsort(live.stamps_ns)
    np.testing.assert_allclose(live.scores[order], offline.scores, atol=1e-5)
    np.testing.assert_array_equal(live.targets[order], offline.targets)
    assert live.report.map == pytest.approx(offline.report.map, abs=1e-6)
    assert sorted(s for s, _ in arrivals) == list(offline.stamps_ns)
    assert all(target is not None for _, target in arrivals)

    latencies = run.latencies_ms
    assert latencies.shape == (NUM_FRAMES,) and (latencies > 0).all()
    # Each label arrives within a frame period: a label that waited for the next frame (or a
    # backlog) would show here.
    assert latencies.max() < 1000 / FPS
    assert all(label.inference_ms > 0 for label in run.labels)

    # The recording holds one label per frame with the frame's header.
    recorded = _labels_in(tmp_path / "recorded")
    frames = [(f.stamp_ns, f.frame_id) for f in iter_frames(bag)]
    assert [(s, f) for s, f, _ in recorded] == frames
    by_stamp = dict(zip(offline.stamps_ns.tolist(), offline.scores, strict=True))
    for stamp, _, scores in recorded:
        np.testing.assert_allclose(scores, by_stamp[stamp], atol=1e-5)

    out = tmp_path / "report"
    text = write_bag_evaluation(live, out)
    assert f"{NUM_FRAMES} frames sent" in text and "latency, frame published" in text
    summary = json.loads((out / "report.json").read_text())
    assert summary["mode"] == "live" and summary["live"]["labelled"] == NUM_FRAMES
    assert summary["live"]["latency_ms"]["p50"] == pytest.approx(np.percentile(latencies, 50))
    assert (out / "latency_histogram.png").stat().st_size > 10_000


def test_cli_live_prints_each_label_then_the_report(dataset, bundle, tmp_path, ros_env):
    bag = tmp_path / "bag"
    make_bag(dataset, bag, compressed=True, fps=FPS, start_ns=START_NS)
    out = tmp_path / "eval"
    command = [sys.executable, "-m", "mmsag_ros.cli", "bag", "eval", str(bag), "--bundle"]
    command += [str(bundle), "--live", "--backend", "onnxruntime", "--out", str(out)]
    done = subprocess.run(
        command, cwd=REPO, env=ros_env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    label_lines = [line for line in lines if "| truth:" in line]
    assert len(label_lines) == NUM_FRAMES
    assert label_lines[0].split()[:2] == ["1", "camera_optical_frame"]
    assert any(line.startswith("live, through a sorter node") for line in lines)
    assert any(line.startswith("mAP") for line in lines)
    for name in ("report.json", "pr_curves.png", "latency_histogram.png", "sorter.log"):
        assert (out / name).is_file()
    assert "configured" in (out / "sorter.log").read_text()


def test_a_fast_replay_drops_frames_and_accounts_for_every_one(dataset, bundle, tmp_path):
    bag = tmp_path / "bag"
    make_bag(dataset, bag, compressed=True, fps=FPS, start_ns=START_NS)
    run = replay_through_sorter(bag, bundle, backend="onnxruntime", rate=500.0)
    assert run.complete
    assert run.node.published == len(run.labels) < run.sent == NUM_FRAMES
    assert run.node.received == run.node.published + run.node.dropped + run.node.rejected
    assert run.sent == run.node.received + run.not_received
    assert run.node.dropped + run.not_received > 0


def _two_camera_bag(dataset: Path, path: Path, tmp_path: Path) -> None:
    """The split seen by two cameras (same stamps, own frame_ids), one ground-truth stream."""
    parts = []
    for camera in ("cam_left", "cam_right"):
        part = tmp_path / camera
        topic = f"/{camera}/image_raw/compressed"
        make_bag(dataset, part, compressed=True, fps=FPS, start_ns=START_NS, topic=topic,
                 frame_id=camera)  # fmt: skip
        parts.append(part)
    store = mmsag_typestore()
    with (
        AnyReader(parts, default_typestore=store) as reader,
        Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer,
    ):
        out = {}
        for connection in reader.connections:
            if connection.topic not in out:
                out[connection.topic] = writer.add_connection(
                    connection.topic, connection.msgtype, typestore=store
                )
        written = set()
        for connection, timestamp, raw in reader.messages():
            key = (connection.topic, timestamp)
            if key not in written:  # both parts carry the same ground truth
                written.add(key)
                writer.write(out[connection.topic], timestamp, raw)


def test_two_cameras_in_one_bag_are_labelled_frame_by_frame(dataset, bundle, tmp_path):
    bag = tmp_path / "two_cameras"
    _two_camera_bag(dataset, bag, tmp_path)
    frames = list(iter_frames(bag))
    assert {f.frame_id for f in frames} == {"cam_left", "cam_right"}
    run = replay_through_sorter(bag, bundle, backend="onnxruntime")
    assert run.complete and run.sent == len(run.labels) == len(frames) == 2 * NUM_FRAMES
    assert sorted((label.stamp_ns, label.frame_id) for label in run.labels) == sorted(
        (f.stamp_ns, f.frame_id) for f in frames
    )
    classifier = Classifier(bundle, backend="onnxruntime")
    by_key = {(label.stamp_ns, label.frame_id): label.scores for label in run.labels}
    for frame in frames:
        expected = classifier.classify_one(frame.image, frame.color_order).scores
        np.testing.assert_allclose(by_key[frame.stamp_ns, frame.frame_id], expected, atol=1e-5)


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
    assert run is not None and len(run.labels) == NUM_FRAMES
    assert run.backend == "onnxruntime@cpu"
    assert all(label.decisions.all() and (label.thresholds == 0).all() for label in run.labels)
    # Metrics are taken at the thresholds the node decided with: everything is predicted.
    assert evaluation.report.thresholds == (0.0,) * len(evaluation.labels)
    assert evaluation.report.at_threshold["OR"] == pytest.approx(1.0)


def _write_bag_with_bad_frames(path: Path) -> list[int]:
    """rgb8 frames 200 ms apart, every second one undecodable; returns the good stamps."""
    store = mmsag_typestore()
    types = store.types
    good = []
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        camera = writer.add_connection("/cam/image_raw", IMAGE_TYPE, typestore=store)
        for index in range(6):
            stamp_ns = START_NS + index * 200_000_000
            sec, nanosec = divmod(stamp_ns, 1_000_000_000)
            header = types["std_msgs/msg/Header"](
                stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                frame_id="cam",
            )
            pixels = np.full((6, 8, 3), 40 * index, np.uint8).reshape(-1)
            encoding = "rgb8"
            if index % 2:  # too few bytes, or an encoding the node does not take
                pixels, encoding = (pixels[:100], "rgb8") if index % 4 == 1 else (pixels, "yuv422")
            else:
                good.append(stamp_ns)
            image = types[IMAGE_TYPE](
                header=header, height=6, width=8, encoding=encoding, is_bigendian=0, step=24,
                data=pixels,
            )  # fmt: skip
            writer.write(camera, stamp_ns, store.serialize_cdr(image, IMAGE_TYPE))
    return good


def test_bad_frames_are_rejected_counted_and_the_node_keeps_labelling(bundle, tmp_path):
    bag = tmp_path / "bad"
    good = _write_bag_with_bad_frames(bag)
    run = replay_through_sorter(bag, bundle, backend="onnxruntime")
    assert run.complete and run.sent == 6
    assert run.node.rejected == 3
    assert [label.stamp_ns for label in run.labels] == good


@pytest.mark.skipif(not REAL_BAGS, reason="shared camera bags not present")
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_real_camera_bags_give_one_label_per_frame_with_its_header(bundle, tmp_path, storage):
    classifier = Classifier(bundle, backend="onnxruntime")
    for bag in REAL_BAGS:
        if storage == "sqlite3":
            bag = _db3_copy(bag, tmp_path / f"{bag.name}_db3")
        frames = list(iter_frames(bag))
        run = replay_through_sorter(bag, bundle, backend="onnxruntime")
        assert run.complete and run.sent == len(frames) == len(run.labels)
        assert [(label.stamp_ns, label.frame_id) for label in run.labels] == [
            (f.stamp_ns, f.frame_id) for f in frames
        ]
        for label, frame in zip(run.labels, frames, strict=True):
            expected = classifier.classify_one(frame.image, frame.color_order).scores
            np.testing.assert_allclose(label.scores, expected, atol=1e-5)


def _db3_copy(bag: Path, copy: Path) -> Path:
    store = mmsag_typestore()
    with (
        AnyReader([bag], default_typestore=store) as reader,
        Writer(copy, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer,
    ):
        out = {
            c.id: writer.add_connection(c.topic, c.msgtype, typestore=store)
            for c in reader.connections
        }
        for connection, timestamp, raw in reader.messages():
            writer.write(out[connection.id], timestamp, raw)
    return copy


def test_a_node_that_cannot_start_is_one_clear_error(dataset, bundle, tmp_path, ros_env):
    bag = tmp_path / "bag"
    make_bag(dataset, bag, compressed=True, fps=FPS, start_ns=START_NS)
    with pytest.raises(BagError, match=r"did not start: configure failed: the tensorrt backend"):
        replay_through_sorter(bag, bundle, backend="tensorrt")
    command = [sys.executable, "-m", "mmsag_ros.cli", "bag", "eval", str(bag), "--bundle"]
    command += [str(bundle), "--live", "--backend", "tensorrt", "--out", str(tmp_path / "e")]
    done = subprocess.run(command, cwd=REPO, env=ros_env, capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "sorter node did not start" in done.stderr and "node log:" in done.stderr


def _sorter_children() -> list[str]:
    """Command lines of this process's children that run a sorter node."""
    children = []
    for task in Path("/proc/self/task").iterdir():
        for pid in (task / "children").read_text().split():
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue  # exited meanwhile
            if "mmsag_ros.ros.sorter" in command:
                children.append(command)
    return children


def test_truncated_and_corrupt_bags_fail_in_one_line_and_leave_no_node(dataset, bundle, tmp_path):
    truncated = tmp_path / "truncated"
    make_bag(dataset, truncated, compressed=True, fps=FPS, start_ns=START_NS)
    (storage,) = truncated.glob("*.mcap")
    storage.write_bytes(storage.read_bytes()[: storage.stat().st_size // 2])
    with pytest.raises(BagError, match="cannot open bag"):
        evaluate_bag_live(truncated, bundle, backend="onnxruntime")

    # Intact index, damaged frames in the middle: found during the replay, with the node up.
    corrupt = tmp_path / "corrupt"
    make_bag(dataset, corrupt, compressed=True, fps=50.0, start_ns=START_NS)
    (storage,) = corrupt.glob("*.mcap")
    data = bytearray(storage.read_bytes())
    start, end = int(0.4 * len(data)), int(0.6 * len(data))
    data[start:end] = bytes(end - start)
    storage.write_bytes(bytes(data))
    with pytest.raises(BagError, match="corrupt or truncated"):
        replay_through_sorter(corrupt, bundle, backend="onnxruntime")
    assert _sorter_children() == []


def test_a_label_line_shows_decisions_truth_and_latency():
    label = LiveLabel(
        stamp_ns=1_700_000_000_500_000_000,
        frame_id="cam",
        scores=np.array([0.9, 0.2, 0.7]),
        decisions=np.array([True, False, True]),
        thresholds=np.full(3, 0.5, np.float32),
        latency_ms=12.34,
        inference_ms=5.0,
    )
    names = ("metal", "glass", "shoe")
    line = format_live_label(3, label, None, names)
    assert line == "    3 cam 1700000000.500: metal 0.90, shoe 0.70  [12.3 ms]"
    # shoe is marked ignore (-1): deciding it is neither right nor wrong.
    ignored = format_live_label(3, label, np.array([1.0, 0.0, -1.0]), names)
    assert ignored.endswith("| truth: metal ok  [12.3 ms]")
    assert "| truth: metal, glass MISS" in format_live_label(3, label, np.array([1, 1, 0.0]), names)


def test_live_only_options_without_live_are_refused(dataset, bundle, tmp_path, capsys):
    from mmsag_ros.cli import main

    bag = tmp_path / "bag"
    make_bag(dataset, bag, compressed=True, fps=FPS, start_ns=START_NS)
    base = ["bag", "eval", str(bag), "--bundle", str(bundle), "--out", str(tmp_path / "e")]
    assert main([*base, "--record", str(tmp_path / "rec")]) == 1
    assert "add --live" in capsys.readouterr().err
    assert main([*base, "--live", "--sorter-params", str(tmp_path / "missing.yaml")]) == 1
    assert "missing.yaml does not exist" in capsys.readouterr().err
    assert not (tmp_path / "rec").exists()
