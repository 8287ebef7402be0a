"""The int8 CPU session: how ``open_session`` rewrites the int8 variant for ONNX Runtime.

The file on disk keeps TensorRT's form (symmetric int8 activations, 8-bit weights, float
biases). On the CPU the session gets, in memory, uint8 activations, ReLUs folded into the
quantization after them, seven-bit weights (no int16 overflow on x86 without VNNI) and int32
convolution biases. Each rewrite is checked on the real variant, the session against the
file computed as written, and what it refuses: a zero point it did not write, a missing file.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from onnx import numpy_helper
from runtime_helpers import preprocess_batch

from mmsag_ros.errors import BackendUnavailableError, BundleError, ConfigError
from mmsag_ros.onnx_session import (
    SEVEN_BIT_LIMIT,
    fold_relu_quantize,
    int32_conv_biases,
    open_session,
    seven_bit_weights,
    uint8_activations,
)
from mmsag_ros.runtime.postprocess import sigmoid


def _zero_points(model) -> dict[str, np.ndarray]:
    """Every Q/DQ zero-point initializer of ``model``, by name."""
    from onnx import numpy_helper

    initializers = {t.name: t for t in model.graph.initializer}
    names = {
        node.input[2]
        for node in model.graph.node
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2
    }
    return {name: numpy_helper.to_array(initializers[name]).copy() for name in names}


def test_uint8_activations_rewrites_exactly_the_activation_zero_points(variant_bundle):
    import onnx

    model = onnx.load(str(variant_bundle.variant("int8").path))
    activation = {node.input[2] for node in model.graph.node if node.op_type == "QuantizeLinear"}
    before = _zero_points(model)
    weights = set(before) - activation
    assert activation and weights  # the variant quantizes activations and weights
    assert all(before[name].dtype == np.int8 and not before[name].any() for name in activation)

    assert uint8_activations(model) == len(activation)

    after = _zero_points(model)
    assert set(after) == set(before)
    for name in activation:
        assert after[name].dtype == np.uint8 and (after[name] == 128).all(), name
        assert after[name].shape == before[name].shape
    for name in weights:  # weight (and bias) zero points are left alone
        assert after[name].dtype == before[name].dtype, name
        np.testing.assert_array_equal(after[name], before[name])
    assert {after[name].dtype for name in weights} >= {np.dtype(np.int8)}
    # The file on disk keeps the TensorRT form.
    on_disk = _zero_points(onnx.load(str(variant_bundle.variant("int8").path)))
    assert all(on_disk[name].dtype == np.int8 for name in activation)


def test_the_int8_cpu_session_is_open_session_with_uint8_activations(
    variant_bundle, variant_outputs
):
    import onnx
    import onnxruntime as ort

    batch, outputs = variant_outputs
    path = variant_bundle.variant("int8").path
    session = open_session(path, precision="int8", intra_op_threads=1)
    direct = dict(
        zip(
            [o.name for o in session.get_outputs()],
            session.run(None, {"images": batch}),
            strict=True,
        )
    )
    for name, value in outputs["int8"].items():  # the backend runs exactly that session
        np.testing.assert_array_equal(value, direct[name])

    # Rewriting by hand and running the bytes gives the same numbers again.
    model = onnx.load(str(path))
    uint8_activations(model)
    fold_relu_quantize(model)
    seven_bit_weights(model)
    int32_conv_biases(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    rewritten = ort.InferenceSession(
        model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
    ).run(["logits"], {"images": batch})[0]
    np.testing.assert_array_equal(rewritten, direct["logits"])

    # The file computed as written (TensorRT's arithmetic: int8 activations, 8-bit weights)
    # agrees up to the rewrites' rounding.
    unrewritten = open_session(path, precision="int8", as_written=True).run(
        ["logits", "attention"], {"images": batch}
    )
    np.testing.assert_allclose(sigmoid(rewritten), sigmoid(unrewritten[0]), atol=2e-2, rtol=0)
    np.testing.assert_allclose(direct["attention"], unrewritten[1], atol=1e-2, rtol=0)


def test_relu_folding_keeps_the_graph_valid_and_its_scores(variant_bundle, variant_outputs):
    import onnx
    import onnxruntime as ort

    batch, _ = variant_outputs
    model = onnx.load(str(variant_bundle.variant("int8").path))
    uint8_activations(model)
    plain = model.SerializeToString()
    relus = sum(n.op_type == "Relu" for n in model.graph.node)
    folded = fold_relu_quantize(model)
    assert 0 < folded <= relus
    assert sum(n.op_type == "Relu" for n in model.graph.node) == relus - folded
    onnx.checker.check_model(model)
    # What the folded quantizations now read: a producer's output directly, as uint8 at zero
    # point 0 with the old int8 ceiling (127 steps) spread over 255 steps.
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    at_zero = [
        n
        for n in model.graph.node
        if n.op_type == "QuantizeLinear" and n.input[2].endswith("_uint8_zero_point")
    ]
    assert len(at_zero) == folded
    for node in at_zero:
        zero = initializers[node.input[2]]
        assert zero.dtype == np.uint8 and zero == 0
        assert initializers[node.input[1]] > 0
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1

    def scores(data: bytes) -> np.ndarray:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        return sigmoid(session.run(["logits"], {"images": batch})[0])

    np.testing.assert_allclose(scores(model.SerializeToString()), scores(plain), atol=2e-2)


def _weight_dequantizers(model) -> list:
    """DequantizeLinear nodes of ``model`` that read a constant int8 weight (2-D or more)."""
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return [
        node
        for node in model.graph.node
        if node.op_type == "DequantizeLinear"
        and node.input[0] in initializers
        and initializers[node.input[0]].dtype == np.int8
        and initializers[node.input[0]].ndim >= 2
    ]


def test_seven_bit_weights_keep_each_weight_within_half_a_step(variant_bundle):
    import onnx

    model = onnx.load(str(variant_bundle.variant("int8").path))
    before = {t.name: numpy_helper.to_array(t).copy() for t in model.graph.initializer}
    weights = _weight_dequantizers(model)
    assert len(weights) >= 20  # the backbone's convolutions at least
    assert any(np.abs(before[n.input[0]]).max() > SEVEN_BIT_LIMIT for n in weights)

    assert seven_bit_weights(model) == len(weights)

    after = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    changed = {name for name in before if not np.array_equal(before[name], after[name])}
    assert changed <= {i for n in weights for i in n.input[:2]}  # nothing else moves
    for node in weights:
        values, scale = after[node.input[0]], after[node.input[1]]
        assert values.dtype == np.int8 and np.abs(values).max() <= SEVEN_BIT_LIMIT
        assert scale.dtype == np.float32
        axis = {a.name: a.i for a in node.attribute}.get("axis", 1)
        shape = [1] * values.ndim
        shape[axis] = -1
        old = before[node.input[0]] * before[node.input[1]].reshape(shape)
        new = values * scale.reshape(shape)
        assert (np.abs(new - old) <= scale.reshape(shape) / 2 + 1e-7).all(), node.name
        # The largest weight of each channel keeps its value.
        largest = np.abs(before[node.input[0]]).max(
            axis=tuple(i for i in range(values.ndim) if i != axis)
        )
        kept = np.abs(values).max(axis=tuple(i for i in range(values.ndim) if i != axis))
        np.testing.assert_array_equal(kept[largest == 127], SEVEN_BIT_LIMIT)


def _saturating_convolution(channels: int) -> Any:
    """Q/DQ conv as export writes it: int8 input at +127 steps times int8 weights of +127."""
    from onnx import TensorProto, helper

    constants = {
        "x_scale": np.array(1 / 127, np.float32),
        "x_zero": np.zeros((), np.int8),
        "w": np.full((1, channels, 1, 1), 127, np.int8),
        "w_scale": np.full((1,), 1 / 127, np.float32),
        "w_zero": np.zeros((1,), np.int8),
        "bias": np.zeros((1,), np.float32),
        "y_scale": np.array(channels / 127, np.float32),
        "y_zero": np.zeros((), np.int8),
    }
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w", "w_scale", "w_zero"], ["wd"], axis=0),
        helper.make_node("Conv", ["xd", "wd", "bias"], ["y"], name="conv"),
        helper.make_node("QuantizeLinear", ["y", "y_scale", "y_zero"], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", "y_scale", "y_zero"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "saturating_convolution",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 4, 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(value, name) for name, value in constants.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_the_int8_cpu_session_does_not_overflow_on_full_range_weights(tmp_path):
    import onnx

    # 64 inputs of 1.0 times weights of 1.0: 64. The int8 kernels of an x86 CPU without VNNI
    # add pairs of uint8 x int8 products into a saturating int16, so full 8-bit weights
    # (2 x 255 x 127 > 32767) give a wrong sum on such a CPU; 7-bit weights cannot overflow.
    path = tmp_path / "saturating.onnx"
    onnx.save(_saturating_convolution(64), str(path))
    x = np.ones((1, 64, 4, 4), np.float32)
    out = open_session(path, precision="int8", intra_op_threads=1).run(["out"], {"x": x})[0]
    step = 64 / 127
    np.testing.assert_allclose(out, 64.0, rtol=0, atol=step)
    # Written literally (TensorRT's arithmetic), the file's own 8-bit weights give 64 too.
    written = open_session(path, precision="int8", as_written=True).run(["out"], {"x": x})[0]
    np.testing.assert_allclose(written, 64.0, rtol=0, atol=step / 2)


def test_int32_biases_sit_on_the_product_scale(variant_bundle):
    import onnx

    model = onnx.load(str(variant_bundle.variant("int8").path))
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    float_biases = {
        n.name: initializers[n.input[2]]
        for n in model.graph.node
        if n.op_type == "Conv"
        and len(n.input) > 2
        and n.input[2] in initializers
        and getattr(producers.get(n.input[0]), "op_type", "") == "DequantizeLinear"
    }
    assert float_biases
    assert int32_conv_biases(model) == len(float_biases)
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.name not in float_biases:
            continue
        dequantize = producers[node.input[2]]
        assert dequantize.op_type == "DequantizeLinear"
        quantized, scale = (initializers[i] for i in dequantize.input[:2])
        assert quantized.dtype == np.int32
        source, weight = producers[node.input[0]], producers[node.input[1]]
        expected = initializers[source.input[1]] * initializers[weight.input[1]]
        np.testing.assert_allclose(scale, expected, rtol=1e-6)
        error = np.abs(quantized * scale - float_biases[node.name])
        assert (error <= scale / 2 + 1e-12).all(), node.name
    onnx.checker.check_model(model)


def test_open_session_rewrites_only_for_int8(variant_bundle, frames):
    import onnxruntime as ort

    # The int8 file opened as anything but int8 runs as written: int8 activations.
    batch = preprocess_batch(variant_bundle, frames[:2])
    path = variant_bundle.variant("int8").path
    as_file = open_session(path, precision="fp32", intra_op_threads=1)
    assert as_file.get_providers() == ["CPUExecutionProvider"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    plain = ort.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )
    np.testing.assert_array_equal(
        as_file.run(["logits"], {"images": batch})[0], plain.run(["logits"], {"images": batch})[0]
    )
    with pytest.raises(ConfigError, match="intra_op_threads must be at least 1"):
        open_session(path, intra_op_threads=0)


def test_uint8_activations_refuses_a_zero_point_it_did_not_write(variant_bundle):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(variant_bundle.variant("int8").path))
    name = next(n.input[2] for n in model.graph.node if n.op_type == "QuantizeLinear")
    tensor = next(t for t in model.graph.initializer if t.name == name)
    tensor.CopyFrom(numpy_helper.from_array(np.array(5, np.int8), name))  # asymmetric
    with pytest.raises(
        BundleError, match=rf"activation zero point '{re.escape(name)}' is not a symmetric"
    ):
        uint8_activations(model)
    tensor.CopyFrom(numpy_helper.from_array(np.array(128, np.uint8), name))  # already uint8
    with pytest.raises(BundleError, match=r"`mmsag export --precision \.\.\.,int8`"):
        uint8_activations(model)


def test_open_session_refuses_a_tampered_int8_file(variant_bundle, tmp_path):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(variant_bundle.variant("int8").path))
    name = next(n.input[2] for n in model.graph.node if n.op_type == "QuantizeLinear")
    tensor = next(t for t in model.graph.initializer if t.name == name)
    tensor.CopyFrom(numpy_helper.from_array(np.array(-3, np.int8), name))
    tampered = tmp_path / "model.int8.onnx"
    onnx.save(model, str(tampered))
    with pytest.raises(BundleError, match="is not a symmetric int8 initializer"):
        open_session(tampered, precision="int8")
    with pytest.raises(BackendUnavailableError, match="ONNX Runtime cannot load"):
        open_session(tmp_path / "missing.onnx")
