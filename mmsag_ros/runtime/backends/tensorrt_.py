"""TensorRT backend: a serialized engine from ``BUNDLE/engines/`` on a CUDA stream.

Uses the TensorRT 10 tensor-name API (``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``) with torch CUDA tensors as device buffers, so no pycuda is needed. The
engine is built on the target on first use and reused after (the export helper's cache,
keyed by GPU, compute capability and TensorRT version). TensorRT is imported in :meth:`load`
only: without it the package still imports and this backend says so in one line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mmsag_ros.errors import BackendUnavailableError, ConfigError
from mmsag_ros.runtime.backends.base import InferenceBackend

if TYPE_CHECKING:
    from mmsag_ros.export.manifest import Bundle

__all__ = ["TENSORRT_PRECISIONS", "TensorRTBackend"]

TENSORRT_PRECISIONS = ("fp16", "fp32", "int8")


def _import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError as err:
        raise BackendUnavailableError(
            f"TensorRT is not installed: {err}; install TensorRT 10 (pip install tensorrt, or "
            "JetPack on a Jetson) or use the onnxruntime backend"
        ) from err
    return tensorrt


class TensorRTBackend(InferenceBackend):
    """A TensorRT engine for the bundle's ONNX model, run on one CUDA device.

    Args:
        bundle: The bundle to run.
        device: ``cuda`` or ``cuda:N`` (TensorRT has no CPU path).
        precision: Engine precision to load or build: ``fp16`` (default), ``fp32`` or
            ``int8`` (int8 needs calibration data at export time).
        rebuild: Build the engine again even if a cached one matches this machine.
        max_batch: Largest batch the engine must serve (part of its optimisation profile).
    """

    kind = "tensorrt"
    device_types = ("cuda",)

    def __init__(
        self,
        bundle: Bundle,
        *,
        device: str = "cuda",
        precision: str = "fp16",
        rebuild: bool = False,
        max_batch: int = 8,
    ) -> None:
        super().__init__(bundle, device=device)
        if precision not in TENSORRT_PRECISIONS:
            raise ConfigError(
                f"unknown TensorRT precision {precision!r}; use one of "
                f"{', '.join(TENSORRT_PRECISIONS)}"
            )
        if max_batch < 1:
            raise ConfigError(f"max_batch must be at least 1, got {max_batch}")
        self.precision = precision
        self.rebuild = rebuild
        self.max_batch = max_batch
        self._torch: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._inputs: list[str] = []
        self._outputs: list[str] = []
        self._dtypes: dict[str, Any] = {}

    def _load(self) -> None:
        trt = _import_tensorrt()
        try:
            import torch
        except ImportError as err:
            raise BackendUnavailableError(
                f"the TensorRT backend uses torch CUDA tensors as buffers, and torch is not "
                f"installed ({err}); pip install torch"
            ) from err
        if not torch.cuda.is_available():
            raise BackendUnavailableError(
                "TensorRT needs a CUDA GPU and none is visible (torch.cuda.is_available() is "
                "False); use the onnxruntime backend on the CPU"
            )
        from mmsag_ros.export.tensorrt import ensure_engine

        torch.cuda.set_device(self.device)
        engine_path = ensure_engine(
            self.bundle, precision=self.precision, rebuild=self.rebuild, max_batch=self.max_batch
        )
        logger = trt.Logger(trt.Logger.WARNING)
        engine = trt.Runtime(logger).deserialize_cuda_engine(engine_path.read_bytes())
        if engine is None:
            raise BackendUnavailableError(
                f"TensorRT cannot deserialize {engine_path} (built by another TensorRT version "
                "or GPU?); delete it or load with rebuild=True"
            )
        dtypes = {
            trt.DataType.FLOAT: torch.float32,
            trt.DataType.HALF: torch.float16,
            trt.DataType.INT32: torch.int32,
            trt.DataType.INT8: torch.int8,
            trt.DataType.BOOL: torch.bool,
        }
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self._inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if n not in self._inputs]
        if self._inputs != [self.bundle.input_name]:
            raise BackendUnavailableError(
                f"engine {engine_path} has inputs {self._inputs}, the bundle expects "
                f"[{self.bundle.input_name!r}]; rebuild it (rebuild=True)"
            )
        self._dtypes = {n: dtypes[engine.get_tensor_dtype(n)] for n in names}
        self._torch = torch
        self._engine = engine
        self._context = engine.create_execution_context()
        self._stream = torch.cuda.Stream(device=self.device)
        self.providers = (f"tensorrt-{trt.__version__}", self.precision, engine_path.name)

    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        torch = self._torch
        name = self._inputs[0]
        context = self._context
        with torch.cuda.stream(self._stream):
            inputs = torch.from_numpy(batch).to(self.device, non_blocking=True)
            inputs = inputs.to(self._dtypes[name]).contiguous()
            if not context.set_input_shape(name, tuple(inputs.shape)):
                raise ConfigError(
                    f"batch of {inputs.shape[0]} is outside the engine's optimisation profile; "
                    "use a smaller max_batch or rebuild the engine for it"
                )
            context.set_tensor_address(name, inputs.data_ptr())
            outputs = {}
            for out_name in self._outputs:
                shape = tuple(context.get_tensor_shape(out_name))
                buffer = torch.empty(shape, dtype=self._dtypes[out_name], device=self.device)
                context.set_tensor_address(out_name, buffer.data_ptr())
                outputs[out_name] = buffer
            if not context.execute_async_v3(self._stream.cuda_stream):
                raise BackendUnavailableError(f"TensorRT failed to run {self.bundle.model_id}")
        self._stream.synchronize()
        return {n: v.float().cpu().numpy() for n, v in outputs.items()}

    def _close(self) -> None:
        self._context = None
        self._engine = None
        self._stream = None
        self._torch = None
