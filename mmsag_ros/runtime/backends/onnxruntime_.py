"""ONNX Runtime backend: the bundle's ``model.onnx`` on the CPU, or on CUDA when it really runs.

onnxruntime-gpu lists the CUDA and TensorRT providers even where their libraries are missing
and then quietly runs on the CPU; this backend asks the session what it actually uses and
refuses to pretend (a CUDA request that ends up on the CPU raises).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mmsag_ros.errors import BackendUnavailableError, ConfigError
from mmsag_ros.runtime.backends.base import InferenceBackend

if TYPE_CHECKING:
    from mmsag_ros.export.manifest import Bundle

__all__ = ["OnnxRuntimeBackend"]

_CPU = "CPUExecutionProvider"
_CUDA = "CUDAExecutionProvider"
_TENSORRT = "TensorrtExecutionProvider"


class OnnxRuntimeBackend(InferenceBackend):
    """ONNX Runtime session over ``model.onnx`` (or the bundle's static-int8 model).

    Args:
        bundle: The bundle to run.
        device: ``cpu``, or ``cuda``/``cuda:N`` for the CUDA provider.
        intra_op_threads: Threads for one operator (None: ONNX Runtime's default, one per
            physical core).
        int8: Run ``model.int8.onnx`` instead (CPU targets; the bundle must have one).
        tensorrt_provider: On CUDA, also ask for ONNX Runtime's TensorRT provider in front of
            CUDA (used only if it really loads; see :attr:`providers`).
    """

    kind = "onnxruntime"

    def __init__(
        self,
        bundle: Bundle,
        *,
        device: str = "cpu",
        intra_op_threads: int | None = None,
        int8: bool = False,
        tensorrt_provider: bool = False,
    ) -> None:
        super().__init__(bundle, device=device)
        if intra_op_threads is not None and intra_op_threads < 1:
            raise ConfigError(f"intra_op_threads must be at least 1, got {intra_op_threads}")
        self.intra_op_threads = intra_op_threads
        self.int8 = int8
        self.tensorrt_provider = tensorrt_provider
        self._session: Any = None
        self._output_names: list[str] = []

    def _model_path(self) -> Any:
        if not self.int8:
            return self.bundle.onnx_path
        if self.bundle.int8_onnx_path is None:
            raise BackendUnavailableError(
                f"bundle {self.bundle.root} has no int8 ONNX model; export it with "
                "`mmsag export --int8 --calib-data DIR` or run without int8"
            )
        return self.bundle.int8_onnx_path

    def _requested_providers(self, available: list[str]) -> list[Any]:
        if self.device_type == "cpu":
            return [_CPU]
        if _CUDA not in available:
            raise BackendUnavailableError(
                f"ONNX Runtime here has no CUDA provider (available: {', '.join(available)}); "
                "install onnxruntime-gpu, or use device='cpu'"
            )
        index = int(self.device.split(":")[1])
        requested: list[Any] = []
        if self.tensorrt_provider and _TENSORRT in available:
            requested.append((_TENSORRT, {"device_id": index}))
        requested += [(_CUDA, {"device_id": index}), _CPU]
        return requested

    def _load(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise BackendUnavailableError(
                f"ONNX Runtime is not installed ({err}); pip install onnxruntime "
                "(or onnxruntime-gpu for CUDA)"
            ) from err
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.intra_op_threads is not None:
            options.intra_op_num_threads = self.intra_op_threads
        options.log_severity_level = 3  # provider fallbacks are reported by us, once
        path = self._model_path()
        requested = self._requested_providers(ort.get_available_providers())
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=requested)
        except Exception as err:  # onnxruntime raises its own untyped exceptions
            raise BackendUnavailableError(f"ONNX Runtime cannot load {path}: {err}") from err
        running = tuple(session.get_providers())
        if self.device_type == "cuda" and _CUDA not in running:
            raise BackendUnavailableError(
                f"ONNX Runtime's CUDA provider did not start on {self.device} (the session "
                f"runs on {', '.join(running)}: CUDA/cuDNN libraries missing?); fix the CUDA "
                "install or use device='cpu'"
            )
        self._session = session
        self._output_names = [o.name for o in session.get_outputs()]
        self.providers = running

    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self._session.run(self._output_names, {self.bundle.input_name: batch})
        return {
            name: np.asarray(value, dtype=np.float32)
            for name, value in zip(self._output_names, outputs, strict=True)
        }

    def _close(self) -> None:
        self._session = None
        self._output_names = []

    def info(self) -> dict[str, Any]:
        """Base info plus the model file and thread setting."""
        path = self.bundle.int8_onnx_path if self.int8 else self.bundle.onnx_path
        return {
            **super().info(),
            "model": None if path is None else path.name,
            "intra_op_threads": self.intra_op_threads,
        }
