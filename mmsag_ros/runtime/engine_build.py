"""Building a strongly typed TensorRT engine from an ONNX variant (``mmsag engine``).

A thin layer, imported lazily: TensorRT is needed only where an engine is built or run, and
without it every entry point raises a one-line BackendUnavailableError. The network is parsed
strongly typed and no weak-typing API (precision builder flags, INT8 calibrators, precision
constraints) is used anywhere, so the same code builds on TensorRT 10 (JetPack 6 on Jetson
Orin) and TensorRT 11 (discrete GPUs), which removed those APIs. Where engines are kept and how
they are found and checked: :mod:`~mmsag_ros.runtime.engine_cache`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mmsag_ros.atomic import write_atomic
from mmsag_ros.errors import BackendUnavailableError, BundleError, ConfigError

__all__ = [
    "MIN_TENSORRT_MAJOR",
    "BatchProfile",
    "build_engine",
    "import_tensorrt",
    "strongly_typed_network",
]

_log = logging.getLogger(__name__)

#: Strongly typed networks with explicit Q/DQ and TensorRT 11's API subset start at 10.
MIN_TENSORRT_MAJOR = 10


@dataclass(frozen=True)
class BatchProfile:
    """The dynamic-batch optimization profile of an engine (min <= opt <= max)."""

    min: int = 1
    opt: int = 1
    max: int = 8

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise ConfigError(f"batch profile needs 1 <= min <= opt <= max, got {self}")

    def covers(self, other: BatchProfile) -> bool:
        """Whether an engine built for ``self`` serves every batch size ``other`` allows."""
        return self.min <= other.min and self.max >= other.max and self.opt == other.opt


def import_tensorrt() -> Any:
    """Import ``tensorrt`` (10 or newer); BackendUnavailableError in one line otherwise."""
    try:
        import tensorrt
    except ImportError:
        raise BackendUnavailableError(
            "TensorRT is not installed here: build and run engines on the target GPU, with "
            "TensorRT 10 (JetPack 6 on Jetson) or TensorRT 11 (pip install tensorrt on a "
            "discrete GPU), or use the onnxruntime backend"
        ) from None
    version = str(getattr(tensorrt, "__version__", "0"))
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    if major < MIN_TENSORRT_MAJOR:
        raise BackendUnavailableError(
            f"TensorRT {version} is too old: mmsag_ros builds strongly typed engines, which "
            f"need TensorRT {MIN_TENSORRT_MAJOR} or newer (JetPack 6, or pip install tensorrt)"
        )
    return tensorrt


def _progress_monitor(trt: Any) -> Any:
    """An IProgressMonitor logging each builder phase with its duration (None if unsupported)."""
    if not hasattr(trt, "IProgressMonitor"):
        return None

    class _Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._lock = threading.Lock()  # TensorRT may call from several threads
            self._started: dict[str, float] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            with self._lock:
                self._started[phase_name] = time.perf_counter()
            level = logging.INFO if parent_phase is None else logging.DEBUG
            _log.log(level, "tensorrt: %s (%d steps)", phase_name, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # never cancel

        def phase_finish(self, phase_name: str) -> None:
            with self._lock:
                start = self._started.pop(phase_name, time.perf_counter())
            _log.debug("tensorrt: %s done in %.1f s", phase_name, time.perf_counter() - start)

    return _Monitor()


def _parse_onnx(trt: Any, network: Any, logger: Any, onnx_path: Path) -> None:
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BundleError(f"TensorRT cannot parse {onnx_path}: {errors or 'unknown error'}")


def strongly_typed_network(trt: Any, builder: Any) -> Any:
    """An empty strongly typed network: tensor types come from the ONNX, not from flags."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    # TensorRT 10 needs the flag; in TensorRT 11 every network is strongly typed.
    return builder.create_network(0 if flag is None else 1 << int(flag))


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    *,
    workspace_mb: int = 2048,
    timing_cache: Path | None = None,
    profile: BatchProfile | None = None,
    sidecar: dict[str, Any] | None = None,
) -> Path:
    """Build a strongly typed engine from an ONNX variant; write it and its sidecar atomically.

    Args:
        onnx_path: The variant (dynamic batch on its first input).
        engine_path: Where the engine goes; the sidecar is ``.json`` beside it.
        workspace_mb: Builder workspace limit in MiB.
        timing_cache: Timing cache file to read (if present) and update.
        profile: The dynamic-batch optimization profile (default 1/1/8).
        sidecar: Extra sidecar fields (key parts, source hash).

    Raises:
        BackendUnavailableError: TensorRT 10+ is missing.
        BundleError: The ONNX cannot be parsed or the build fails.
    """
    trt = import_tensorrt()
    profile = profile or BatchProfile()
    if workspace_mb < 1:
        raise ConfigError(f"workspace_mb must be positive, got {workspace_mb}")
    start = time.perf_counter()
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = strongly_typed_network(trt, builder)
    _parse_onnx(trt, network, logger, onnx_path)
    input_name, dims = network.get_input(0).name, tuple(network.get_input(0).shape)[1:]
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    monitor = _progress_monitor(trt)
    if monitor is not None:
        config.progress_monitor = monitor
    shapes = builder.create_optimization_profile()
    shapes.set_shape(input_name, (profile.min, *dims), (profile.opt, *dims), (profile.max, *dims))
    config.add_optimization_profile(shapes)
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(cache_bytes), False)
    _log.info("building TensorRT engine %s (this takes minutes, once per GPU)", engine_path.name)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BundleError(f"TensorRT failed to build an engine from {onnx_path}; see its log")
    data = bytes(serialized)
    if timing_cache is not None:
        write_atomic(timing_cache, bytes(config.get_timing_cache().serialize()))
    build_s = time.perf_counter() - start
    record = {
        **(sidecar or {}),
        "engine_file": engine_path.name,
        "engine_sha256": hashlib.sha256(data).hexdigest(),
        "tensorrt": trt.__version__,
        "strongly_typed": True,
        "input": input_name,
        "batch": {"min": profile.min, "opt": profile.opt, "max": profile.max},
        "workspace_mb": workspace_mb,
        "build_s": round(build_s, 2),
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    # The sidecar first: an engine file never exists without the hash that vouches for it.
    write_atomic(engine_path.with_suffix(".json"), json.dumps(record, indent=2).encode())
    write_atomic(engine_path, data)
    size_mib = engine_path.stat().st_size / 2**20
    _log.info("built %s in %.1f s (%.1f MiB)", engine_path.name, build_s, size_mib)
    return engine_path
