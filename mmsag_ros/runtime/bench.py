"""Latency and throughput of a bundle per backend and batch size, and preprocessing cost.

The library side of ``mmsag bench``: measurements are plain data (JSON-ready) and the table is
formatted separately, so the command, the benchmark scripts and the tests share one code path.
Timings come from ``time.perf_counter`` around whole calls, after a warm-up.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import platform
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmsag_ros.bundle.preprocess import PreprocessSpec, preprocess
from mmsag_ros.errors import BackendUnavailableError, ConfigError
from mmsag_ros.runtime.backends import InferenceBackend, create_backend, parse_device

if TYPE_CHECKING:
    from mmsag_ros.bundle.schema import Bundle

__all__ = [
    "DEFAULT_BACKENDS",
    "FRAME_SIZES",
    "BenchReport",
    "bench_backend",
    "bench_preprocess",
    "format_bench_report",
    "latency_stats",
    "machine_info",
    "parse_backend_spec",
    "run_bench",
]

_log = logging.getLogger(__name__)

#: Camera frame sizes (width, height) whose preprocessing is timed.
FRAME_SIZES = ((640, 480), (1280, 720), (1920, 1080))
#: Backends tried by default; those this machine cannot run are listed as skipped.
DEFAULT_BACKENDS = ("onnxruntime", "torch", "tensorrt", "onnxruntime:cuda", "torch:cuda")


def parse_backend_spec(spec: str) -> tuple[str, str]:
    """``kind[:device]`` -> (kind, device); the device defaults to cuda for tensorrt, else cpu.

    Examples: ``torch`` -> (torch, cpu); ``torch:cuda:1`` -> (torch, cuda:1).

    Raises:
        ConfigError: An empty kind or a malformed device.
    """
    kind, _, device = str(spec).strip().partition(":")
    if not kind:
        raise ConfigError(f"bad backend {spec!r}; write KIND or KIND:DEVICE, e.g. torch:cuda")
    if not device:
        device = "cuda" if kind == "tensorrt" else "cpu"
    device_type, index = parse_device(device)
    return kind, device_type if device_type == "cpu" else f"cuda:{index}"


def latency_stats(durations_s: Sequence[float]) -> dict[str, float]:
    """Percentiles p50/p95/p99 and the mean of call durations, in milliseconds."""
    if not durations_s:
        raise ValueError("no durations to summarise")
    ms = 1000.0 * np.asarray(durations_s, dtype=np.float64)
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "mean_ms": float(ms.mean()),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu_name() -> str | None:
    # Asking torch is the only portable way without extra packages; skip it where torch is
    # absent rather than import-fail.
    if "torch" not in sys.modules and importlib.util.find_spec("torch") is None:
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_name(0)


def machine_info() -> dict[str, Any]:
    """CPU model, logical CPU count, usable CPUs, torch threads and GPU (or None)."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gpu": _gpu_name(),
    }
    if "torch" in sys.modules:
        info["torch_threads"] = sys.modules["torch"].get_num_threads()
    return info


def bench_backend(
    backend: InferenceBackend,
    *,
    batch_sizes: Iterable[int],
    iterations: int,
    warmup: int = 2,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Time ``backend.infer`` per batch size on a fixed random batch (content-independent).

    Returns:
        One row per batch size: latency percentiles of a call, ms per image and images/s.
    """
    if iterations < 1 or warmup < 0:
        raise ConfigError(f"iterations must be >= 1 and warmup >= 0, got {iterations}, {warmup}")
    backend.load()
    size = backend.bundle.spec.input_size
    rng = np.random.default_rng(seed)
    rows = []
    for batch_size in batch_sizes:
        if batch_size < 1:
            raise ConfigError(f"batch sizes must be positive, got {batch_size}")
        batch = rng.standard_normal((batch_size, 3, size, size), dtype=np.float32)
        for _ in range(warmup):
            backend.infer(batch)
        durations = []
        for _ in range(iterations):
            started = time.perf_counter()
            backend.infer(batch)
            durations.append(time.perf_counter() - started)
        stats = latency_stats(durations)
        rows.append(
            {
                "backend": backend.kind,
                "device": backend.device,
                "precision": backend.precision,
                "providers": list(backend.providers),
                "batch_size": batch_size,
                "iterations": iterations,
                **stats,
                "ms_per_image": stats["p50_ms"] / batch_size,
                "images_per_s": 1000.0 * batch_size / stats["p50_ms"],
            }
        )
    return rows


def bench_preprocess(
    spec: PreprocessSpec,
    *,
    frame_sizes: Iterable[tuple[int, int]] = FRAME_SIZES,
    color_orders: Iterable[str] = ("rgb", "bgr"),
    iterations: int = 20,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Time :func:`preprocess` of camera-sized uint8 frames into a preallocated slot."""
    if iterations < 1:
        raise ConfigError(f"iterations must be at least 1, got {iterations}")
    rng = np.random.default_rng(seed)
    out = np.empty((3, spec.input_size, spec.input_size), np.float32)
    rows = []
    for width, height in frame_sizes:
        frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        for order in color_orders:
            preprocess(frame, spec, color_order=order, out=out)  # first call allocates
            durations = []
            for _ in range(iterations):
                started = time.perf_counter()
                preprocess(frame, spec, color_order=order, out=out)
                durations.append(time.perf_counter() - started)
            rows.append(
                {
                    "width": width,
                    "height": height,
                    "color_order": order,
                    "input_size": spec.input_size,
                    "resize": spec.resize,
                    "iterations": iterations,
                    **latency_stats(durations),
                }
            )
    return rows


@dataclass(frozen=True)
class BenchReport:
    """Everything ``mmsag bench`` measured, JSON-ready through :meth:`to_dict`."""

    model_id: str
    machine: dict[str, Any]
    latency: list[dict[str, Any]]
    preprocess: list[dict[str, Any]]
    skipped: dict[str, str] = field(default_factory=dict)
    backends: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``json.dump``."""
        return asdict(self)


def run_bench(
    bundle: Bundle,
    *,
    backends: Sequence[str] = DEFAULT_BACKENDS,
    precisions: Sequence[str] = ("fp32",),
    batch_sizes: Sequence[int] = (1, 4, 8),
    iterations: int = 20,
    warmup: int = 2,
    preprocess_iterations: int | None = None,
    backend_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> BenchReport:
    """Benchmark every requested backend and variant that loads here; list the others as skipped.

    Args:
        bundle: The loaded bundle.
        backends: ``kind[:device]`` specs, e.g. ``onnxruntime``, ``torch:cuda``.
        precisions: Bundle variants to time on each backend (BundleError if one is missing).
        batch_sizes: Batch sizes to time.
        iterations: Timed calls per backend and batch size.
        warmup: Untimed calls before each timing.
        preprocess_iterations: Timed calls per frame size and colour order (default:
            ``iterations``).
        backend_options: Per-kind options for :func:`create_backend`.
    """
    options = backend_options or {}
    latency: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    infos: dict[str, dict[str, Any]] = {}
    for precision in precisions:
        bundle.variant(precision)
    for spec in dict.fromkeys(backends):  # keep order, drop repeats
        kind, device = parse_backend_spec(spec)
        for precision in dict.fromkeys(precisions):
            backend = create_backend(
                kind, bundle, device=device, precision=precision, **options.get(kind, {})
            )
            name = f"{backend.name} {precision}"
            try:
                with backend:
                    latency += bench_backend(
                        backend, batch_sizes=batch_sizes, iterations=iterations, warmup=warmup
                    )
                    infos[name] = backend.info()
            except BackendUnavailableError as err:
                skipped[name] = str(err)
                _log.info("skipping %s: %s", name, err)
    rows = bench_preprocess(bundle.spec, iterations=preprocess_iterations or iterations)
    return BenchReport(
        model_id=bundle.model_id,
        machine=machine_info(),
        latency=latency,
        preprocess=rows,
        skipped=skipped,
        backends=infos,
    )


def format_bench_report(report: BenchReport) -> str:
    """The report as a fixed-width text table."""
    machine = report.machine
    lines = [
        f"model {report.model_id}",
        f"machine: {machine['cpu']}, {machine['usable_cpus']} usable of "
        f"{machine['logical_cpus']} CPUs, GPU: {machine['gpu'] or 'none'}",
        "",
        f"{'backend':<25}{'batch':>6}{'p50 ms':>10}{'p95 ms':>10}{'ms/img':>9}{'img/s':>9}",
    ]
    for row in report.latency:
        name = f"{row['backend']}@{row['device']} {row['precision']}"
        lines.append(
            f"{name:<25}{row['batch_size']:>6}{row['p50_ms']:>10.2f}{row['p95_ms']:>10.2f}"
            f"{row['ms_per_image']:>9.2f}{row['images_per_s']:>9.1f}"
        )
    for name, reason in report.skipped.items():
        lines.append(f"{name:<25} skipped: {reason}")
    for name, info in report.backends.items():
        threads = info.get("intra_op_threads", info.get("num_threads"))
        settings = ", ".join(info["providers"])
        if "intra_op_threads" in info or "num_threads" in info:
            settings += f"; threads {threads or 'default'}"
        lines.append(f"  {name}: {settings}")
    lines += ["", f"{'preprocess':<20}{'order':>6}{'p50 ms':>10}{'p95 ms':>10}"]
    for row in report.preprocess:
        frame = f"{row['width']}x{row['height']}->{row['input_size']}"
        lines.append(
            f"{frame:<20}{row['color_order']:>6}{row['p50_ms']:>10.3f}{row['p95_ms']:>10.3f}"
        )
    return "\n".join(lines)
