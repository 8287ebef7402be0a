"""Reduced-precision variants of the fp32 ONNX graph, made and scored on the CPU.

Precision is a property of the ONNX file, not of a TensorRT builder flag (TensorRT 11 removed
those): the fp16 and int8 variants carry their casts and Q/DQ nodes, ONNX Runtime runs them
here, and strongly typed TensorRT engines on the robot build from the very same files.

- **fp16**: ``onnxruntime.transformers.float16`` (the converter ONNX Runtime ships and keeps in
  step with its own releases; the same code as ``onnxconverter-common`` without a second
  dependency, and small enough to read, unlike ModelOpt's AutoCast, which pulls in the whole
  ModelOpt stack). Inputs and outputs stay float32 and the ops in :data:`FP32_OPS` stay fp32
  behind casts: the softmax of the semantic attention and the fusion block, the layer norms and
  their reductions, the sigmoid of the dynamic graph, exponentials and GELU's erf.
- **int8**: ONNX Runtime's static quantizer in QDQ form, calibrated on training images:
  per-channel symmetric int8 weights and symmetric int8 activations (zero point 0), the form
  TensorRT accepts for explicit quantization. The backbone's convolutions and residual
  additions (and max pooling where its input is quantized) are quantized; with ``head`` the
  attention, fusion and graph head's matrix products and 1x1 feature-map projections too
  (export tries that first, see :func:`mmsag_ros.export.write_bundle.export_bundle`); with
  ``ends_fp32`` the stem and the last convolution stay fp32.

Each variant is then judged against fp32 by :mod:`mmsag_ros.export.variant_score`.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mmsag_ros.atomic import atomic_target
from mmsag_ros.bundle.preprocess import PreprocessSpec, preprocess
from mmsag_ros.bundle.schema import PRECISION_METADATA_KEY
from mmsag_ros.data.dataset import AnnotatedSplit
from mmsag_ros.data.voc import find_voc_dir, read_voc
from mmsag_ros.errors import BundleError, ConfigError, DatasetError, MmsagError
from mmsag_ros.export.settings import (
    CALIBRATION_METHODS,
    DEFAULT_BARS,
    DEFAULT_CALIBRATION_IMAGES,
)

__all__ = [
    "CALIBRATION_METHODS",
    "DEFAULT_BARS",
    "DEFAULT_CALIBRATION_IMAGES",
    "FP32_OPS",
    "convert_fp16",
    "load_calibration_images",
    "quantize_int8",
]

_log = logging.getLogger(__name__)

#: Ops kept in fp32 inside the fp16 variant (on top of the converter's own block list).
FP32_OPS = (
    "Softmax",
    "LayerNormalization",
    "ReduceMean",
    "ReduceSum",
    "Pow",
    "Sqrt",
    "Div",
    "Sigmoid",
    "Exp",
    "Log",
    "Erf",
    "Tanh",
)
_BACKBONE_PREFIX = "/model/backbone/"
_BACKBONE_OPS = ("Conv", "Add", "MaxPool")
_HEAD_OPS = ("MatMul", "Gemm", "Conv")
_ACTIVATED_OPS = ("Conv", "Add")
_ACTIVATIONS = ("Relu", "Clip")
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
_CALIBRATION_SPLITS = ("train", "trainval")


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
    source: Path | AnnotatedSplit,
    spec: PreprocessSpec,
    *,
    limit: int = 64,
    split: str | None = None,
) -> np.ndarray:
    """Preprocessed calibration images, N x 3 x S x S float32.

    Args:
        source: An annotated split (its images), a VOC-layout dataset (its ``train`` split,
            else ``trainval``, or ``split``) or any folder of images (searched recursively,
            sorted by path).
        spec: The model's preprocessing.
        limit: At most this many images, spread evenly over the sorted list.
        split: VOC split to calibrate on.

    Raises:
        DatasetError: No images, or an image that cannot be decoded.
    """
    if limit < 1:
        raise ConfigError(f"limit must be >= 1, got {limit}")
    if isinstance(source, AnnotatedSplit):
        paths = [sample.image_path for sample in source.samples]
    else:
        source = Path(source)
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


def _tag_precision(model: Any, source: Any, precision: str) -> None:
    """Copy the fp32 file's metadata onto ``model`` and name its precision."""
    del model.metadata_props[:]
    for prop in source.metadata_props:
        if prop.key != PRECISION_METADATA_KEY:
            model.metadata_props.add(key=prop.key, value=prop.value)
    model.metadata_props.add(key=PRECISION_METADATA_KEY, value=precision)


def _save(model: Any, out_path: Path) -> None:
    import onnx

    with atomic_target(out_path) as temporary:
        onnx.save(model, str(temporary))


def convert_fp16(onnx_path: Path, out_path: Path) -> dict[str, Any]:
    """Write the fp16 variant of ``onnx_path``; return its manifest ``conversion`` record."""
    import onnx
    import onnxruntime
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    source = onnx.load(str(onnx_path))
    blocked = sorted({*DEFAULT_OP_BLOCK_LIST, *FP32_OPS})
    try:
        converted = convert_float_to_float16(
            onnx.load(str(onnx_path)), keep_io_types=True, op_block_list=blocked
        )
    except Exception as err:  # the converter raises bare exceptions on graphs it cannot handle
        raise BundleError(f"fp16 conversion of {onnx_path} failed: {err}") from err
    _tag_precision(converted, source, "fp16")
    _save(converted, Path(out_path))
    kept = sorted({n.op_type for n in source.graph.node} & set(FP32_OPS))
    return {
        "tool": f"onnxruntime.transformers.float16 {onnxruntime.__version__}",
        "io": "float32",
        "fp32_ops": kept,
    }


class _Calibration:
    """ONNX Runtime's calibration reader over preprocessed images, in equal batches.

    The histogram calibrators (percentile, entropy) stack every batch's activations and fail
    on a shorter last batch, so the images are trimmed to a whole number of batches.
    """

    def __init__(self, images: np.ndarray, input_name: str, batch_size: int) -> None:
        batch_size = max(1, min(batch_size, len(images)))
        self.used = len(images) - len(images) % batch_size
        self._batches = (
            np.ascontiguousarray(images[i : i + batch_size])
            for i in range(0, self.used, batch_size)
        )
        self._input_name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._input_name: batch}


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


def _quantize_after_activations(model: Any) -> int:
    """Remove each Q/DQ pair between a Conv or Add and its ReLU/ReLU6, in place.

    TensorRT fuses a convolution (or residual addition) with its ReLU and quantizes only the
    fused output; a Q/DQ between the two, which ONNX Runtime's quantizer writes at the
    pre-activation range (the stem's output spans +-200 before its ReLU6), would be an extra,
    coarse rounding that TensorRT honours. The quantization after the activation stays.
    Returns how many pairs were removed.
    """
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def sole_reader(name: str) -> Any:
        readers = consumers.get(name, [])
        return readers[0] if len(readers) == 1 else None

    dropped: set[int] = set()
    for activation in graph.node:
        if activation.op_type not in _ACTIVATIONS:
            continue
        dequantize = producers.get(activation.input[0])
        quantize = producers.get(dequantize.input[0]) if dequantize is not None else None
        source = producers.get(quantize.input[0]) if quantize is not None else None
        if (
            source is not None
            and source.op_type in _ACTIVATED_OPS
            and dequantize.op_type == "DequantizeLinear"
            and quantize.op_type == "QuantizeLinear"
            and sole_reader(quantize.input[0]) is quantize
            and sole_reader(quantize.output[0]) is dequantize
            and sole_reader(dequantize.output[0]) is activation
        ):
            activation.input[0] = quantize.input[0]
            dropped |= {id(quantize), id(dequantize)}
    kept = [node for node in graph.node if id(node) not in dropped]
    del graph.node[:]
    graph.node.extend(kept)
    return len(dropped) // 2


def _int8_nodes(graph: Any, head: bool, ends_fp32: bool) -> tuple[list[str], set[str]]:
    """The nodes to quantize, and the backbone convolutions kept in fp32 (``ends_fp32``)."""
    convs = [
        n.name for n in graph.node if n.op_type == "Conv" and n.name.startswith(_BACKBONE_PREFIX)
    ]
    kept_fp32 = {convs[0], convs[-1]} if ends_fp32 and len(convs) > 2 else set()
    nodes = [
        n.name
        for n in graph.node
        if n.name not in kept_fp32
        and (
            (n.op_type in _BACKBONE_OPS and n.name.startswith(_BACKBONE_PREFIX))
            or (head and n.op_type in _HEAD_OPS)
        )
    ]
    return nodes, kept_fp32


def quantize_int8(
    onnx_path: Path,
    out_path: Path,
    *,
    calibration: np.ndarray,
    method: str = "minmax",
    head: bool = False,
    ends_fp32: bool = False,
    input_name: str = "images",
    batch_size: int = 8,
) -> dict[str, Any]:
    """Write the explicit Q/DQ int8 variant of ``onnx_path`` calibrated on ``calibration``.

    The backbone's convolutions and residual additions (and max pooling where its input is
    quantized) are quantized, so that
    whole blocks stay in int8 (TensorRT fuses them; ONNX Runtime runs them as QLinear ops).

    Args:
        onnx_path: The fp32 model.
        out_path: Where the int8 model goes.
        calibration: Preprocessed training images (:func:`load_calibration_images`).
        method: Activation range estimate: ``minmax``, ``percentile`` or ``entropy``.
        head: Also quantize the head's MatMul/Gemm and its 1x1 convolutions (else the head
            stays fp32).
        ends_fp32: Keep the backbone's first convolution (the stem, which sees the normalised
            pixels) and its last (which feeds the attention head) in fp32.
        input_name: The image input of the graph.
        batch_size: Images per calibration batch.

    Returns:
        The manifest ``conversion`` record.

    Raises:
        ConfigError: Bad calibration images or method.
        BundleError: Quantization failed.
    """
    import onnx
    import onnxruntime
    from onnxruntime import quantization
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if calibration.ndim != 4 or len(calibration) == 0:
        raise ConfigError(f"calibration must be N x 3 x S x S, got {calibration.shape}")
    if method not in CALIBRATION_METHODS:
        raise ConfigError(
            f"unknown calibration method {method!r}; use one of {', '.join(CALIBRATION_METHODS)}"
        )
    out_path = Path(out_path)
    calibrate = {
        "minmax": quantization.CalibrationMethod.MinMax,
        "percentile": quantization.CalibrationMethod.Percentile,
        "entropy": quantization.CalibrationMethod.Entropy,
    }[method]
    source = onnx.load(str(onnx_path))
    try:
        # Unique scratch names: two quantizations beside each other must not share files.
        with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=f".{out_path.stem}.") as work:
            prepared, quantized = Path(work) / "pre.onnx", Path(work) / "int8.onnx"
            # Symbolic shape inference cannot read this graph's Reshape shapes; ONNX's own
            # inference and the graph optimisation are what quantization needs.
            quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
            op_types = list(dict.fromkeys([*_BACKBONE_OPS, *(_HEAD_OPS if head else ())]))
            nodes, kept_fp32 = _int8_nodes(onnx.load(str(prepared)).graph, head, ends_fp32)
            reader = _Calibration(calibration, input_name, batch_size)
            with _quiet_root_logger():
                quantization.quantize_static(
                    str(prepared),
                    str(quantized),
                    reader,
                    quant_format=quantization.QuantFormat.QDQ,
                    activation_type=quantization.QuantType.QInt8,
                    weight_type=quantization.QuantType.QInt8,
                    per_channel=True,
                    op_types_to_quantize=op_types,
                    nodes_to_quantize=nodes,
                    calibrate_method=calibrate,
                    # Biases stay float: TensorRT parses only int8/fp8 DequantizeLinear inputs.
                    extra_options={
                        "ActivationSymmetric": True,
                        "WeightSymmetric": True,
                        "QuantizeBias": False,
                    },
                )
            model = onnx.load(str(quantized))
            _quantize_after_activations(model)
    except MmsagError:
        raise
    except Exception as err:
        raise BundleError(f"int8 quantization of {onnx_path} failed: {err}") from err
    _tag_precision(model, source, "int8")
    _save(model, out_path)
    return {
        "tool": f"onnxruntime.quantization {onnxruntime.__version__}",
        "format": "QDQ",
        "weights": "int8 symmetric, per channel; biases float32",
        "activations": "int8 symmetric (zero point 0)",
        "quantized": f"{len(nodes)} {'/'.join(op_types)} nodes"
        + ("" if head else " of the backbone; head in fp32")
        + ("; stem and last convolution in fp32" if kept_fp32 else ""),
        "fp32_convs": sorted(kept_fp32),
        "head": "int8" if head else "fp32",
        "calibration": {"images": reader.used, "method": method},
    }
