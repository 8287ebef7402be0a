from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from mmsag_ros.data.dataset import AnnotatedSplit, Sample
from mmsag_ros.data.voc import read_voc
from mmsag_ros.errors import ConfigError, DatasetError
from mmsag_ros.export.manifest import Bundle
from mmsag_ros.export.quantize import (
    int8_acceptable,
    load_calibration_images,
    quantize_int8,
)
from mmsag_ros.runtime.preprocess import preprocess


@pytest.mark.parametrize(
    ("fp32", "int8", "bar", "kept"),
    [
        (0.80, 0.795, 1.0, True),  # 0.5 points down
        (0.80, 0.79, 1.0, True),  # exactly at the bar
        (0.80, 0.785, 1.0, False),  # 1.5 points down
        (0.60, 0.70, 1.0, True),  # int8 better
        (0.60, 0.60, 0.0, True),
        (0.60, 0.599, 0.0, False),
        (0.80, 0.75, 10.0, True),
    ],
)
def test_int8_decision(fp32: float, int8: float, bar: float, kept: bool) -> None:
    assert int8_acceptable(fp32, int8, max_drop_points=bar) is kept


def test_int8_decision_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match=r"max_drop_points must be >= 0"):
        int8_acceptable(0.5, 0.5, max_drop_points=-1)
    with pytest.raises(ConfigError, match=r"int8 mAP must be in \[0, 1\], got nan"):
        int8_acceptable(0.5, float("nan"))
    with pytest.raises(ConfigError, match=r"fp32 mAP must be in"):
        int8_acceptable(80.0, 0.5)  # percent instead of a fraction


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


def test_static_int8_is_kept_exactly_when_it_passes_the_bar(
    tiny_bundle: Bundle, synthetic_voc: Path, tmp_path: Path
) -> None:
    calibration = load_calibration_images(synthetic_voc, tiny_bundle.spec, limit=16)
    validation = read_voc(synthetic_voc, "val")
    out = tmp_path / "model.int8.onnx"
    result = quantize_int8(
        tiny_bundle.onnx_path,
        out,
        calibration=calibration,
        validation=validation,
        spec=tiny_bundle.spec,
        progress=False,
    )
    # A random-init model may land on either side of the bar; the decision must follow it.
    assert result.kept is int8_acceptable(result.fp32_map, result.int8_map)
    assert result.drop_points == pytest.approx(100 * (result.fp32_map - result.int8_map))
    assert out.exists() is result.kept
    assert (result.path == out) if result.kept else (result.path is None)
    assert result.validation_images == len(validation) and result.calibration_images == 16
    section = result.to_manifest("abc" if result.kept else None)
    assert section["kept"] is result.kept
    assert section["file"] == ("model.int8.onnx" if result.kept else None)
    assert not list(tmp_path.glob(".*"))  # no temporary files left
    if result.kept:
        ops = {node.op_type for node in onnx.load(str(out)).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        logits, attention = session.run(None, {"images": calibration[:3]})
        assert logits.shape == (3, 8) and attention.shape == (3, 8, 3, 3)


def test_validation_without_positives_is_refused(
    tiny_bundle: Bundle, synthetic_voc: Path, tmp_path: Path
) -> None:
    val = read_voc(synthetic_voc, "val")
    negatives = tuple(
        Sample(s.image_path, np.zeros(len(val.labels), np.float32), s.image_id) for s in val.samples
    )
    split = AnnotatedSplit(val.labels, negatives, "val", val.source)
    with pytest.raises(DatasetError, match=r"has no positive labels"):
        quantize_int8(
            tiny_bundle.onnx_path,
            tmp_path / "q.onnx",
            calibration=np.zeros((2, 3, 96, 96), np.float32),
            validation=split,
            spec=tiny_bundle.spec,
        )
    assert not (tmp_path / "q.onnx").exists()
