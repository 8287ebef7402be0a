from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
from runtime_helpers import INPUT_SIZE, make_bundle

from mmsag_ros.errors import BackendUnavailableError, BundleError, ConfigError
from mmsag_ros.runtime.backends import create_backend, parse_device
from mmsag_ros.runtime.postprocess import sigmoid
from mmsag_ros.runtime.preprocess import preprocess

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
        ("onnxruntime", {"intra_op_threads": 0}, ConfigError, "intra_op_threads must be"),
        ("torch", {"fp16": True}, ConfigError, "need device='cuda'"),
        ("torch", {"cuda_graph_batch": 4}, ConfigError, "need device='cuda'"),
        ("tensorrt", {}, ConfigError, "runs on cuda, not 'cpu'"),
    ],
)
def test_create_backend_rejects_bad_requests(bundle, kind, options, error, message):
    with pytest.raises(error, match=message):
        create_backend(kind, bundle, device="cpu", **options)


def test_tensorrt_rejects_unknown_precision(bundle):
    with pytest.raises(ConfigError, match="unknown TensorRT precision 'fp8'"):
        create_backend("tensorrt", bundle, device="cuda", precision="fp8")


@pytest.mark.parametrize(
    ("text", "expected"), [("cpu", ("cpu", 0)), ("CUDA", ("cuda", 0)), ("cuda:1", ("cuda", 1))]
)
def test_parse_device(text, expected):
    assert parse_device(text) == expected


@pytest.mark.parametrize("text", ["gpu", "cuda:x", "cpu:0", ""])
def test_parse_device_rejects_unknown_devices(text):
    with pytest.raises(ConfigError, match="use 'cpu', 'cuda' or 'cuda:N'"):
        parse_device(text)


def test_int8_without_an_int8_model_is_unavailable(bundle):
    if bundle.int8_onnx_path is not None:
        pytest.skip("this bundle has an int8 model")
    with pytest.raises(BackendUnavailableError, match="has no int8 ONNX model"):
        create_backend("onnxruntime", bundle, int8=True).load()


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_missing_tensorrt_is_one_clear_line(bundle):
    with pytest.raises(BackendUnavailableError, match=r"^TensorRT is not installed: ") as info:
        create_backend("tensorrt", bundle, device="cuda").load()
    assert "\n" not in str(info.value)


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
        "import sys, mmsag_ros.runtime as r\n"
        "r.Classifier, r.create_backend, r.attention_peaks\n"
        "import mmsag_ros.runtime.verify, mmsag_ros.runtime.bench\n"
        "import mmsag_ros.cli.verify, mmsag_ros.cli.bench\n"
        "print(sorted(m for m in ('torch', 'onnxruntime', 'tensorrt') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.gpu
@pytest.mark.parametrize("options", [{}, {"fp16": True}, {"cuda_graph_batch": 2}])
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
    tolerance = 5e-3 if options.get("fp16") else 1e-4
    np.testing.assert_allclose(got, expected, atol=tolerance, rtol=0)
    np.testing.assert_array_equal(again, got)
    np.testing.assert_allclose(single, expected[:1], atol=tolerance, rtol=0)
