"""MultiLabel contract versions meeting over real DDS: what an older or newer peer receives.

Contract 3 only appended fields to contract 2. A controller built against contract 2 is
played by a raw subscription whose bytes are read with contract 2's definition (contract 3's
file without the appended fields), as its generated type would read them; a contract-2
publisher by raw bytes serialized with that definition.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import rclpy
import ros_peer
from mmsag_ros.msg import MultiLabel
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from support import REPO, multilabel_summary, multilabel_to_rosbags

MSGTYPE = "mmsag_ros/msg/MultiLabel"
# Where contract 3's appended fields begin in the message file.
APPENDED_IN_3 = "\n# Size in pixels of the source image"
WAIT_S = 60.0
_CONTRACT_2_FIELDS = (
    "header",
    "model_id",
    "class_names",
    "scores",
    "decisions",
    "thresholds",
    "peaks",
    "instances",
    "inference_time_ms",
    "latency_ms",
)


def _contract_2_store():
    text = (REPO / "msg" / "MultiLabel.msg").read_text()
    assert APPENDED_IN_3 in text and "uint8 CONTRACT_VERSION=3" in text
    definition = text.split(APPENDED_IN_3)[0].replace("CONTRACT_VERSION=3", "CONTRACT_VERSION=2")
    types = {}
    for name in ("AttentionPeak", "InstancePeaks"):
        path = REPO / "msg" / f"{name}.msg"
        types.update(get_types_from_msg(path.read_text(), f"mmsag_ros/msg/{name}"))
    types.update(get_types_from_msg(definition, MSGTYPE))
    store = get_typestore(Stores.ROS2_KILTED)
    store.register(types)
    return store


class _Graph:
    """One node in its own context and the test's domain, spun from the test thread."""

    def __init__(self, domain_id: int) -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("contract_test", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, done, timeout_s: float = WAIT_S) -> bool:
        deadline = time.monotonic() + timeout_s
        while not done() and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
        return done()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


@pytest.fixture
def graph(ros_env):
    graph = _Graph(int(ros_env["ROS_DOMAIN_ID"]))
    yield graph
    graph.close()


def test_a_contract_2_controller_reads_contract_3_messages(graph):
    store = _contract_2_store()
    qos = QoSProfile(depth=10)
    received: list[bytes] = []
    graph.node.create_subscription(MultiLabel, "/contract/new", received.append, qos, raw=True)
    publisher = graph.node.create_publisher(MultiLabel, "/contract/new", qos)
    assert graph.spin_until(lambda: publisher.get_subscription_count() > 0)
    sent = [ros_peer.make_labels(i) for i in range(3)]
    for msg in sent:
        publisher.publish(msg)
    assert graph.spin_until(lambda: len(received) == len(sent))
    for raw, msg in zip(received, sent, strict=True):
        assert msg.contract_version == 3 and msg.image_width == 320 + sent.index(msg)
        # An old reader reads the fields it knows from the front and stops there: the
        # leading bytes are a whole contract-2 message with the same values.
        length = len(store.serialize_cdr(multilabel_to_rosbags(msg, store), MSGTYPE))
        old = store.deserialize_cdr(bytes(raw)[:length], MSGTYPE)
        assert _leading_fields(old) == _leading_fields(msg)
        assert len(raw) > length  # the appended fields travel behind


def _leading_fields(msg) -> dict:
    """Every field contract 2 has, of a contract-2 or contract-3 message."""
    fields = {name: getattr(msg, name) for name in _CONTRACT_2_FIELDS}
    summary = multilabel_summary(
        SimpleNamespace(**fields, image_width=0, image_height=0, contract_version=0)
    )
    return {k: v for k, v in summary.items() if k not in ("image_size", "contract_version")}


def test_a_contract_3_controller_drops_contract_2_messages(graph):
    store = _contract_2_store()
    qos = QoSProfile(depth=10)
    received: list[MultiLabel] = []
    graph.node.create_subscription(MultiLabel, "/contract/old", received.append, qos)
    # Raw bytes, to see that this subscription still takes what it can read.
    probe: list[bytes] = []
    graph.node.create_subscription(MultiLabel, "/contract/old", probe.append, qos, raw=True)
    publisher = graph.node.create_publisher(MultiLabel, "/contract/old", qos)
    assert graph.spin_until(lambda: publisher.get_subscription_count() == 2)
    old = bytes(store.serialize_cdr(multilabel_to_rosbags(ros_peer.make_labels(1), store), MSGTYPE))
    publisher.publish(old)
    # The same topic and type name: the peers match and the bytes arrive ...
    assert graph.spin_until(lambda: len(probe) == 1)
    # ... but a newer reader cannot deserialize the shorter message, so it never sees it,
    # while a message of its own contract on the same topic gets through.
    publisher.publish(ros_peer.make_labels(2))
    assert graph.spin_until(lambda: len(probe) == 2 and len(received) == 1)
    assert [m.header.frame_id for m in received] == [ros_peer.make_labels(2).header.frame_id]
