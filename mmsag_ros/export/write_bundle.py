"""Checkpoint -> bundle: ONNX with parity check, precision variants, slim torch weights, manifest.

The bundle is assembled in a staging folder beside ``out_dir`` and moved into place only when
complete, so an interrupted export never leaves a half-written bundle behind. Parity is checked
on real frames: images from the calibration folder when one is given, else synthetic conveyor
scenes, both through the one :func:`~mmsag_ros.bundle.preprocess.preprocess` function.
"""

from __future__ import annotations

import functools
import logging
import math
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from mmsag_ros.atomic import unique_directory
from mmsag_ros.bundle.manifest import load_bundle, write_manifest
from mmsag_ros.bundle.preprocess import PreprocessSpec, preprocess
from mmsag_ros.bundle.schema import (
    MANIFEST_NAME,
    PRECISIONS,
    Bundle,
)
from mmsag_ros.data.dataset import AnnotatedSplit
from mmsag_ros.data.synth_scene import render_scene
from mmsag_ros.errors import ConfigError
from mmsag_ros.export.bundle_manifest import bundle_manifest, onnx_section
from mmsag_ros.export.measure_reference import measure_reference
from mmsag_ros.export.precision import (
    DEFAULT_BARS,
    DEFAULT_CALIBRATION_IMAGES,
    load_calibration_images,
)
from mmsag_ros.export.variant_score import (
    check_validation_split,
    onnx_scores,
)
from mmsag_ros.export.variants import VariantJudge, reduced_variant

__all__ = [
    "BUNDLE_ENTRIES",
    "ONNX_FILE",
    "TORCH_FILE",
    "VARIANT_FILES",
    "export_bundle",
    "parity_frames",
    "parse_precisions",
]

_log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
TORCH_FILE = "model.pt"
VARIANT_FILES = {"fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
BUNDLE_ENTRIES = (MANIFEST_NAME, ONNX_FILE, TORCH_FILE, *VARIANT_FILES.values(), "engines")
_TRAINING_ONLY = ("optimizer", "scheduler", "scaler", "format_version")
_SYNTH_FRAME_SIZE = (320, 240)


def parity_frames(
    spec: PreprocessSpec,
    *,
    count: int = 4,
    source: Path | AnnotatedSplit | None = None,
    split: str | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Realistic preprocessed frames (count x 3 x S x S) for export checks.

    Images from ``source`` (a folder or VOC dataset, as for calibration) when given, topped up
    with synthetic conveyor scenes if it holds fewer than ``count``.
    """
    if count < 2:
        raise ConfigError(f"parity needs at least 2 frames, got {count}")
    frames = []
    if source is not None:
        frames = list(load_calibration_images(source, spec, limit=count, split=split))
    for index in range(len(frames), count):
        image, _ = render_scene(np.random.default_rng([seed, index]), image_size=_SYNTH_FRAME_SIZE)
        frames.append(preprocess(image, spec))
    return np.stack(frames)


@contextmanager
def _step(name: str, timings: dict[str, float], level: int) -> Iterator[None]:
    _log.log(level, "export: %s ...", name)
    start = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - start, 3)
    _log.log(level, "export: %s done in %.1f s", name, timings[name])


def _staging_dir(out_dir: Path, overwrite: bool) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"{out_dir} is not empty; pick a new folder or pass --overwrite to replace the "
                "bundle in it"
            )
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in BUNDLE_ENTRIES)
        if foreign:
            raise ConfigError(
                f"refusing to overwrite {out_dir}: it holds files that are not part of a bundle "
                f"({', '.join(foreign[:5])}); pick an empty folder"
            )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # A unique name: with a fixed one, a second export into the same folder would delete the
    # first one's staging folder while it is being written. The export removes its staging
    # folder on any error; only a killed process leaves a hidden ``.NAME.*.partial`` behind.
    return unique_directory(out_dir.parent, prefix=f".{out_dir.name}.", suffix=".partial")


def _move_into_place(staging: Path, out_dir: Path) -> None:
    if not out_dir.exists():
        try:
            staging.replace(out_dir)
        except OSError as err:  # another export created it since _staging_dir checked
            raise ConfigError(
                f"{out_dir} was created by someone else during this export ({err.strerror}); "
                "export again, with --overwrite to replace it"
            ) from err
        return
    for name in BUNDLE_ENTRIES:
        old = out_dir / name
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()
    for entry in staging.iterdir():
        entry.replace(out_dir / entry.name)
    staging.rmdir()


def parse_precisions(text: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"fp32,int8"`` (or a sequence) -> the precisions in canonical order, fp32 always first.

    Raises:
        ConfigError: An unknown or empty name.
    """
    names = [n.strip().lower() for n in (text.split(",") if isinstance(text, str) else text)]
    unknown = [n for n in names if n not in PRECISIONS]
    if unknown or not names:
        raise ConfigError(
            f"unknown precision {', '.join(map(repr, unknown)) or 'list (empty)'}; use a "
            f"comma-separated list of {', '.join(PRECISIONS)}"
        )
    return tuple(p for p in PRECISIONS if p == "fp32" or p in names)


def _check_options(
    precisions: tuple[str, ...],
    *,
    calib_dir: Path | AnnotatedSplit | None,
    validation: AnnotatedSplit | None,
    bars: Mapping[str, float],
) -> None:
    unknown = sorted(set(bars) - set(DEFAULT_BARS))
    if unknown:
        raise ConfigError(
            f"accuracy bars for unknown precision(s) {', '.join(unknown)}; bars exist for "
            f"{', '.join(DEFAULT_BARS)}"
        )
    bad = {p: v for p, v in bars.items() if not (math.isfinite(v) and v >= 0)}
    if bad:
        raise ConfigError(f"accuracy bars must be >= 0 mAP points, got {bad}")
    reduced = [p for p in precisions if p != "fp32"]
    if reduced and validation is None:
        raise ConfigError(
            f"the {' and '.join(reduced)} variant(s) are scored against fp32 on a validation "
            "split before they are accepted: add --val-data DIR"
        )
    if reduced:
        check_validation_split(validation)
    if "int8" in precisions and calib_dir is None:
        raise ConfigError(
            "the int8 variant is calibrated on training images: add --calib-data DIR (a VOC "
            "dataset's train split or a folder of training images, never test data)"
        )


def _load_model(checkpoint_path: Path, attention: bool) -> tuple[Any, Any, bool]:
    """The checkpoint, its model, and whether to export attention maps (only if it has them)."""
    from mmsag_ros.model.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(checkpoint_path)
    model = checkpoint.build_model()
    if len(checkpoint.thresholds) != len(checkpoint.labels):
        raise ConfigError(
            f"checkpoint {checkpoint_path} has {len(checkpoint.thresholds)} thresholds for "
            f"{len(checkpoint.labels)} classes"
        )
    if attention and not model.config.semantic_attention:
        _log.info(
            "%s has no attention maps (semantic attention off): exporting logits only",
            checkpoint.model_name,
        )
        attention = False
    return checkpoint, model, attention


def export_bundle(
    checkpoint_path: Path,
    out_dir: Path,
    *,
    attention: bool = True,
    precisions: tuple[str, ...] | str = ("fp32",),
    calib_dir: Path | AnnotatedSplit | None = None,
    calib_split: str | None = None,
    calib_images: int = DEFAULT_CALIBRATION_IMAGES,
    calib_method: str = "minmax",
    int8_head: bool = True,
    validation: AnnotatedSplit | None = None,
    bars: Mapping[str, float] | None = None,
    rtol: float = 1e-4,
    overwrite: bool = False,
    progress: bool = True,
) -> Bundle:
    """Turn a training checkpoint into a deployable bundle directory.

    Args:
        checkpoint_path: A checkpoint written by the trainer (``best.pt``).
        out_dir: The bundle directory; must be new or empty unless ``overwrite``.
        attention: Export the attention maps (ignored, with a log line, for a model without
            semantic attention).
        precisions: ONNX variants to write (``"fp32,fp16,int8"`` or a tuple); fp32 is always
            written. Each reduced variant is scored against fp32 on ``validation`` and kept
            only within its bar; a refused one is recorded in the manifest (with its numbers,
            see :attr:`Bundle.refused`) and its file is not kept.
        calib_dir: Calibration images for int8 (and parity frames): an annotated split (the
            training run's own), a folder, or a VOC dataset's training split.
        calib_split: VOC split of ``calib_dir`` (default ``train``, else ``trainval``).
        calib_images: At most this many calibration images, spread over the split.
        calib_method: ``minmax``, ``percentile`` or ``entropy`` activation ranges.
        int8_head: Try the attention/fusion/graph head in int8 first (it falls back to fp32
            when that misses the bar); False starts with the head in fp32.
        validation: The split the variants are judged on (never the test split); with it,
            the manifest also records the reference statistics of the drift watch (class
            rates and scores on it, brightness and contrast of ``calib_dir``'s training
            images when that is a split, else of its own).
        bars: Largest accepted mAP drop per precision, in points (default
            :data:`~mmsag_ros.export.precision.DEFAULT_BARS`).
        rtol: ONNX parity tolerance (see :mod:`mmsag_ros.export.onnx`).
        overwrite: Replace the bundle in a non-empty ``out_dir``.
        progress: Log each step with its time (and show progress bars) at INFO level.

    Returns:
        The written bundle, loaded back through :func:`load_bundle` (hashes verified).

    Raises:
        ModelNotFoundError: The checkpoint does not exist.
        ConfigError: Bad options, a non-empty ``out_dir``, an unusable checkpoint.
        DatasetError: A validation split without positives, unreadable calibration images.
        BundleError: ONNX parity, conversion or checks fail.
    """
    import torch

    from mmsag_ros.export.onnx import export_onnx
    from mmsag_ros.model.checkpoint import save_checkpoint

    precisions = parse_precisions(precisions)
    bars = {**DEFAULT_BARS, **(bars or {})}
    _check_options(precisions, calib_dir=calib_dir, validation=validation, bars=bars)
    level = logging.INFO if progress else logging.DEBUG
    timings: dict[str, float] = {}
    out_dir = Path(out_dir).absolute()
    step = functools.partial(_step, timings=timings, level=level)
    with step("load checkpoint"):
        checkpoint, model, attention = _load_model(checkpoint_path, attention)
        spec, labels = checkpoint.spec, checkpoint.labels
    staging = _staging_dir(out_dir, overwrite)
    try:
        with step("parity frames"):
            frames = parity_frames(spec, source=calib_dir, split=calib_split)
        with step("ONNX export and parity"):
            result = export_onnx(
                model,
                staging / ONNX_FILE,
                example=torch.from_numpy(frames),
                labels=labels,
                spec=spec,
                name=checkpoint.model_name,
                attention=attention,
                rtol=rtol,
            )
        with step("slim torch checkpoint"):
            payload = {k: v for k, v in checkpoint.raw.items() if k not in _TRAINING_ONLY}
            save_checkpoint(staging / TORCH_FILE, payload)
        fp32_scores, reference = None, None
        if validation is not None:
            fp32_scores, reference = _judging_reference(
                staging / ONNX_FILE, checkpoint, validation, calib_dir, step=step, progress=progress
            )
        variants = {}
        reduced = [p for p in precisions if p != "fp32"]
        if reduced:
            assert validation is not None and fp32_scores is not None  # see _check_options
            calibration = functools.cache(
                functools.partial(
                    load_calibration_images, calib_dir, spec, limit=calib_images, split=calib_split
                )
            )
            judge = VariantJudge(
                validation, fp32_scores, spec, np.asarray(checkpoint.thresholds), progress
            )
        for precision in reduced:
            variants[precision] = reduced_variant(
                precision,
                staging / ONNX_FILE,
                staging / VARIANT_FILES[precision],
                judge=judge,
                bar_points=bars[precision],
                calibration=calibration,
                calib_method=calib_method,
                int8_head=int8_head,
                step=step,
            )
        manifest = bundle_manifest(
            checkpoint,
            Path(checkpoint_path),
            result,
            staging / TORCH_FILE,
            onnx=onnx_section(result, staging / ONNX_FILE, rtol=rtol, frames=calib_dir),
            variants=variants,
            reference=reference,
            timings=timings,
        )
        write_manifest(staging, manifest)
        _move_into_place(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    bundle = load_bundle(out_dir)
    _log.log(level, "export: bundle %s written to %s", bundle.model_id, out_dir)
    return bundle


def _judging_reference(
    onnx_path: Path,
    checkpoint: Any,
    validation: AnnotatedSplit,
    calib_dir: Path | AnnotatedSplit | None,
    *,
    step: Callable[[str], Any],
    progress: bool,
) -> tuple[np.ndarray, Any]:
    """fp32's scores on ``validation``, which reduced variants are judged by, and drift stats."""
    with step("score fp32 on validation"):
        fp32_scores = onnx_scores(onnx_path, validation, checkpoint.spec, progress=progress)
    with step("reference statistics"):
        training = calib_dir if isinstance(calib_dir, AnnotatedSplit) else None
        reference = measure_reference(
            fp32_scores,
            np.asarray(checkpoint.thresholds),
            validation,
            training,
            validation_name=validation.name,
        )
    return fp32_scores, reference
