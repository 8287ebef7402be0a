"""Capture on the robot: the rules, the ring of bags under its disk cap, a replay through a
real sorter process that captures exactly the frames the rules pick, and the round trip
capture bags -> ``mmsag bag export-frames`` -> ``mmsag train``."""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from mmsag_ros.msg import MultiLabel
from rosbags.highlevel import AnyReader
from runtime.runtime_helpers import make_bundle
from sensor_msgs.msg import Image

from mmsag_ros.bag.frames import MULTILABEL_TYPE, iter_frames
from mmsag_ros.bag.make import make_bag
from mmsag_ros.bag.typestore import mmsag_typestore
from mmsag_ros.cli import main
from mmsag_ros.data.csv_table import read_csv_labels
from mmsag_ros.data.synth import generate_dataset
from mmsag_ros.errors import DatasetError
from mmsag_ros.live.replay import replay_through_sorter
from mmsag_ros.ros.capture import CaptureRules, FrameCapture, bag_bytes
from mmsag_ros.ros.conversions import array_to_image
from mmsag_ros.train.config import DataConfig
from mmsag_ros.train.dataset_splits import load_train_val

# This process's rclpy contexts and the node process share the test's own domain.
pytestmark = pytest.mark.usefixtures("ros_domain")


def test_the_rules_pick_near_threshold_crowded_and_sampled_frames():
    rules = CaptureRules(margin=0.05, many_classes=2, wide_margin=0.2, sample_rate=0.1)
    thresholds = np.array([0.5, 0.5, 0.5])
    assert rules.reasons(np.array([0.53, 0.9, 0.1]), thresholds, 0.5) == ("near_threshold",)
    assert rules.reasons(np.array([0.65, 0.35, 0.1]), thresholds, 0.5) == ("many_near_threshold",)
    assert rules.reasons(np.array([0.9, 0.9, 0.1]), thresholds, 0.05) == ("random_sample",)
    assert rules.reasons(np.array([0.9, 0.9, 0.1]), thresholds, 0.5) == ()
    with pytest.raises(Exception, match="capture_margin must lie in"):
        CaptureRules(margin=1.5)


def _frame(index: int) -> Image:
    pixels = np.random.default_rng(index).integers(0, 256, (120, 160, 3), np.uint8)
    msg = array_to_image(pixels, "rgb8")
    msg.header.frame_id = f"cam/{index}"
    msg.header.stamp.sec = index + 1
    return msg


def _label(frame: Image) -> MultiLabel:
    return MultiLabel(header=frame.header, model_id="m@0", class_names=["a"], scores=[0.5])


def test_the_ring_of_bags_keeps_the_newest_frames_within_the_disk_cap(tmp_path):
    one_frame = len(bytes(_frame(0).data))
    cap = 12 * one_frame  # room for two bags of five frames, not three
    capture = FrameCapture(
        tmp_path / "capture", image_type="sensor_msgs/msg/Image", max_rate_hz=0.0,
        max_bytes=cap, frames_per_bag=5,
    )  # fmt: skip
    for index in range(23):
        frame = _frame(index)
        assert capture.offer("/cam/image_raw", frame, _label(frame), ["random_sample"])
    capture.close()
    counts = capture.counts()
    assert counts["captured"] == 23 and counts["random_sample"] == 23 and not capture.error
    bags = sorted((tmp_path / "capture").glob("capture_*"))
    # Five bags written (5, 5, 5, 5 and 3 frames); the oldest went until the rest fit.
    assert sum(bag_bytes(b) for b in bags) <= cap
    assert len(bags) == 2 and counts["bags_deleted"] == 3
    # The newest frames survive: the last bag ends with frame 22, every frame beside its label.
    store = mmsag_typestore()
    with AnyReader(bags[-1:], default_typestore=store) as reader:
        ids = [reader.deserialize(raw, c.msgtype).header.frame_id
               for c, _, raw in reader.messages()]  # fmt: skip
    assert ids[-2:] == ["cam/22", "cam/22"]


def test_the_ring_continues_its_sequence_whatever_the_clock_says(tmp_path):
    folder = tmp_path / "capture"
    # Bags of an earlier run, named as if the clock ran a year ahead then.
    for sequence, stamp in ((7, "20271201T000000"), (8, "20271202T000000")):
        (folder / f"capture_s{sequence:08d}_{stamp}").mkdir(parents=True)
    (folder / "capture_20261101T000000_0003").mkdir()  # the naming before sequences
    capture = FrameCapture(
        folder, image_type="sensor_msgs/msg/Image", max_rate_hz=0.0, frames_per_bag=1
    )
    frame = _frame(0)
    assert capture.offer("/cam", frame, _label(frame), ["random_sample"])
    assert capture.close()
    names = [p.name for p in capture._bags()]
    assert names[0] == "capture_20261101T000000_0003"  # oldest first, the cap deletes it first
    assert names[1:3] == ["capture_s00000007_20271201T000000", "capture_s00000008_20271202T000000"]
    assert names[3].startswith("capture_s00000009_")  # the newest, though its clock is earlier
    assert (folder / names[3]).stat().st_mode & 0o777 == 0o750


def test_a_write_that_fails_is_counted_and_reported_until_writing_works(tmp_path):
    folder = tmp_path / "capture"
    capture = FrameCapture(folder, image_type="sensor_msgs/msg/Image", max_rate_hz=0.0)
    shutil.rmtree(folder)
    folder.write_text("not a folder")  # every new bag fails to open, whoever runs the test
    frame = _frame(0)
    assert capture.offer("/cam", frame, _label(frame), ["random_sample"])
    assert capture.close()
    assert capture.counts()["write_failed"] == 1 and capture.counts()["captured"] == 0
    assert capture.error


def test_a_full_disk_leaves_only_readable_bags_and_close_never_hangs(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        capture = FrameCapture(
            disk / "capture", image_type="sensor_msgs/msg/Image", max_rate_hz=0.0,
            max_bytes=100_000_000, frames_per_bag=3,
        )  # fmt: skip
        offered = 0
        for index in range(40):  # 57.6 kB each: the 1 MB disk is full after about 17
            frame = _frame(index)
            offered += capture.offer("/cam", frame, _label(frame), ["random_sample"])
        assert capture.close(timeout_s=120)
        counts = capture.counts()
        # Frames of a bag the full disk kept from closing count as failed, not captured. The
        # error itself clears once a write works again (a discarded bag frees room), so how
        # the run ended decides whether it still stands; the counts keep the history.
        assert counts["write_failed"] > 0 and counts["bags_discarded"] > 0
        assert counts["captured"] + counts["write_failed"] == offered
        bags = sorted((disk / "capture").glob("capture_*"))
        assert bags, "some bags fit before the disk filled"
        store = mmsag_typestore()
        for bag in bags:  # every folder left is a whole bag, with its metadata
            assert (bag / "metadata.yaml").is_file(), sorted(bag.iterdir())
            with AnyReader([bag], default_typestore=store) as reader:
                assert reader.message_count > 0
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=True)


def test_captures_are_rate_limited_without_waiting(tmp_path):
    capture = FrameCapture(
        tmp_path / "capture", image_type="sensor_msgs/msg/Image", max_rate_hz=0.001
    )
    accepted = [
        capture.offer("/cam", f, _label(f), ["near_threshold"]) for f in map(_frame, range(4))
    ]
    capture.close()
    assert accepted == [True, False, False, False]
    assert capture.counts()["over_rate"] == 3 and capture.counts()["captured"] == 1


def _key(scores) -> tuple[float, ...]:
    """A label's scores as a comparable key (float32 on the wire, float64 in LiveLabel)."""
    return tuple(np.round(np.asarray(scores, np.float32).astype(np.float64), 5))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("capture_bundle") / "tiny", seed=21)


@pytest.mark.slow
def test_a_replay_captures_exactly_the_frames_the_rules_pick_and_they_train_again(bundle, tmp_path):
    data = tmp_path / "data"
    generate_dataset(data, num_trainval=10, num_test=24, image_size=(128, 96), seed=22)
    bag = tmp_path / "bag"
    make_bag(data, bag, compressed=True, fps=10.0)
    rules = {"capture_margin": 0.1, "capture_many_classes": 3, "capture_wide_margin": 0.2,
             "capture_sample_rate": 0.0}  # fmt: skip
    params = tmp_path / "sorter.yaml"
    node_params = {
        "capture_dir": str(tmp_path / "capture"), "capture_max_rate_hz": 0.0,
        "capture_frames_per_bag": 10, "image_reliability": "reliable", "image_depth": 30,
        **rules,
    }  # fmt: skip
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": node_params}}))
    run = replay_through_sorter(bag, bundle, backend="onnxruntime", params_file=params)
    assert run.complete and run.labels
    rule = CaptureRules(margin=0.1, many_classes=3, wide_margin=0.2, sample_rate=0.0)
    expected = sorted(
        _key(label.scores)
        for label in run.labels
        if rule.reasons(label.scores, label.thresholds, 1.0)
    )
    assert expected, "no frame near its thresholds: the test data do not exercise capture"
    bags = sorted((tmp_path / "capture").glob("capture_*"))
    captured = []
    with AnyReader(bags, default_typestore=mmsag_typestore()) as reader:
        for connection, _, raw in reader.messages():
            if connection.msgtype == MULTILABEL_TYPE:
                captured.append(_key(reader.deserialize(raw, MULTILABEL_TYPE).scores))
    assert sorted(captured) == expected
    # Each captured frame sits beside its label: export-frames pairs them all.
    out = tmp_path / "to_label"
    assert main(["bag", "export-frames", *map(str, bags), "--out", str(out)]) == 0
    table = read_csv_labels(out / "labels.csv", image_root=out / "images")
    assert len(table) == len(expected) == sum(1 for b in bags for _ in iter_frames(b))
    with (out / "labels.csv").open(newline="") as stream:
        header = next(csv.reader(stream))
    assert header[0] == "filename"
    # It trains together with the original data (the extra images join training only).
    base = DataConfig(path=str(data))
    both = DataConfig(path=str(data), extra_train=[str(out / "labels.csv")])
    (train, val), (train_both, val_both) = (load_train_val(d, seed=0) for d in (base, both))
    assert len(train_both) == len(train) + len(table)
    assert [s.image_id for s in val_both.samples] == [s.image_id for s in val.samples]
    other = out / "other_classes.csv"
    other.write_text("filename,bottle\n" + f"{table.samples[0].image_path.name},1\n")
    with pytest.raises(DatasetError, match="has classes \\['bottle'\\], the training data"):
        load_train_val(DataConfig(path=str(data), extra_train=[str(other)]), seed=0)
    run_dir = tmp_path / "run"
    argv = [
        "train", "--set", f"data.path={data}", "--set", f"data.extra_train=[{out / 'labels.csv'}]",
        "--set", "data.workers=0",
        "--set", "model.name=mmsag_r18_224", "--set", "model.pretrained=false",
        "--set", "model.freeze_stages=0",
        "--set", "model.embeddings=learnable", "--set", "epochs=1", "--set", "batch_size=2",
        "--set", "max_batches_per_epoch=2", "--set", "device=cpu", "--out", str(run_dir),
    ]  # fmt: skip
    assert main(argv) == 0
    assert (run_dir / "best.pt").is_file()
