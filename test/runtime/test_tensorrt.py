"""What TensorRT is given, and on a GPU with TensorRT what it builds and how that runs.

The int8 variant holds only the Q/DQ TensorRT parses (int8 inputs, zero points 0), checked on
the file here. TensorRT cannot be installed on the development machines: the builds (once,
then reused) and the TensorRT backend against ONNX Runtime need TensorRT and an NVIDIA GPU
(``gpu`` mark) and are skipped without them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from runtime_helpers import HAS_TENSORRT, copy_bundle, cuda_available

from mmsag_ros.bundle.schema import Bundle
from mmsag_ros.runtime.engine_build import BatchProfile
from mmsag_ros.runtime.engine_cache import ensure_engine


def _dequantize_inputs(model) -> dict[str, np.dtype]:
    """The element type of each DequantizeLinear input: an initializer's, or int8 from a Q."""
    from onnx import numpy_helper

    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    quantized = {n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    types = {}
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        source = node.input[0]
        types[node.name or source] = (
            np.dtype(np.int8) if source in quantized else initializers[source].dtype
        )
    return types


def test_the_int8_variant_holds_only_q_dq_that_tensorrt_parses(variant_bundle: Bundle) -> None:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(variant_bundle.variant("int8").path))
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            assert not initializers[node.input[2]].any(), f"{node.name}: zero point must be 0"
    types = _dequantize_inputs(model)
    assert types
    assert {name: t for name, t in types.items() if t != np.int8} == {}


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TENSORRT, reason="needs TensorRT")
@pytest.mark.skipif(not cuda_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_is_built_once_then_reused(
    variant_bundle: Bundle, tmp_path: Path, precision: str
) -> None:
    bundle = copy_bundle(variant_bundle, tmp_path / "bundle")
    profile = BatchProfile(1, 1, 4)
    first = ensure_engine(bundle, precision=precision, build=True, profile=profile)
    assert first.parent == bundle.engines_dir and f"_{precision}_" in first.name
    stamp = first.stat().st_mtime_ns
    sidecar = json.loads(first.with_suffix(".json").read_text())
    assert sidecar["onnx_sha256"] == bundle.variant(precision).sha256
    assert sidecar["precision"] == precision and sidecar["strongly_typed"] is True
    assert sidecar["batch"] == {"min": 1, "opt": 1, "max": 4}
    assert ensure_engine(bundle, precision=precision, profile=profile) == first
    assert first.stat().st_mtime_ns == stamp  # reused, not rebuilt
    ensure_engine(bundle, precision=precision, profile=profile, rebuild=True)
    assert first.stat().st_mtime_ns != stamp


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TENSORRT, reason="needs TensorRT")
@pytest.mark.skipif(not cuda_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize(("precision", "atol"), [("fp32", 1e-3), ("fp16", 1e-2), ("int8", 5e-2)])
def test_the_tensorrt_backend_matches_onnxruntime(
    variant_bundle: Bundle, frames, tmp_path: Path, precision: str, atol: float
) -> None:
    from mmsag_ros.bundle.preprocess import preprocess
    from mmsag_ros.runtime.backends import create_backend
    from mmsag_ros.runtime.postprocess import sigmoid

    bundle = copy_bundle(variant_bundle, tmp_path / "bundle")
    ensure_engine(bundle, precision=precision, build=True, profile=BatchProfile(1, 1, 4))
    batch = np.stack([preprocess(f, bundle.spec) for f in frames])
    with create_backend("onnxruntime", bundle, precision=precision) as reference:
        expected = sigmoid(reference.infer(batch)["logits"])
    with create_backend("tensorrt", bundle, precision=precision, max_batch=4) as backend:
        assert backend.providers[1] == precision
        got = sigmoid(backend.infer(batch)["logits"])
    np.testing.assert_allclose(got, expected, atol=atol, rtol=0)
