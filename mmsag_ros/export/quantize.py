"""Static (calibrated) int8 ONNX for CPU targets, kept only if it keeps the fp32 accuracy.

Dynamic int8 quantization was 3-10x slower than fp32 on the development CPU; static int8 with
calibrated activation ranges was faster (ENVIRONMENT.md). The quantized model is judged on a
validation split: it is kept only when its mAP is at most ``max_drop_points`` (1 mAP point by
default) below the fp32 ONNX model's on the same preprocessed images.

Only the compute-heavy operators (Conv, MatMul, Gemm) are quantized, QDQ format, per-channel
int8 weights and uint8 activations; softmax, LayerNorm and the attention arithmetic stay in
fp32. ONNX Runtime's symbolic shape inference fails on the TorchScript exporter's graph, so the
pre-processing step runs with ONNX's own shape inference only.

Calibration images come from a folder of images or a VOC-layout dataset's training split, never
from the split used to judge the result.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from mmsag_ros.data.dataset import AnnotatedSplit, MultiLabelImageDataset
from mmsag_ros.data.transforms import EvalTransform
from mmsag_ros.data.voc import find_voc_dir, read_voc
from mmsag_ros.errors import (
    BackendUnavailableError,
    BundleError,
    ConfigError,
    DatasetError,
    MmsagError,
)
from mmsag_ros.export.atomic import atomic_target
from mmsag_ros.metrics import mean_average_precision
from mmsag_ros.runtime.preprocess import PreprocessSpec, preprocess

__all__ = [
    "DEFAULT_MAX_DROP_POINTS",
    "QUANTIZED_OPS",
    "Int8Result",
    "int8_acceptable",
    "load_calibration_images",
    "onnx_scores",
    "quantize_int8",
    "quantize_static_int8",
]

_log = logging.getLogger(__name__)

DEFAULT_MAX_DROP_POINTS = 1.0
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
_CALIBRATION_SPLITS = ("train", "trainval")


@dataclass(frozen=True)
class Int8Result:
    """Outcome of :func:`quantize_int8`.

    Attributes:
        kept: Whether the int8 model passed the accuracy bar (and its file was kept).
        path: The int8 ONNX file if kept, else None (the file is deleted).
        fp32_map: mAP of the fp32 ONNX model on the validation split, in [0, 1].
        int8_map: mAP of the int8 model on the same images.
        drop_points: ``100 * (fp32_map - int8_map)``; negative when int8 scored higher.
        max_drop_points: The bar it was held to.
        calibration_images: Number of calibration images.
        validation_split: Name of the validation split.
        validation_images: Number of validation images.
        quantize_s: Seconds spent quantizing.
        evaluate_s: Seconds spent scoring both models.
    """

    kept: bool
    path: Path | None
    fp32_map: float
    int8_map: float
    drop_points: float
    max_drop_points: float
    calibration_images: int
    validation_split: str
    validation_images: int
    quantize_s: float
    evaluate_s: float

    def to_manifest(self, sha256: str | None) -> dict[str, Any]:
        """The manifest's ``int8_onnx`` section (``file`` is None when rejected)."""
        return {
            "file": self.path.name if self.kept and self.path is not None else None,
            "sha256": sha256 if self.kept else None,
            "kept": self.kept,
            "fp32_map": self.fp32_map,
            "int8_map": self.int8_map,
            "map_drop_points": self.drop_points,
            "max_drop_points": self.max_drop_points,
            "validation": {"split": self.validation_split, "images": self.validation_images},
            "calibration_images": self.calibration_images,
            "quantization": {
                "format": "QDQ",
                "weights": "int8 per-channel",
                "activations": "uint8",
                "operators": list(QUANTIZED_OPS),
            },
        }


def int8_acceptable(
    fp32_map: float, int8_map: float, *, max_drop_points: float = DEFAULT_MAX_DROP_POINTS
) -> bool:
    """Whether int8 stays within ``max_drop_points`` mAP points (mAPs in [0, 1]) of fp32."""
    if not max_drop_points >= 0:
        raise ConfigError(f"max_drop_points must be >= 0, got {max_drop_points}")
    for label, value in (("fp32", fp32_map), ("int8", int8_map)):
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise ConfigError(f"{label} mAP must be in [0, 1], got {value}")
    # The epsilon keeps a drop of exactly the bar (0.80 -> 0.79) on the accepted side.
    return 100.0 * (fp32_map - int8_map) <= max_drop_points + 1e-9


def _voc_image_paths(root: Path, split: str | None) -> list[Path] | None:
    try:
        voc_dir = find_voc_dir(root)
    except DatasetError:
        return None
    main = voc_dir / "ImageSets" / "Main"
    candidates = [split] if split else list(_CALIBRATION_SPLITS)
    for name in candidates:
        if (main / f"{name}.txt").is_file() or any(main.glob(f"*_{name}.txt")):
            return [s.image_path for s in read_voc(voc_dir, name).samples]
    raise DatasetError(
        f"{voc_dir} has no calibration split {' or '.join(candidates)}; name one that holds "
        "training images (never the split used for validation or testing)"
    )


def load_calibration_images(
    source: Path, spec: PreprocessSpec, *, limit: int = 64, split: str | None = None
) -> np.ndarray:
    """Preprocessed calibration images, N x 3 x S x S float32.

    Args:
        source: A VOC-layout dataset (its ``train`` split, else ``trainval``, or ``split``) or
            any folder of images (searched recursively, sorted by path).
        spec: The model's preprocessing.
        limit: At most this many images, spread evenly over the sorted list.
        split: VOC split to calibrate on.

    Raises:
        DatasetError: No images, or an image that cannot be decoded.
    """
    source = Path(source)
    if limit < 1:
        raise ConfigError(f"limit must be >= 1, got {limit}")
    if not source.is_dir():
        raise DatasetError(f"calibration folder {source} does not exist")
    paths = _voc_image_paths(source, split)
    if paths is None:
        paths = sorted(p for p in source.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not paths:
        raise DatasetError(f"no images (.jpg, .png, .bmp) under {source} to calibrate with")
    if len(paths) > limit:
        paths = [paths[int(i)] for i in np.linspace(0, len(paths) - 1, limit).round()]
    size = spec.input_size
    batch = np.empty((len(paths), 3, size, size), np.float32)
    for slot, path in enumerate(paths):
        data = np.fromfile(path, dtype=np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if image is None:
            raise DatasetError(f"calibration image {path} cannot be decoded; remove or replace it")
        preprocess(image, spec, color_order="bgr", out=batch[slot])
    return batch


def _import_quantization() -> Any:
    try:
        from onnxruntime import quantization
    except ImportError as err:
        raise BackendUnavailableError(
            f"int8 quantization needs onnxruntime ({err}); `pip install onnxruntime`"
        ) from err
    return quantization


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    # ONNX Runtime's quantizer logs one INFO line per copied bias through the root logger.
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_static_int8(
    onnx_path: Path,
    out_path: Path,
    *,
    calibration: np.ndarray,
    input_name: str = "images",
    batch_size: int = 8,
) -> Path:
    """Write a static-int8 (QDQ) copy of ``onnx_path`` calibrated on ``calibration`` images."""
    quantization = _import_quantization()
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if calibration.ndim != 4 or len(calibration) == 0:
        raise ConfigError(f"calibration must be N x 3 x S x S, got {calibration.shape}")
    out_path = Path(out_path)

    class _Reader(quantization.CalibrationDataReader):
        def __init__(self) -> None:
            self._batches: Iterator[np.ndarray] = (
                calibration[i : i + batch_size] for i in range(0, len(calibration), batch_size)
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {input_name: np.ascontiguousarray(batch)}

    source = onnx_path
    try:
        # Unique scratch and output names (not ".x.tmp"): two quantizations writing the same
        # file at once would otherwise overwrite each other's half-written models.
        with (
            tempfile.TemporaryDirectory(dir=out_path.parent, prefix=f".{out_path.stem}.") as work,
            atomic_target(out_path) as temporary,
        ):
            prepared = Path(work) / "pre.onnx"
            try:
                # Symbolic shape inference cannot read this graph's Reshape shapes; ONNX's own
                # inference and the graph optimisation are what quantization needs.
                quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
                source = prepared
            except Exception as err:  # an optional optimisation: quantize the raw graph instead
                _log.warning("int8 pre-processing failed (%s); quantizing the raw graph", err)
            with _quiet_root_logger():
                quantization.quantize_static(
                    str(source),
                    str(temporary),
                    _Reader(),
                    quant_format=quantization.QuantFormat.QDQ,
                    activation_type=quantization.QuantType.QUInt8,
                    weight_type=quantization.QuantType.QInt8,
                    per_channel=True,
                    op_types_to_quantize=list(QUANTIZED_OPS),
                    calibrate_method=quantization.CalibrationMethod.MinMax,
                )
    except MmsagError:
        raise
    except Exception as err:
        raise BundleError(f"static int8 quantization of {onnx_path} failed: {err}") from err
    return out_path


def onnx_scores(
    onnx_path: Path,
    split: AnnotatedSplit,
    spec: PreprocessSpec,
    *,
    input_name: str = "images",
    batch_size: int = 8,
    progress: bool = False,
) -> np.ndarray:
    """Sigmoid scores (N x C) of an ONNX model over ``split``, preprocessed as at inference."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    dataset = MultiLabelImageDataset(split, EvalTransform(spec))
    logits = []
    starts = range(0, len(dataset), batch_size)
    for start in tqdm(starts, desc=Path(onnx_path).name, unit="batch", disable=not progress):
        batch = np.stack([dataset[i][0] for i in range(start, min(start + batch_size, len(split)))])
        logits.append(session.run(["logits"], {input_name: batch})[0])
    stacked = np.concatenate(logits).astype(np.float64)
    return 1.0 / (1.0 + np.exp(-stacked))


def _map(scores: np.ndarray, split: AnnotatedSplit) -> float:
    value = mean_average_precision(scores, split.targets())
    if math.isnan(value):
        raise DatasetError(
            f"validation split {split.name!r} has no positive labels, so int8 and fp32 cannot "
            "be compared; validate on a split with positives"
        )
    return value


def quantize_int8(
    onnx_path: Path,
    out_path: Path,
    *,
    calibration: np.ndarray,
    validation: AnnotatedSplit,
    spec: PreprocessSpec,
    max_drop_points: float = DEFAULT_MAX_DROP_POINTS,
    input_name: str = "images",
    batch_size: int = 8,
    progress: bool = True,
) -> Int8Result:
    """Quantize, score fp32 and int8 on ``validation``, keep the int8 file only if it passes.

    Args:
        onnx_path: The fp32 ONNX model.
        out_path: Where the int8 model goes (deleted again if rejected).
        calibration: Preprocessed calibration images (:func:`load_calibration_images`).
        validation: Annotated validation split (never the test split).
        spec: The model's preprocessing.
        max_drop_points: Largest accepted mAP drop, in points (1.0 = 0.01 mAP).
        input_name: The image input of the graph.
        batch_size: Images per ONNX Runtime call.
        progress: Show progress bars while scoring.

    Raises:
        ConfigError: A bad bar.
        BundleError: Quantization failed.
        DatasetError: The validation split has no positive labels (or no images).
    """
    if not max_drop_points >= 0:
        raise ConfigError(f"max_drop_points must be >= 0, got {max_drop_points}")
    if not (validation.targets() == 1).any():
        raise DatasetError(
            f"validation split {validation.name!r} has no positive labels, so int8 and fp32 "
            "cannot be compared; validate on a split with positives"
        )
    start = time.perf_counter()
    quantize_static_int8(
        onnx_path, out_path, calibration=calibration, input_name=input_name, batch_size=batch_size
    )
    quantize_s = time.perf_counter() - start
    start = time.perf_counter()
    kwargs: dict[str, Any] = {"input_name": input_name, "batch_size": batch_size}
    fp32_scores = onnx_scores(onnx_path, validation, spec, progress=progress, **kwargs)
    int8_scores = onnx_scores(out_path, validation, spec, progress=progress, **kwargs)
    fp32_map, int8_map = _map(fp32_scores, validation), _map(int8_scores, validation)
    evaluate_s = time.perf_counter() - start
    kept = int8_acceptable(fp32_map, int8_map, max_drop_points=max_drop_points)
    drop = 100.0 * (fp32_map - int8_map)
    if kept:
        _log.info(
            "int8 kept: mAP %.2f vs fp32 %.2f (drop %.2f points <= %.2f)",
            100 * int8_map,
            100 * fp32_map,
            drop,
            max_drop_points,
        )
    else:
        Path(out_path).unlink(missing_ok=True)
        _log.warning(
            "int8 rejected and not kept: mAP %.2f vs fp32 %.2f (drop %.2f points > %.2f)",
            100 * int8_map,
            100 * fp32_map,
            drop,
            max_drop_points,
        )
    return Int8Result(
        kept=kept,
        path=Path(out_path) if kept else None,
        fp32_map=fp32_map,
        int8_map=int8_map,
        drop_points=drop,
        max_drop_points=max_drop_points,
        calibration_images=len(calibration),
        validation_split=validation.name,
        validation_images=len(validation),
        quantize_s=quantize_s,
        evaluate_s=evaluate_s,
    )
