"""Reading frames out of bags: the real camera bags, broken messages, bags without images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.highlevel import AnyReader
from runtime.runtime_helpers import make_bundle
from support import SHARED_DATA

from mmsag_ros.bag.bag_eval import evaluate_bag
from mmsag_ros.bag.frames import (
    COMPRESSED_TYPE,
    IMAGE_TYPE,
    MULTILABEL_TYPE,
    ReadCounts,
    iter_frames,
    iter_ground_truth,
)
from mmsag_ros.bag.make import ground_truth_scores
from mmsag_ros.bag.typestore import mmsag_typestore
from mmsag_ros.bag.writer import bag_writer
from mmsag_ros.bundle.labels import MLKW_LABELS
from mmsag_ros.errors import BagError, ImageConversionError

REAL_BAGS = sorted((SHARED_DATA / "bags").glob("*_mcap"))


def _header(store, stamp_ns: int, frame_id: str = "cam"):
    types = store.types
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    stamp = types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
    return types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def _image(store, stamp_ns: int, *, encoding: str = "rgb8", data_bytes: int | None = None):
    width, height = 8, 6
    data = np.arange(width * height * 3, dtype=np.uint8)[: data_bytes or width * height * 3]
    return store.types[IMAGE_TYPE](
        header=_header(store, stamp_ns),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * 3,
        data=data,
    )


def _truth(store, stamp_ns: int):
    target = np.zeros(len(MLKW_LABELS), np.float32)
    target[stamp_ns % len(MLKW_LABELS)] = 1.0
    return store.types[MULTILABEL_TYPE](
        header=_header(store, stamp_ns),
        model_id="ground-truth",
        class_names=list(MLKW_LABELS.names),
        scores=ground_truth_scores(target),
        decisions=target == 1,
        thresholds=np.full(len(MLKW_LABELS), 0.5, np.float32),
        peaks=[],
        instances=[],
        inference_time_ms=0.0,
        latency_ms=0.0,
        image_width=0,
        image_height=0,
        contract_version=3,
    )


def _write_broken_bag(path: Path) -> None:
    """One good frame, four that cannot be decoded, ground truth for all five stamps."""
    store = mmsag_typestore()
    with bag_writer(path) as writer:
        raw = writer.add_connection("/cam/image_raw", IMAGE_TYPE, typestore=store)
        jpeg = writer.add_connection("/cam/image_raw/compressed", COMPRESSED_TYPE, typestore=store)
        text = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=store)
        gt = writer.add_connection("/waste/labels_gt", MULTILABEL_TYPE, typestore=store)
        good = store.serialize_cdr(_image(store, 1), IMAGE_TYPE)
        writer.write(raw, 1, good)
        short = _image(store, 2, data_bytes=100)  # step x height says 144
        writer.write(raw, 2, store.serialize_cdr(short, IMAGE_TYPE))
        corrupt = store.types[COMPRESSED_TYPE](
            header=_header(store, 3), format="jpeg", data=np.frombuffer(b"\xff\xd8junk", np.uint8)
        )
        writer.write(jpeg, 3, store.serialize_cdr(corrupt, COMPRESSED_TYPE))
        depth = _image(store, 4, encoding="32FC1")  # a depth image: not for the model
        writer.write(raw, 4, store.serialize_cdr(depth, IMAGE_TYPE))
        writer.write(raw, 5, bytes(good[:20]))  # CDR cut short
        string = store.types["std_msgs/msg/String"](data="not an image")
        writer.write(text, 6, store.serialize_cdr(string, "std_msgs/msg/String"))
        for stamp in range(1, 6):
            writer.write(gt, stamp, store.serialize_cdr(_truth(store, stamp), MULTILABEL_TYPE))


def test_unreadable_messages_are_counted_not_fatal(tmp_path):
    bag = tmp_path / "broken"
    _write_broken_bag(bag)
    counts = ReadCounts()
    frames = list(iter_frames(bag, counts=counts))
    assert counts.messages == len(frames) == 5  # the String topic is not read
    assert [f.error is None for f in frames] == [True, False, False, False, False]
    assert counts.num_unreadable == 4
    reasons = " | ".join(counts.unreadable)
    for expected in ("expected step x height", "corrupt", "32FC1", "deserialize"):
        assert expected in reasons
    # Counted by reason, the part of the message before this frame's own details.
    for frame in frames[1:]:
        assert ImageConversionError(frame.error).reason in counts.unreadable
    assert not any(";" in reason for reason in counts.unreadable)
    assert frames[0].stamp_ns == 1 and frames[0].frame_id == "cam"


def test_eval_scores_the_readable_frames_and_reports_the_rest(tmp_path):
    bag = tmp_path / "broken"
    _write_broken_bag(bag)
    bundle = make_bundle(tmp_path / "bundle", seed=2)
    evaluation = evaluate_bag(bag, bundle, backend="onnxruntime")
    assert evaluation.scores.shape == (1, len(MLKW_LABELS))
    assert evaluation.frames == 5 and sum(evaluation.unreadable.values()) == 4
    assert evaluation.to_dict()["unreadable"] == dict(evaluation.unreadable)


def test_bag_without_images_is_one_clear_error(tmp_path):
    bag = tmp_path / "labels_only"
    store = mmsag_typestore()
    with bag_writer(bag, "sqlite3") as writer:
        gt = writer.add_connection("/waste/labels_gt", MULTILABEL_TYPE, typestore=store)
        writer.write(gt, 1, store.serialize_cdr(_truth(store, 1), MULTILABEL_TYPE))
    with pytest.raises(BagError, match="no sensor_msgs/Image or CompressedImage topic"):
        list(iter_frames(bag))
    with pytest.raises(BagError, match="among /cam"):
        list(iter_frames(bag, topics=["/cam"]))
    assert len(list(iter_ground_truth(bag))) == 1


def test_a_bag_whose_chunk_ends_early_is_corrupt_not_shorter(tmp_path):
    # Zeroed bytes over one message record inside an MCAP chunk: the storage reader takes
    # them for the chunk's end and stops without an error, so the frames after them would
    # silently go missing. The bag's index knows how many there are.
    bag = tmp_path / "zeroed"
    store = mmsag_typestore()
    with bag_writer(bag) as writer:
        raw = writer.add_connection("/cam/image_raw", IMAGE_TYPE, typestore=store)
        for stamp in range(1, 9):
            writer.write(raw, stamp, store.serialize_cdr(_image(store, stamp), IMAGE_TYPE))
    (storage,) = bag.glob("*.mcap")
    data = bytearray(storage.read_bytes())
    # A message record: opcode, length (8), channel (2), sequence (4), log and publish time.
    where = data.index((4).to_bytes(8, "little") * 2)  # log time, then publish time
    data[where - 15 : where + 16] = bytes(31)  # from the opcode on
    storage.write_bytes(bytes(data))
    counts = ReadCounts()
    with pytest.raises(BagError, match=r"index lists more messages .*/cam/image_raw: 3 of 8"):
        for _ in iter_frames(bag, counts=counts):
            pass
    assert counts.messages == 3


@pytest.mark.skipif(not REAL_BAGS, reason="shared camera bags not present")
@pytest.mark.parametrize("bag", REAL_BAGS, ids=lambda p: p.name)
def test_real_camera_bags_decode_every_frame(bag, tmp_path):
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    expected = sum(
        t["message_count"]
        for t in meta["topics_with_message_count"]
        if t["topic_metadata"]["type"] in (IMAGE_TYPE, COMPRESSED_TYPE)
    )
    counts = ReadCounts()
    frames = list(iter_frames(bag, counts=counts))
    assert expected > 0 and len(frames) == counts.messages == expected
    assert counts.num_unreadable == 0
    assert all(f.image is not None and f.image.ndim == 3 and f.stamp_ns > 0 for f in frames)

    # The same messages in .db3 storage read back identically.
    copy = tmp_path / "copy_db3"
    with (
        AnyReader([bag], default_typestore=mmsag_typestore()) as reader,
        bag_writer(copy, "sqlite3") as writer,
    ):
        out = {}
        for conn in reader.connections:
            out[conn.id] = writer.add_connection(
                conn.topic, conn.msgtype, typestore=mmsag_typestore()
            )
        for conn, timestamp, raw in reader.messages():
            writer.write(out[conn.id], timestamp, raw)
    copied = list(iter_frames(copy))
    assert [(f.stamp_ns, f.frame_id) for f in copied] == [(f.stamp_ns, f.frame_id) for f in frames]
    for original, again in zip(frames, copied, strict=True):
        np.testing.assert_array_equal(original.image, again.image)
