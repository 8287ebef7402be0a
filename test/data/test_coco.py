"""COCO reader: image-level labels at category and supercategory level, errors, real TACO."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support import SHARED_DATA

from mmsag_ros.data.coco import read_coco
from mmsag_ros.errors import ConfigError, DatasetError

TACO = SHARED_DATA / "annotations" / "taco" / "annotations.json"


def _coco() -> dict:
    return {
        "images": [
            {"id": 10, "file_name": "batch_1/a.jpg"},
            {"id": 11, "file_name": "batch_1/b.jpg"},
            {"id": 12, "file_name": "batch_2/c.jpg"},
            {"id": 13, "file_name": "batch_2/d.jpg"},
        ],
        # Listed out of id order on purpose: classes follow category ids.
        "categories": [
            {"id": 3, "name": "Pop tab", "supercategory": "Metal"},
            {"id": 1, "name": "Bottle", "supercategory": "Glass"},
            {"id": 2, "name": "Can", "supercategory": "Metal"},
        ],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 1},
            {"id": 2, "image_id": 10, "category_id": 1},
            {"id": 3, "image_id": 11, "category_id": 3},
            {"id": 4, "image_id": 11, "category_id": 2},
            {"id": 5, "image_id": 12, "category_id": 3},
        ],
    }


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(data, indent=1))
    return path


def test_category_level(tmp_path):
    split = read_coco(_write(tmp_path, _coco()))
    assert split.labels.names == ("Bottle", "Can", "Pop tab")
    np.testing.assert_array_equal(split.targets(), [[1, 0, 0], [0, 1, 1], [0, 0, 1], [0, 0, 0]])
    assert [s.image_id for s in split.samples][2] == "batch_2/c.jpg"
    assert split.samples[0].image_path == tmp_path / "batch_1" / "a.jpg"
    assert split.image_root == tmp_path


def test_supercategory_level(tmp_path):
    split = read_coco(_write(tmp_path, _coco()), level="supercategory")
    assert split.labels.names == ("Glass", "Metal")
    np.testing.assert_array_equal(split.targets(), [[1, 0], [0, 1], [0, 1], [0, 0]])


def test_image_root_and_file_check(tmp_path):
    path = _write(tmp_path, _coco())
    images = tmp_path / "pictures"
    split = read_coco(path, images)
    assert split.samples[3].image_path == images / "batch_2" / "d.jpg"
    with pytest.raises(
        DatasetError, match=r"images are missing: 4 of 4 .*expected under .*pictures"
    ):
        read_coco(path, images, check_files=True)
    for sample in split.samples:
        sample.image_path.parent.mkdir(parents=True, exist_ok=True)
        sample.image_path.write_bytes(b"x")
    assert len(read_coco(path, images, check_files=True)) == 4


def test_malformed_json_reports_position(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"images": [\n  {"id": 1,, "file_name": "a.jpg"}]}')
    with pytest.raises(
        DatasetError, match=r"malformed JSON in .*broken\.json at line 2, column 12"
    ):
        read_coco(path)


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        read_coco(tmp_path / "none.json")


@pytest.mark.parametrize("key", ["images", "annotations", "categories"])
def test_missing_top_level_key(tmp_path, key):
    data = _coco()
    del data[key]
    with pytest.raises(DatasetError, match=f"has no '{key}' list"):
        read_coco(_write(tmp_path, data))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 100_000 + "]" * 100_000, "not a usable COCO file"),
        ('{"images": ' + "9" * 100_000 + "}", "not a usable COCO file"),
    ],
)
def test_json_no_parser_survives_is_one_clear_error(tmp_path, text, message):
    path = tmp_path / "annotations.json"
    path.write_text(text)
    with pytest.raises(DatasetError, match=message):
        read_coco(path)


def test_top_level_must_be_an_object(tmp_path):
    with pytest.raises(DatasetError, match="top level is a list"):
        read_coco(_write(tmp_path, [1, 2]))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["images"][1].pop("file_name"), r"image number 1 .* no 'file_name'"),
        (lambda d: d["annotations"][2].pop("category_id"), r"annotation number 2 .* 'category_id'"),
        (lambda d: d["categories"][0].pop("name"), r"category number 0 .* no 'name'"),
        (lambda d: d["images"].append({"id": 10, "file_name": "x"}), "image id 10 appears twice"),
        (lambda d: d["categories"].append({"id": 2, "name": "X"}), "category id 2 appears twice"),
        (lambda d: d.update(images={"id": 1}), "'images' must be a list of objects"),
        (
            lambda d: d["annotations"].append({"id": 9, "image_id": 99, "category_id": 1}),
            r"annotation number 5 \(id 9\) refers to image id 99, which is not in 'images'",
        ),
        (
            lambda d: d["annotations"].append({"id": 9, "image_id": 10, "category_id": 7}),
            r"refers to category id 7, which is not in 'categories'",
        ),
        (
            lambda d: d["categories"].append({"id": 4, "name": "Can", "supercategory": "X"}),
            r"category name 'Can' is used by two category ids",
        ),
        # Ids a dict cannot hold, or that sort with nothing: one line, not a TypeError.
        (lambda d: d["images"][0].update(id=[10]), r"image number 0 .* has id \[10\]"),
        (lambda d: d["categories"][0].update(id={"a": 1}), "category number 0 .* ids are"),
        (lambda d: d["annotations"][0].update(image_id=None), "annotation number 0 .* image_id"),
        (lambda d: d["annotations"][0].update(category_id=1.5), "category_id 1.5; ids are"),
    ],
)
def test_inconsistent_annotations(tmp_path, mutate, message):
    data = _coco()
    mutate(data)
    with pytest.raises(DatasetError, match=message):
        read_coco(_write(tmp_path, data))


def test_missing_supercategory(tmp_path):
    data = _coco()
    del data["categories"][1]["supercategory"]
    read_coco(_write(tmp_path, data))  # category level does not need it
    with pytest.raises(DatasetError, match="no 'supercategory'"):
        read_coco(_write(tmp_path, data), level="supercategory")


def test_bad_level(tmp_path):
    with pytest.raises(ConfigError, match="level must be one of"):
        read_coco(_write(tmp_path, _coco()), level="instance")


@pytest.mark.skipif(not TACO.is_file(), reason="TACO annotations not available here")
@pytest.mark.parametrize(("level", "num_classes"), [("category", 60), ("supercategory", 28)])
def test_real_taco_annotations_load(level, num_classes):
    split = read_coco(TACO, level=level)
    assert len(split) == 1500 and len(split.labels) == num_classes
    raw = json.loads(TACO.read_text())
    key = "name" if level == "category" else "supercategory"
    name_of = {c["id"]: c[key] for c in raw["categories"]}
    expected = {image["file_name"]: set() for image in raw["images"]}
    file_of = {image["id"]: image["file_name"] for image in raw["images"]}
    for annotation in raw["annotations"]:
        expected[file_of[annotation["image_id"]]].add(name_of[annotation["category_id"]])
    for sample in split.samples:
        found = {split.labels.names[c] for c in np.flatnonzero(sample.target == 1)}
        assert found == expected[sample.image_id]
    # TACO ships annotations only: asking for the images says so and where they belong.
    with pytest.raises(DatasetError, match=r"images are missing: 1500 of 1500 .*expected under"):
        read_coco(TACO, level=level, check_files=True)
