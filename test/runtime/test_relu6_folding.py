"""Folding a ReLU6 between two quantizations into one, on a hand-made Q/DQ graph.

``x -> Q -> DQ -> Clip(0, 6) -> Q' -> DQ`` becomes a single quantization to uint8 whose
saturations are the same clamps (0, and the lower of 6 and the int8 ceiling of ``Q'``), within
half-steps of the two roundings it replaces and closer to the exact ReLU6.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from onnx import numpy_helper

from mmsag_ros.onnx_session import fold_relu_quantize, uint8_activations


def _relu6_between_quantizations(s1: float, s2: float) -> Any:
    """``x -> Q(s1) -> DQ -> Clip(0, 6) -> Q(s2) -> DQ``, int8 symmetric as export writes it."""
    from onnx import TensorProto, helper

    def scalar(name: str, value: Any) -> Any:
        return numpy_helper.from_array(np.asarray(value), name)

    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s1", "z1"], ["q1"]),
        helper.make_node("DequantizeLinear", ["q1", "s1", "z1"], ["d1"]),
        helper.make_node("Clip", ["d1", "low", "high"], ["clipped"]),
        helper.make_node("QuantizeLinear", ["clipped", "s2", "z2"], ["q2"]),
        helper.make_node("DequantizeLinear", ["q2", "s2", "z2"], ["y"]),
    ]
    initializers = [
        scalar("s1", np.float32(s1)),
        scalar("z1", np.int8(0)),
        scalar("s2", np.float32(s2)),
        scalar("z2", np.int8(0)),
        scalar("low", np.float32(0)),
        scalar("high", np.float32(6)),
    ]
    graph = helper.make_graph(
        nodes,
        "relu6",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(("amax", "ceiling"), [(5.0, 5.0), (8.0, 6.0)])
def test_relu6_folds_into_one_quantization_with_the_same_clamps(amax, ceiling):
    import onnx
    import onnxruntime as ort

    s1, s2 = 8.0 / 127, amax / 127
    model = _relu6_between_quantizations(s1, s2)
    uint8_activations(model)
    plain = model.SerializeToString()
    assert fold_relu_quantize(model) == 1
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["QuantizeLinear", "DequantizeLinear"]

    x = np.linspace(-10, 10, 4001, dtype=np.float32)

    def run(data: bytes) -> np.ndarray:
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        return session.run(["y"], {"x": x})[0]

    before, after = run(plain), run(model.SerializeToString())
    # The same clamps: 0 below, the int8 ceiling (or ReLU6's 6) above...
    assert after.min() == before.min() == 0
    np.testing.assert_allclose(after.max(), ceiling, rtol=1e-6)
    np.testing.assert_allclose(before.max(), s2 * np.rint(min(ceiling, 127 * s2) / s2), rtol=1e-6)
    # ...and in between at most the two old half-steps and the new one apart.
    assert np.abs(after - before).max() <= (s1 + s2 + ceiling / 255) / 2 + 1e-6
    # Finer, single rounding: closer to the exact ReLU6 than the two roundings were.
    exact = np.clip(x, 0, ceiling)
    assert np.abs(after - exact).mean() < np.abs(before - exact).mean()
