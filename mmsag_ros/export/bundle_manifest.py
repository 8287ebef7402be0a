"""What an export writes into ``manifest.json``: the ONNX section and the whole document.

The schema itself (names, format version, loading) lives in :mod:`mmsag_ros.bundle.schema`;
this is the export's side of it: versions of the tools that wrote the bundle, the parity check
and where its frames came from, and values made JSON-safe.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mmsag_ros import __version__
from mmsag_ros.bundle.files import sha256_file
from mmsag_ros.bundle.schema import MANIFEST_FORMAT, preprocess_manifest
from mmsag_ros.data.dataset import AnnotatedSplit

__all__ = ["bundle_manifest", "onnx_section"]


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN (e.g. the AP of a class without positives)
    return value


def _describe(source: Path | AnnotatedSplit | None) -> str:
    if source is None:
        return "synthetic conveyor scenes"
    if isinstance(source, AnnotatedSplit):
        return f"{len(source)} images of split {source.name!r} of {source.source}"
    return str(source)


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


def onnx_section(
    result: Any, path: Path, *, rtol: float, frames: Path | AnnotatedSplit | None
) -> dict[str, Any]:
    """The manifest's ``onnx`` section: the fp32 file, its interface and its parity check."""
    return {
        "file": path.name,
        "sha256": sha256_file(path),
        "opset": result.opset,
        "input": result.input_name,
        "outputs": list(result.output_names),
        "attention_grid": list(result.attention_grid) if result.attention_grid else None,
        "parity": {
            "max_error": result.max_errors,
            "batch_sizes": list(result.batch_sizes),
            "rtol": rtol,
            "frames": _describe(frames),
        },
    }


def bundle_manifest(
    checkpoint: Any,
    checkpoint_path: Path,
    result: Any,
    torch_file: Path,
    *,
    onnx: dict,
    variants: dict,
    reference: Any,
    timings: dict[str, float],
) -> dict[str, Any]:
    """The whole manifest of a bundle whose slim torch weights are ``torch_file``."""
    return {
        "format_version": MANIFEST_FORMAT,
        "name": checkpoint.model_name,
        "model_id": result.model_id,
        "classes": checkpoint.labels.to_dict(),
        "preprocess": preprocess_manifest(checkpoint.spec),
        "thresholds": [float(t) for t in checkpoint.thresholds],
        "onnx": onnx,
        "variants": _json_safe(variants),
        "torch": {"file": torch_file.name, "sha256": sha256_file(torch_file)},
        "metrics": _json_safe(checkpoint.metrics),
        "reference": reference.to_dict() if reference is not None else None,
        "source": {
            "checkpoint": str(checkpoint_path.absolute()),
            "checkpoint_sha256": sha256_file(checkpoint_path),
            "epoch": checkpoint.epoch,
        },
        "exporter": {**_versions(), "timings_s": timings},
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
