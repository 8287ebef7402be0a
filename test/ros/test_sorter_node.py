"""The sorter node in this process, for what a peer process cannot provoke: a batch stuck in
inference while a transition runs.

The node is real (rclpy, its own context and domain); frames go straight into its camera
callback, and ``GatedClassifier`` holds the batch inside inference for as long as the test
needs. Every wait is for a condition.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import rclpy
from rclpy.lifecycle import TransitionCallbackReturn as Ret
from rclpy.parameter import Parameter
from runtime.runtime_helpers import make_bundle
from worker_support import WAIT_S, GatedClassifier, frame_msg, frame_pixels, settled

from mmsag_ros.ros.sorter import SorterNode
from mmsag_ros.ros.worker import Frame


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("node") / "tiny", seed=0)


@pytest.fixture
def node(bundle_dir, ros_env):
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    node = SorterNode(
        context=context,
        parameter_overrides=[
            Parameter("bundle", value=str(bundle_dir)),
            Parameter("backend", value="onnxruntime"),
        ],
    )
    try:
        yield node
    finally:
        node.release()
        node.destroy_node()
        rclpy.shutdown(context=context)


def test_deactivate_with_a_stuck_batch_hands_the_model_to_the_batch(node):
    assert node.trigger_configure() == Ret.SUCCESS
    gated = GatedClassifier(node._classifier)
    node._classifier = gated
    assert node.trigger_activate() == Ret.SUCCESS
    node.worker_stop_timeout_s = 0.0  # the batch below never ends by itself in time
    gated.gate.clear()
    node._on_frame("image", frame_msg(0))
    assert gated.reached.wait(WAIT_S)
    node._on_frame("image", frame_msg(1))  # waiting behind the stuck batch
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
    current = node._worker.generation
    assert node._publish(Frame("image", frame_msg(1), generation=current), prediction) >= 0
    # A frame taken by the worker of an earlier activation is refused.
    with pytest.raises(RuntimeError, match="worker was stopped"):
        node._publish(Frame("image", frame_msg(2), generation=current - 1), prediction)
