"""mmsag bag make / eval: synthetic split -> bag -> offline scores, storages, bad input."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from bag.bag_helpers import CAMERAS, truth_by_frame, two_camera_bag
from runtime.runtime_helpers import make_bundle

from mmsag_ros.bag.bag_eval import evaluate_bag, write_bag_evaluation
from mmsag_ros.bag.frames import (
    FRAME_SOURCES_KEY,
    ReadCounts,
    iter_frames,
    iter_ground_truth,
    open_bag,
    read_frame_sources,
)
from mmsag_ros.bag.make import GT_TOPIC, ground_truth_scores, make_bag
from mmsag_ros.bag.truth import read_gt_csv
from mmsag_ros.cli import main
from mmsag_ros.data.synth import generate_dataset
from mmsag_ros.data.voc import read_voc, read_voc_boxes
from mmsag_ros.errors import BagError, ConfigError, DatasetError
from mmsag_ros.metrics import MultiLabelMeter
from mmsag_ros.pointing import PointingMeter
from mmsag_ros.runtime.classifier import Classifier

START_NS = 1_700_000_000_123_456_789
FPS = 10.0
DIFFICULT = ("metal", "test_000002")  # marked "difficult" (ignore) in the class list


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "data"
    generate_dataset(root, num_trainval=1, num_test=5, image_size=(64, 48), seed=4)
    lists = root / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main"
    path = lists / f"{DIFFICULT[0]}_test.txt"
    lines = [
        f"{DIFFICULT[1]}  0" if line.split()[0] == DIFFICULT[1] else line
        for line in path.read_text().splitlines()
    ]
    path.write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle") / "tiny", seed=5)


@pytest.fixture(scope="module")
def classifier(bundle) -> Classifier:
    return Classifier(bundle, backend="onnxruntime", device="cpu")


def _direct(classifier: Classifier, dataset: Path, *, jpeg: bool) -> tuple[np.ndarray, np.ndarray]:
    """Scores of the split's images classified straight from disk, and their targets."""
    split = read_voc(dataset, "test", labels=classifier.labels)
    images = []
    for sample in split.samples:
        bgr = cv2.imread(str(sample.image_path))
        if jpeg:  # what a CompressedImage frame holds: the image re-encoded as JPEG
            bgr = cv2.imdecode(cv2.imencode(".jpg", bgr)[1], cv2.IMREAD_COLOR)
        images.append(bgr)
    predictions = classifier.classify(images, color_orders="bgr")
    return np.stack([p.scores for p in predictions]).astype(np.float64), split.targets()


def _flat(value, prefix: str = "") -> dict[str, float | None]:
    """A nested report as {"a.b.0": number}, for pytest.approx."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return {prefix: value}
    flat: dict[str, float | None] = {}
    for key, item in items:
        flat.update(_flat(item, f"{prefix}.{key}"))
    return flat


@pytest.mark.parametrize(
    ("storage", "compressed"), [("mcap", False), ("sqlite3", False), ("mcap", True)]
)
def test_make_then_eval_equals_direct_classification(
    dataset, bundle, classifier, tmp_path, storage, compressed
):
    bag = tmp_path / "bag"
    summary = make_bag(
        dataset, bag, storage=storage, fps=FPS, compressed=compressed, start_ns=START_NS
    )
    assert summary.frames == 5
    assert summary.image_topic.endswith("/compressed") == compressed
    expected_suffix = ".mcap" if storage == "mcap" else ".db3"
    assert [p.suffix for p in bag.glob(f"*{expected_suffix}")] == [expected_suffix]

    evaluation = evaluate_bag(bag, bundle, backend="onnxruntime")
    scores, targets = _direct(classifier, dataset, jpeg=compressed)
    np.testing.assert_allclose(evaluation.scores, scores, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(evaluation.targets, targets)
    period_ns = round(1e9 / FPS)
    np.testing.assert_array_equal(evaluation.stamps_ns, START_NS + period_ns * np.arange(5))
    assert (evaluation.frames, evaluation.unmatched, dict(evaluation.unreadable)) == (5, 0, {})

    meter = MultiLabelMeter(len(classifier.labels))
    meter.update(scores, targets)
    expected = meter.compute(classifier.thresholds).to_dict()
    assert _flat(evaluation.report.to_dict()) == pytest.approx(_flat(expected), abs=1e-6)


def _edit_frame_sources(bag: Path, change) -> None:
    """Rewrite the frame-sources record of a bag's metadata.yaml through ``change``."""
    path = bag / "metadata.yaml"
    metadata = yaml.safe_load(path.read_text())
    custom = metadata["rosbag2_bagfile_information"]["custom_data"]
    custom[FRAME_SOURCES_KEY] = json.dumps(change(json.loads(custom[FRAME_SOURCES_KEY])))
    path.write_text(yaml.safe_dump(metadata))


def test_peaks_are_scored_against_the_boxes_of_the_images_the_frames_show(
    dataset, bundle, classifier, tmp_path
):
    bag = tmp_path / "bag"
    make_bag(dataset, bag, fps=FPS, start_ns=START_NS)
    sources = read_frame_sources(bag)
    split = read_voc(dataset, "test", labels=classifier.labels)
    ids = [sample.image_id for sample in split.samples]
    period_ns = round(1e9 / FPS)
    assert sources.voc_root == dataset.resolve() and sources.split == "test"
    assert sources.image_ids == {START_NS + k * period_ns: i for k, i in enumerate(ids)}

    # The same meter fed from the images on disk gives the same scores.
    boxes = read_voc_boxes(dataset, ids)
    meter = PointingMeter(classifier.labels.names)
    for sample in split.samples:
        prediction = classifier.classify_one(cv2.imread(str(sample.image_path)), "bgr")
        meter.update(boxes[sample.image_id], prediction.peaks, prediction.instances)
    expected = meter.compute().to_dict()
    evaluation = evaluate_bag(bag, bundle, backend="onnxruntime")
    assert evaluation.pointing.to_dict() == expected and evaluation.pointing.images == 5
    out = tmp_path / "report"
    text = write_bag_evaluation(evaluation, out)
    assert "pointing" in text
    assert json.loads((out / "pointing.json").read_text()) == expected
    assert json.loads((out / "report.json").read_text())["pointing"] == expected
    assert (out / "pointing_examples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The dataset moved: the bag's record misses it, --boxes names the new place.
    moved = tmp_path / "moved"
    shutil.copytree(dataset, moved)
    _edit_frame_sources(bag, lambda record: {**record, "voc": "/gone"})
    missing = evaluate_bag(bag, bundle, backend="onnxruntime")
    assert missing.pointing is None and "cannot read the boxes of /gone" in (
        missing.pointing_skipped
    )
    assert missing.report.map == pytest.approx(evaluation.report.map)
    again = evaluate_bag(bag, bundle, backend="onnxruntime", boxes_root=moved)
    assert again.pointing.to_dict() == expected


def test_boxes_need_a_bag_that_says_which_image_each_frame_is(
    dataset, bundle, classifier, tmp_path
):
    bag = tmp_path / "two"
    two_camera_bag(dict.fromkeys(CAMERAS, dataset), bag, fps=FPS, start_ns=START_NS)
    evaluation = evaluate_bag(bag, bundle, backend="onnxruntime")
    assert evaluation.pointing is None
    assert "does not say which dataset image" in evaluation.pointing_skipped
    with pytest.raises(BagError, match="only bags written by `mmsag bag make` do"):
        evaluate_bag(bag, bundle, backend="onnxruntime", boxes_root=dataset)
    made = tmp_path / "made"
    make_bag(dataset, made, fps=FPS, start_ns=START_NS)
    _edit_frame_sources(made, lambda record: {**record, "frames": [["x", 1, 2]]})
    with pytest.raises(BagError, match=r"unreadable mmsag_ros\.frame_sources record"):
        evaluate_bag(made, bundle, backend="onnxruntime")


def test_ground_truth_messages_carry_targets_and_frame_headers(dataset, tmp_path):
    bag = tmp_path / "bag"
    make_bag(dataset, bag, start_ns=START_NS, frame_id="cam_left")
    split = read_voc(dataset, "test")
    truth = list(iter_ground_truth(bag, topic=GT_TOPIC))
    frames = list(iter_frames(bag))
    assert [(g.stamp_ns, g.frame_id) for g in truth] == [(f.stamp_ns, f.frame_id) for f in frames]
    assert {g.frame_id for g in truth} == {"cam_left"}
    assert all(g.class_names == split.labels.names for g in truth)
    np.testing.assert_array_equal(np.stack([g.target for g in truth]), split.targets())
    column = split.labels.names.index(DIFFICULT[0])
    row = [s.image_id for s in split.samples].index(DIFFICULT[1])
    assert truth[row].target[column] == -1
    # Frames are rgb8 Images holding the dataset's pixels.
    rgb = cv2.cvtColor(cv2.imread(str(split.samples[0].image_path)), cv2.COLOR_BGR2RGB)
    assert frames[0].color_order == "rgb"
    np.testing.assert_array_equal(frames[0].image, rgb)
    # Contract 3 on the truth too: each message names its frame's size and the version.
    with open_bag(bag) as reader:
        records = [
            reader.deserialize(raw, c.msgtype)
            for c, _, raw in reader.messages([c for c in reader.connections if c.topic == GT_TOPIC])
        ]
    assert [(m.image_width, m.image_height) for m in records] == [
        (f.image.shape[1], f.image.shape[0]) for f in frames
    ]
    assert {m.contract_version for m in records} == {3}


def test_ground_truth_scores_mark_ignored_entries_nan():
    scores = ground_truth_scores(np.array([1, 0, -1], np.float32))
    assert scores[:2].tolist() == [1.0, 0.0]
    assert math.isnan(scores[2])


def test_gt_csv_gives_the_same_metrics_in_any_class_order(dataset, bundle, tmp_path):
    bag = tmp_path / "bag"
    make_bag(dataset, bag, start_ns=START_NS)
    truth = list(iter_ground_truth(bag))
    names = list(truth[0].class_names)
    table = tmp_path / "gt.csv"
    with table.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["stamp_ns", *reversed(names)])
        for record in truth:
            writer.writerow([record.stamp_ns, *(int(v) for v in record.target[::-1])])
    from_csv = evaluate_bag(bag, bundle, gt_csv=table, backend="onnxruntime")
    from_bag = evaluate_bag(bag, bundle, backend="onnxruntime")
    np.testing.assert_array_equal(from_csv.targets, from_bag.targets)
    assert from_csv.report.to_dict() == from_bag.report.to_dict()

    table.write_text("stamp_ns,metal\n1,1\n")
    with pytest.raises(DatasetError, match="missing"):
        evaluate_bag(bag, bundle, gt_csv=table, backend="onnxruntime")
    table.write_text(f"stamp_ns,{','.join(names)}\nabc,{','.join('0' * len(names))}\n")
    with pytest.raises(DatasetError, match="line 2"):
        evaluate_bag(bag, bundle, gt_csv=table, backend="onnxruntime")


def _write_table(path: Path, names: list[str], rows: list[tuple[int, str, np.ndarray]]) -> None:
    """A ``stamp_ns,frame_id,<class>...`` ground-truth table."""
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["stamp_ns", "frame_id", *names])
        writer.writerows(
            [stamp, frame_id, *(int(v) for v in target)] for stamp, frame_id, target in rows
        )


def test_two_cameras_with_shared_stamps_are_scored_against_their_own_truth(
    dataset, bundle, classifier, tmp_path
):
    other = tmp_path / "other"
    generate_dataset(other, num_trainval=1, num_test=5, image_size=(64, 48), seed=9)
    datasets = dict(zip(CAMERAS, (dataset, other), strict=True))
    bag = tmp_path / "two_cameras"
    two_camera_bag(datasets, bag, fps=FPS, start_ns=START_NS)
    truth = truth_by_frame(datasets, classifier.labels, fps=FPS, start_ns=START_NS)
    frames = list(iter_frames(bag))
    assert len({f.stamp_ns for f in frames}) == 5 and len(frames) == 10

    def check(evaluation) -> None:
        assert (evaluation.frames, evaluation.unmatched) == (10, 0)
        keys = list(zip(evaluation.stamps_ns.tolist(), evaluation.frame_ids, strict=True))
        assert keys == [(f.stamp_ns, f.frame_id) for f in frames]
        np.testing.assert_array_equal(evaluation.targets, np.stack([truth[k] for k in keys]))
        expected = [classifier.classify_one(f.image, f.color_order).scores for f in frames]
        np.testing.assert_allclose(evaluation.scores, np.stack(expected), atol=1e-6)

    # In-bag truth: each camera's MultiLabel carries its frame_id.
    check(evaluate_bag(bag, bundle, backend="onnxruntime"))
    # The same truth as a table with a frame_id column, rows in any order.
    table = tmp_path / "gt.csv"
    names = list(classifier.labels.names)
    _write_table(table, names, [(s, f, t) for (s, f), t in reversed(truth.items())])
    check(evaluate_bag(bag, bundle, gt_csv=table, backend="onnxruntime"))

    # scores.csv has the table's layout: stamp and frame_id, then the classes.
    out = tmp_path / "report"
    write_bag_evaluation(evaluate_bag(bag, bundle, backend="onnxruntime"), out)
    with (out / "scores.csv").open() as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == ["stamp_ns", "frame_id", *names]
    assert [(int(r[0]), r[1]) for r in rows[1:]] == [(f.stamp_ns, f.frame_id) for f in frames]


def test_truth_without_frame_id_covers_every_camera_without_its_own(classifier, tmp_path):
    names = list(classifier.labels.names)
    ones, zeros = np.ones(len(names)), np.zeros(len(names))
    table = tmp_path / "gt.csv"
    # Old form, no frame_id column: a row stands for every camera at its stamp.
    table.write_text(f"stamp_ns,{','.join(names)}\n5,{','.join('1' * len(names))}\n")
    truth = read_gt_csv(table, classifier.labels)
    for frame_id in ("cam_left", "cam_right", ""):
        np.testing.assert_array_equal(truth.get(5, frame_id), ones)
    assert truth.get(6, "cam_left") is None
    # An empty frame_id cell is the same; a camera's own row wins over it.
    _write_table(table, names, [(5, "", ones), (5, "cam_left", zeros)])
    truth = read_gt_csv(table, classifier.labels)
    np.testing.assert_array_equal(truth.get(5, "cam_left"), zeros)
    np.testing.assert_array_equal(truth.get(5, "cam_right"), ones)
    # Truth for one camera is not another camera's.
    _write_table(table, names, [(5, "cam_left", ones)])
    assert read_gt_csv(table, classifier.labels).get(5, "cam_right") is None


def test_a_repeated_stamp_and_frame_id_in_a_table_names_both_lines(classifier, tmp_path):
    names = list(classifier.labels.names)
    target = np.zeros(len(names))
    table = tmp_path / "gt.csv"
    _write_table(table, names, [(5, "cam_left", target), (5, "cam_right", target)])
    assert len(read_gt_csv(table, classifier.labels)) == 2  # one stamp, two cameras: fine
    _write_table(table, names, [(5, "cam_left", target), (6, "cam_left", target)] * 2)
    with pytest.raises(
        DatasetError, match=r"line 4: stamp 5 with frame_id 'cam_left' is already on line 2"
    ):
        read_gt_csv(table, classifier.labels)
    # Blank lines count: the line named is the one an editor shows.
    rows = "\n".join(f"{stamp},{','.join('0' * len(names))}" for stamp in (5, 6, 5))
    table.write_text(f"stamp_ns,{','.join(names)}\n\n{rows}\n")
    with pytest.raises(
        DatasetError, match=r"gt.csv, line 5: stamp 5 with no frame_id is already on line 3"
    ):
        read_gt_csv(table, classifier.labels)


def test_cli_make_and_eval_write_reports(dataset, bundle, tmp_path, capsys):
    bag = tmp_path / "cli_bag"
    argv = ["bag", "make", "--data", str(dataset), "--out", str(bag), "--storage", "sqlite3"]
    assert main(argv) == 0
    assert main(argv) == 1  # refuses to overwrite
    assert "already exists" in capsys.readouterr().err
    out = tmp_path / "report"
    argv = ["bag", "eval", str(bag), "--bundle", str(bundle), "--out", str(out)]
    assert main([*argv, "--backend", "onnxruntime"]) == 0
    printed = capsys.readouterr().out
    assert "5 image messages, 5 scored" in printed and "mAP" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["scored"] == 5 and report["metrics"]["num_samples"] == 5
    assert (out / "pr_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len((out / "scores.csv").read_text().splitlines()) == 6
    # The bag names its dataset, whose boxes score the peaks; --boxes points elsewhere.
    assert f"peaks and boxes: {out / 'pointing_examples.png'}" in printed
    assert report["pointing"]["images"] == 5
    assert main([*argv, "--backend", "onnxruntime", "--boxes", str(tmp_path / "none")]) == 1
    assert "dataset root" in capsys.readouterr().err


def test_make_rejects_bad_options(dataset, tmp_path):
    with pytest.raises(ConfigError, match="storage must be one of"):
        make_bag(dataset, tmp_path / "a", storage="rosbag1")
    with pytest.raises(ConfigError, match="fps must be positive"):
        make_bag(dataset, tmp_path / "b", fps=0)
    (tmp_path / "c").mkdir()
    with pytest.raises(BagError, match="already exists"):
        make_bag(dataset, tmp_path / "c")
    with pytest.raises(DatasetError, match="not found"):
        make_bag(dataset, tmp_path / "d", split="nosuchsplit")


def test_make_leaves_no_half_written_bag(dataset, tmp_path):
    broken = tmp_path / "data"
    shutil.copytree(dataset, broken)
    last = sorted((broken / "VOCdevkit" / "VOC2007" / "JPEGImages").glob("test_*"))[-1]
    last.write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=f"{last.name} is missing or cannot be decoded"):
        make_bag(broken, tmp_path / "bag")
    assert not (tmp_path / "bag").exists()


def test_eval_without_ground_truth_or_matching_stamps(dataset, bundle, tmp_path):
    bag = tmp_path / "bag"
    make_bag(dataset, bag, start_ns=START_NS)
    with pytest.raises(BagError, match="no ground truth: no mmsag_ros/msg/MultiLabel on /other"):
        evaluate_bag(bag, bundle, gt_topic="/other", backend="onnxruntime")
    table = tmp_path / "gt.csv"
    names = list(read_voc(dataset, "test").labels.names)
    table.write_text(f"stamp_ns,{','.join(names)}\n5,{','.join('1' * len(names))}\n")
    with pytest.raises(BagError, match="5 without ground truth for their stamp and frame_id"):
        evaluate_bag(bag, bundle, gt_csv=table, backend="onnxruntime")
    # Truth for another camera: the error says whose frames lack it.
    stamps = [f.stamp_ns for f in iter_frames(bag)]
    _write_table(table, names, [(stamp, "cam_other", np.ones(len(names))) for stamp in stamps])
    with pytest.raises(
        BagError, match=r"frame_ids \['camera_optical_frame'\], the ground truth \['cam_other'\]"
    ):
        evaluate_bag(bag, bundle, gt_csv=table, backend="onnxruntime")


def test_truncated_and_corrupt_bags_raise_bag_error(dataset, tmp_path):
    mcap_bag, db3_bag = tmp_path / "m", tmp_path / "s"
    make_bag(dataset, mcap_bag, storage="mcap")
    make_bag(dataset, db3_bag, storage="sqlite3")
    (storage,) = mcap_bag.glob("*.mcap")
    data = storage.read_bytes()
    storage.write_bytes(data[: len(data) // 2])
    with pytest.raises(BagError, match=r"cannot open bag .*/m: .*complete rosbag2"):
        list(iter_frames(mcap_bag))
    (storage,) = db3_bag.glob("*.db3")
    storage.write_bytes(b"this is not a sqlite database" * 100)
    with pytest.raises(BagError, match=r"cannot open bag|corrupt"):
        list(iter_frames(db3_bag))
    with pytest.raises(BagError, match="does not exist"):
        list(iter_frames(tmp_path / "missing"))
    broken = tmp_path / "no_metadata"
    shutil.copytree(db3_bag, broken)
    (broken / "metadata.yaml").write_text("rosbag2_bagfile_information: [")
    with pytest.raises(BagError, match="cannot open bag"):
        list(iter_frames(broken))


def test_frame_counts_are_reported(dataset, tmp_path):
    bag = tmp_path / "bag"
    make_bag(dataset, bag, compressed=True)
    counts = ReadCounts()
    frames = list(iter_frames(bag, counts=counts))
    assert counts.messages == len(frames) == 5 and counts.num_unreadable == 0
    assert all(f.color_order == "bgr" and f.image.shape == (48, 64, 3) for f in frames)
