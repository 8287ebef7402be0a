from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from onnx import numpy_helper
from runtime_helpers import INPUT_SIZE, make_bundle, refuse_variant

from mmsag_ros.bundle.manifest import load_bundle
from mmsag_ros.bundle.preprocess import preprocess
from mmsag_ros.errors import BackendUnavailableError, BundleError, ConfigError
from mmsag_ros.onnx_session import (
    SEVEN_BIT_LIMIT,
    fold_relu_quantize,
    int32_conv_biases,
    open_session,
    seven_bit_weights,
    uint8_activations,
)
from mmsag_ros.runtime.backends import create_backend, parse_device
from mmsag_ros.runtime.postprocess import sigmoid

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _batch(bundle, frames):
    return np.stack([preprocess(f, bundle.spec) for f in frames])


def test_onnxruntime_and_torch_agree_on_synthetic_frames(bundle, frames):
    batch = _batch(bundle, frames)
    outputs = {}
    for kind in ("onnxruntime", "torch"):
        with create_backend(kind, bundle, device="cpu") as backend:
            outputs[kind] = backend.infer(batch)
    ort, torch_out = outputs["onnxruntime"], outputs["torch"]
    assert ort["logits"].shape == (len(frames), 8)
    assert ort["attention"].shape == (len(frames), 8, 3, 3)
    np.testing.assert_allclose(ort["attention"].sum(axis=(2, 3)), 1.0, rtol=1e-5)
    scores = sigmoid(ort["logits"])
    # A random model still has to give different frames different scores, or parity is moot.
    assert np.ptp(scores, axis=0).max() > 1e-3
    np.testing.assert_allclose(sigmoid(torch_out["logits"]), scores, atol=1e-4, rtol=0)
    np.testing.assert_allclose(torch_out["attention"], ort["attention"], atol=1e-4, rtol=0)


def test_a_bundle_without_attention_gives_logits_only(frames, tmp_path):
    from mmsag_ros.runtime.classifier import Classifier

    bundle_dir = make_bundle(tmp_path / "plain", seed=2, attention=False)
    scores = {}
    for kind in ("onnxruntime", "torch"):
        with Classifier(bundle_dir, backend=kind) as clf:
            assert clf.bundle.output_names == ("logits",)
            assert set(clf.backend.infer(_batch(clf.bundle, frames[:1]))) == {"logits"}
            prediction = clf.classify_one(frames[0])
            assert prediction.peaks is None
            scores[kind] = prediction.scores
    np.testing.assert_allclose(scores["torch"], scores["onnxruntime"], atol=1e-4, rtol=0)


def test_backend_lifecycle_and_input_checks(bundle):
    backend = create_backend("onnxruntime", bundle, device="cpu", intra_op_threads=1)
    assert backend.name == "onnxruntime@cpu" and not backend.loaded and backend.providers == ()
    zeros = np.zeros((1, 3, INPUT_SIZE, INPUT_SIZE), np.float32)
    with pytest.raises(BackendUnavailableError, match="not loaded"):
        backend.infer(zeros)
    with backend:
        assert backend.loaded
        assert backend.providers == ("CPUExecutionProvider",)
        assert backend.info()["model_id"] == bundle.model_id
        assert backend.info()["precision"] == backend.precision == "fp32"
        with pytest.raises(ValueError, match=f"float32 N x 3 x {INPUT_SIZE}"):
            backend.infer(zeros.astype(np.float64))
        with pytest.raises(ValueError, match="N >= 1"):
            backend.infer(np.zeros((2, 3, 32, 32), np.float32))
        backend.warmup(2)
    assert not backend.loaded and backend.providers == ()


def test_create_backend_loads_a_bundle_directory(bundle_dir, tmp_path):
    with create_backend("onnxruntime", bundle_dir, intra_op_threads=1) as backend:
        assert backend.bundle.root == bundle_dir
        assert backend.info()["model"] == "model.onnx"
    with pytest.raises(BundleError, match="does not exist"):
        create_backend("onnxruntime", tmp_path / "missing")


@pytest.mark.parametrize(
    ("kind", "options", "error", "message"),
    [
        ("onnx", {}, ConfigError, "unknown backend 'onnx'; did you mean 'onnxruntime'"),
        ("onnxruntime", {"fp16": True}, ConfigError, "bad option for the onnxruntime backend"),
        # The old boolean switches are gone: precision="int8" / "fp16" replaced them.
        ("onnxruntime", {"int8": True}, ConfigError, "bad option for the onnxruntime backend"),
        ("torch", {"fp16": True}, ConfigError, "bad option for the torch backend"),
        ("onnxruntime", {"intra_op_threads": 0}, ConfigError, "intra_op_threads must be"),
        ("torch", {"cuda_graph_batch": 4}, ConfigError, "cuda_graph_batch needs device='cuda'"),
        ("torch", {"num_threads": 0}, ConfigError, "num_threads must be at least 1"),
        ("tensorrt", {}, ConfigError, "runs on cuda, not 'cpu'"),
        ("onnxruntime", {"precision": "fp8"}, ConfigError, "unknown precision 'fp8'; use one"),
        ("torch", {"precision": "FP16"}, ConfigError, "unknown precision 'FP16'"),
    ],
)
def test_create_backend_rejects_bad_requests(bundle, kind, options, error, message):
    with pytest.raises(error, match=message):
        create_backend(kind, bundle, device="cpu", **options)


def test_tensorrt_rejects_unknown_precision_and_bad_batches(bundle):
    with pytest.raises(ConfigError, match="unknown precision 'fp8'; use one of fp32, fp16, int8"):
        create_backend("tensorrt", bundle, device="cuda", precision="fp8")
    with pytest.raises(ConfigError, match="max_batch must be at least 1"):
        create_backend("tensorrt", bundle, device="cuda", max_batch=0)


@pytest.mark.parametrize(
    ("text", "expected"), [("cpu", ("cpu", 0)), ("CUDA", ("cuda", 0)), ("cuda:1", ("cuda", 1))]
)
def test_parse_device(text, expected):
    assert parse_device(text) == expected


@pytest.mark.parametrize("text", ["gpu", "cuda:x", "cpu:0", ""])
def test_parse_device_rejects_unknown_devices(text):
    with pytest.raises(ConfigError, match="use 'cpu', 'cuda' or 'cuda:N'"):
        parse_device(text)


@pytest.mark.parametrize("kind", ["onnxruntime", "tensorrt"])
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_a_variant_that_was_not_exported_is_a_bundle_error(bundle, kind, precision):
    device = "cuda" if kind == "tensorrt" else "cpu"
    with pytest.raises(
        BundleError, match=rf"has no {precision} variant: it was not exported"
    ) as info:
        create_backend(kind, bundle, device=device, precision=precision)
    assert "it has fp32" in str(info.value)
    assert f"--precision fp32,{precision}" in str(info.value)


@pytest.mark.parametrize("kind", ["onnxruntime", "tensorrt"])
def test_a_refused_variant_is_a_bundle_error_with_the_reason(variant_bundle_dir, tmp_path, kind):
    reason = "int8: mAP drop 3.20 points > bar 1.00"
    refused = load_bundle(refuse_variant(variant_bundle_dir, tmp_path / "refused", "int8", reason))
    assert set(refused.variants) == {"fp32", "fp16"} and refused.refused == {"int8": reason}
    device = "cuda" if kind == "tensorrt" else "cpu"
    with pytest.raises(BundleError, match="has no int8 variant: it was refused at export") as info:
        create_backend(kind, refused, device=device, precision="int8")
    assert f"({reason})" in str(info.value) and "it has fp32, fp16" in str(info.value)
    # The variants that were kept still run.
    with create_backend("onnxruntime", refused, precision="fp16", intra_op_threads=1) as backend:
        assert backend.info()["model"] == "model.fp16.onnx"


def _one_thread_outputs(backend, batch):
    with backend:
        return backend.infer(batch)


@pytest.fixture(scope="module")
def variant_outputs(variant_bundle, frames):
    """Outputs of every variant of the variant bundle on ONNX Runtime (one thread, CPU)."""
    batch = _batch(variant_bundle, frames)
    outputs = {}
    for precision in variant_bundle.variants:
        backend = create_backend(
            "onnxruntime", variant_bundle, precision=precision, intra_op_threads=1
        )
        outputs[precision] = _one_thread_outputs(backend, batch)
    return batch, outputs


#: How far a variant's scores may lie from fp32 on these frames (a random tiny model).
VARIANT_ATOL = {"fp32": 0.0, "fp16": 5e-3, "int8": 5e-2}


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_onnxruntime_runs_every_variant_near_fp32(variant_bundle, variant_outputs, precision):
    batch, outputs = variant_outputs
    backend = create_backend("onnxruntime", variant_bundle, precision=precision)
    assert backend.precision == precision
    assert backend.variant is variant_bundle.variant(precision)
    with backend:
        info = backend.info()
        assert backend.providers == ("CPUExecutionProvider",)
    assert info["precision"] == precision
    assert info["model"] == variant_bundle.variant(precision).path.name
    assert info["model"] == {"fp32": "model.onnx"}.get(precision, f"model.{precision}.onnx")
    got, fp32 = outputs[precision], outputs["fp32"]
    assert got["logits"].dtype == np.float32 and got["logits"].shape == (len(batch), 8)
    assert got["attention"].shape == (len(batch), 8, 3, 3)
    # int8 quantizes the attention maps themselves (the head is in int8): sums move by 1e-3s.
    atol = 1e-2 if precision == "int8" else 1e-3
    np.testing.assert_allclose(got["attention"].sum(axis=(2, 3)), 1.0, rtol=0, atol=atol)
    diff = np.abs(sigmoid(got["logits"]) - sigmoid(fp32["logits"]))
    assert diff.max() <= VARIANT_ATOL[precision], diff.max()
    if precision != "fp32":  # it really ran another graph, not model.onnx again
        assert diff.max() > 0


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
    batch = _batch(variant_bundle, frames[:2])
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


@pytest.mark.parametrize(
    ("precision", "device", "message"),
    [
        ("fp16", "cpu", "runs fp32, or fp16 on CUDA, not fp16 on cpu"),
        ("int8", "cpu", "not int8 on cpu; int8 and CPU fp16 are ONNX variants"),
    ],
)
def test_torch_has_no_cpu_fp16_and_no_int8(variant_bundle, precision, device, message):
    backend = create_backend("torch", variant_bundle, device=device, precision=precision)
    assert backend.precision == precision  # created cheaply; refused when loaded
    with pytest.raises(BackendUnavailableError, match=message):
        backend.load()
    assert not backend.loaded


def test_torch_int8_is_refused_on_cuda_too(variant_bundle):
    with pytest.raises(BackendUnavailableError, match="not int8 on cuda:0"):
        create_backend("torch", variant_bundle, device="cuda", precision="int8").load()


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_missing_tensorrt_is_one_clear_line(variant_bundle, precision):
    backend = create_backend("tensorrt", variant_bundle, device="cuda", precision=precision)
    with pytest.raises(BackendUnavailableError, match=r"^TensorRT is not installed here: ") as info:
        backend.load()
    assert "\n" not in str(info.value)
    assert not backend.loaded
    assert not variant_bundle.engines_dir.exists()  # loading never builds


def test_cuda_requests_fail_clearly_without_a_gpu(bundle):
    if _cuda_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(BackendUnavailableError, match="no CUDA GPU is visible"):
        create_backend("torch", bundle, device="cuda").load()
    # onnxruntime (CPU build) has no CUDA provider; onnxruntime-gpu without working CUDA
    # libraries reaches the session and is caught by the get_providers() check instead.
    with pytest.raises(BackendUnavailableError, match="CUDA provider"):
        create_backend("onnxruntime", bundle, device="cuda").load()


def test_importing_the_runtime_loads_no_inference_sdk():
    code = (
        "import sys, mmsag_ros.runtime.classifier, mmsag_ros.runtime.backends\n"
        "import mmsag_ros.pointing\n"
        "import mmsag_ros.runtime.verify, mmsag_ros.runtime.bench, mmsag_ros.runtime.engine_cache\n"
        "import mmsag_ros.onnx_session, mmsag_ros.bundle.manifest\n"
        "import mmsag_ros.cli.verify, mmsag_ros.cli.bench, mmsag_ros.cli.engine\n"
        "print(sorted(m for m in ('torch', 'onnxruntime', 'tensorrt') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.gpu
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"precision": "fp16"},
        {"cuda_graph_batch": 2},
        {"precision": "fp16", "cuda_graph_batch": 2},
    ],
)
def test_torch_cuda_paths_match_the_cpu(bundle, frames, options):
    if not _cuda_available():
        pytest.skip("needs a CUDA GPU")
    batch = _batch(bundle, frames[:2])
    with create_backend("torch", bundle, device="cpu") as cpu:
        expected = sigmoid(cpu.infer(batch)["logits"])
    with create_backend("torch", bundle, device="cuda", **options) as gpu:
        got = sigmoid(gpu.infer(batch)["logits"])
        again = sigmoid(gpu.infer(batch)["logits"])  # a graph replay reads fresh input
        single = sigmoid(gpu.infer(batch[:1])["logits"])  # other sizes run eagerly
    tolerance = 5e-3 if options.get("precision") == "fp16" else 1e-4
    np.testing.assert_allclose(got, expected, atol=tolerance, rtol=0)
    np.testing.assert_array_equal(again, got)
    np.testing.assert_allclose(single, expected[:1], atol=tolerance, rtol=0)


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
