"""Checkpoint -> bundle: ONNX with parity check, slim torch weights, manifest, int8, engine.

The bundle is assembled in a staging folder beside ``out_dir`` and moved into place only when
complete, so an interrupted export never leaves a half-written bundle behind. Parity is checked
on real frames: images from the calibration folder when one is given, else synthetic conveyor
scenes, both through the one :func:`~mmsag_ros.runtime.preprocess.preprocess` function.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mmsag_ros import __version__
from mmsag_ros.data.dataset import AnnotatedSplit
from mmsag_ros.data.synth_scene import render_scene
from mmsag_ros.errors import ConfigError
from mmsag_ros.export.atomic import unique_directory
from mmsag_ros.export.manifest import (
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    Bundle,
    load_bundle,
    preprocess_manifest,
    sha256_file,
    write_manifest,
)
from mmsag_ros.export.quantize import (
    DEFAULT_MAX_DROP_POINTS,
    load_calibration_images,
    quantize_int8,
)
from mmsag_ros.runtime.preprocess import PreprocessSpec, preprocess

__all__ = [
    "BUNDLE_ENTRIES",
    "INT8_ONNX_FILE",
    "ONNX_FILE",
    "TORCH_FILE",
    "export_bundle",
    "parity_frames",
]

_log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
TORCH_FILE = "model.pt"
INT8_ONNX_FILE = "model.int8.onnx"
BUNDLE_ENTRIES = (MANIFEST_NAME, ONNX_FILE, TORCH_FILE, INT8_ONNX_FILE, "engines")
_TRAINING_ONLY = ("optimizer", "scheduler", "scaler", "format_version")
_SYNTH_FRAME_SIZE = (320, 240)
_CPU_CALIBRATION_IMAGES = 64
_TRT_CALIBRATION_IMAGES = 256


def parity_frames(
    spec: PreprocessSpec,
    *,
    count: int = 4,
    source: Path | None = None,
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


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN (e.g. the AP of a class without positives)
    return value


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


def _check_options(
    *, int8: bool, int8_cpu: bool, engine: bool, calib_dir: Path | None, validation: Any
) -> None:
    if int8 and calib_dir is None:
        raise ConfigError("a TensorRT int8 engine needs calibration images: add --calib-data DIR")
    if int8_cpu and (calib_dir is None or validation is None):
        raise ConfigError(
            "static int8 ONNX needs calibration images and a validation split to judge it: "
            "add --calib-data DIR and --val-data DIR"
        )
    if engine:
        from mmsag_ros.export.tensorrt import current_device, import_tensorrt

        import_tensorrt()
        current_device()


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    return {
        "mmsag_ros": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def export_bundle(
    checkpoint_path: Path,
    out_dir: Path,
    *,
    attention: bool = True,
    int8: bool = False,
    calib_dir: Path | None = None,
    calib_split: str | None = None,
    engine: bool = False,
    fp16: bool = False,
    int8_cpu: bool = False,
    validation: AnnotatedSplit | None = None,
    max_drop_points: float = DEFAULT_MAX_DROP_POINTS,
    max_batch: int = 8,
    workspace_mb: int = 2048,
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
        int8: Build an int8 TensorRT engine calibrated on ``calib_dir`` (implies ``engine``).
        calib_dir: Calibration images: a folder, or a VOC dataset's training split.
        calib_split: VOC split of ``calib_dir`` (default ``train``, else ``trainval``).
        engine: Build a TensorRT engine for this machine's GPU (needs TensorRT).
        fp16: Build the engine in fp16 (implies ``engine``).
        int8_cpu: Also write a static-int8 ONNX model, kept only if its mAP on ``validation``
            is within ``max_drop_points`` of fp32.
        validation: The validation split for ``int8_cpu`` (never the test split).
        max_drop_points: The int8 accuracy bar in mAP points.
        max_batch: Largest batch of the TensorRT engine.
        workspace_mb: TensorRT builder workspace in MiB.
        rtol: ONNX parity tolerance (see :mod:`mmsag_ros.export.onnx`).
        overwrite: Replace the bundle in a non-empty ``out_dir``.
        progress: Log each step with its time (and show progress bars) at INFO level.

    Returns:
        The written bundle, loaded back through :func:`load_bundle` (hashes verified).

    Raises:
        ModelNotFoundError: The checkpoint does not exist.
        ConfigError: Bad options, a non-empty ``out_dir``, an unusable checkpoint.
        BackendUnavailableError: ``engine`` without TensorRT or a GPU (checked first).
        BundleError: ONNX parity or checks fail.
    """
    import torch

    from mmsag_ros.export.onnx import export_onnx
    from mmsag_ros.train.checkpoint import load_checkpoint, save_checkpoint

    engine = engine or fp16 or int8
    _check_options(
        int8=int8, int8_cpu=int8_cpu, engine=engine, calib_dir=calib_dir, validation=validation
    )
    level = logging.INFO if progress else logging.DEBUG
    timings: dict[str, float] = {}
    out_dir = Path(out_dir).absolute()
    with _step("load checkpoint", timings, level):
        checkpoint = load_checkpoint(checkpoint_path)
        model = checkpoint.build_model()
        spec, labels = checkpoint.spec, checkpoint.labels
        if len(checkpoint.thresholds) != len(labels):
            raise ConfigError(
                f"checkpoint {checkpoint_path} has {len(checkpoint.thresholds)} thresholds for "
                f"{len(labels)} classes"
            )
    if attention and not model.config.semantic_attention:
        _log.info(
            "%s has no attention maps (semantic attention off): exporting logits only",
            checkpoint.model_name,
        )
        attention = False
    staging = _staging_dir(out_dir, overwrite)
    try:
        with _step("parity frames", timings, level):
            frames = parity_frames(spec, source=calib_dir, split=calib_split)
        with _step("ONNX export and parity", timings, level):
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
        with _step("slim torch checkpoint", timings, level):
            payload = {k: v for k, v in checkpoint.raw.items() if k not in _TRAINING_ONLY}
            save_checkpoint(staging / TORCH_FILE, payload)
        int8_section = None
        if int8_cpu:
            with _step("static int8 ONNX", timings, level):
                calibration = load_calibration_images(
                    calib_dir, spec, limit=_CPU_CALIBRATION_IMAGES, split=calib_split
                )
                outcome = quantize_int8(
                    staging / ONNX_FILE,
                    staging / INT8_ONNX_FILE,
                    calibration=calibration,
                    validation=validation,
                    spec=spec,
                    max_drop_points=max_drop_points,
                    progress=progress,
                )
                sha = sha256_file(outcome.path) if outcome.path is not None else None
                int8_section = outcome.to_manifest(sha)
        manifest = {
            "format_version": MANIFEST_FORMAT,
            "name": checkpoint.model_name,
            "model_id": result.model_id,
            "classes": labels.to_dict(),
            "preprocess": preprocess_manifest(spec),
            "thresholds": [float(t) for t in checkpoint.thresholds],
            "onnx": {
                "file": ONNX_FILE,
                "sha256": sha256_file(staging / ONNX_FILE),
                "opset": result.opset,
                "input": result.input_name,
                "outputs": list(result.output_names),
                "attention_grid": list(result.attention_grid) if result.attention_grid else None,
                "parity": {
                    "max_error": result.max_errors,
                    "batch_sizes": list(result.batch_sizes),
                    "rtol": rtol,
                    "frames": str(calib_dir) if calib_dir else "synthetic conveyor scenes",
                },
            },
            "torch": {"file": TORCH_FILE, "sha256": sha256_file(staging / TORCH_FILE)},
            "int8_onnx": int8_section,
            "metrics": _json_safe(checkpoint.metrics),
            "source": {
                "checkpoint": str(Path(checkpoint_path).absolute()),
                "checkpoint_sha256": sha256_file(Path(checkpoint_path)),
                "epoch": checkpoint.epoch,
            },
            "exporter": {**_versions(), "timings_s": timings},
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        write_manifest(staging, manifest)
        _move_into_place(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    bundle = load_bundle(out_dir)
    if engine:
        from mmsag_ros.export.tensorrt import ensure_engine

        precision = "int8" if int8 else "fp16" if fp16 else "fp32"
        images = None
        if int8:
            images = load_calibration_images(
                calib_dir, spec, limit=_TRT_CALIBRATION_IMAGES, split=calib_split
            )
        with _step(f"TensorRT {precision} engine", timings, level):
            ensure_engine(
                bundle,
                precision=precision,
                rebuild=True,
                calibration_images=images,
                max_batch=max_batch,
                workspace_mb=workspace_mb,
            )
    _log.log(level, "export: bundle %s written to %s", bundle.model_id, out_dir)
    return bundle
