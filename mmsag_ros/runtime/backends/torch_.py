"""Torch backend: the bundle's ``model.pt`` rebuilt as an eager MM-SAG module.

CPU or CUDA; fp16 on CUDA; optionally one CUDA graph captured for a fixed batch size (other
batch sizes then run eagerly). This is the reference the ONNX export is checked against, and
the fallback where neither TensorRT nor ONNX Runtime is installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mmsag_ros.errors import BackendUnavailableError, ConfigError
from mmsag_ros.runtime.backends.base import InferenceBackend

if TYPE_CHECKING:
    from mmsag_ros.bundle.schema import Bundle

__all__ = ["TorchBackend"]

_GRAPH_WARMUP_STEPS = 3


class TorchBackend(InferenceBackend):
    """Eager PyTorch over the bundle's slim checkpoint.

    Args:
        bundle: The bundle to run (needs ``model.pt``).
        device: ``cpu`` or ``cuda``/``cuda:N``.
        precision: ``fp32``, or ``fp16`` (the module cast to half precision; CUDA only).
            Outputs are float32 either way. There is no int8 torch path: int8 is an ONNX
            variant (onnxruntime, tensorrt).
        cuda_graph_batch: Capture a CUDA graph for this batch size (CUDA only) and replay it
            for batches of exactly that size.
        num_threads: CPU threads for torch (``torch.set_num_threads``, which is process-wide);
            None leaves torch's setting alone.
    """

    kind = "torch"

    def __init__(
        self,
        bundle: Bundle,
        *,
        device: str = "cpu",
        precision: str = "fp32",
        cuda_graph_batch: int | None = None,
        num_threads: int | None = None,
    ) -> None:
        super().__init__(bundle, device=device, precision=precision)
        if cuda_graph_batch is not None and self.device_type != "cuda":
            raise ConfigError(
                "cuda_graph_batch needs device='cuda'; on the CPU the torch backend runs eagerly"
            )
        if cuda_graph_batch is not None and cuda_graph_batch < 1:
            raise ConfigError(f"cuda_graph_batch must be at least 1, got {cuda_graph_batch}")
        if num_threads is not None and num_threads < 1:
            raise ConfigError(f"num_threads must be at least 1, got {num_threads}")
        self.fp16 = precision == "fp16"
        self.cuda_graph_batch = cuda_graph_batch
        self.num_threads = num_threads
        self._torch: Any = None
        self._model: Any = None
        self._graph: Any = None
        self._static_input: Any = None
        self._static_outputs: dict[str, Any] = {}

    def _load(self) -> None:
        try:
            import torch
        except ImportError as err:
            raise BackendUnavailableError(
                f"PyTorch is not installed ({err}); pip install torch, or use the onnxruntime "
                "backend"
            ) from err
        if self.precision == "int8" or (self.fp16 and self.device_type != "cuda"):
            raise BackendUnavailableError(
                f"the torch backend runs fp32, or fp16 on CUDA, not {self.precision} on "
                f"{self.device}; int8 and CPU fp16 are ONNX variants: use the onnxruntime or "
                "tensorrt backend"
            )
        if self.bundle.torch_path is None:
            raise BackendUnavailableError(
                f"bundle {self.bundle.root} has no model.pt for the torch backend; re-export it "
                "with `mmsag export` or use the onnxruntime backend"
            )
        if self.device_type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"torch cannot use {self.device}: no CUDA GPU is visible "
                "(torch.cuda.is_available() is False); use device='cpu'"
            )
        from mmsag_ros.model.checkpoint import load_checkpoint

        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        model = load_checkpoint(self.bundle.torch_path).build_model().eval()
        model = model.to(self.device)
        if self.fp16:
            model = model.half()
        self._torch = torch
        self._model = model
        precision = "fp16" if self.fp16 else "fp32"
        providers = [f"torch-{self.device_type}", precision]
        if self.cuda_graph_batch is not None:
            self._capture(self.cuda_graph_batch)
            providers.append(f"cuda-graph@{self.cuda_graph_batch}")
        self.providers = tuple(providers)

    def _forward(self, inputs: Any) -> dict[str, Any]:
        out = self._model(inputs)
        result = {"logits": out["logits"]}
        if "attention" in self.bundle.output_names and "attention" in out:
            result["attention"] = out["attention"]
        return result

    def _capture(self, batch_size: int) -> None:
        torch = self._torch
        size = self.bundle.spec.input_size
        dtype = torch.float16 if self.fp16 else torch.float32
        static_input = torch.zeros((batch_size, 3, size, size), dtype=dtype, device=self.device)
        stream = torch.cuda.Stream(device=self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        # Kernels are picked and workspaces allocated on the first runs: do them before capture.
        with torch.inference_mode(), torch.cuda.stream(stream):
            for _ in range(_GRAPH_WARMUP_STEPS):
                self._forward(static_input)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            static_outputs = self._forward(static_input)
        self._graph = graph
        self._static_input = static_input
        self._static_outputs = static_outputs

    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            inputs = torch.from_numpy(batch)
            if self._graph is not None and batch.shape[0] == self.cuda_graph_batch:
                self._static_input.copy_(inputs)
                self._graph.replay()
                outputs = self._static_outputs
            else:
                inputs = inputs.to(self.device, non_blocking=True)
                outputs = self._forward(inputs.half() if self.fp16 else inputs)
            return {name: value.float().cpu().numpy().copy() for name, value in outputs.items()}

    def info(self) -> dict[str, Any]:
        """Base info plus the CUDA graph and the torch thread count in effect."""
        threads = self._torch.get_num_threads() if self._torch is not None else self.num_threads
        return {
            **super().info(),
            "cuda_graph_batch": self.cuda_graph_batch,
            "num_threads": threads,
        }

    def _close(self) -> None:
        self._graph = None
        self._static_input = None
        self._static_outputs = {}
        self._model = None
        if self._torch is not None and self.device_type == "cuda":
            self._torch.cuda.empty_cache()
        self._torch = None
