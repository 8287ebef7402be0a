"""MultiLabel round trips through rosbag2 files (.mcap and .db3) between rosbags and rclpy."""

from __future__ import annotations

import pytest
import ros_peer
from mmsag_ros.msg import MultiLabel
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore
from support import multilabel_summary, multilabel_to_rosbags

from mmsag_ros.bag.typestore import mmsag_typestore
from mmsag_ros.bag.writer import STORAGES, bag_writer

TOPIC = "/waste/labels"
MSGTYPE = "mmsag_ros/msg/MultiLabel"


@pytest.mark.parametrize("storage", sorted(STORAGES))
def test_rosbags_and_rclpy_agree_through_a_bag(storage, tmp_path):
    store = mmsag_typestore()
    originals = [ros_peer.make_labels(i) for i in range(6)]
    bag = tmp_path / f"labels_{storage}"

    # Even indices serialized by rosbags, odd ones by rclpy: both must read back the same.
    with bag_writer(bag, storage) as writer:
        connection = writer.add_connection(TOPIC, MSGTYPE, typestore=store)
        for index, msg in enumerate(originals):
            if index % 2 == 0:
                raw = store.serialize_cdr(multilabel_to_rosbags(msg, store), MSGTYPE)
            else:
                raw = serialize_message(msg)
            writer.write(connection, 1_000_000_000 * (index + 1), raw)

    # A reader with only the stock Kilted types: the bag carries our definitions itself.
    stock = get_typestore(Stores.ROS2_KILTED)
    with AnyReader([bag], default_typestore=stock) as reader:
        assert [c.msgtype for c in reader.connections] == [MSGTYPE]
        records = list(reader.messages())
        assert len(records) == len(originals)
        for index, ((conn, timestamp_ns, raw), original) in enumerate(
            zip(records, originals, strict=True)
        ):
            assert timestamp_ns == 1_000_000_000 * (index + 1)
            expected = ros_peer.summarize(original)
            from_rclpy = deserialize_message(bytes(raw), MultiLabel)
            assert ros_peer.summarize(from_rclpy) == expected
            assert multilabel_summary(reader.deserialize(raw, conn.msgtype)) == expected


def test_typestore_matches_the_generated_message():
    store_fields = [name for name, _ in mmsag_typestore().fielddefs[MSGTYPE][1]]
    assert store_fields == list(MultiLabel.get_fields_and_field_types())
