"""int8 variants: explicit symmetric Q/DQ, what gets quantized, the run close to fp32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, numpy_helper

from export.conftest import CALIB_IMAGES
from export.precision_helpers import onnx_metadata, run_variant
from mmsag_ros.bundle.schema import PRECISION_METADATA_KEY, Bundle
from mmsag_ros.errors import ConfigError
from mmsag_ros.export.precision import load_calibration_images, quantize_int8
from mmsag_ros.export.write_bundle import parity_frames
from mmsag_ros.onnx_session import CPU_PROVIDER, open_session

_BACKBONE = "/model/backbone/"
_STEM = "/model/backbone/conv1/Conv"
_LAST = "/model/backbone/layer4/layer4.1/conv2/Conv"


@pytest.fixture(scope="module")
def calibration(tiny_bundle: Bundle, synthetic_voc: Path) -> np.ndarray:
    return load_calibration_images(synthetic_voc, tiny_bundle.spec, limit=CALIB_IMAGES)


@pytest.fixture(scope="module")
def backbone_convs(tiny_bundle: Bundle) -> list[str]:
    """The fp32 graph's backbone convolutions, in graph order."""
    graph = onnx.load(str(tiny_bundle.onnx_path)).graph
    convs = [n.name for n in graph.node if n.op_type == "Conv" and n.name.startswith(_BACKBONE)]
    assert len(convs) == 20 and convs[0] == _STEM and convs[-1] == _LAST  # ResNet-18
    return convs


_KINDS = {"backbone": {}, "head": {"head": True}, "ends": {"ends_fp32": True}}


@pytest.fixture(scope="module")
def int8_paths(
    tiny_bundle: Bundle, calibration: np.ndarray, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The default (whole backbone), head-too and ends-in-fp32 variants, records checked."""
    folder = tmp_path_factory.mktemp("int8")
    paths = {kind: folder / f"{kind}.int8.onnx" for kind in _KINDS}
    for kind, path in paths.items():
        record = quantize_int8(tiny_bundle.onnx_path, path, calibration=calibration, **_KINDS[kind])
        assert record["tool"].startswith("onnxruntime.quantization ")
        assert record["format"] == "QDQ"
        assert record["activations"] == "int8 symmetric (zero point 0)"
        assert record["calibration"] == {"images": CALIB_IMAGES, "method": "minmax"}
        ends = kind == "ends"
        assert record["fp32_convs"] == (sorted([_STEM, _LAST]) if ends else [])
        assert ("head in fp32" in record["quantized"]) is (kind != "head")
        assert record["head"] == ("int8" if kind == "head" else "fp32")
        assert ("stem and last convolution in fp32" in record["quantized"]) is ends
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in paths.values())
    return paths


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _int8_consumers(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Nodes fed by a DequantizeLinear (of an int8 activation or weight)."""
    dequantized = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return [
        n
        for n in model.graph.node
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
        and any(i in dequantized for i in n.input)
    ]


@pytest.mark.parametrize("kind", list(_KINDS))
def test_int8_activations_are_symmetric_int8(int8_paths: dict[str, Path], kind: str) -> None:
    model = onnx.load(str(int8_paths[kind]))
    inits = _initializers(model)
    quantize = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert len(quantize) > 10
    for node in quantize:
        assert len(node.input) == 3, f"{node.name} has no zero point"
        zero, scale = inits[node.input[2]], inits[node.input[1]]
        assert zero.dtype == np.int8 and zero.shape == () and zero == 0, f"{node.name}: {zero}"
        assert scale.dtype == np.float32 and scale > 0
    # Every activation quantized is dequantized again (explicit Q/DQ pairs), and every
    # DequantizeLinear reads int8: TensorRT's parser takes nothing else (no int32 biases).
    dequantize = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert {n.output[0] for n in quantize} <= {n.input[0] for n in dequantize}
    activations = {n.output[0] for n in quantize}
    for node in dequantize:
        data = node.input[0]
        assert data in activations or inits[data].dtype == np.int8, f"{node.name} reads {data}"
        assert inits[node.input[2]].dtype == np.int8


@pytest.mark.parametrize("kind", list(_KINDS))
def test_int8_weights_are_per_channel_symmetric_int8(
    int8_paths: dict[str, Path], kind: str
) -> None:
    model = onnx.load(str(int8_paths[kind]))
    inits = _initializers(model)
    dequantize = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    convs = [n for n in _int8_consumers(model) if n.op_type == "Conv"]
    # 20 in the backbone (two kept fp32 with "ends"); "head" adds the head's 3 projections.
    assert len(convs) == {"ends": 18, "backbone": 20, "head": 23}[kind]
    for conv in convs:
        weight = dequantize[conv.input[1]]
        values, scale = inits[weight.input[0]], inits[weight.input[1]]
        zero = inits[weight.input[2]]
        assert values.dtype == np.int8 and np.abs(values).max() <= 127
        assert values.min() >= -127  # symmetric: -128 is never used
        assert zero.dtype == np.int8 and not zero.any()
        assert scale.shape == (values.shape[0],), f"{conv.name}: not per output channel"
        assert {a.name: a.i for a in weight.attribute}.get("axis", 1) == 0
        # The input is a dequantized activation; the bias (if any) stays float32.
        assert conv.input[0] in dequantize
        if len(conv.input) > 2 and conv.input[2]:
            assert inits[conv.input[2]].dtype == np.float32, f"{conv.name}: bias quantized"


def test_int8_quantizes_whole_backbone_blocks_by_default(
    int8_paths: dict[str, Path], backbone_convs: list[str]
) -> None:
    model = onnx.load(str(int8_paths["backbone"]))
    consumers = _int8_consumers(model)
    assert {n.name for n in consumers if n.op_type == "Conv"} == set(backbone_convs)
    # Residual additions take int8 inputs too, so blocks stay in int8.
    backbone = [n for n in model.graph.node if n.name.startswith(_BACKBONE)]
    for op_type in ("Add",):
        ops = {n.name for n in backbone if n.op_type == op_type}
        assert ops and ops <= {n.name for n in consumers}, op_type


@pytest.mark.parametrize("kind", list(_KINDS))
def test_int8_quantizes_after_each_activation_not_before_it(
    int8_paths: dict[str, Path], kind: str
) -> None:
    # TensorRT fuses Conv (or Add) + ReLU and quantizes the fused output; a Q/DQ between them
    # would be an extra rounding at the pre-activation range, which TensorRT honours.
    model = onnx.load(str(int8_paths[kind]))
    producers = {out: node for node in model.graph.node for out in node.output}
    consumers: dict[str, list[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    activations = [n for n in model.graph.node if n.op_type in ("Relu", "Clip")]
    assert len(activations) == 17  # ResNet-18: the stem, two per block
    for activation in activations:
        source = producers[activation.input[0]]
        assert source.op_type in ("Conv", "Add"), f"{activation.name} reads {source.op_type}"
        assert consumers[activation.input[0]] == [activation.op_type], activation.name
    # The activations feeding int8 consumers are quantized right after the ReLU: all but the
    # stem's (max pooling reads it in float), the last block's (the fp32 head reads it unless
    # the head is int8) and, with the ends in fp32, the one feeding the last convolution.
    quantized = [n for n in activations if "QuantizeLinear" in consumers.get(n.output[0], [])]
    assert len(quantized) == {"backbone": 15, "head": 16, "ends": 14}[kind]


def test_int8_can_keep_the_stem_and_the_last_convolution_in_fp32(
    int8_paths: dict[str, Path], backbone_convs: list[str]
) -> None:
    model = onnx.load(str(int8_paths["ends"]))
    inits = _initializers(model)
    quantized = {n.name for n in _int8_consumers(model) if n.op_type == "Conv"}
    assert quantized == set(backbone_convs) - {_STEM, _LAST}
    nodes = {n.name: n for n in model.graph.node}
    for name in (_STEM, _LAST):
        assert inits[nodes[name].input[1]].dtype == np.float32, name
    assert nodes[_STEM].input[0] == "images"  # the pixels go in unquantized


def test_int8_default_quantizes_nothing_outside_the_backbone(
    int8_paths: dict[str, Path],
) -> None:
    model = onnx.load(str(int8_paths["backbone"]))
    consumers = _int8_consumers(model)
    outside = [n.name for n in consumers if not n.name.startswith(_BACKBONE)]
    assert not outside, f"quantized outside the backbone: {outside}"
    assert not [n for n in consumers if n.op_type in ("MatMul", "Gemm")]
    # The head's matrix products still take their float weights.
    inits = _initializers(model)
    head_weights = [
        inits[i]
        for n in model.graph.node
        if n.op_type in ("MatMul", "Gemm") and not n.name.startswith(_BACKBONE)
        for i in n.input
        if i in inits and inits[i].ndim == 2
    ]
    assert len(head_weights) >= 5 and all(w.dtype == np.float32 for w in head_weights)


def test_int8_head_also_quantizes_the_matrix_products_and_projections(
    int8_paths: dict[str, Path],
) -> None:
    default = {n.name for n in _int8_consumers(onnx.load(str(int8_paths["backbone"])))}
    model = onnx.load(str(int8_paths["head"]))
    consumers = _int8_consumers(model)
    outside = [n for n in consumers if not n.name.startswith(_BACKBONE)]
    products = {n.name for n in outside if n.op_type in ("MatMul", "Gemm")}
    assert len(products) >= 5, "int8 head=True left the head's MatMul/Gemm in fp32"
    assert {"/model/fusion/ffn/ffn.0/MatMul", "/model/graph/global_proj/Gemm"} <= products
    # The fusion block's query/key/value, output and feed-forward projections take constant
    # int8 weights (per output channel), not weights quantized as activations at run time.
    inits = _initializers(model)
    dequantize = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    fusion_weights = [
        dequantize[n.input[1]]
        for n in outside
        if n.name.startswith("/model/fusion/")
        and n.op_type == "MatMul"
        and n.input[1] in dequantize
        and dequantize[n.input[1]].input[0] in inits
    ]
    assert len(fusion_weights) == 6
    for weight in fusion_weights:
        assert inits[weight.input[0]].dtype == np.int8 and inits[weight.input[1]].size > 1
    # And the head's 1x1 projections of the feature map.
    projections = {n.name for n in outside if n.op_type == "Conv"}
    assert {
        "/model/semantic_attention/visual/Conv",
        "/model/fusion/visual_proj/Conv",
    } <= projections
    assert default < {n.name for n in consumers}


@pytest.mark.parametrize("kind", ["backbone", "head"])
def test_int8_is_tagged_and_runs_close_to_fp32(
    tiny_bundle: Bundle, int8_paths: dict[str, Path], kind: str
) -> None:
    path = int8_paths[kind]
    source, quantized = onnx_metadata(tiny_bundle.onnx_path), onnx_metadata(path)
    assert quantized.pop(PRECISION_METADATA_KEY) == "int8"
    assert quantized == source
    model = onnx.load(str(path))
    for value in (*model.graph.input, *model.graph.output):
        assert value.type.tensor_type.elem_type == TensorProto.FLOAT, value.name
    frames = parity_frames(tiny_bundle.spec, count=3, seed=5)
    fp32 = run_variant(tiny_bundle.onnx_path, frames, "fp32")
    int8 = run_variant(path, frames, "int8")
    assert int8["logits"].shape == (3, 8) and int8["attention"].shape == (3, 8, 3, 3)
    scores32, scores8 = (1 / (1 + np.exp(-r["logits"])) for r in (fp32, int8))
    assert np.abs(scores8 - scores32).max() < 0.05
    assert not np.array_equal(int8["logits"], fp32["logits"])
    # The head variant quantizes the attention maps themselves: sums move by a few 1e-3.
    assert np.allclose(int8["attention"].sum(axis=(2, 3)), 1.0, atol=1e-2)


def test_int8_as_written_computes_the_files_qdq_without_the_cpu_rewrites(
    tiny_bundle: Bundle, int8_paths: dict[str, Path]
) -> None:
    path = int8_paths["backbone"]
    frames = parity_frames(tiny_bundle.spec, count=3, seed=5)
    as_written = open_session(path, precision="int8", as_written=True)
    written = as_written.run(["logits"], {"images": frames})[0]
    # The reference: the file's nodes one by one, no fusion, no rewrite.
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    literal = onnxruntime.InferenceSession(str(path), options, providers=[CPU_PROVIDER])
    reference = literal.run(["logits"], {"images": frames})[0]
    cpu = run_variant(path, frames, "int8")["logits"]
    np.testing.assert_array_equal(written, reference)
    # The CPU session's rewrites (uint8 activations, folded ReLUs, 7-bit weights, int32
    # biases) move it.
    assert np.abs(cpu - reference).max() > 1e-3


def test_int8_rejects_bad_calibration_and_methods(tiny_bundle: Bundle, tmp_path: Path) -> None:
    out = tmp_path / "q.onnx"
    with pytest.raises(ConfigError, match=r"calibration must be N x 3 x S x S"):
        quantize_int8(tiny_bundle.onnx_path, out, calibration=np.zeros((3, 96, 96), np.float32))
    with pytest.raises(ConfigError, match=r"calibration must be"):
        quantize_int8(tiny_bundle.onnx_path, out, calibration=np.zeros((0, 3, 96, 96), np.float32))
    with pytest.raises(ConfigError, match=r"unknown calibration method 'kl'; use one of minmax"):
        quantize_int8(
            tiny_bundle.onnx_path,
            out,
            calibration=np.zeros((2, 3, 96, 96), np.float32),
            method="kl",
        )
    assert not list(tmp_path.iterdir())
