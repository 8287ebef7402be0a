"""VOC/MLKW layout reader: per-class lists, XML fallback, label discovery and broken trees."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mmsag_ros.bundle.labels import MLKW_LABELS, LabelSet
from mmsag_ros.data.voc import discover_labels, find_voc_dir, read_voc, write_voc_lists
from mmsag_ros.errors import ConfigError, DatasetError

NAMES = ["000001", "000002", "000003", "000004", "000005"]


def _targets() -> np.ndarray:
    rng = np.random.default_rng(11)
    targets = (rng.random((len(NAMES), len(MLKW_LABELS))) < 0.4).astype(np.float32)
    targets[0, 3] = -1.0  # a difficult entry
    targets[1] = 0.0  # an image with no positive label
    return targets


def _write_images(voc: Path, names: list[str]) -> None:
    (voc / "JPEGImages").mkdir(parents=True, exist_ok=True)
    for name in names:
        cv2.imwrite(str(voc / "JPEGImages" / f"{name}.jpg"), np.full((12, 16, 3), 90, np.uint8))


def _mlkw_tree(root: Path) -> Path:
    voc = root / "VOCdevkit" / "VOC2007"
    _write_images(voc, NAMES)
    write_voc_lists(voc, "trainval", MLKW_LABELS, NAMES, _targets())
    return voc


def _xml(objects: list[tuple[str, int]]) -> str:
    body = "".join(
        f"<object><name>{name}</name><difficult>{flag}</difficult></object>"
        for name, flag in objects
    )
    return f"<annotation><filename>x.jpg</filename>{body}</annotation>"


def _xml_tree(root: Path, annotations: dict[str, list[tuple[str, int]]]) -> Path:
    voc = root / "VOC2007"
    _write_images(voc, list(annotations))
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    for name, objects in annotations.items():
        (voc / "Annotations" / f"{name}.xml").write_text(_xml(objects))
    (voc / "ImageSets" / "Main" / "test.txt").write_text("\n".join(annotations) + "\n")
    return voc


def _main(voc: Path) -> Path:
    return voc / "ImageSets" / "Main"


def test_reads_mlkw_per_class_lists(tmp_path):
    voc = _mlkw_tree(tmp_path)
    split = read_voc(tmp_path, "trainval")
    assert split.labels == MLKW_LABELS
    assert split.labels.display_names[6] == "tetra pak carton"
    assert [s.image_id for s in split.samples] == NAMES
    np.testing.assert_array_equal(split.targets(), _targets())
    assert split.samples[2].image_path == voc / "JPEGImages" / "000003.jpg"
    assert split.name == "trainval" and split.source == str(voc)


def test_root_may_be_the_voc2007_folder(tmp_path):
    voc = _mlkw_tree(tmp_path)
    assert find_voc_dir(voc) == voc
    np.testing.assert_array_equal(read_voc(voc, "trainval").targets(), _targets())


@pytest.mark.parametrize(("policy", "value"), [("ignore", -1), ("positive", 1), ("negative", 0)])
def test_difficult_policy(tmp_path, policy, value):
    _mlkw_tree(tmp_path)
    targets = read_voc(tmp_path, "trainval", difficult=policy).targets()
    assert targets[0, 3] == value
    others = np.ones_like(targets, bool)
    others[0, 3] = False
    np.testing.assert_array_equal(targets[others], _targets()[others])


def test_given_labels_set_the_column_order(tmp_path):
    _mlkw_tree(tmp_path)
    reordered = LabelSet.from_names(list(reversed(MLKW_LABELS.names)))
    split = read_voc(tmp_path, "trainval", labels=reordered)
    assert split.labels == reordered
    np.testing.assert_array_equal(split.targets(), _targets()[:, ::-1])


def test_other_classes_are_sorted_and_keep_mlkw_display_names(tmp_path):
    voc = tmp_path / "VOCdevkit" / "VOC2007"
    _write_images(voc, ["a", "b"])
    labels = LabelSet.from_names(["lile", "can", "galss"])
    write_voc_lists(voc, "test", labels, ["a", "b"], np.array([[1, 0, 0], [0, 1, 1]], np.float32))
    split = read_voc(tmp_path, "test")
    assert split.labels.names == ("can", "galss", "lile")
    assert split.labels.display_names == ("can", "glass", "tetra pak carton")
    np.testing.assert_array_equal(split.targets(), [[0, 0, 1], [1, 1, 0]])


def test_discover_labels_orders_mlkw_like_the_dataset():
    assert discover_labels(sorted(MLKW_LABELS.names)) == MLKW_LABELS
    with pytest.raises(DatasetError, match="no class names"):
        discover_labels([])


def test_xml_fallback_reads_objects_and_difficult(tmp_path):
    _xml_tree(
        tmp_path,
        {
            "a": [("plastic", 0), ("metal", 0), ("plastic", 1)],
            "b": [("metal", 1)],
            "c": [],
        },
    )
    split = read_voc(tmp_path, "test")
    assert split.labels.names == ("metal", "plastic")
    np.testing.assert_array_equal(split.targets(), [[1, 1], [-1, 0], [0, 0]])
    given = LabelSet.from_names(["plastic", "metal", "shoe"])
    targets = read_voc(tmp_path, "test", labels=given, difficult="positive").targets()
    np.testing.assert_array_equal(targets, [[1, 1, 0], [0, 1, 0], [0, 0, 0]])


def test_write_voc_lists_rejects_mismatched_targets(tmp_path):
    with pytest.raises(DatasetError, match=r"do not match 2 images x 8 classes"):
        write_voc_lists(tmp_path, "trainval", MLKW_LABELS, ["a", "b"], np.zeros((2, 3)))


def test_missing_root(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        read_voc(tmp_path / "nowhere", "trainval")


def test_root_without_voc_layout(tmp_path):
    with pytest.raises(DatasetError, match=r"no VOC layout .*VOCdevkit/VOC2007"):
        read_voc(tmp_path, "trainval")


def test_missing_split_lists_available_ones(tmp_path):
    _mlkw_tree(tmp_path)
    with pytest.raises(DatasetError, match=r"split 'test' not found .* available splits: trainval"):
        read_voc(tmp_path, "test")


def test_bad_difficult_policy(tmp_path):
    with pytest.raises(ConfigError, match="difficult must be one of"):
        read_voc(tmp_path, "trainval", difficult="maybe")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("000003 1 extra", r"line 3: expected 'name label', got '000003 1 extra'"),
        ("000003 2", r"line 3: label '2' for image '000003' is not 1, -1 or 0"),
        ("000003", r"line 3: image '000003' has an empty label"),
        ("000003   ", r"line 3: image '000003' has an empty label"),
        ("000001 -1", r"line 3: image '000001' is listed twice"),
    ],
)
def test_broken_list_line(tmp_path, line, message):
    voc = _mlkw_tree(tmp_path)
    path = _main(voc) / "metal_trainval.txt"
    lines = path.read_text().splitlines()
    lines[2] = line
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=message):
        read_voc(tmp_path, "trainval")


def test_empty_list_file(tmp_path):
    voc = _mlkw_tree(tmp_path)
    (_main(voc) / "shoe_trainval.txt").write_text("\n")
    with pytest.raises(DatasetError, match=r"shoe_trainval\.txt is empty"):
        read_voc(tmp_path, "trainval")


def test_image_missing_from_one_class_list(tmp_path):
    voc = _mlkw_tree(tmp_path)
    path = _main(voc) / "bottle_trainval.txt"
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines()[:-1]))
    with pytest.raises(
        DatasetError, match=r"'000005' is listed in waste_bag_trainval\.txt but not in bottle"
    ):
        read_voc(tmp_path, "trainval")


def test_image_only_in_one_class_list(tmp_path):
    voc = _mlkw_tree(tmp_path)
    with (_main(voc) / "carton_trainval.txt").open("a") as stream:
        stream.write("000099 1\n")
    with pytest.raises(
        DatasetError, match=r"'000099' is listed in carton_trainval\.txt but not in waste_bag"
    ):
        read_voc(tmp_path, "trainval")


def test_unknown_class_list_with_given_labels(tmp_path):
    voc = _mlkw_tree(tmp_path)
    (_main(voc) / "banana_trainval.txt").write_text("".join(f"{n} -1\n" for n in NAMES))
    with pytest.raises(DatasetError, match=r"banana_trainval\.txt: unknown class 'banana'"):
        read_voc(tmp_path, "trainval", labels=MLKW_LABELS)
    # Without given labels the extra list is simply a ninth class, sorted order.
    assert read_voc(tmp_path, "trainval").labels.names[0] == "banana"


def test_missing_class_list_for_given_label(tmp_path):
    voc = _mlkw_tree(tmp_path)
    (_main(voc) / "galss_trainval.txt").unlink()
    with pytest.raises(DatasetError, match=r"no label list for class 'galss'.*galss_trainval"):
        read_voc(tmp_path, "trainval", labels=MLKW_LABELS)


def test_unknown_class_in_xml_with_given_labels(tmp_path):
    _xml_tree(tmp_path, {"a": [("plastic", 0)], "b": [("banana", 0)]})
    with pytest.raises(DatasetError, match=r"b\.xml: unknown class 'banana'"):
        read_voc(tmp_path, "test", labels=LabelSet.from_names(["plastic"]))


def test_malformed_xml_names_file_and_parser_message(tmp_path):
    voc = _xml_tree(tmp_path, {"a": [("plastic", 0)], "b": [("metal", 0)]})
    (voc / "Annotations" / "b.xml").write_text("<annotation><object><name>metal</object>")
    with pytest.raises(DatasetError, match=r"malformed XML in .*b\.xml: mismatched tag: line 1"):
        read_voc(tmp_path, "test")


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("<annotation><object><difficult>0</difficult></object></annotation>", "has no <name>"),
        (
            "<annotation><object><name>x</name><difficult>yes</difficult></object></annotation>",
            r"<difficult>yes</difficult>; use 0 or 1",
        ),
    ],
)
def test_bad_xml_objects(tmp_path, xml, message):
    voc = _xml_tree(tmp_path, {"a": [("plastic", 0)]})
    (voc / "Annotations" / "a.xml").write_text(xml)
    with pytest.raises(DatasetError, match=message):
        read_voc(tmp_path, "test")


def test_missing_xml(tmp_path):
    voc = _xml_tree(tmp_path, {"a": [("plastic", 0)]})
    (_main(voc) / "test.txt").write_text("a\nb\n")
    with pytest.raises(DatasetError, match=r"annotation file .*b\.xml is missing"):
        read_voc(tmp_path, "test")


def test_bad_image_list(tmp_path):
    voc = _xml_tree(tmp_path, {"a": [("plastic", 0)]})
    (_main(voc) / "test.txt").write_text("a 1\n")
    with pytest.raises(DatasetError, match="one image name per line"):
        read_voc(tmp_path, "test")
    (_main(voc) / "test.txt").write_text("a\na\n")
    with pytest.raises(DatasetError, match="lists 'a' more than once"):
        read_voc(tmp_path, "test")


def test_missing_image_file(tmp_path):
    voc = _mlkw_tree(tmp_path)
    (voc / "JPEGImages" / "000004.jpg").unlink()
    with pytest.raises(DatasetError, match=r"images are missing: 1 of 5 .*000004\.jpg"):
        read_voc(tmp_path, "trainval")
    # Label statistics need no pixels.
    assert len(read_voc(tmp_path, "trainval", check_files=False)) == 5


def test_other_image_extensions_are_found(tmp_path):
    voc = _mlkw_tree(tmp_path)
    jpg = voc / "JPEGImages" / "000002.jpg"
    jpg.rename(jpg.with_suffix(".png"))
    split = read_voc(tmp_path, "trainval")
    assert split.samples[1].image_path == jpg.with_suffix(".png")
