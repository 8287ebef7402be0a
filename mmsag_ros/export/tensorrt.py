"""TensorRT engines: build from the bundle's ONNX on the target GPU, cache under ``engines/``.

Written against the TensorRT 10 Python API, imported lazily: without it every entry point raises
a one-line BackendUnavailableError. TensorRT could not be installed on the development machines,
so the build itself is untested there; keys, paths and the cache decision are tested.

Engines depend on the GPU model, its compute capability and the TensorRT version, so they are
built on the target on first use and cached as ``engines/<key>.engine``, key
``<gpu-slug>_sm<major><minor>_trt<version>_<precision>``, with a JSON sidecar (key fields,
source ONNX hash, batch profile, build time, engine hash). They are rebuilt only when the key or
the source model changes, or on request; a broken cache entry (missing engine or sidecar, hash
mismatch) is an error, never a silent rebuild. Files are written atomically under unique
temporary names, and the check-then-build of one key holds a lock file (``<key>.lock``), so
two nodes starting at once build the engine once and never mix their files. INT8 uses an
entropy calibrator (``IInt8EntropyCalibrator2``, deprecated but present in TensorRT 10) whose
device buffer is a torch CUDA tensor (pycuda/cuda-python may be absent); its table is saved
beside the engines, so later int8 builds need no images.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmsag_ros.errors import BackendUnavailableError, BundleError, ConfigError
from mmsag_ros.export.atomic import exclusive_lock, write_atomic
from mmsag_ros.export.manifest import sha256_file

if TYPE_CHECKING:
    from mmsag_ros.export.manifest import Bundle

__all__ = [
    "PRECISIONS",
    "BatchProfile",
    "build_engine",
    "cached_engine",
    "current_device",
    "engine_key",
    "engine_path",
    "ensure_engine",
    "import_tensorrt",
    "read_sidecar",
]

_log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "int8")
_CALIBRATION_BATCH = 8


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
    """Import ``tensorrt``; BackendUnavailableError (one line) when it is not installed."""
    try:
        import tensorrt
    except ImportError:
        raise BackendUnavailableError(
            "TensorRT is not installed here: build engines on the target GPU (Jetson or "
            "workstation with TensorRT 10): run `mmsag export ... --engine` there, or let the "
            "runtime build the engine on first use"
        ) from None
    return tensorrt


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "gpu"


def engine_key(
    gpu_name: str, compute_capability: tuple[int, int], trt_version: str, precision: str
) -> str:
    """``<gpu-slug>_sm<major><minor>_trt<version>_<precision>``, the engine cache key."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    major, minor = (int(v) for v in compute_capability)
    if major < 1 or minor < 0:
        raise ConfigError(f"invalid compute capability {compute_capability}")
    version = re.sub(r"[^0-9A-Za-z.]+", "-", str(trt_version)).strip("-")
    if not version:
        raise ConfigError("trt_version is empty")
    return f"{_slug(gpu_name)}_sm{major}{minor}_trt{version}_{precision}"


def engine_path(
    bundle: Bundle,
    *,
    gpu_name: str,
    compute_capability: tuple[int, int],
    trt_version: str,
    precision: str,
) -> Path:
    """Where the engine for this GPU, TensorRT version and precision lives in ``bundle``."""
    key = engine_key(gpu_name, compute_capability, trt_version, precision)
    return bundle.engines_dir / f"{key}.engine"


def current_device() -> tuple[str, tuple[int, int]]:
    """Name and compute capability of the current CUDA GPU (from torch.cuda)."""
    try:
        import torch
    except ImportError:
        raise BackendUnavailableError("TensorRT engines need torch with CUDA here") from None
    if not torch.cuda.is_available():
        raise BackendUnavailableError("no CUDA GPU is visible: TensorRT engines need one")
    index = torch.cuda.current_device()
    return torch.cuda.get_device_name(index), tuple(torch.cuda.get_device_capability(index))


def read_sidecar(engine: Path) -> dict[str, Any] | None:
    """The JSON sidecar of ``engine`` (None if absent); BundleError if unreadable."""
    path = engine.with_suffix(".json")
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"engine sidecar {path} is not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise BundleError(f"engine sidecar {path} must hold a JSON object")
    return data


def cached_engine(engine: Path, *, onnx_sha256: str, profile: BatchProfile) -> Path | None:
    """Decide whether the engine cached at ``engine`` can be reused.

    Returns:
        ``engine`` when it exists, is intact and was built from this ONNX with a batch profile
        covering ``profile``; None when nothing is cached or the entry is stale (another
        model, a narrower batch range): then it must be built.

    Raises:
        BundleError: A broken entry: an engine without sidecar, a sidecar without engine, or
            an engine whose SHA-256 differs from its sidecar's (truncated or replaced).
    """
    engine = Path(engine)
    sidecar = read_sidecar(engine)
    fix = "rebuild it (rebuild=True, or `mmsag export ... --engine --overwrite`)"
    if sidecar is None:
        if engine.exists():
            raise BundleError(
                f"engine {engine} has no sidecar {engine.with_suffix('.json')}; {fix}"
            )
        return None
    if not engine.is_file():
        raise BundleError(f"engine file {engine} named by its sidecar is missing; {fix}")
    expected = sidecar.get("engine_sha256")
    if expected != sha256_file(engine):
        raise BundleError(f"engine {engine} does not match its sidecar's SHA-256; {fix}")
    if sidecar.get("onnx_sha256") != onnx_sha256:
        _log.warning("engine %s was built from another model.onnx: rebuilding it", engine.name)
        return None
    try:
        built = BatchProfile(**sidecar["batch"])
    except (KeyError, TypeError, ConfigError) as err:
        raise BundleError(f"engine sidecar of {engine} has no valid batch profile: {fix}") from err
    if not built.covers(profile):
        _log.warning(
            "engine %s has batch profile %s, %s is needed: rebuilding", engine.name, built, profile
        )
        return None
    return engine


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


def _calibrator(trt: Any, images: np.ndarray | None, cache: Path | None, batch: int) -> Any:
    import torch

    class _EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        """Feeds preprocessed images through one torch CUDA buffer."""

        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._next = 0
            shape = (batch, *images.shape[1:]) if images is not None else (0,)
            self._device = torch.empty(shape, dtype=torch.float32, device="cuda")

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            if images is None or self._next + batch > len(images):
                return None
            chunk = np.ascontiguousarray(images[self._next : self._next + batch])
            self._next += batch
            self._device.copy_(torch.from_numpy(chunk))
            torch.cuda.synchronize()  # TensorRT reads the buffer on its own stream
            return [int(self._device.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache is not None and cache.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            if cache is not None:
                write_atomic(cache, bytes(data))

    return _EntropyCalibrator()


def _parse_onnx(trt: Any, network: Any, logger: Any, onnx_path: Path) -> None:
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BundleError(f"TensorRT cannot parse {onnx_path}: {errors or 'unknown error'}")


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    *,
    fp16: bool = False,
    int8: bool = False,
    calibration_images: np.ndarray | None = None,
    calibration_cache: Path | None = None,
    workspace_mb: int = 2048,
    timing_cache: Path | None = None,
    min_batch: int = 1,
    opt_batch: int = 1,
    max_batch: int = 8,
    sidecar: dict[str, Any] | None = None,
) -> Path:
    """Build a TensorRT engine from an ONNX file and write it atomically with a JSON sidecar.

    Args:
        onnx_path: The model (dynamic batch on its first input).
        engine_path: Where the engine goes; the sidecar is ``.json`` beside it.
        fp16: Allow fp16 kernels.
        int8: Allow int8 kernels (and fp16 as their fallback), calibrated by entropy on
            ``calibration_images`` (N x 3 x S x S float32, preprocessed) or on a previous
            ``calibration_cache`` (read if present, written after calibrating).
        calibration_images: See ``int8``.
        calibration_cache: See ``int8``.
        workspace_mb: Builder workspace limit in MiB.
        timing_cache: Timing cache file to read (if present) and update.
        min_batch: Smallest batch of the optimization profile.
        opt_batch: Batch the kernels are tuned for.
        max_batch: Largest batch of the profile.
        sidecar: Extra sidecar fields (key parts, source hash).

    Raises:
        BackendUnavailableError: TensorRT (or a CUDA GPU for int8 calibration) is missing.
        BundleError: The ONNX cannot be parsed or the build fails.
    """
    trt = import_tensorrt()
    BatchProfile(min_batch, opt_batch, max_batch)  # validates the batch sizes
    if workspace_mb < 1:
        raise ConfigError(f"workspace_mb must be positive, got {workspace_mb}")
    have_cache = calibration_cache is not None and calibration_cache.is_file()
    if int8 and calibration_images is None and not have_cache:
        raise ConfigError(
            "an int8 engine needs calibration images the first time: pass a folder of "
            "representative frames (`mmsag export ... --engine --int8 --calib-data DIR`)"
        )
    start = time.perf_counter()
    engine_path.parent.mkdir(parents=True, exist_ok=True)  # also holds the calibration table
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    _parse_onnx(trt, network, logger, onnx_path)
    input_name, dims = network.get_input(0).name, tuple(network.get_input(0).shape)[1:]
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    monitor = _progress_monitor(trt)
    if monitor is not None:
        config.progress_monitor = monitor
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, (min_batch, *dims), (opt_batch, *dims), (max_batch, *dims))
    config.add_optimization_profile(profile)
    if fp16 or int8:
        config.set_flag(trt.BuilderFlag.FP16)
    if int8:
        config.set_flag(trt.BuilderFlag.INT8)
        count = len(calibration_images) if calibration_images is not None else _CALIBRATION_BATCH
        batch = max(1, min(_CALIBRATION_BATCH, count))
        calibration_profile = builder.create_optimization_profile()
        fixed = (batch, *dims)
        calibration_profile.set_shape(input_name, fixed, fixed, fixed)
        config.set_calibration_profile(calibration_profile)
        # Referenced by `calibrator` until the build returns, as TensorRT requires.
        calibrator = _calibrator(trt, calibration_images, calibration_cache, batch)
        config.int8_calibrator = calibrator
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(cache_bytes), False)
    _log.info("building TensorRT engine %s (this takes minutes, once per GPU)", engine_path.name)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BundleError(f"TensorRT failed to build an engine from {onnx_path}; see its log")
    write_atomic(engine_path, bytes(serialized))
    if timing_cache is not None:
        write_atomic(timing_cache, bytes(config.get_timing_cache().serialize()))
    build_s = time.perf_counter() - start
    record = {
        **(sidecar or {}),
        "engine_file": engine_path.name,
        "engine_sha256": sha256_file(engine_path),
        "tensorrt": trt.__version__,
        "precision": "int8" if int8 else "fp16" if fp16 else "fp32",
        "input": input_name,
        "batch": {"min": min_batch, "opt": opt_batch, "max": max_batch},
        "workspace_mb": workspace_mb,
        "build_s": round(build_s, 2),
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    write_atomic(engine_path.with_suffix(".json"), json.dumps(record, indent=2).encode())
    size_mib = engine_path.stat().st_size / 2**20
    _log.info("built %s in %.1f s (%.1f MiB)", engine_path.name, build_s, size_mib)
    return engine_path


def ensure_engine(
    bundle: Bundle,
    *,
    precision: str = "fp16",
    rebuild: bool = False,
    calibration_images: np.ndarray | None = None,
    min_batch: int = 1,
    opt_batch: int = 1,
    max_batch: int = 8,
    workspace_mb: int = 2048,
) -> Path:
    """The engine for this GPU and TensorRT version: cached if valid, else built now.

    Args:
        bundle: A loaded bundle.
        precision: ``fp32``, ``fp16`` or ``int8``.
        rebuild: Build even when a valid cached engine exists.
        calibration_images: For a first int8 build (later builds reuse the saved table).
        min_batch: Smallest batch the engine must serve (``opt_batch``, ``max_batch`` alike).
        opt_batch: Batch to tune for.
        max_batch: Largest batch.
        workspace_mb: Builder workspace limit in MiB.

    Raises:
        BackendUnavailableError: No TensorRT or no CUDA GPU.
        BundleError: A broken cache entry (see :func:`cached_engine`) or a failed build.
    """
    trt = import_tensorrt()
    gpu_name, capability = current_device()
    key = engine_key(gpu_name, capability, trt.__version__, precision)
    path = bundle.engines_dir / f"{key}.engine"
    profile = BatchProfile(min_batch, opt_batch, max_batch)
    onnx_sha = bundle.manifest["onnx"]["sha256"]
    with contextlib.suppress(OSError):  # a read-only bundle may still hold a valid engine
        bundle.engines_dir.mkdir(parents=True, exist_ok=True)
    # Two nodes starting together would otherwise both spend minutes building, and could pair
    # one's engine with the other's sidecar. Holding the lock from the cache check to the last
    # write makes the second one wait and then reuse the first one's engine.
    with exclusive_lock(
        path.with_suffix(".lock"),
        on_wait=lambda: _log.info("waiting for another process building %s", path.name),
        optional=True,
    ):
        if not rebuild:
            cached = cached_engine(path, onnx_sha256=onnx_sha, profile=profile)
            if cached is not None:
                _log.info("using cached TensorRT engine %s", cached.name)
                return cached
        base = key.rsplit("_", 1)[0]  # GPU + TensorRT version: shared by all precisions
        return build_engine(
            bundle.onnx_path,
            path,
            fp16=precision == "fp16",
            int8=precision == "int8",
            calibration_images=calibration_images,
            calibration_cache=bundle.engines_dir / f"{base}_calibration.cache",
            workspace_mb=workspace_mb,
            timing_cache=bundle.engines_dir / f"{base}_timing.cache",
            min_batch=min_batch,
            opt_batch=opt_batch,
            max_batch=max_batch,
            sidecar={
                "key": key,
                "gpu_name": gpu_name,
                "compute_capability": list(capability),
                "model_id": bundle.model_id,
                "onnx_sha256": onnx_sha,
            },
        )
