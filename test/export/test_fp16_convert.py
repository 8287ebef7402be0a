"""fp16 variants: half-precision weights, float32 I/O, the sensitive ops kept in float32."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from export.precision_helpers import onnx_metadata, run_variant
from mmsag_ros.bundle.schema import PRECISION_METADATA_KEY, Bundle
from mmsag_ros.export.precision import FP32_OPS, convert_fp16
from mmsag_ros.export.write_bundle import parity_frames

_FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}


def _tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor of the graph, from ONNX shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in (*graph.value_info, *graph.input, *graph.output)
    }
    types.update({t.name: t.data_type for t in graph.initializer})
    for node in graph.node:
        if node.op_type == "Constant":
            types[node.output[0]] = node.attribute[0].t.data_type
    return types


@pytest.fixture(scope="module")
def fp16_path(tiny_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fp16") / "model.fp16.onnx"
    record = convert_fp16(tiny_bundle.onnx_path, path)
    source_ops = {n.op_type for n in onnx.load(str(tiny_bundle.onnx_path)).graph.node}
    assert record["tool"].startswith("onnxruntime.transformers.float16 ")
    assert record["io"] == "float32"
    assert record["fp32_ops"] == sorted(source_ops & set(FP32_OPS))
    return path


def test_fp16_has_half_weights_and_float32_io(fp16_path: Path) -> None:
    model = onnx.load(str(fp16_path))
    graph = model.graph
    weights = Counter(t.data_type for t in graph.initializer if t.data_type in _FLOAT_TYPES)
    assert weights[TensorProto.FLOAT16] > 0 and set(weights) == {TensorProto.FLOAT16}
    for value in (*graph.input, *graph.output):
        assert value.type.tensor_type.elem_type == TensorProto.FLOAT, value.name
    assert [v.name for v in graph.input] == ["images"]
    assert [v.name for v in graph.output] == ["logits", "attention"]
    # The convolutions, the bulk of the work, run in half precision.
    types = _tensor_types(model)
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert convs and all(types[n.input[0]] == TensorProto.FLOAT16 for n in convs)


def test_fp16_keeps_the_sensitive_ops_in_float32(fp16_path: Path) -> None:
    model = onnx.load(str(fp16_path))
    types = _tensor_types(model)
    present = Counter(n.op_type for n in model.graph.node if n.op_type in FP32_OPS)
    # The tiny model has the semantic attention, the fusion block and the dynamic graph.
    assert {"Softmax", "LayerNormalization", "Sigmoid", "Erf", "ReduceMean"} <= set(present)
    checked = Counter()
    for node in model.graph.node:
        floats = [types[i] for i in node.input if i and types.get(i) in _FLOAT_TYPES]
        if node.op_type not in FP32_OPS or not floats:
            continue  # integer shape arithmetic (a Div of sizes) has no precision to keep
        assert set(floats) == {TensorProto.FLOAT}, f"{node.name} computes in {floats}"
        outputs = [types[o] for o in node.output if types.get(o) in _FLOAT_TYPES]
        assert set(outputs) == {TensorProto.FLOAT}, f"{node.name} outputs {outputs}"
        checked[node.op_type] += 1
    assert checked["Softmax"] == present["Softmax"] == 2
    assert checked["LayerNormalization"] == present["LayerNormalization"] == 2
    assert checked["Sigmoid"] == present["Sigmoid"] >= 1


def test_fp16_is_tagged_and_keeps_the_fp32_metadata(tiny_bundle: Bundle, fp16_path: Path) -> None:
    source, converted = onnx_metadata(tiny_bundle.onnx_path), onnx_metadata(fp16_path)
    assert PRECISION_METADATA_KEY not in source
    assert converted.pop(PRECISION_METADATA_KEY) == "fp16"
    assert converted == source
    assert converted["mmsag.model_id"] == tiny_bundle.model_id


def test_fp16_runs_in_onnx_runtime_close_to_fp32(tiny_bundle: Bundle, fp16_path: Path) -> None:
    frames = parity_frames(tiny_bundle.spec, count=3, seed=11)
    fp32 = run_variant(tiny_bundle.onnx_path, frames, "fp32")
    fp16 = run_variant(fp16_path, frames, "fp16")
    assert fp16["logits"].dtype == np.float32 and fp16["logits"].shape == (3, 8)
    assert fp16["attention"].shape == (3, 8, 3, 3)
    scores32, scores16 = (1 / (1 + np.exp(-r["logits"])) for r in (fp32, fp16))
    assert np.abs(scores16 - scores32).max() < 2e-3
    assert np.abs(fp16["attention"] - fp32["attention"]).max() < 5e-3
    assert np.allclose(fp16["attention"].sum(axis=(2, 3)), 1.0, atol=1e-3)
    assert not np.array_equal(fp16["logits"], fp32["logits"])  # it really is another model
