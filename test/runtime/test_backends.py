"""Creating backends and what they agree on: ONNX Runtime and torch on CPU, every variant.

``create_backend`` and ``parse_device`` take what they should and refuse the rest with one
clear error; a backend loads, checks its input and unloads; a variant that was not exported,
or was refused at export, is a bundle error that says so. ONNX Runtime and torch agree on
real frames, and ONNX Runtime runs every exported variant near fp32.
"""

from __future__ import annotations

import numpy as np
import pytest
from runtime_helpers import INPUT_SIZE, make_bundle, preprocess_batch, refuse_variant

from mmsag_ros.bundle.manifest import load_bundle
from mmsag_ros.errors import BackendUnavailableError, BundleError, ConfigError
from mmsag_ros.runtime.backends import create_backend, parse_device
from mmsag_ros.runtime.postprocess import sigmoid


def test_onnxruntime_and_torch_agree_on_synthetic_frames(bundle, frames):
    batch = preprocess_batch(bundle, frames)
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
            assert set(clf.backend.infer(preprocess_batch(clf.bundle, frames[:1]))) == {"logits"}
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
