"""ONNX Runtime backend: a bundle's ONNX variant on the CPU, or on CUDA when that really runs.

onnxruntime-gpu lists the CUDA and TensorRT providers even where their libraries are missing
and then quietly runs on the CPU; this backend asks the session what it actually uses and
refuses to pretend (a CUDA request that ends up on the CPU raises). Sessions are opened by
:func:`mmsag_ros.onnx_session.open_session`, the way export scored the variant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mmsag_ros.errors import BackendUnavailableError, ConfigError
from mmsag_ros.onnx_session import CPU_PROVIDER, import_onnxruntime, open_session
from mmsag_ros.runtime.backends.base import InferenceBackend

if TYPE_CHECKING:
    from mmsag_ros.bundle.schema import Bundle

__all__ = ["OnnxRuntimeBackend"]

_CPU = CPU_PROVIDER
_CUDA = "CUDAExecutionProvider"
_TENSORRT = "TensorrtExecutionProvider"


class OnnxRuntimeBackend(InferenceBackend):
    """ONNX Runtime session over one of the bundle's ONNX variants.

    Args:
        bundle: The bundle to run.
        device: ``cpu``, or ``cuda``/``cuda:N`` for the CUDA provider.
        precision: The variant to run: ``fp32`` (``model.onnx``), ``fp16`` or ``int8`` (the
            bundle must hold it; :meth:`Bundle.variant` says why when it does not).
        intra_op_threads: Threads for one operator (None: ONNX Runtime's default, one per
            physical core).
        tensorrt_provider: On CUDA, also ask for ONNX Runtime's TensorRT provider in front of
            CUDA (used only if it really loads; see :attr:`providers`).
    """

    kind = "onnxruntime"

    def __init__(
        self,
        bundle: Bundle,
        *,
        device: str = "cpu",
        precision: str = "fp32",
        intra_op_threads: int | None = None,
        tensorrt_provider: bool = False,
    ) -> None:
        super().__init__(bundle, device=device, precision=precision)
        if intra_op_threads is not None and intra_op_threads < 1:
            raise ConfigError(f"intra_op_threads must be at least 1, got {intra_op_threads}")
        self.intra_op_threads = intra_op_threads
        self.variant = bundle.variant(precision)
        self.tensorrt_provider = tensorrt_provider
        self._session: Any = None
        self._output_names: list[str] = []

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
        ort = import_onnxruntime()
        requested = self._requested_providers(ort.get_available_providers())
        session = open_session(
            self.variant.path,
            precision=self.precision,
            providers=requested,
            intra_op_threads=self.intra_op_threads,
        )
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
        return {
            **super().info(),
            "model": self.variant.path.name,
            "intra_op_threads": self.intra_op_threads,
        }
