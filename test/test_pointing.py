"""Attention peaks as points and their scores against boxes: instance peaks, pointing meter,
the VOC box reader."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from mmsag_ros.bundle.preprocess import PreprocessSpec
from mmsag_ros.data.synth import generate_dataset
from mmsag_ros.data.voc import VocAnnotation, VocBox, read_voc, read_voc_boxes
from mmsag_ros.errors import ConfigError, DatasetError
from mmsag_ros.pointing import PointingMeter, attention_peaks, instance_peaks

SPEC = PreprocessSpec(input_size=224)


def _map(*bumps: tuple[int, int, float], size: int = 7) -> np.ndarray:
    grid = np.full((size, size), 0.01, np.float32)
    for row, col, value in bumps:
        grid[row, col] = value
    return grid / grid.sum()


def test_instance_peaks_are_the_local_maxima_strongest_first():
    maps = np.stack([_map((1, 1, 0.5), (5, 5, 0.3), (5, 6, 0.05)), _map((3, 3, 0.9))])
    peaks = instance_peaks(maps, source_size=(700, 700), spec=SPEC, min_relative=0.3)
    assert [len(p) for p in peaks] == [2, 1]
    # Cell centres in source pixels: (col + 0.5) / 7 of the width.
    np.testing.assert_allclose(peaks[0][:, :2], [[1.5 / 7, 1.5 / 7], [5.5 / 7, 5.5 / 7]])
    assert peaks[0][0, 2] > peaks[0][1, 2]
    # The first instance is the class peak the node publishes.
    single = attention_peaks(maps, source_size=(700, 700), spec=SPEC)
    np.testing.assert_array_equal(np.stack([p[0] for p in peaks]), single)


def test_instance_peaks_filter_weak_maxima_cap_their_number_and_count_a_plateau_once():
    grid = _map((0, 0, 0.5), (6, 6, 0.1), (3, 3, 0.3), (3, 4, 0.3))
    (strong,) = instance_peaks(grid[None], source_size=(7, 7), spec=SPEC, min_relative=0.5)
    assert len(strong) == 2  # the plateau (3,3)-(3,4) once, (6,6) too weak
    np.testing.assert_allclose(strong[1, :2], [3.5 / 7, 3.5 / 7])  # its first cell
    (capped,) = instance_peaks(grid[None], source_size=(7, 7), spec=SPEC, max_peaks=1)
    assert len(capped) == 1
    (every,) = instance_peaks(grid[None], source_size=(7, 7), spec=SPEC, min_relative=0.01)
    assert len(every) == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"min_relative": 0.0}, "min_relative"), ({"max_peaks": 0}, "max_peaks")],
)
def test_instance_peak_options_are_checked(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        instance_peaks(np.ones((1, 7, 7)), source_size=(7, 7), spec=SPEC, **kwargs)


def _point(x: float, y: float, width: int = 100, height: int = 100) -> list[float]:
    return [x / width, y / height, 0.5]


def test_the_pointing_meter_counts_hits_and_instances_by_hand():
    classes = ("bottle", "can", "box")
    meter = PointingMeter(classes)
    annotation = VocAnnotation(
        100,
        100,
        (
            VocBox("bottle", (11, 11, 30, 30), False),
            VocBox("bottle", (61, 61, 80, 80), False),
            VocBox("can", (41, 1, 50, 10), False),
            VocBox("box", (1, 81, 20, 100), True),  # only difficult: not present
        ),
    )
    peaks = np.array([_point(20, 20), _point(90, 90), _point(5, 90)], np.float32)
    instances = [
        np.array([_point(20, 20), _point(25, 25), _point(70, 70)], np.float32),  # 2 found, 1 dup
        np.array([_point(90, 90)], np.float32),  # misses the can
        np.array([_point(5, 90)], np.float32),
    ]
    meter.update(annotation, peaks, instances)
    second = VocAnnotation(100, 100, (VocBox("can", (1, 1, 100, 100), False),))
    meter.update(second, np.array([_point(0, 0)] * 3, np.float32), [np.zeros((0, 3))] * 3)
    report = meter.compute()
    assert report.images == 2
    assert report.present == (1, 2, 0) and report.hits == (1, 1, 0)
    assert report.accuracy == pytest.approx(2 / 3)
    assert np.isnan(report.class_accuracy(2))
    assert report.instance_boxes == (2, 2, 0) and report.instance_found == (2, 0, 0)
    assert report.instance_peaks == (3, 1, 0)
    assert report.instance_recall == pytest.approx(2 / 4)
    assert report.instance_precision == pytest.approx(2 / 4)
    assert (report.multi_pairs, report.multi_boxes, report.multi_found) == (1, 2, 2)
    assert report.multi_recall == 1.0 and report.multi_precision == pytest.approx(2 / 3)
    document = json.loads(json.dumps(report.to_dict()))
    assert document["class_accuracy"] == {"bottle": 1.0, "can": 0.5, "box": None}
    table = report.format_table()
    assert "bottle" in table and " 66.7" in table


def test_box_edges_count_as_inside():
    box = VocBox("can", (11, 21, 30, 40), False)  # 1-based inclusive pixels 11..30, 21..40
    assert box.contains(10.0, 20.0) and box.contains(30.0, 40.0)
    assert not box.contains(9.9, 25) and not box.contains(20, 40.1)


def test_voc_boxes_are_read_as_written(tmp_path):
    root = tmp_path / "synth"
    generate_dataset(root, num_trainval=4, num_test=3, image_size=(96, 72), seed=2)
    split = read_voc(root, "test")
    boxes = read_voc_boxes(root, [s.image_id for s in split.samples])
    assert boxes is not None and sorted(boxes) == sorted(s.image_id for s in split.samples)
    for image_id, annotation in boxes.items():
        xml = ET.parse(root / "VOCdevkit" / "VOC2007" / "Annotations" / f"{image_id}.xml")
        corners = ("xmin", "ymin", "xmax", "ymax")
        written = [
            (o.findtext("name"), tuple(int(o.findtext(f"bndbox/{k}")) for k in corners))
            for o in xml.getroot().iter("object")
        ]
        assert [(b.name, b.box) for b in annotation.boxes] == written
        assert (annotation.width, annotation.height) == (96, 72)


_ONE_BOX = """<annotation><size><width>64</width><height>48</height></size>
<object><name>metal</name><difficult>0</difficult>
<bndbox><xmin>3</xmin><ymin>4</ymin><xmax>20</xmax><ymax>30</ymax></bndbox></object>
</annotation>"""


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (_ONE_BOX.replace("<xmin>3", "<xmin>x"), "not a number"),
        (_ONE_BOX.replace("<xmax>20", "<xmax>1"), "empty box"),
        (_ONE_BOX.replace("<width>64</width>", ""), "no image <size>"),
        ("<annotation><object>", "cannot read the annotation"),
    ],
)
def test_bad_boxes_are_errors(tmp_path, text, match):
    annotations = tmp_path / "ImageSets" / "Main"
    annotations.mkdir(parents=True)
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text(_ONE_BOX)
    assert read_voc_boxes(tmp_path, ["a"]) == {
        "a": VocAnnotation(64, 48, (VocBox("metal", (3, 4, 20, 30), False),))
    }
    (tmp_path / "Annotations" / "a.xml").write_text(text)
    with pytest.raises(DatasetError, match=match):
        read_voc_boxes(tmp_path, ["a"])


def test_image_level_labels_have_no_boxes(tmp_path):
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "Annotations").mkdir()
    assert read_voc_boxes(tmp_path, ["a"]) is None  # no annotation file at all
    without = _ONE_BOX.replace("bndbox>", "extent>")
    (tmp_path / "Annotations" / "a.xml").write_text(without)
    assert read_voc_boxes(tmp_path, ["a"]) is None  # objects without boxes
