"""Cross-check every available backend and variant of a bundle against ONNX Runtime on the CPU.

The library side of ``mmsag verify``. The same preprocessed frames (a folder of images, or
synthetic conveyor frames) go through each precision variant the bundle holds (fp32, fp16,
int8) and each backend, one at a time. Each variant's reference is ONNX Runtime on the CPU
running that variant, opened as the node opens it; its row also shows how far it lies from
fp32 (informational: the variant's accuracy bar was applied at export, on validation data).
Per backend the report gives the largest and mean absolute score difference to the reference
of its variant, how often the decisions agree, and call latency percentiles. A backend whose
scores differ by more than the variant's tolerance fails the check. The torch backend reads
``model.pt``, not ``model.onnx``, so it also catches an ONNX file that belongs to another model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from mmsag_ros.bundle.preprocess import PreprocessSpec, preprocess
from mmsag_ros.errors import BackendUnavailableError, ConfigError, DatasetError
from mmsag_ros.runtime.backends import InferenceBackend, create_backend
from mmsag_ros.runtime.bench import latency_stats, parse_backend_spec
from mmsag_ros.runtime.postprocess import decide, sigmoid

if TYPE_CHECKING:
    from mmsag_ros.bundle.schema import Bundle

__all__ = [
    "DEFAULT_TOLERANCES",
    "DEFAULT_VERIFY_BACKENDS",
    "IMAGE_SUFFIXES",
    "BackendCheck",
    "VerifyReport",
    "format_verify_report",
    "load_frames",
    "synthetic_frames",
    "verify_bundle",
]

_log = logging.getLogger(__name__)

#: Compared with the reference unless the caller names others; unavailable ones are skipped.
DEFAULT_VERIFY_BACKENDS = ("torch", "tensorrt", "onnxruntime:cuda", "torch:cuda")
#: Largest accepted score difference to the same variant on ONNX Runtime's CPU kernels: fp32
#: kernels agree closely; fp16 and int8 kernels of other hardware round differently.
DEFAULT_TOLERANCES: Mapping[str, float] = {"fp32": 1e-3, "fp16": 1e-2, "int8": 5e-2}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
_REFERENCE = ("onnxruntime", "cpu")


@dataclass(frozen=True)
class BackendCheck:
    """One backend's result; differences are None for the reference and skipped backends.

    Attributes:
        name: ``kind@device``.
        precision: The variant it ran.
        status: ``reference``, ``ok``, ``FAIL`` or ``skipped``. A reduced variant's reference
            row holds its differences to the fp32 reference.
        reason: Why it was skipped or failed.
        providers: What actually ran the graph.
        max_abs_diff: Largest |score - reference score| over all frames and classes.
        mean_abs_diff: Mean of the same.
        decision_agreement: Fraction of (frame, class) decisions equal to the reference's.
        max_attention_diff: Largest attention-map difference (informational), or None.
        latency: p50/p95/p99/mean of one batch-1 call, ms.
    """

    name: str
    precision: str
    status: str
    reason: str = ""
    providers: tuple[str, ...] = ()
    max_abs_diff: float | None = None
    mean_abs_diff: float | None = None
    decision_agreement: float | None = None
    max_attention_diff: float | None = None
    latency: dict[str, float] | None = None


@dataclass(frozen=True)
class VerifyReport:
    """All backend checks of one bundle on one set of frames."""

    model_id: str
    inputs: str
    num_frames: int
    tolerances: Mapping[str, float]
    checks: tuple[BackendCheck, ...]

    @property
    def passed(self) -> bool:
        """No available backend disagreed with the reference beyond the tolerance."""
        return all(check.status != "FAIL" for check in self.checks)

    @property
    def compared(self) -> int:
        """How many backends besides the reference were actually compared."""
        return sum(check.status in ("ok", "FAIL") for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {**asdict(self), "passed": self.passed}


def load_frames(images_dir: Path, *, limit: int | None = None) -> list[np.ndarray]:
    """Read up to ``limit`` images (sorted by name) from a folder as RGB uint8 arrays.

    Raises:
        DatasetError: The folder is missing, holds no images, or an image cannot be decoded.
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise DatasetError(f"image folder {images_dir} does not exist")
    paths = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise DatasetError(
            f"no images ({', '.join(IMAGE_SUFFIXES)}) in {images_dir}; point --images at a "
            "folder of camera frames, or leave it out to use synthetic frames"
        )
    frames = []
    for path in paths[:limit]:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f"cannot decode image {path}")
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return frames


def synthetic_frames(
    count: int, *, seed: int = 0, image_size: tuple[int, int] = (320, 240)
) -> list[np.ndarray]:
    """Render ``count`` synthetic conveyor frames (RGB uint8): realistic content, no files."""
    from mmsag_ros.bundle.labels import MLKW_LABELS
    from mmsag_ros.data.synth_scene import render_scene

    rng = np.random.default_rng(seed)
    # The scene's classes need not match the bundle's: the frames only have to look real.
    return [render_scene(rng, image_size=image_size, labels=MLKW_LABELS)[0] for _ in range(count)]


def _run(backend: InferenceBackend, batch: np.ndarray) -> tuple[dict[str, np.ndarray], list]:
    outputs: dict[str, list[np.ndarray]] = {}
    durations = []
    backend.warmup(1, iterations=1)
    for index in range(batch.shape[0]):
        started = time.perf_counter()
        result = backend.infer(batch[index : index + 1])
        durations.append(time.perf_counter() - started)
        for name, value in result.items():
            outputs.setdefault(name, []).append(value)
    return {name: np.concatenate(values) for name, values in outputs.items()}, durations


def _differences(
    outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray], thresholds: np.ndarray
) -> dict[str, Any]:
    scores, expected = sigmoid(outputs["logits"]), sigmoid(reference["logits"])
    diff = np.abs(scores - expected)
    attention_diff = None
    if "attention" in outputs and "attention" in reference:
        attention_diff = float(np.abs(outputs["attention"] - reference["attention"]).max())
    return {
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "decision_agreement": float(
            (decide(scores, thresholds) == decide(expected, thresholds)).mean()
        ),
        "max_attention_diff": attention_diff,
    }


def _compare(
    backend: InferenceBackend,
    batch: np.ndarray,
    reference: dict[str, np.ndarray],
    *,
    thresholds: np.ndarray,
    tolerance: float,
) -> BackendCheck:
    with backend:
        outputs, durations = _run(backend, batch)
        providers = backend.providers
    numbers = _differences(outputs, reference, thresholds)
    max_diff = numbers["max_abs_diff"]
    failed = not max_diff <= tolerance  # NaN scores fail too
    return BackendCheck(
        name=backend.name,
        precision=backend.precision,
        status="FAIL" if failed else "ok",
        reason=f"scores differ by up to {max_diff:.3g} > {tolerance:g}" if failed else "",
        providers=tuple(providers),
        latency=latency_stats(durations),
        **numbers,
    )


def verify_bundle(
    bundle: Bundle,
    *,
    images_dir: Path | None = None,
    backends: Sequence[str] = DEFAULT_VERIFY_BACKENDS,
    precisions: Sequence[str] | None = None,
    tolerances: Mapping[str, float] | None = None,
    num_frames: int = 16,
    seed: int = 0,
    backend_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> VerifyReport:
    """Compare each requested backend on each variant with ONNX Runtime on the CPU.

    Args:
        bundle: The loaded bundle.
        images_dir: Folder of frames; None renders ``num_frames`` synthetic conveyor frames.
        backends: ``kind[:device]`` specs to compare (the reference is always run).
        precisions: Variants to check (default: every variant the bundle holds).
        tolerances: Largest absolute score difference accepted, per precision (default
            :data:`DEFAULT_TOLERANCES`; given values override those).
        num_frames: Synthetic frames to render, or at most this many images from the folder.
        seed: Seed of the synthetic frames.
        backend_options: Per-kind options for :func:`create_backend`.

    Raises:
        BackendUnavailableError: ONNX Runtime (the reference) cannot run here.
        BundleError: A requested precision the bundle does not hold.
        ConfigError: Bad tolerance, frame count or backend spec.
        DatasetError: Unreadable image folder.
    """
    limits = {**DEFAULT_TOLERANCES, **(tolerances or {})}
    if not all(value >= 0 for value in limits.values()):
        raise ConfigError(f"tolerances must be non-negative numbers, got {limits}")
    if num_frames < 1:
        raise ConfigError(f"num_frames must be at least 1, got {num_frames}")
    variants = list(bundle.variants) if precisions is None else list(precisions)
    for precision in variants:
        bundle.variant(precision)
    options = backend_options or {}
    batch, inputs = _input_batch(bundle.spec, images_dir, num_frames, seed)
    specs = [parse_backend_spec(s) for s in backends]
    checks = []
    fp32_outputs = None
    kind, device = _REFERENCE
    for precision in variants:
        reference = create_backend(
            kind, bundle, device=device, precision=precision, **options.get(kind, {})
        )
        with reference:
            ref_outputs, durations = _run(reference, batch)
            ref_providers = reference.providers
        if precision == "fp32":
            fp32_outputs = ref_outputs
        elif fp32_outputs is None:
            with create_backend(kind, bundle, device=device, **options.get(kind, {})) as fp32:
                fp32_outputs = _run(fp32, batch)[0]
        versus_fp32 = (
            {}
            if precision == "fp32"
            else _differences(ref_outputs, fp32_outputs, bundle.thresholds)
        )
        checks.append(
            BackendCheck(
                name=reference.name,
                precision=precision,
                status="reference",
                reason="" if precision == "fp32" else "differences to the fp32 reference",
                providers=ref_providers,
                latency=latency_stats(durations),
                **versus_fp32,
            )
        )
        for kind_, device_ in dict.fromkeys(s for s in specs if s != _REFERENCE):
            backend = create_backend(
                kind_, bundle, device=device_, precision=precision, **options.get(kind_, {})
            )
            checks.append(_check(backend, precision, batch, ref_outputs, bundle, limits))
    return VerifyReport(
        model_id=bundle.model_id,
        inputs=inputs,
        num_frames=len(batch),
        tolerances={p: limits[p] for p in variants},
        checks=tuple(checks),
    )


def _input_batch(
    spec: PreprocessSpec, images_dir: Path | None, num_frames: int, seed: int
) -> tuple[np.ndarray, str]:
    """The preprocessed frames every backend sees, and a phrase saying what they are."""
    if images_dir is not None:
        frames = load_frames(images_dir, limit=num_frames)
        inputs = f"{len(frames)} images from {images_dir}"
    else:
        frames = synthetic_frames(num_frames, seed=seed)
        inputs = f"{len(frames)} synthetic conveyor frames (seed {seed})"
    size = spec.input_size
    batch = np.empty((len(frames), 3, size, size), np.float32)
    for index, frame in enumerate(frames):
        preprocess(frame, spec, out=batch[index])
    return batch, inputs


def _check(
    backend: InferenceBackend,
    precision: str,
    batch: np.ndarray,
    ref_outputs: Any,
    bundle: Bundle,
    limits: Mapping[str, float],
) -> BackendCheck:
    """One backend on one variant against the reference; skipped (with why) where it cannot run."""
    try:
        check = _compare(
            backend, batch, ref_outputs, thresholds=bundle.thresholds, tolerance=limits[precision]
        )
    except BackendUnavailableError as err:
        check = BackendCheck(
            name=backend.name, precision=precision, status="skipped", reason=str(err)
        )
    _log.debug("verify %s %s: %s", check.name, precision, check.status)
    return check


def format_verify_report(report: VerifyReport) -> str:
    """The report as a text table with a final verdict line."""
    tolerances = ", ".join(f"{p} {t:g}" for p, t in report.tolerances.items())
    lines = [
        f"model {report.model_id}: {report.inputs}; score tolerance {tolerances}",
        "",
        f"{'backend':<22}{'variant':<9}{'status':<11}{'max|d|':>10}{'mean|d|':>10}{'agree':>8}"
        f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}",
    ]
    for check in report.checks:
        head = f"{check.name:<22}{check.precision:<9}"
        if check.status == "skipped":
            lines.append(f"{head}{'skipped':<11}{check.reason}")
            continue
        if check.max_abs_diff is None:
            numbers = f"{'-':>10}{'-':>10}{'-':>8}"
        else:
            numbers = (
                f"{check.max_abs_diff:>10.2e}{check.mean_abs_diff:>10.2e}"
                f"{100 * check.decision_agreement:>7.1f}%"
            )
        latency = check.latency or {}
        lines.append(
            f"{head}{check.status:<11}{numbers}"
            f"{latency.get('p50_ms', 0):>9.2f}{latency.get('p95_ms', 0):>9.2f}"
            f"{latency.get('p99_ms', 0):>9.2f}"
        )
        if check.reason and check.status in ("FAIL", "reference"):
            lines.append(f"{'':<31}{check.reason}")
    lines.append("")
    if not report.passed:
        lines.append("FAILED: a backend disagrees with the ONNX Runtime reference of its variant")
    elif report.compared == 0:
        lines.append(
            "passed, but no other backend ran here: only the variants' references were compared"
        )
    else:
        lines.append(f"passed: {report.compared} backend run(s) agree with their reference")
    return "\n".join(lines)
