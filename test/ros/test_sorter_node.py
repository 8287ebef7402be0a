"""The sorter node in this process, for what a peer process cannot provoke: a batch stuck in
inference while a transition runs.

The node is real (rclpy, its own context and domain); frames go straight into its camera
callback, and ``GatedClassifier`` holds the batch inside inference for as long as the test
needs. Every wait is for a condition.
"""

from __future__ import annotations

import json
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn as Ret
from rclpy.parameter import Parameter
from ros.worker_support import WAIT_S, GatedClassifier, frame_msg, frame_pixels, settled
from runtime.runtime_helpers import make_bundle

from mmsag_ros.bundle.manifest import load_bundle
from mmsag_ros.ros.sorter_node import SorterNode
from mmsag_ros.ros.worker import Frame


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("node") / "tiny", seed=0)


@pytest.fixture(scope="module")
def int8_bundle_dir(tmp_path_factory) -> Path:
    """A tiny bundle with an int8 variant (kept whatever the untrained model scores)."""
    from export.conftest import write_synthetic_voc, write_variant_bundle

    work = tmp_path_factory.mktemp("int8")
    voc = write_synthetic_voc(work / "voc", num_trainval=24)
    return write_variant_bundle(
        work / "bundle", voc=voc, precisions="fp32,int8", calib_images=8
    ).root


@contextmanager
def sorter_node(ros_env, **overrides):
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    node = SorterNode(
        context=context,
        parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()],
    )
    try:
        yield node
    finally:
        node.release()
        node.destroy_node()
        rclpy.shutdown(context=context)


@pytest.fixture
def node(bundle_dir, ros_env):
    with sorter_node(ros_env, bundle=str(bundle_dir), backend="onnxruntime") as sorter:
        yield sorter


def test_the_precision_parameter_runs_that_variant_and_names_it(int8_bundle_dir, ros_env):
    with sorter_node(
        ros_env, bundle=str(int8_bundle_dir), precision="int8", intra_op_threads=1
    ) as node:
        assert node.trigger_configure() == Ret.SUCCESS
        classifier = node._classifier
        assert classifier.model_id.endswith("/int8")
        assert classifier.backend.kind == "onnxruntime"
        info = classifier.backend.info()
        assert (info["precision"], info["model"], info["intra_op_threads"]) == (
            "int8",
            "model.int8.onnx",
            1,
        )


def test_a_variant_the_bundle_lacks_fails_configure_with_the_reason(bundle_dir, ros_env):
    with sorter_node(ros_env, bundle=str(bundle_dir), precision="fp16") as node:
        assert node.trigger_configure() == Ret.FAILURE
        assert "has no fp16 variant: it was not exported" in node._configure_error


def test_integers_are_taken_for_double_parameters(bundle_dir, ros_env):
    # As `-p threshold:=1` and `ros2 param set … threshold 0` send them.
    overrides = {"bundle": str(bundle_dir), "backend": "onnxruntime", "threshold": 1}
    with sorter_node(ros_env, **overrides, max_rate_hz=30) as node:
        assert node.get_parameter("threshold").value == 1.0
        assert node.get_parameter("max_rate_hz").type_ == Parameter.Type.DOUBLE
        result = node.set_parameters([Parameter("threshold", value=0)])[0]
        assert result.successful, result.reason
        assert node.get_parameter("threshold").type_ == Parameter.Type.DOUBLE
        assert node.set_parameters([Parameter("class_thresholds", value=[1, -1])])[0].successful
        assert list(node.get_parameter("class_thresholds").value) == [1.0, -1.0]
        # Other types stay refused, and integer parameters stay integers.
        assert not node.set_parameters([Parameter("threshold", value="high")])[0].successful
        assert not node.set_parameters([Parameter("max_instances", value=2.0)])[0].successful


def test_diagnostics_keep_coming_on_sim_time_without_a_clock(bundle_dir, ros_env):
    from diagnostic_msgs.msg import DiagnosticArray

    overrides = {"bundle": str(bundle_dir), "use_sim_time": True, "diagnostics_period_s": 0.1}
    with sorter_node(ros_env, **overrides) as node:
        reports = []
        listener = rclpy.create_node("diagnostics_listener", context=node.context)
        listener.create_subscription(DiagnosticArray, "/diagnostics", reports.append, 10)
        executor = SingleThreadedExecutor(context=node.context)
        executor.add_node(node)
        executor.add_node(listener)
        deadline = time.monotonic() + WAIT_S
        try:
            # Nobody publishes /clock: ROS time stands at zero, the report timer must not.
            while len(reports) < 3 and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=0.05)
        finally:
            executor.shutdown()
            listener.destroy_node()
        assert node.get_clock().now().nanoseconds == 0
        assert len(reports) >= 3


def test_an_exception_in_a_callback_is_counted_and_the_executor_spins_on(node):
    from mmsag_ros.ros.sorter import _spin_once

    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    calls = []

    def buggy() -> None:
        calls.append(1)
        raise KeyError("a bug in some callback")

    timer = node.create_timer(0.01, buggy)
    try:
        while len(calls) < 2:
            _spin_once(executor, node, 0.1)  # raised out of main() before
    finally:
        node.destroy_timer(timer)
        executor.remove_node(node)
    values = {kv.key: kv.value for kv in node.status().values}
    assert int(values["callback_errors"]) >= 2
    assert values["last_callback_error"] == "KeyError: 'a bug in some callback'"


def test_deactivate_with_a_stuck_batch_hands_the_model_to_the_batch(node):
    assert node.trigger_configure() == Ret.SUCCESS
    gated = GatedClassifier(node._classifier)
    node._classifier = gated
    assert node.trigger_activate() == Ret.SUCCESS
    node.worker_stop_timeout_s = 0.0  # the batch below never ends by itself in time
    gated.gate.clear()
    node._input._on_frame("image", frame_msg(0))
    assert gated.reached.wait(WAIT_S)
    node._input._on_frame("image", frame_msg(1))  # waiting behind the stuck batch
    # The transition does not wait forever, nor pretend: ERROR, then on_error releases.
    assert node.trigger_deactivate() == Ret.ERROR
    assert node._state_machine.current_state[1] == "unconfigured"
    # The classifier is still in use by the batch: closed only once the batch is over.
    assert not gated.closed.is_set()
    gated.gate.set()
    assert gated.closed.wait(WAIT_S)
    final = settled(node._stats)
    assert (final.received, final.published, final.dropped, final.failed) == (2, 0, 1, 1)
    assert "stopped before its label went out" in final.last_failure
    # A new configure builds a classifier of its own; the node works again.
    assert node.trigger_configure() == Ret.SUCCESS
    assert node._classifier is not gated and node._classifier.backend.loaded


def test_labels_never_go_through_an_inactive_output_or_an_old_worker(node):
    assert node.trigger_configure() == Ret.SUCCESS
    classifier = node._classifier
    prediction = classifier.classify_one(frame_pixels(0), "rgb")
    # Configured but inactive: rclpy would discard the message, so it must not count as sent.
    with pytest.raises(RuntimeError, match="labels publisher is not active"):
        node._publish(Frame("image", frame_msg(0), generation=node._generation), prediction)
    assert node.trigger_activate() == Ret.SUCCESS
    current = node._input.worker.generation
    assert node._publish(Frame("image", frame_msg(1), generation=current), prediction) >= 0
    # A frame taken by the worker of an earlier activation is refused.
    with pytest.raises(RuntimeError, match="worker was stopped"):
        node._publish(Frame("image", frame_msg(2), generation=current - 1), prediction)


@pytest.fixture(scope="module")
def other_bundle_dir(tmp_path_factory) -> Path:
    """Another model of the same classes (other weights, so another model_id)."""
    return make_bundle(tmp_path_factory.mktemp("other") / "tiny", seed=1)


def spin_until(node: SorterNode, predicate) -> None:
    """Spin the node's executor (where a finished swap is handed over) until ``predicate``."""
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    deadline = time.monotonic() + WAIT_S
    try:
        while not predicate() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
    finally:
        executor.remove_node(node)
    assert predicate()


def test_setting_bundle_while_configured_swaps_the_model_in_the_background(
    node, bundle_dir, other_bundle_dir
):
    assert node.trigger_configure() == Ret.SUCCESS
    old = node._classifier
    assert node.set_parameters([Parameter("threshold", value=0.7)])[0].successful
    accepted = node.swap_bundle(str(other_bundle_dir))
    assert accepted.successful, accepted.reason
    # Until the executor hands the new model over, the old one serves and a second swap waits.
    loading = {kv.key: kv.value for kv in node.status().values}["model_swap"]
    assert node._classifier is old and loading.startswith(f"loading {other_bundle_dir} for ")
    refused = node.swap_bundle(str(bundle_dir))
    assert not refused.successful and "still loading" in refused.reason
    spin_until(node, lambda: not node.model_swap.pending)
    new = node._classifier
    assert new.model_id == load_bundle(other_bundle_dir).model_id != old.model_id
    assert not old.backend.loaded and new.backend.loaded
    # A threshold set at run time carries over to the new model.
    np.testing.assert_allclose(new.thresholds, 0.7)
    assert node.get_parameter("bundle").value == str(other_bundle_dir)
    values = {kv.key: kv.value for kv in node.status().values}
    assert (values["model_id"], values["model_swaps"], values["model_swap"]) == (
        new.model_id,
        "1",
        "",
    )


def _copy_bundle(bundle_dir: Path, out: Path) -> Path:
    shutil.copytree(bundle_dir, out)
    return out


def test_a_swap_that_cannot_work_leaves_the_old_model_running_and_says_why(
    node, bundle_dir, tmp_path
):
    assert node.trigger_configure() == Ret.SUCCESS
    assert node.trigger_activate() == Ret.SUCCESS
    old = node._classifier
    # Other classes: refused at once, with both lists named.
    renamed = _copy_bundle(bundle_dir, tmp_path / "renamed")
    manifest = json.loads((renamed / "manifest.json").read_text())
    manifest["classes"]["names"] = manifest["classes"]["names"][::-1]
    (renamed / "manifest.json").write_text(json.dumps(manifest))
    refused = node.swap_bundle(str(renamed))
    assert not refused.successful and "keeps the classes and their order" in refused.reason
    missing = node.swap_bundle(str(tmp_path / "nowhere"))
    assert not missing.successful and "nowhere" in missing.reason
    assert node.get_parameter("bundle").value == str(bundle_dir)
    # A damaged model file passes the quick check and fails to load in the background: the
    # parameter returns to the running bundle and diagnostics warn with the reason.
    damaged = _copy_bundle(bundle_dir, tmp_path / "damaged")
    (damaged / "model.onnx").write_bytes(b"not an onnx file")
    assert node.swap_bundle(str(damaged)).successful
    spin_until(node, lambda: not node.model_swap.pending)
    assert node._classifier is old and old.backend.loaded and node._input.worker.classifier is old
    assert node.get_parameter("bundle").value == str(bundle_dir)
    status = node.status()
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == DiagnosticStatus.WARN and "damaged" in status.message
    assert values["model_swap_error"].startswith(f"swap to {damaged} failed: ")
    assert values["model_swaps"] == "0" and values["model_id"] == old.model_id
    # A full reconfigure loads a good model again: the old failure no longer applies.
    assert node.trigger_deactivate() == Ret.SUCCESS
    assert node.trigger_cleanup() == Ret.SUCCESS
    assert node.trigger_configure() == Ret.SUCCESS
    assert node.trigger_activate() == Ret.SUCCESS
    status = node.status()
    values = {kv.key: kv.value for kv in status.values}
    assert values["model_swap_error"] == "" and "damaged" not in status.message


def test_swaps_on_an_idle_belt_and_hostile_manifests_never_stop_the_executor(
    node, bundle_dir, other_bundle_dir, tmp_path
):
    assert node.trigger_configure() == Ret.SUCCESS
    assert node.trigger_activate() == Ret.SUCCESS
    first = node._classifier
    # No frame comes, so the worker never takes a replacement: each newer one supersedes the
    # one still waiting, which is closed.
    assert node.swap_bundle(str(other_bundle_dir)).successful
    spin_until(node, lambda: not node.model_swap.pending)
    waiting = node._classifier
    assert node.swap_bundle(str(bundle_dir)).successful
    spin_until(node, lambda: not node.model_swap.pending)  # raised inside the executor before
    assert node._classifier.model_id == first.model_id and not waiting.backend.loaded
    # The worker still holds the first model until a frame comes; then the newest takes over.
    assert node._input.worker.classifier is first and first.backend.loaded
    # Manifests no parser survives: refused with the reason, the model keeps running.
    hostile = {
        "deeply nested": "[" * 100_000 + "]" * 100_000,
        "a huge integer": '{"format_version": ' + "9" * 100_000 + "}",
    }
    for what, text in hostile.items():
        folder = _copy_bundle(bundle_dir, tmp_path / what.replace(" ", "_"))
        (folder / "manifest.json").write_text(text)
        refused = node.swap_bundle(str(folder))
        # Said in the bundle's terms, not as a parser's exception.
        assert not refused.successful and "manifest.json is " in refused.reason, what
    unreadable = _copy_bundle(bundle_dir, tmp_path / "unreadable")
    (unreadable / "manifest.json").unlink()
    (unreadable / "manifest.json").mkdir()
    refused = node.swap_bundle(str(unreadable))
    assert not refused.successful and "manifest.json" in refused.reason
    assert node.get_parameter("bundle").value == str(bundle_dir)
    values = {kv.key: kv.value for kv in node.status().values}
    assert values["model_swaps"] == "2" and values["lifecycle_state"] == "active"


def test_diagnostics_warn_when_the_belt_no_longer_looks_like_the_training_data(
    ros_env, tmp_path, bundle_dir
):
    import cv2
    from export.conftest import write_synthetic_voc, write_tiny_checkpoint

    from mmsag_ros.data.voc import read_voc
    from mmsag_ros.export.write_bundle import export_bundle
    from mmsag_ros.ros.conversions import array_to_image

    voc = write_synthetic_voc(tmp_path / "voc", num_trainval=30, seed=5)
    bundle = export_bundle(
        write_tiny_checkpoint(tmp_path / "ckpt.pt", seed=5), tmp_path / "bundle",
        validation=read_voc(voc, "val"), calib_dir=read_voc(voc, "train"), progress=False,
    )  # fmt: skip
    paths = [s.image_path for s in read_voc(voc, "trainval").samples[:10]]
    with sorter_node(
        ros_env, bundle=str(bundle.root), backend="onnxruntime", drift_window=10
    ) as node:
        assert node.trigger_configure() == Ret.SUCCESS
        assert node.trigger_activate() == Ret.SUCCESS
        values = {kv.key: kv.value for kv in node.status().values}
        assert (values["drift_window"], values["drift"]) == ("0/10 frames", "")
        # The lamps changed: every frame far brighter than the training images.
        for index, path in enumerate(paths):
            bright = cv2.convertScaleAbs(cv2.imread(str(path)), alpha=2.5)
            msg = array_to_image(bright, "bgr8")
            msg.header.frame_id = f"cam/{index}"
            node._input._on_frame("image", msg)
            settled(node._stats)  # one frame at a time: none dropped, all ten counted
        status = node.status()
        values = {kv.key: kv.value for kv in status.values}
        assert values["drift_window"] == "10/10 frames" and "brightness" in values["drift"]
        assert status.level == DiagnosticStatus.WARN and "drift: " in status.message
    # A bundle exported without a validation split has nothing to compare with, and says so.
    with sorter_node(ros_env, bundle=str(bundle_dir), backend="onnxruntime") as node:
        assert node.trigger_configure() == Ret.SUCCESS
        values = {kv.key: kv.value for kv in node.status().values}
        assert values["drift_window"].startswith("off: the bundle has no reference statistics")
