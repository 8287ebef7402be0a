"""Augmentation that keeps the truth true: boxes follow every crop, flip and turn."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mmsag_ros.bundle.labels import LabelSet
from mmsag_ros.bundle.preprocess import PreprocessSpec
from mmsag_ros.data.dataset import (
    AnnotatedSplit,
    MultiLabelImageDataset,
    Sample,
    box_masks,
    visible_targets,
)
from mmsag_ros.data.transforms import EvalTransform, TrainTransform, move_boxes
from mmsag_ros.data.voc import read_voc
from mmsag_ros.errors import ConfigError

SPEC = PreprocessSpec(input_size=64)


def _scene(box: tuple[int, int, int, int], size=(160, 120)) -> tuple[np.ndarray, np.ndarray]:
    """A dark image with one bright object, and its box row (label 0, normalised)."""
    width, height = size
    image = np.full((height, width, 3), 20, np.uint8)
    x0, y0, x1, y1 = box
    image[y0:y1, x0:x1] = 230
    row = np.array([[0, x0 / width, y0 / height, x1 / width, y1 / height]], np.float32)
    return image, row


def _bright_extent(view: np.ndarray) -> tuple[float, float, float, float] | None:
    # The object normalises to about +2, the dark belt to -1.7, letterbox padding to 0.
    mask = view.mean(axis=0) > 1.0
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    size = mask.shape[0]
    return xs.min() / size, ys.min() / size, (xs.max() + 1) / size, (ys.max() + 1) / size


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
@pytest.mark.parametrize("options", [{}, {"vflip": True, "rot90": True}])
def test_moved_boxes_cover_the_object_in_the_output(resize, options):
    spec = PreprocessSpec(input_size=64, resize=resize)
    transform = TrainTransform(spec, **options)
    image, boxes = _scene((30, 20, 90, 50))
    checked = 0
    for seed in range(40):
        view, moved, visible = transform.apply(image, np.random.default_rng(seed), boxes)
        extent = _bright_extent(view)
        if visible[0] < 0.1:  # a sliver may blur away at 64 px
            assert extent is None or visible[0] > 0
            continue
        x0, y0, x1, y1 = moved[0, 1:]
        assert extent is not None
        np.testing.assert_allclose(extent, (x0, y0, x1, y1), atol=2.5 / 64)
        checked += 1
    assert checked >= 30


def test_turns_and_flips_move_boxes_like_the_pixels():
    boxes = np.array([[2, 0.1, 0.2, 0.3, 0.6]], np.float32)
    whole = (0.0, 0.0, 1.0, 1.0)
    turned, visible = move_boxes(boxes, whole, turns=1)
    np.testing.assert_allclose(turned[0], [2, 0.2, 0.7, 0.6, 0.9], atol=1e-6)
    assert visible[0] == pytest.approx(1.0)
    mirrored, _ = move_boxes(boxes, whole, hflip=True, vflip=True)
    np.testing.assert_allclose(mirrored[0], [2, 0.7, 0.4, 0.9, 0.8], atol=1e-6)
    back, _ = move_boxes(boxes, whole, turns=4)
    np.testing.assert_allclose(back, boxes)
    # A window over the box's left half keeps half of it, stretched to the window.
    half, visible = move_boxes(boxes, (0.0, 0.0, 0.2, 1.0))
    assert visible[0] == pytest.approx(0.5)
    np.testing.assert_allclose(half[0, 1:], [0.5, 0.2, 1.0, 0.6], atol=1e-6)


def test_labels_follow_what_the_crop_left_of_each_object():
    target = np.array([1, 1, 1, 0, -1, 1], np.float32)
    boxes = np.array(
        [[0, 0, 0, 1, 1], [0, 0, 0, 1, 1], [1, 0, 0, 1, 1], [2, 0, 0, 1, 1], [4, 0, 0, 1, 1]],
        np.float32,
    )
    visible = np.array([0.1, 0.6, 0.05, 0.0, 1.0], np.float32)
    out = visible_targets(target, boxes, visible, keep=0.4)
    # 0: one of two objects well in view; 1: a sliver; 2: gone; 3: negative stays; 4: ignored
    # stays; 5: no boxes, keeps its label.
    np.testing.assert_array_equal(out, [1, -1, 0, 0, -1, 1])


def test_the_dataset_turns_a_cropped_out_object_negative(tmp_path):
    image, boxes = _scene((0, 0, 12, 12))
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), image)
    labels = LabelSet.from_names(["can"])
    sample = Sample(path, np.array([1.0], np.float32), "a", boxes)
    split = AnnotatedSplit(labels, (sample,), "train", str(tmp_path))
    dataset = MultiLabelImageDataset(split, TrainTransform(SPEC), seed=0, box_keep=0.4)
    seen = set()
    for epoch in range(30):
        dataset.set_epoch(epoch)
        view, target, _ = dataset[0]
        extent = _bright_extent(view)
        seen.add(float(target[0]))
        if target[0] == 0.0:
            assert extent is None
        if target[0] == 1.0:
            assert extent is not None
    assert seen >= {0.0, 1.0}
    # Without box_keep the label never changes, as for datasets without boxes.
    plain = MultiLabelImageDataset(split, TrainTransform(SPEC), seed=0)
    assert all(plain[0][1][0] == 1.0 for _ in range(3))
    with pytest.raises(ConfigError, match="visible share"):
        MultiLabelImageDataset(split, TrainTransform(SPEC), box_keep=0.0)


def test_eval_transform_maps_boxes_without_cropping():
    image, boxes = _scene((40, 30, 120, 90))
    spec = PreprocessSpec(input_size=64, resize="letterbox")
    view, moved, visible = EvalTransform(spec).apply(image, None, boxes)
    assert visible.tolist() == [1.0]
    np.testing.assert_allclose(_bright_extent(view), moved[0, 1:], atol=1.5 / 64)


def test_lighting_changes_pixels_not_geometry_and_is_bounded():
    image, boxes = _scene((30, 20, 90, 50))
    plain = TrainTransform(SPEC).apply(image, np.random.default_rng(3), boxes)
    lit = TrainTransform(SPEC, lighting=0.3).apply(image, np.random.default_rng(3), boxes)
    np.testing.assert_array_equal(plain[1], lit[1])
    assert not np.allclose(plain[0], lit[0])
    with pytest.raises(ConfigError, match=r"augment\.lighting"):
        TrainTransform(SPEC, lighting=1.5)


def test_belt_options_off_keep_the_crop_of_a_seed():
    image, _ = _scene((30, 20, 90, 50))
    base = TrainTransform(SPEC)(image, np.random.default_rng(7))
    again = TrainTransform(SPEC, vflip=False, rot90=False)(image, np.random.default_rng(7))
    np.testing.assert_array_equal(base, again)


def _voc_with_boxes(root, objects: str) -> None:
    voc = root / "VOC2007"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "JPEGImages").mkdir()
    (voc / "ImageSets" / "Main" / "train.txt").write_text("a\n")
    size = "<size><width>200</width><height>100</height></size>"
    (voc / "Annotations" / "a.xml").write_text(f"<annotation>{size}{objects}</annotation>")


def _object(name: str, box: str, difficult: int = 0) -> str:
    corners = "".join(
        f"<{k}>{v}</{k}>"
        for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box.split(), strict=True)
    )
    head = f"<name>{name}</name><difficult>{difficult}</difficult>"
    return f"<object>{head}<bndbox>{corners}</bndbox></object>"


def test_voc_samples_carry_their_non_difficult_boxes(tmp_path):
    objects = _object("can", "1 1 100 50") + _object("jar", "51 26 200 100", difficult=1)
    _voc_with_boxes(tmp_path, objects)
    split = read_voc(tmp_path, "train", check_files=False)
    np.testing.assert_allclose(split.samples[0].boxes, [[0, 0.0, 0.0, 0.5, 0.5]])


def test_voc_with_a_malformed_box_is_read_without_boxes(tmp_path, caplog):
    _voc_with_boxes(tmp_path, _object("can", "1 1 inf 50"))
    split = read_voc(tmp_path, "train", check_files=False)
    assert split.samples[0].boxes is None
    assert split.targets().tolist() == [[1.0]]
    assert "without their boxes" in caplog.text


def test_box_masks_mark_the_cells_under_each_object():
    boxes = np.array([[1, 0.0, 0.0, 0.5, 0.5], [0, 0.9, 0.9, 0.95, 0.95]], np.float32)
    masks = box_masks(boxes, 3, 4)
    assert masks.shape == (3, 4, 4)
    np.testing.assert_array_equal(masks[1], np.pad(np.ones((2, 2)), ((0, 2), (0, 2))))
    # Too small to hold a cell centre: the cell holding its own centre.
    assert masks[0].sum() == 1 and masks[0, 3, 3] == 1
    assert masks[2].sum() == 0
