"""Samples, splits, the image dataset (reading, seeding, errors) and the fake dataset."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from mmsag_ros.bundle.labels import LabelSet
from mmsag_ros.bundle.preprocess import PreprocessSpec
from mmsag_ros.data.dataset import (
    AnnotatedSplit,
    FakeMultiLabelDataset,
    MultiLabelImageDataset,
    Sample,
    check_images,
)
from mmsag_ros.data.transforms import EvalTransform, TrainTransform
from mmsag_ros.errors import ConfigError, DatasetError

LABELS = LabelSet.from_names(["a", "b", "c"])


def _split(root: Path, num: int = 6, *, write: bool = True) -> AnnotatedSplit:
    rng = np.random.default_rng(7)
    samples = []
    for i in range(num):
        path = root / f"img_{i}.png"
        if write:
            cv2.imwrite(str(path), rng.integers(0, 256, (24 + i, 32, 3), dtype=np.uint8))
        target = np.array([i % 2, (i // 2) % 2, -1 if i == 0 else 1], np.float32)
        samples.append(Sample(path, target, f"img_{i}"))
    return AnnotatedSplit(LABELS, tuple(samples), "trainval", str(root), root)


def _raw(image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    return image.transpose(2, 0, 1).astype(np.float32)


def test_targets_stack_in_sample_order(tmp_path):
    split = _split(tmp_path)
    targets = split.targets()
    assert targets.shape == (6, 3) and targets.dtype == np.float32
    for row, sample in zip(targets, split.samples, strict=True):
        np.testing.assert_array_equal(row, sample.target)
    assert len(split) == 6
    subset = split.subset([4, 1], name="part")
    assert [s.image_id for s in subset.samples] == ["img_4", "img_1"]
    assert subset.name == "part" and subset.labels == split.labels


def test_empty_split_has_zero_row_targets(tmp_path):
    split = AnnotatedSplit(LABELS, (), "empty", str(tmp_path))
    assert split.targets().shape == (0, 3)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (np.zeros(2, np.float32), "shape"),
        (np.zeros(3, np.float64), "dtype"),
        (np.array([1, 2, 0], np.float32), "only 1, 0 and -1"),
    ],
)
def test_bad_target_is_rejected(tmp_path, target, message):
    with pytest.raises(DatasetError, match=message):
        AnnotatedSplit(LABELS, (Sample(tmp_path / "x.png", target, "x"),), "s", str(tmp_path))


def test_reads_rgb_in_channel_order(tmp_path):
    path = tmp_path / "red.png"
    bgr = np.zeros((8, 10, 3), np.uint8)
    bgr[..., 2] = 200  # red in OpenCV's BGR order
    bgr[..., 1] = 50
    cv2.imwrite(str(path), bgr)
    split = AnnotatedSplit(
        LABELS, (Sample(path, np.ones(3, np.float32), "red"),), "s", str(tmp_path), tmp_path
    )
    image, target, index = MultiLabelImageDataset(split, _raw)[0]
    assert image.shape == (3, 8, 10)
    assert image[0].mean() == 200 and image[1].mean() == 50 and image[2].mean() == 0
    np.testing.assert_array_equal(target, np.ones(3))
    assert index == 0


def test_items_match_eval_transform(tmp_path):
    split = _split(tmp_path)
    spec = PreprocessSpec(input_size=32)
    dataset = MultiLabelImageDataset(split, EvalTransform(spec))
    image, target, index = dataset[3]
    assert image.shape == (3, 32, 32) and image.dtype == np.float32
    np.testing.assert_array_equal(target, split.samples[3].target)
    assert target.dtype == np.float32 and index == 3
    expected = EvalTransform(spec)(
        cv2.cvtColor(cv2.imread(str(split.samples[3].image_path)), cv2.COLOR_BGR2RGB)
    )
    np.testing.assert_array_equal(image, expected)
    assert dataset[-1][2] == 5
    with pytest.raises(IndexError):
        dataset[6]


def test_augmentation_is_seeded_by_seed_epoch_and_index(tmp_path):
    split = _split(tmp_path)
    transform = TrainTransform(PreprocessSpec(input_size=32))
    first = MultiLabelImageDataset(split, transform, seed=5)
    again = MultiLabelImageDataset(split, transform, seed=5)
    for index in range(len(split)):
        np.testing.assert_array_equal(first[index][0], again[index][0])
    per_epoch = []
    for epoch in range(6):
        first.set_epoch(epoch)
        per_epoch.append(first[2][0])
    first.set_epoch(3)
    np.testing.assert_array_equal(first[2][0], per_epoch[3])
    assert any(not np.array_equal(per_epoch[0], other) for other in per_epoch[1:])
    other_seed = MultiLabelImageDataset(split, transform, seed=6)
    assert any(not np.array_equal(other_seed[i][0], again[i][0]) for i in range(len(split)))


def test_workers_produce_the_same_batches(tmp_path):
    split = _split(tmp_path)
    dataset = MultiLabelImageDataset(split, TrainTransform(PreprocessSpec(input_size=32)), seed=1)
    dataset.set_epoch(2)
    single = list(DataLoader(dataset, batch_size=3, num_workers=0))
    multi = list(DataLoader(dataset, batch_size=3, num_workers=2))
    for (img_a, tgt_a, idx_a), (img_b, tgt_b, idx_b) in zip(single, multi, strict=True):
        assert img_a.shape == (3, 3, 32, 32) and img_a.dtype == torch.float32
        assert torch.equal(img_a, img_b) and torch.equal(tgt_a, tgt_b)
        assert torch.equal(idx_a, idx_b)


def test_missing_images_are_reported_up_front(tmp_path):
    split = _split(tmp_path / "imgs", num=7, write=False)
    with pytest.raises(DatasetError, match=r"images are missing: 7 of 7") as info:
        MultiLabelImageDataset(split, _raw)
    message = str(info.value)
    assert str(tmp_path / "imgs") in message and "and 2 more" in message
    assert "img_0.png" in message and "img_6.png" not in message


def test_check_images_passes_when_all_exist(tmp_path):
    split = _split(tmp_path)
    check_images(split)
    (tmp_path / "img_4.png").unlink()
    with pytest.raises(DatasetError, match=r"1 of 6 image files .*/img_4\.png"):
        check_images(split)


def test_missing_image_at_load_names_file_and_root(tmp_path):
    split = _split(tmp_path)
    dataset = MultiLabelImageDataset(split, _raw)
    (tmp_path / "img_2.png").unlink()
    with pytest.raises(DatasetError, match=r"img_2\.png is missing .* expected under"):
        dataset[2]


def test_unreadable_image_is_a_dataset_error(tmp_path):
    split = _split(tmp_path)
    (tmp_path / "img_1.png").write_bytes(b"not an image at all")
    (tmp_path / "img_3.png").write_bytes(b"")
    dataset = MultiLabelImageDataset(split, _raw)
    with pytest.raises(DatasetError, match=r"img_1\.png cannot be decoded"):
        dataset[1]
    with pytest.raises(DatasetError, match=r"img_3\.png cannot be decoded"):
        dataset[3]


def test_fake_dataset_is_deterministic(tmp_path):
    fake = FakeMultiLabelDataset(10, LABELS, 32, seed=3)
    same = FakeMultiLabelDataset(10, LABELS, 32, seed=3)
    other = FakeMultiLabelDataset(10, LABELS, 32, seed=4)
    assert len(fake) == 10
    image, target, index = fake[4]
    assert image.shape == (3, 32, 32) and image.dtype == np.float32
    assert target.dtype == np.float32 and set(np.unique(target)) <= {0.0, 1.0}
    assert index == 4
    np.testing.assert_array_equal(image, same[4][0])
    np.testing.assert_array_equal(target, same[4][1])
    assert not np.array_equal(image, other[4][0])
    targets = fake.targets()
    assert targets.shape == (10, 3) and (targets.sum(axis=1) >= 1).all()
    np.testing.assert_array_equal(targets[7], fake[7][1])
    fake.set_epoch(5)
    np.testing.assert_array_equal(fake[4][0], image)
    with pytest.raises(IndexError):
        fake[10]


def test_fake_images_carry_their_labels(tmp_path):
    fake = FakeMultiLabelDataset(64, LABELS, 16, seed=0)
    images = np.stack([fake[i][0] for i in range(len(fake))])
    targets = fake.targets()
    # With the class pattern added, positives and negatives differ far beyond the noise.
    for c in range(len(LABELS)):
        diff = images[targets[:, c] == 1].mean(0) - images[targets[:, c] == 0].mean(0)
        assert np.abs(diff).mean() > 0.3


def test_fake_dataset_loads_in_batches():
    fake = FakeMultiLabelDataset(5, LABELS, 16, seed=0)
    images, targets, indices = next(iter(DataLoader(fake, batch_size=5)))
    assert images.shape == (5, 3, 16, 16) and targets.shape == (5, 3)
    assert indices.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_samples": 0}, "num_samples"),
        ({"input_size": 0}, "input_size"),
        ({"positive_rate": 1.0}, "positive_rate"),
    ],
)
def test_fake_dataset_rejects_bad_arguments(kwargs, message):
    args = {"num_samples": 4, "input_size": 16, **kwargs}
    rate = args.pop("positive_rate", 0.3)
    with pytest.raises(ConfigError, match=message):
        FakeMultiLabelDataset(
            args["num_samples"], LABELS, args["input_size"], seed=0, positive_rate=rate
        )


def test_importing_the_library_packages_loads_no_heavy_library():
    # Their docstrings promise it: a CLI or a node pays for torch or OpenCV only when used.
    # Nor does reading a variant's accuracy record (demo, export and bench summaries).
    code = (
        "import sys, mmsag_ros.bundle, mmsag_ros.data, mmsag_ros.export, mmsag_ros.runtime; "
        "from mmsag_ros.export.variant_score import describe_accuracy; "
        "print(sorted({'torch', 'cv2', 'onnx', 'onnxruntime'} & set(sys.modules)))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
