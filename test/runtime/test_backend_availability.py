"""What a backend needs, and the one clear error when this machine lacks it.

Torch runs fp32, or fp16 on CUDA, never int8; TensorRT and a CUDA GPU that are not here are
refused when the backend loads, and importing the runtime loads no inference SDK at all. On a
CUDA GPU (``gpu`` mark), torch's CUDA paths, CUDA graphs included, match the CPU.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from runtime_helpers import HAS_TENSORRT, cuda_available, preprocess_batch

from mmsag_ros.errors import BackendUnavailableError
from mmsag_ros.runtime.backends import create_backend
from mmsag_ros.runtime.postprocess import sigmoid


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
    if cuda_available():
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
    if not cuda_available():
        pytest.skip("needs a CUDA GPU")
    batch = preprocess_batch(bundle, frames[:2])
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
