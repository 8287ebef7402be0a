"""Calibration images for int8: a VOC set's train split or a plain folder, preprocessed."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from mmsag_ros.bundle.preprocess import preprocess
from mmsag_ros.bundle.schema import Bundle
from mmsag_ros.data.voc import read_voc
from mmsag_ros.errors import ConfigError, DatasetError
from mmsag_ros.export.precision import load_calibration_images


def test_calibration_from_voc_uses_the_train_split(
    tiny_bundle: Bundle, synthetic_voc: Path
) -> None:
    spec = tiny_bundle.spec
    train = read_voc(synthetic_voc, "train")
    images = load_calibration_images(synthetic_voc, spec, limit=100)
    assert images.shape == (len(train), 3, 96, 96) and images.dtype == np.float32
    rgb = cv2.cvtColor(cv2.imread(str(train.samples[0].image_path)), cv2.COLOR_BGR2RGB)
    assert np.array_equal(images[0], preprocess(rgb, spec))
    limited = load_calibration_images(synthetic_voc, spec, limit=5, split="val")
    assert limited.shape[0] == 5


def test_calibration_from_a_plain_folder(tiny_bundle: Bundle, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "sub").mkdir()
    for index, name in enumerate(["a.png", "sub/b.jpg", "c.bmp"]):
        cv2.imwrite(str(tmp_path / name), rng.integers(0, 255, (40 + index, 50, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    assert load_calibration_images(tmp_path, tiny_bundle.spec).shape == (3, 3, 96, 96)
    (tmp_path / "z.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DatasetError, match=r"z\.png cannot be decoded"):
        load_calibration_images(tmp_path, tiny_bundle.spec)


def test_calibration_errors(tiny_bundle: Bundle, synthetic_voc: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"no images"):
        load_calibration_images(tmp_path, tiny_bundle.spec)
    with pytest.raises(DatasetError, match=r"does not exist"):
        load_calibration_images(tmp_path / "nope", tiny_bundle.spec)
    with pytest.raises(DatasetError, match=r"no calibration split test"):
        load_calibration_images(synthetic_voc, tiny_bundle.spec, split="test")
    with pytest.raises(ConfigError, match=r"limit must be >= 1"):
        load_calibration_images(synthetic_voc, tiny_bundle.spec, limit=0)
