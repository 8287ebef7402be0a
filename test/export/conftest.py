"""Tiny real artifacts for export and runtime tests: a checkpoint, a synthetic VOC set, bundles.

The checkpoint holds a freshly initialised MM-SAG network (ResNet-18 trunk at 96 px, narrow
head, every stage on) written in the trainer's checkpoint format; nothing is trained. Other
test folders may import the plain functions (``from export.conftest import
write_tiny_checkpoint``) since ``test`` is on the path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mmsag_ros.bundle.labels import MLKW_LABELS, LabelSet
from mmsag_ros.bundle.schema import Bundle
from mmsag_ros.data.dataset import AnnotatedSplit, Sample
from mmsag_ros.data.synth import generate_dataset
from mmsag_ros.data.voc import read_voc
from mmsag_ros.export.precision import load_calibration_images, quantize_int8
from mmsag_ros.export.variant_score import onnx_scores
from mmsag_ros.export.write_bundle import export_bundle
from mmsag_ros.model import ModelConfig, build_model
from mmsag_ros.model.checkpoint import save_checkpoint

TINY_CONFIG: dict[str, Any] = {
    "name": "tiny_r18_96",
    "backbone": "resnet18",
    "input_size": 96,
    "width": 64,
    "num_heads": 4,
    "ffn_dim": 128,
    "attention_dim": 64,
    "embedding_source": "learnable",
    "embedding_dim": 32,
}
#: Calibration images for every int8 variant the tests make (export's default is 300).
CALIB_IMAGES = 16


def write_tiny_checkpoint(
    path: Path, *, labels: LabelSet = MLKW_LABELS, seed: int = 0, **overrides: Any
) -> Path:
    """Write a checkpoint of a freshly initialised tiny model (fields as the trainer writes)."""
    torch.manual_seed(seed)
    config = ModelConfig(**{**TINY_CONFIG, **overrides})
    model = build_model(config, num_labels=len(labels))
    thresholds = [round(float(t), 3) for t in np.linspace(0.3, 0.7, len(labels))]
    ap = [0.5] * (len(labels) - 1) + [float("nan")]  # a class without positives, as happens
    payload = {
        "epoch": 3,
        "model_name": config.name,
        "model_config": config.to_dict(),
        "model_state": model.state_dict(),
        "labels": labels.to_dict(),
        "spec": model.spec.to_dict(),
        "thresholds": thresholds,
        "metrics": {"val": {"map": 0.5, "ap": ap}},
        "train_config": {"seed": seed},
        "optimizer": {"state": {}, "param_groups": []},
        "scheduler": {},
        "scaler": {},
        "best_map": 0.5,
        "best_thresholds": thresholds,
    }
    return save_checkpoint(Path(path), payload)


def write_synthetic_voc(root: Path, *, num_trainval: int = 30, seed: int = 0) -> Path:
    """A small synthetic conveyor dataset in the VOC layout (train/val/trainval splits)."""
    generate_dataset(root, num_trainval=num_trainval, num_test=0, image_size=(128, 96), seed=seed)
    return root


def int8_inversion_split(
    fp32_onnx: Path, int8_onnx: Path | list[Path], pool: AnnotatedSplit, spec: Any
) -> AnnotatedSplit:
    """Two images of ``pool`` on which every given int8 model loses 50 mAP points against fp32.

    Picks the class and image pair (i, j) that fp32 ranks i above j and each int8 model ranks
    j above i, with the widest margin on all sides; labels i positive for that class and
    everything else negative. fp32 then scores AP 1 and int8 AP 1/2: a refusal at any bar under
    50 points that does not hang on rounding (the margin is asserted to be far above it).
    """
    fp32 = onnx_scores(fp32_onnx, pool, spec)
    paths = int8_onnx if isinstance(int8_onnx, list) else [int8_onnx]
    int8s = [onnx_scores(path, pool, spec, precision="int8") for path in paths]
    best: tuple[float, int, int, int] | None = None
    for c in range(fp32.shape[1]):
        margin = fp32[:, c, None] - fp32[None, :, c]  # [i, j]: fp32_i - fp32_j
        for int8 in int8s:
            margin = np.minimum(margin, int8[None, :, c] - int8[:, c, None])  # int8_j - int8_i
        i, j = np.unravel_index(int(np.argmax(margin)), margin.shape)
        if best is None or margin[i, j] > best[0]:
            best = (float(margin[i, j]), c, int(i), int(j))
    assert best is not None
    margin, c, i, j = best
    assert margin > 1e-4, f"int8 ranks the images like fp32 (margin {margin}): no inversion"
    positive = np.zeros(len(pool.labels), np.float32)
    positive[c] = 1.0
    negative = np.zeros(len(pool.labels), np.float32)
    first, second = pool.samples[i], pool.samples[j]
    samples = (
        Sample(first.image_path, positive, first.image_id),
        Sample(second.image_path, negative, second.image_id),
    )
    return AnnotatedSplit(pool.labels, samples, "val", pool.source)


#: Variants kept whatever their mAP drop: a random model's few validation images make the drop
#: noisy, and tests that use this are about running the variants, not about the bar.
ANY_DROP = {"fp16": 100.0, "int8": 100.0}


def write_variant_bundle(
    out_dir: Path,
    *,
    voc: Path,
    checkpoint: Path | None = None,
    seed: int = 0,
    precisions: str = "fp32,fp16,int8",
    calib_images: int = 16,
) -> Bundle:
    """Export a tiny model with reduced-precision variants, calibrated on ``voc``'s train split
    and judged on its val split, every variant kept (:data:`ANY_DROP`)."""
    if checkpoint is None:
        checkpoint = write_tiny_checkpoint(out_dir.parent / f"{out_dir.name}_ckpt.pt", seed=seed)
    return export_bundle(
        checkpoint,
        out_dir,
        precisions=precisions,
        calib_dir=voc,
        calib_images=calib_images,
        validation=read_voc(voc, "val"),
        bars=ANY_DROP,
        progress=False,
    )


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_checkpoint(tmp_path_factory.mktemp("checkpoint") / "best.pt")


@pytest.fixture(scope="session")
def synthetic_voc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_voc(tmp_path_factory.mktemp("voc"))


@pytest.fixture(scope="session")
def validation_split(synthetic_voc: Path) -> AnnotatedSplit:
    """The synthetic set's ``val`` split (6 images), what the variants are judged on."""
    return read_voc(synthetic_voc, "val")


@pytest.fixture(scope="session")
def tiny_bundle(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """A bundle exported with defaults (attention on, parity on synthetic frames, fp32 only)."""
    return export_bundle(
        tiny_checkpoint, tmp_path_factory.mktemp("bundles") / "tiny", progress=False
    )


@pytest.fixture(scope="session")
def variant_bundle(
    tiny_checkpoint: Path,
    synthetic_voc: Path,
    validation_split: AnnotatedSplit,
    tmp_path_factory: pytest.TempPathFactory,
) -> Bundle:
    """fp32, fp16 and int8 at the default bars: calibrated on train, judged on val."""
    return export_bundle(
        tiny_checkpoint,
        tmp_path_factory.mktemp("bundles") / "variants",
        precisions="fp32,fp16,int8",
        calib_dir=synthetic_voc,
        calib_images=CALIB_IMAGES,
        validation=validation_split,
        progress=False,
    )


@pytest.fixture(scope="session")
def int8_losing_split(
    tiny_bundle: Bundle, synthetic_voc: Path, tmp_path_factory: pytest.TempPathFactory
) -> AnnotatedSplit:
    """A validation split on which the int8 variant export makes loses 50 mAP points.

    The int8 model is quantized here exactly as ``export_bundle`` quantizes it (same graph:
    the model id is the graph's hash; same calibration images, method and options), so an
    export of ``tiny_checkpoint`` calibrated on ``synthetic_voc`` with ``CALIB_IMAGES``
    refuses int8 on this split at any bar below 50 points, deterministically.
    """
    folder = tmp_path_factory.mktemp("int8")
    calibration = load_calibration_images(synthetic_voc, tiny_bundle.spec, limit=CALIB_IMAGES)
    # Every attempt export makes: all in int8, the head in fp32, also the stem and last conv.
    attempts = []
    for head, ends_fp32 in ((True, False), (False, False), (False, True)):
        attempts.append(folder / f"model.{head}.{ends_fp32}.int8.onnx")
        quantize_int8(
            tiny_bundle.onnx_path,
            attempts[-1],
            calibration=calibration,
            head=head,
            ends_fp32=ends_fp32,
        )
    pool = read_voc(synthetic_voc, "trainval")
    return int8_inversion_split(tiny_bundle.onnx_path, attempts, pool, tiny_bundle.spec)
