"""mmsag bag eval on a recording without ground truth: it labels the frames instead."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from runtime.runtime_helpers import make_bundle
from support import SHARED_DATA

from mmsag_ros.bag.bag_eval import evaluate_bag
from mmsag_ros.bag.frames import MULTILABEL_TYPE, iter_frames
from mmsag_ros.bag.label import label_bag
from mmsag_ros.bag.make import make_bag
from mmsag_ros.bag.truth import read_gt_csv
from mmsag_ros.bag.typestore import mmsag_typestore
from mmsag_ros.bag.writer import bag_writer
from mmsag_ros.cli import main
from mmsag_ros.data.synth import generate_dataset
from mmsag_ros.errors import BagError
from mmsag_ros.runtime.classifier import Classifier

REAL_BAGS = sorted((SHARED_DATA / "bags").glob("*_mcap"))
START_NS = 1_700_000_000_000_000_000


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("label_synth") / "data"
    generate_dataset(root, num_trainval=1, num_test=6, image_size=(96, 72), seed=11)
    return root


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("label_bundle") / "tiny", seed=12)


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as stream:
        return list(csv.reader(stream))


def test_a_bag_without_ground_truth_is_labelled_frame_by_frame(dataset, bundle, tmp_path, capsys):
    bag = tmp_path / "recording"
    # Frames only, as a camera recording has them: the truth is on a topic nobody asks for.
    make_bag(dataset, bag, compressed=True, gt_topic="/kept/aside", start_ns=START_NS)
    out = tmp_path / "labelled"
    argv = ["bag", "eval", str(bag), "--bundle", str(bundle), "--out", str(out)]
    assert main([*argv, "--backend", "onnxruntime"]) == 0
    printed = capsys.readouterr().out
    assert "no ground truth on /waste/labels_gt: labelling the frames instead" in printed
    assert "6 image messages, 6 labelled, 0 unusable" in printed
    # Each frame's decisions and scores are the Classifier's on that very frame.
    frames = list(iter_frames(bag))
    with Classifier(bundle, backend="onnxruntime") as classifier:
        expected = [classifier.classify_one(f.image, f.color_order) for f in frames]
        names = list(classifier.labels.names)
        labels = classifier.labels
    decided = _rows(out / "predictions.csv")
    assert decided[0] == ["stamp_ns", "frame_id", *names]
    for row, frame, prediction in zip(decided[1:], frames, expected, strict=True):
        assert (int(row[0]), row[1]) == (frame.stamp_ns, frame.frame_id)
        assert [int(v) for v in row[2:]] == [int(d) for d in prediction.decisions]
    scored = _rows(out / "scores.csv")
    got = np.array([[float(v) for v in row[3:]] for row in scored[1:]])
    np.testing.assert_allclose(got, [p.scores for p in expected], atol=1e-5)
    # The decisions table is the --gt-csv layout: it goes back in as ground truth.
    truth = read_gt_csv(out / "predictions.csv", labels)
    for frame, prediction in zip(frames, expected, strict=True):
        np.testing.assert_array_equal(
            truth.get(frame.stamp_ns, frame.frame_id), prediction.decisions.astype(np.float32)
        )
    # The labels bag holds one MultiLabel per frame with its header, as the node publishes.
    with AnyReader([out / "labels"], default_typestore=mmsag_typestore()) as reader:
        (connection,) = reader.connections
        assert (connection.topic, connection.msgtype) == ("/waste/labels", MULTILABEL_TYPE)
        messages = [reader.deserialize(raw, MULTILABEL_TYPE) for _, _, raw in reader.messages()]
    assert len(messages) == len(frames)
    for msg, frame, prediction in zip(messages, frames, expected, strict=True):
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        assert (stamp, msg.header.frame_id) == (frame.stamp_ns, frame.frame_id)
        np.testing.assert_allclose(msg.scores, prediction.scores, atol=1e-5)
        assert len(msg.peaks) == len(names) and msg.model_id == classifier.model_id
    # A contact sheet of every frame (6 <= 24): two rows of four tiles.
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[1] == 4 * 360 and sheet.shape[0] > 2 * 22


def test_truth_asked_for_by_name_must_be_there(dataset, bundle, tmp_path, capsys):
    bag = tmp_path / "recording"
    make_bag(dataset, bag, gt_topic="/kept/aside", start_ns=START_NS)
    argv = ["bag", "eval", str(bag), "--bundle", str(bundle), "--backend", "onnxruntime"]
    assert main([*argv, "--gt-topic", "/waste/labels_gt", "--out", str(tmp_path / "a")]) == 1
    assert "has no ground truth" in capsys.readouterr().err
    # Live replay and peak scoring need truth: refused in one line, nothing labelled.
    assert main([*argv, "--live", "--out", str(tmp_path / "b")]) == 1
    assert "--live and --boxes need ground truth" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def _many_topic_bag(path: Path, *, with_image: bool) -> None:
    """A robot's recording: dozens of topics, at most one of them a camera."""
    store = mmsag_typestore()
    types = store.types
    with bag_writer(path) as writer:
        for index in range(95 - with_image):
            topic = writer.add_connection(f"/robot/t{index:02d}", "std_msgs/msg/String",
                                          typestore=store)  # fmt: skip
            text = types["std_msgs/msg/String"](data="x")
            writer.write(topic, START_NS, store.serialize_cdr(text, "std_msgs/msg/String"))
        if with_image:
            camera = writer.add_connection(
                "/cam/image_raw", "sensor_msgs/msg/Image", typestore=store
            )
            header = types["std_msgs/msg/Header"](
                stamp=types["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="cam"
            )
            image = types["sensor_msgs/msg/Image"](
                header=header, height=4, width=4, encoding="rgb8", is_bigendian=0, step=12,
                data=np.zeros(48, np.uint8),
            )  # fmt: skip
            writer.write(camera, START_NS, store.serialize_cdr(image, "sensor_msgs/msg/Image"))


def test_errors_name_the_image_topics_and_count_the_rest(bundle, tmp_path):
    one_camera = tmp_path / "one_camera"
    _many_topic_bag(one_camera, with_image=True)
    with pytest.raises(BagError) as caught:
        evaluate_bag(one_camera, bundle, gt_topic="/truth", backend="onnxruntime")
    message = str(caught.value)
    assert "image topics: /cam/image_raw (Image); 94 other topics." in message
    assert "/robot/t" not in message
    no_camera = tmp_path / "no_camera"
    _many_topic_bag(no_camera, with_image=False)
    with pytest.raises(BagError) as caught:
        label_bag(no_camera, bundle, backend="onnxruntime", progress=False)
    message = str(caught.value)
    assert "image topics: none; 95 other topics (e.g. /robot/t00, /robot/t01" in message
    assert "/robot/t05" not in message and len(message) < 400


@pytest.mark.skipif(not REAL_BAGS, reason="shared camera bags not present")
def test_the_real_camera_recordings_are_labelled(bundle, tmp_path):
    for bag in REAL_BAGS:
        frames = [f for f in iter_frames(bag) if f.error is None]
        labelling = label_bag(bag, bundle, backend="onnxruntime", progress=False)
        assert len(labelling.frames) == len(frames) > 0 and labelling.sheet is not None
        assert [(f.stamp_ns, f.frame_id) for f in labelling.frames] == [
            (f.stamp_ns, f.frame_id) for f in frames
        ]
