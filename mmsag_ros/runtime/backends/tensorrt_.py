"""TensorRT backend: a strongly typed engine of one of the bundle's variants, on a CUDA stream.

Uses the tensor-name API that TensorRT 10 and 11 share (``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``) with torch CUDA tensors as device buffers, so no
pycuda is needed. The engine comes from the cache of :mod:`mmsag_ros.runtime.engine_cache`; this
backend never builds one (minutes that would freeze the caller): a missing engine raises with
the ``mmsag engine`` command that builds it. TensorRT is imported in :meth:`load` only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmsag_ros.errors import BackendUnavailableError, ConfigError
from mmsag_ros.runtime.backends.base import InferenceBackend
from mmsag_ros.runtime.engine_build import BatchProfile, import_tensorrt
from mmsag_ros.runtime.engine_cache import load_engine

if TYPE_CHECKING:
    from mmsag_ros.bundle.schema import Bundle

__all__ = ["TensorRTBackend"]


class TensorRTBackend(InferenceBackend):
    """A TensorRT engine of one of the bundle's ONNX variants, run on one CUDA device.

    Args:
        bundle: The bundle to run.
        device: ``cuda`` or ``cuda:N`` (TensorRT has no CPU path).
        precision: The variant the engine was built from: ``fp32``, ``fp16`` or ``int8``.
        cache_dir: Engine cache directory (None: the bundle's ``engines/``, or the user cache
            when the bundle is read-only).
        max_batch: Largest batch the engine must serve (part of its optimisation profile).
    """

    kind = "tensorrt"
    device_types = ("cuda",)

    def __init__(
        self,
        bundle: Bundle,
        *,
        device: str = "cuda",
        precision: str = "fp32",
        cache_dir: Path | str | None = None,
        max_batch: int = 8,
    ) -> None:
        super().__init__(bundle, device=device, precision=precision)
        if max_batch < 1:
            raise ConfigError(f"max_batch must be at least 1, got {max_batch}")
        bundle.variant(precision)  # a missing variant is a bundle problem: say so now
        self.cache_dir = None if cache_dir in (None, "") else Path(cache_dir)
        self.max_batch = max_batch
        self._torch: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._inputs: list[str] = []
        self._outputs: list[str] = []
        self._dtypes: dict[str, Any] = {}

    def _load(self) -> None:
        trt = import_tensorrt()
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
        torch.cuda.set_device(self.device)
        engine_path, data = load_engine(
            self.bundle,
            precision=self.precision,
            cache_dir=self.cache_dir,
            profile=BatchProfile(1, 1, self.max_batch),
        )
        logger = trt.Logger(trt.Logger.WARNING)
        # The very bytes whose hash matched the sidecar, not the file read again.
        engine = trt.Runtime(logger).deserialize_cuda_engine(data)
        if engine is None:
            raise BackendUnavailableError(
                f"TensorRT cannot deserialize {engine_path} (built by another TensorRT version "
                f"or GPU?); rebuild it: `mmsag engine --bundle {self.bundle.root} --precision "
                f"{self.precision} --rebuild`"
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
                f"[{self.bundle.input_name!r}]; rebuild it with `mmsag engine ... --rebuild`"
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
