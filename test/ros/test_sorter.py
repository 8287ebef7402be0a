"""The sorter node as a real process over real DDS: labels, lifecycle, bad frames, parameters.

The node runs as ``python -m mmsag_ros.ros.sorter``; the peer (``test/sorter_peer.py``) is a
second process acting as cameras and controller. Scores are checked against an offline
Classifier on the very same frames.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import sorter_peer
from runtime.runtime_helpers import make_bundle
from support import REPO, SHARED_DATA, start_python, start_sorter

from mmsag_ros.runtime.classifier import Classifier, Prediction

# Real sorter node processes: the slow tier (the fast tier covers the node in-process).
pytestmark = pytest.mark.slow

PEER = REPO / "test" / "sorter_peer.py"
CAMERAS = ("cam_a", "cam_b")
COUNT = 6
OK, WARN, ERROR = 0, 1, 2


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("sorter") / "tiny", seed=0)


@pytest.fixture(scope="module")
def broken_bundle_dir(bundle_dir, tmp_path_factory) -> Path:
    """The same bundle with its ONNX file truncated: the manifest's SHA-256 no longer matches."""
    broken = tmp_path_factory.mktemp("sorter") / "broken"
    shutil.copytree(bundle_dir, broken)
    onnx = broken / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:1000])
    return broken


def _run_peer(env: dict[str, str], *args: str) -> dict:
    peer = start_python(PEER, *args, env=env)
    out, err = peer.communicate(timeout=600)
    assert peer.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _offline(bundle_dir: Path, indices: list[int]) -> tuple[dict[int, Prediction], Classifier]:
    frames = [sorter_peer.make_frame(i) for i in indices]
    orders = {"rgb8": "rgb", "bgr8": "bgr", "mono8": "mono", "rgba8": "rgba", "bgra8": "bgra"}
    with Classifier(bundle_dir, backend="onnxruntime", device="cpu") as classifier:
        predictions = [classifier.classify_one(f, orders[e]) for f, e in frames]
        return dict(zip(indices, predictions, strict=True)), classifier


def test_labels_match_offline_classifier_and_bad_frames_are_rejected(bundle_dir, ros_env):
    node = start_sorter(
        ros_env,
        f"bundle:={bundle_dir}",
        "autostart:=true",
        f"camera_topics:=[{', '.join(CAMERAS)}, cam_idle]",
        "diagnostics_period_s:=0.5",
    )
    try:
        result = _run_peer(ros_env, "scenario", "--cameras", ",".join(CAMERAS), "--count", "6")
        assert node.poll() is None, "the node died"
    finally:
        err = node.stop()
    labels = {int(k): v for k, v in result["labels"].items()}
    good = [*range(COUNT), sorter_peer.GOOD_AFTER_BAD, *sorter_peer.THRESHOLD_INDICES]
    # Every good frame got exactly its label; the bad ones (900, 901) got none.
    assert sorted(labels) == sorted(good), err
    assert "(Ctrl-C or an external shutdown); exiting" in err  # Ctrl-C leaves a line
    expected, classifier = _offline(bundle_dir, good)
    bundle = classifier.bundle
    for index in good:
        label, prediction = labels[index], expected[index]
        camera = CAMERAS[index % len(CAMERAS)] if index < COUNT else CAMERAS[0]
        assert label["frame_id"] == f"{camera}_optical/{index}"
        assert label["stamp"][0] > 0
        assert label["class_names"] == list(bundle.labels.names)
        assert label["model_id"] == bundle.model_id
        # Contract 3: the size the peaks are normalised to, and the version itself.
        height, width = sorter_peer.make_frame(index)[0].shape[:2]
        assert label["image_size"] == [width, height] and label["contract_version"] == 3
        np.testing.assert_allclose(label["scores"], prediction.scores, atol=1e-4)
        assert len(label["peaks"]) == len(bundle.labels)
        np.testing.assert_allclose(label["peaks"], prediction.peaks, atol=1e-3)
        # One group of instance points per class, the class's peak first.
        assert len(label["instances"]) == len(bundle.labels)
        for points, expected_points in zip(label["instances"], prediction.instances, strict=True):
            np.testing.assert_allclose(points, expected_points.reshape(-1, 3), atol=1e-3)
        assert [points[0] for points in label["instances"]] == label["peaks"]
        assert label["inference_time_ms"] > 0
        assert 0 < label["latency_ms"] < 60_000  # from the capture stamp, not from 1970
        if index != sorter_peer.THRESHOLD_INDICES[0]:
            np.testing.assert_allclose(label["thresholds"], bundle.thresholds, atol=1e-6)
            assert label["decisions"] == prediction.decisions.tolist()
    # threshold=0 makes every class present; bad values are refused with a reason.
    zero = labels[sorter_peer.THRESHOLD_INDICES[0]]
    assert zero["thresholds"] == [0.0] * len(bundle.labels)
    assert all(zero["decisions"])
    params = result["params"]
    assert params["zero"]["successful"] and params["restore"]["successful"]
    assert not params["too_high"]["successful"]
    assert "threshold" in params["too_high"]["reason"]
    assert not params["wrong_length"]["successful"]
    assert "3 values" in params["wrong_length"]["reason"]
    # /diagnostics counts the two bad frames and names the model and backend.
    reports = result["diagnostics"]
    assert all(balanced(d) for d in reports if "in_flight" in d), reports
    last = result["settled"]
    assert last, reports
    assert last["model_id"] == bundle.model_id
    assert last["hardware_id"] == "/sorter"
    assert last["lifecycle_state"] == "active"
    assert int(last["rejected"]) == 2
    # Counted by what was wrong: 32FC1 is an encoding the node does not read, 10 bytes of rgb8
    # do not fill the frame its header describes.
    kinds = {k: last[f"rejected_{k}"] for k in ("encoding", "layout", "oversize", "corrupt")}
    assert kinds == {"encoding": "1", "layout": "1", "oversize": "0", "corrupt": "0"}
    assert int(last["published"]) == len(good)
    assert int(last["received"]) == len(good) + 2
    assert int(last["dropped"]) == int(last["failed"]) == 0
    assert last["backend"].startswith("onnxruntime")
    assert {"latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "oldest_in_flight_age_s"} <= set(
        last
    )
    # The camera topic with the fewest publishers is cam_idle, which has none.
    assert last["camera_publishers"] == "0"
    # Subscribed, but nothing ever arrived: stale once stale_after_s has passed.
    # By full name, as type_mismatches: several cells' cameras can be told apart.
    assert "/cam_idle" in result["stale"]["stale_cameras"].split(","), reports
    assert result["stale"]["level"] == WARN and "stale" in result["stale"]["message"]
    # Rejected frames turn the status to WARN in the report that counts them.
    assert any(d["level"] == WARN and "rejected" in d["message"] for d in reports)


def balanced(report: dict) -> bool:
    """The ledger every report must satisfy."""
    keys = ("published", "dropped", "rejected", "failed", "in_flight")
    return int(report["received"]) == sum(int(report[key]) for key in keys)


def test_lifecycle_services_gate_the_output_and_shutdown_ends_the_process(bundle_dir, ros_env):
    # The shipped parameter file says autostart: true; the command line overrides it.
    node = start_sorter(
        ros_env,
        f"bundle:={bundle_dir}",
        "autostart:=false",
        "diagnostics_period_s:=0.3",
        params_file=REPO / "config/sorter.yaml",
    )
    try:
        result = _run_peer(ros_env, "lifecycle", "--expect", "ok")
        # The shutdown transition ends the process by itself, with success.
        assert node.wait(timeout=60) == 0
    finally:
        err = node.stop()
    # Diagnostics come in every state, the lifecycle state named.
    assert result["before_configure"]["level"] == WARN
    assert result["before_configure"]["message"] == "unconfigured: not labelling"
    assert result["inactive_report"]["message"] == "inactive: not labelling"
    assert result["configure"] and result["after_configure"] == "inactive"
    assert result["activate"] and result["label_while_active"]
    # Parameters read only at configure are refused with the reason while configured.
    refused = result["static_while_active"]
    assert not refused["successful"]
    assert "camera_topics only take(s) effect at configure" in refused["reason"]
    assert result["dynamic_while_active"]["successful"]
    # Deactivated, the sorter has no camera subscription: a frame sent then never enters.
    assert result["deactivate"] and result["unsubscribed_while_inactive"]
    assert result["reactivate"] and result["label_after_reactivate"]
    assert result["labels"] == [0, 2]
    assert result["deactivate_again"] and result["cleanup"]
    assert result["after_cleanup"] == "unconfigured"
    assert result["cleanup_report"]["received"] == "2"
    assert result["static_while_unconfigured"]["successful"]
    assert result["shutdown"]
    # An operator reading the log can follow every transition and change.
    for line in (
        "configured ",
        "active: image frames from /image -> /labels",
        "parameter threshold set to 0.25",
        "inactive: camera subscriptions closed",
        "unconfigured: model released",
        "shut down from unconfigured; exiting",
    ):
        assert line in err, err


@pytest.mark.parametrize(
    ("value", "reason"),
    [("diagnostics_period_s:=0.0", "diagnostics_period_s"), ("max_batch:=many", "max_batch")],
)
def test_a_start_up_value_rclpy_refuses_ends_the_process_in_one_line(value, reason, ros_env):
    node = start_sorter(ros_env, "bundle:=/nowhere", value)
    node.wait(timeout=120)
    err = node.stop()
    assert node.returncode == 2, err
    assert "Traceback" not in err and "bad parameter: " in err and reason in err, err


@pytest.mark.parametrize("fault", ["broken_bundle", "bad_topic", "no_gpu"])
def test_configure_fails_cleanly_and_says_why(fault, bundle_dir, broken_bundle_dir, ros_env):
    if fault == "broken_bundle":
        node = start_sorter(ros_env, f"bundle:={broken_bundle_dir}", "diagnostics_period_s:=0.3")
        retry, expected = [], "model.onnx"
    elif fault == "no_gpu":
        # The GPU launch on a machine without TensorRT: one line, no silent CPU fallback.
        gpu = ("backend:=tensorrt", "device:=cuda")
        node = start_sorter(ros_env, f"bundle:={bundle_dir}", *gpu, "diagnostics_period_s:=0.3")
        retry, expected = [], "TensorRT is not installed here"
    else:
        node = start_sorter(
            ros_env, f"bundle:={bundle_dir}", "camera_topics:=[cam a]", "diagnostics_period_s:=0.3"
        )
        retry, expected = ["--retry-topics", "image"], "'cam a' is not a valid ROS topic name"
    try:
        result = _run_peer(ros_env, "lifecycle", "--expect", "fail", *retry)
        assert node.poll() is None, "a failed configure must not end the node"
    finally:
        err = node.stop()
    assert result["configure"] is False and result["after_configure"] == "unconfigured"
    failures = [line for line in err.splitlines() if "configure failed" in line]
    assert len(failures) == 1 and expected in failures[0], err
    # The failure is on /diagnostics as an ERROR, with the reason, until a configure succeeds.
    report = result["failed_report"]
    assert report["level"] == ERROR and expected in report["configure_error"], report
    assert report["message"].startswith("configure failed:")
    if retry:
        assert result["fix"]["successful"] and result["retry"]
        after_retry = result["after_retry"]
        assert after_retry["level"] == WARN and after_retry["configure_error"] == ""


def test_a_camera_topic_of_the_wrong_type_is_named(bundle_dir, ros_env):
    node = start_sorter(
        ros_env,
        f"bundle:={bundle_dir}",
        "autostart:=true",
        "input_type:=compressed",
        "diagnostics_period_s:=0.3",
    )
    try:
        report = _run_peer(ros_env, "mismatch")
        assert node.poll() is None
    finally:
        err = node.stop()
    assert report["type_mismatches"] == "/image"
    assert report["level"] == ERROR and "wrong message type on /image" in report["message"]
    lines = [line for line in err.splitlines() if "carries sensor_msgs/msg/Image" in line]
    assert len(lines) == 1, err
    assert "input_type is compressed" in lines[0] and "compressed:=false" in lines[0]


BAG = SHARED_DATA / "bags" / "raspicam_marker_mcap"


def _assert_only_the_hostile_frames_were_lost(
    result: dict, hostile: int, kinds: dict[str, str], err: str
) -> None:
    """What a hostile peer run (sorter_peer.hostile) must show, raw or compressed."""
    # The good camera got every label; of the bad one's, only the valid frame (400).
    good = [*range(6), *range(201, 201 + hostile), 210]
    assert result["labels"] == sorted([*good, 400]), err
    settled = result["settled"]
    counted = {k: settled[f"rejected_{k}"] for k in ("encoding", "layout", "oversize", "corrupt")}
    assert counted == kinds, settled
    assert int(settled["published"]) == len(good) + 1 and int(settled["failed"]) == 0
    assert all(balanced(d) for d in result["diagnostics"] if "in_flight" in d)
    # The other camera kept its usual latency: no hostile frame stalled the worker (the scans
    # alone would decode for seconds).
    usual, during = np.median(result["baseline_ms"]), np.median(result["during_ms"])
    assert min(result["during_ms"]) > 0 and during < 3 * usual + 250, result


def test_hostile_frames_and_bundles_cost_only_themselves(bundle_dir, ros_env, tmp_path):
    hostile_bundle = tmp_path / "hostile"
    shutil.copytree(bundle_dir, hostile_bundle)
    (hostile_bundle / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    node = start_sorter(
        ros_env,
        f"bundle:={bundle_dir}",
        "autostart:=true",
        "input_type:=compressed",
        "camera_topics:=[cam_bad, cam_good]",
        "diagnostics_period_s:=0.5",
        "expected_rate_hz:=1000",  # an integer, as a person types it; no camera gets near
        f"max_input_pixels:={sorter_peer.OVERSIZED_MAX_PIXELS}",
    )
    try:
        result = _run_peer(
            ros_env,
            "hostile",
            "--cameras",
            "cam_bad,cam_good",
            "--hostile-bundle",
            str(hostile_bundle),
        )
        assert node.poll() is None, "the node died"
    finally:
        err = node.stop()
    # The good camera got every label; of the bad one's, only the valid JPEG with a large ICC.
    kinds = {"encoding": "1", "layout": "1", "oversize": "2", "corrupt": "1"}
    _assert_only_the_hostile_frames_were_lost(result, len(sorter_peer.hostile_frames()), kinds, err)
    # Each hostile frame refused for its own reason, none of them decoded at length.
    reasons = dict(result["refused"])
    assert "more than 32 scans" in reasons["3000 progressive scans"]
    assert "exceeds max_input_pixels" in reasons["announces 2 MP"]
    assert "unsupported compressed format 'tiff'" in reasons["a tiff"]
    assert not result["swap"]["successful"]
    assert "manifest.json is nested too deeply" in result["swap"]["reason"]
    # Against an expected rate no camera meets: a camera silent for a whole window is an
    # ERROR, as diagnostic_updater's FrequencyStatus says (the WARN for one sending off its
    # rate: test_sorter_stats.py); every report gives each camera's rate.
    reports = result["diagnostics"]
    silent = [d for d in reports if d["message"].startswith("no frames from ")]
    assert any("/cam_bad" in d["message"] for d in silent), reports
    assert all(d["level"] == ERROR and "(expected 1000 Hz)" in d["message"] for d in silent)
    active = [d for d in reports if d["lifecycle_state"] == "active"]
    rates = [dict(r.split("=") for r in d["camera_rates_hz"].split(",")) for d in active]
    assert all(set(r) == {"/cam_bad", "/cam_good"} for r in rates)
    assert any(float(r["/cam_good"]) > 0 for r in rates)


def test_hostile_raw_frames_cost_only_themselves(bundle_dir, ros_env):
    # The raw side of the test above: what a broken driver sends on one camera (a depth
    # encoding, a 4 MB row padding, short data, an odd YUYV width, too many pixels) is refused
    # by its fields, by kind, while the other camera keeps its labels and its latency; a valid
    # Bayer frame on the bad camera is labelled.
    node = start_sorter(
        ros_env,
        f"bundle:={bundle_dir}",
        "autostart:=true",
        "camera_topics:=[cam_bad, cam_good]",
        "diagnostics_period_s:=0.5",
        f"max_input_pixels:={sorter_peer.OVERSIZED_MAX_PIXELS}",
    )
    try:
        result = _run_peer(ros_env, "hostile_raw", "--cameras", "cam_bad,cam_good")
        assert node.poll() is None, "the node died"
    finally:
        err = node.stop()
    kinds = {"encoding": "1", "layout": "3", "oversize": "1", "corrupt": "0"}
    _assert_only_the_hostile_frames_were_lost(
        result, len(sorter_peer.hostile_raw_frames()), kinds, err
    )
    reasons = dict(result["refused"])
    assert "unsupported image encoding '32FC1'" in reasons["a 32FC1 depth frame"]
    assert "pads a 3-byte rgb8 row by more than a row" in reasons["1x1 with a 4 MB step"]
    assert "expected step x height" in reasons["data shorter than its rows"]
    assert "needs an even width" in reasons["yuyv of odd width"]
    assert "exceeds max_input_pixels" in reasons["2.2 MP"]


def test_compressed_frames_and_latest_frame_policy(bundle_dir, ros_env):
    bag = str(BAG) if BAG.is_dir() else None
    node = start_sorter(
        ros_env,
        f"bundle:={bundle_dir}",
        "autostart:=true",
        "input_type:=compressed",
        "diagnostics_period_s:=0.5",
        f"max_input_pixels:={sorter_peer.OVERSIZED_MAX_PIXELS}",
    )
    flood = 40
    try:
        result = _run_peer(
            ros_env, "compressed", "--count", str(flood), *(["--bag", bag] * bool(bag))
        )
        assert node.poll() is None, "the node died"
    finally:
        err = node.stop()
    frames = sorter_peer.compressed_frames(bag)
    labels = {int(k): v for k, v in result["labels"].items()}
    # Every decodable frame got its label, none of the bad ones did.
    assert sorted(labels) == [index for index, _, _ in frames], err
    images = [
        cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) for _, _, data in frames
    ]
    with Classifier(bundle_dir, backend="onnxruntime", device="cpu") as classifier:
        expected = [classifier.classify_one(image, "bgr") for image in images]
        names = list(classifier.labels.names)
    for (index, _, _), prediction in zip(frames, expected, strict=True):
        assert labels[index]["class_names"] == names
        assert labels[index]["frame_id"] == f"image_optical/{index}"
        np.testing.assert_allclose(labels[index]["scores"], prediction.scores, atol=1e-4)
    before = result["before_flood"]
    assert int(before["rejected"]) == len(sorter_peer.BAD_COMPRESSED), before
    # Truncated and garbage data, no data, a TIFF, a PNG too large: each counted by its kind.
    kinds = {k: before[f"rejected_{k}"] for k in ("encoding", "layout", "oversize", "corrupt")}
    assert kinds == {"encoding": "1", "layout": "1", "oversize": "1", "corrupt": "2"}, before
    assert int(before["published"]) == len(frames)
    # The oversized PNG came last of the bad ones: refused from its header, never decoded.
    assert "exceeds max_input_pixels 1000000" in before["last_rejection"]
    # Flooding into a 2 Hz cap: the newest frame is labelled, stale ones dropped, not queued:
    # batches start at least 0.5 s apart, so the flood cannot yield more labels than that allows.
    assert result["rate"]["successful"]
    flood_labels = result["flood_labels"]
    assert flood_labels[-1] == 1000 + flood - 1
    assert len(flood_labels) <= 2.0 * result["flood_s"] + 1, (flood_labels, result["flood_s"])
    after = result["after_flood"]
    assert after and all(balanced(d) for d in result["diagnostics"] if "in_flight" in d)
    flood_received = int(after["received"]) - int(before["received"])
    flood_dropped = int(after["dropped"]) - int(before["dropped"])
    assert int(after["published"]) - int(before["published"]) == len(flood_labels)
    assert flood_received == len(flood_labels) + flood_dropped
    assert int(after["failed"]) == 0 and int(after["rejected"]) == int(before["rejected"])
