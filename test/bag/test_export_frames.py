"""``mmsag bag export-frames`` skips and counts a frame that does not decode, and goes on."""

from __future__ import annotations

import csv

import numpy as np
from rosbags.highlevel import AnyReader

from mmsag_ros.bag.export_frames import export_frames
from mmsag_ros.bag.make import make_bag
from mmsag_ros.bag.typestore import mmsag_typestore
from mmsag_ros.bag.writer import bag_writer
from mmsag_ros.cli import main
from mmsag_ros.data.synth import generate_dataset

FRAMES = 4
BROKEN = 1  # index of the frame whose JPEG is replaced by garbage
GARBAGE = b"\xff\xd8 not a jpeg at all".ljust(64, b"\0")


def _bag_with_a_broken_frame(tmp_path):
    data = tmp_path / "data"
    generate_dataset(data, num_trainval=1, num_test=FRAMES, image_size=(96, 72), seed=2)
    good = tmp_path / "good"
    # The ground truth goes where export-frames looks for the model's labels.
    make_bag(data, good, compressed=True, gt_topic="/waste/labels")
    store, path, index = mmsag_typestore(), tmp_path / "broken", 0
    with (
        AnyReader([good], default_typestore=store) as reader,
        bag_writer(path) as writer,
    ):
        out = {c.topic: writer.add_connection(c.topic, c.msgtype, typestore=store)
               for c in reader.connections}  # fmt: skip
        for connection, timestamp, raw in reader.messages():
            if connection.msgtype == "sensor_msgs/msg/CompressedImage":
                if index == BROKEN:
                    msg = store.deserialize_cdr(raw, connection.msgtype)
                    msg.data = np.frombuffer(
                        b"\xff\xd8 not a jpeg at all".ljust(64, b"\0"), np.uint8
                    )
                    raw = store.serialize_cdr(msg, connection.msgtype)
                index += 1
            writer.write(out[connection.topic], timestamp, raw)
    return path


def test_a_frame_that_does_not_decode_is_skipped_and_counted(tmp_path, capsys):
    bag = _bag_with_a_broken_frame(tmp_path)
    summary = export_frames([bag], tmp_path / "out", progress=False)
    assert (summary.frames, summary.undecodable) == (FRAMES - 1, 1)
    assert "JPEG" in summary.first_undecodable
    with (tmp_path / "out" / "labels.csv").open() as stream:
        rows = list(csv.reader(stream))[1:]
    assert len(rows) == FRAMES - 1
    assert all((tmp_path / "out" / "images" / row[0]).is_file() for row in rows)
    assert main(["bag", "export-frames", str(bag), "--out", str(tmp_path / "cli")]) == 0
    assert "1 frames that do not decode skipped (first: " in capsys.readouterr().out


def test_a_bag_without_labels_on_the_topic_is_one_clear_error(tmp_path, capsys):
    # Labels on another topic leave no connection to read: rosbags reads every connection
    # when given none, which once ended in a KeyError traceback instead of this line.
    data = tmp_path / "data"
    generate_dataset(data, num_trainval=1, num_test=2, image_size=(96, 72), seed=2)
    make_bag(data, tmp_path / "bag")  # truth on /waste/labels_gt, nothing on /waste/labels
    out = tmp_path / "out"
    assert main(["bag", "export-frames", str(tmp_path / "bag"), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mmsag bag: error: bag ") and "on /waste/labels" in err[-1], err
    assert "Traceback" not in "\n".join(err)
    found = export_frames([tmp_path / "bag"], tmp_path / "gt", labels_topic="/waste/labels_gt")
    assert found.frames == 2
