"""The interface every inference backend implements, and the device-string parser."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from mmsag_ros.bundle.schema import PRECISIONS
from mmsag_ros.errors import BackendUnavailableError, ConfigError

if TYPE_CHECKING:
    from mmsag_ros.bundle.schema import Bundle

__all__ = ["InferenceBackend", "parse_device"]

_log = logging.getLogger(__name__)


def parse_device(device: str) -> tuple[str, int]:
    """Split ``cpu``, ``cuda`` or ``cuda:N`` into a type and an index (0 for cpu and cuda).

    Raises:
        ConfigError: Anything else.
    """
    text = str(device).strip().lower()
    if text == "cpu":
        return "cpu", 0
    kind, _, index = text.partition(":")
    if kind == "cuda" and (not index or index.isdigit()):
        return "cuda", int(index or 0)
    raise ConfigError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'")


class InferenceBackend(ABC):
    """Runs a bundle's network on normalised N x 3 x S x S float32 batches.

    A backend is created cheaply; :meth:`load` imports the SDK and builds the session, engine
    or module, raising :class:`~mmsag_ros.errors.BackendUnavailableError` when this machine
    cannot run it. Use it as a context manager (``with create_backend(...) as backend:``) or
    call :meth:`load` and :meth:`close` yourself. Not thread-safe: one caller at a time.

    Attributes:
        kind: Registry name (``onnxruntime``, ``torch``, ``tensorrt``).
        bundle: The bundle it runs.
        device: ``cpu`` or ``cuda:N``.
        precision: ``fp32``, ``fp16`` or ``int8``: which of the bundle's variants runs (the
            torch backend casts its module instead).
        providers: What actually executes the graph once loaded (e.g. ONNX Runtime's
            providers, ``torch-cpu``, the TensorRT engine file); empty before :meth:`load`.
    """

    kind: ClassVar[str] = ""
    #: Device types the backend can use.
    device_types: ClassVar[tuple[str, ...]] = ("cpu", "cuda")

    def __init__(self, bundle: Bundle, *, device: str = "cpu", precision: str = "fp32") -> None:
        device_type, index = parse_device(device)
        if device_type not in self.device_types:
            raise ConfigError(
                f"the {self.kind} backend runs on {' or '.join(self.device_types)}, not "
                f"{device!r}; pick another backend or device"
            )
        if precision not in PRECISIONS:
            raise ConfigError(
                f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}"
            )
        self.bundle = bundle
        self.precision = precision
        self.device = "cpu" if device_type == "cpu" else f"cuda:{index}"
        self.providers: tuple[str, ...] = ()
        self._loaded = False

    @property
    def name(self) -> str:
        """``kind@device``, e.g. ``onnxruntime@cpu``: how reports name this backend."""
        return f"{self.kind}@{self.device}"

    @property
    def device_type(self) -> str:
        """``cpu`` or ``cuda``."""
        return self.device.split(":", 1)[0]

    @property
    def loaded(self) -> bool:
        """Whether :meth:`load` has succeeded and :meth:`close` has not run since."""
        return self._loaded

    def info(self) -> dict[str, Any]:
        """Plain data describing the loaded backend, for logs and reports."""
        return {
            "kind": self.kind,
            "device": self.device,
            "precision": self.precision,
            "providers": list(self.providers),
            "model_id": self.bundle.model_id,
        }

    def load(self) -> None:
        """Import the SDK and prepare the model; a no-op when already loaded.

        Raises:
            BackendUnavailableError: The SDK, the device or a model file is missing.
        """
        if self._loaded:
            return
        self._load()
        self._loaded = True
        _log.info("%s loaded %s (%s)", self.name, self.bundle.model_id, ", ".join(self.providers))

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run one batch.

        Args:
            batch: N x 3 x S x S float32, normalised by the bundle's preprocessing.

        Returns:
            ``logits`` (N x C float32) and, when the bundle exports them, ``attention``
            (N x C x h x w float32).
        """
        if not self._loaded:
            raise BackendUnavailableError(f"{self.name} is not loaded; call load() first")
        size = self.bundle.spec.input_size
        if (
            not isinstance(batch, np.ndarray)
            or batch.dtype != np.float32
            or batch.ndim != 4
            or batch.shape[1:] != (3, size, size)
            or batch.shape[0] < 1
        ):
            shape = getattr(batch, "shape", None)
            raise ValueError(
                f"batch must be float32 N x 3 x {size} x {size} with N >= 1, got "
                f"{getattr(batch, 'dtype', type(batch).__name__)} {shape}"
            )
        return self._infer(np.ascontiguousarray(batch))

    def warmup(self, batch_size: int = 1, *, iterations: int = 2) -> None:
        """Load if needed and run a few zero batches so the first real call is not slow."""
        self.load()
        size = self.bundle.spec.input_size
        zeros = np.zeros((batch_size, 3, size, size), np.float32)
        for _ in range(iterations):
            self.infer(zeros)

    def close(self) -> None:
        """Release the session, engine or module; the backend can be loaded again later."""
        if self._loaded:
            self._close()
        self._loaded = False
        self.providers = ()

    def __enter__(self) -> InferenceBackend:
        self.load()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "loaded" if self._loaded else "not loaded"
        return f"<{type(self).__name__} {self.name} {self.bundle.model_id} ({state})>"

    @abstractmethod
    def _load(self) -> None:
        """Import the SDK and build the model; set ``self.providers``."""

    @abstractmethod
    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run a validated, contiguous batch."""

    @abstractmethod
    def _close(self) -> None:
        """Drop references to the SDK objects."""
