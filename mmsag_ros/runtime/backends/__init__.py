"""Inference backends behind one interface, looked up by name.

``kind`` always comes from configuration (a parameter, a command-line option), never from a
file name. The modules here import no SDK at import time: torch, onnxruntime and tensorrt are
imported by each backend's ``load()``.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmsag_ros.errors import ConfigError
from mmsag_ros.runtime.backends.base import InferenceBackend, parse_device
from mmsag_ros.runtime.backends.onnxruntime_ import OnnxRuntimeBackend
from mmsag_ros.runtime.backends.tensorrt_ import TensorRTBackend
from mmsag_ros.runtime.backends.torch_ import TorchBackend

if TYPE_CHECKING:
    from mmsag_ros.bundle.schema import Bundle

__all__ = [
    "BACKEND_KINDS",
    "InferenceBackend",
    "OnnxRuntimeBackend",
    "TensorRTBackend",
    "TorchBackend",
    "create_backend",
    "parse_device",
]

_BACKENDS: dict[str, type[InferenceBackend]] = {
    "tensorrt": TensorRTBackend,
    "onnxruntime": OnnxRuntimeBackend,
    "torch": TorchBackend,
}

#: Registered backend names, fastest first.
BACKEND_KINDS = tuple(_BACKENDS)


def create_backend(
    kind: str, bundle: Bundle | Path | str, *, device: str = "cpu", **options: Any
) -> InferenceBackend:
    """Create (not load) the backend named ``kind`` for ``bundle``.

    Args:
        kind: ``tensorrt``, ``onnxruntime`` or ``torch``.
        bundle: A loaded bundle, or a bundle directory to load
            (:func:`mmsag_ros.bundle.manifest.load_bundle`).
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        **options: ``precision`` (the bundle variant) and backend-specific keyword options
            (``intra_op_threads``, ``cuda_graph_batch``, ``cache_dir``...).

    Raises:
        ConfigError: Unknown kind (with a suggestion), device or option.
        BundleError: ``bundle`` is a directory that fails validation.
    """
    try:
        backend_class = _BACKENDS[kind]
    except KeyError:
        close = difflib.get_close_matches(str(kind), BACKEND_KINDS, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"unknown backend {kind!r}{hint} (known: {', '.join(BACKEND_KINDS)})"
        ) from None
    if isinstance(bundle, (str, Path)):
        from mmsag_ros.bundle.manifest import load_bundle

        bundle = load_bundle(Path(bundle))
    try:
        return backend_class(bundle, device=device, **options)
    except TypeError as err:
        raise ConfigError(f"bad option for the {kind} backend: {err}") from err
