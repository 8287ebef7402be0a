"""ONNX export, TensorRT engine building and the model bundle manifest.

The manifest side (:mod:`mmsag_ros.export.manifest`) needs only numpy; export needs torch, onnx
and onnxruntime, and engines need TensorRT on the target. The heavier names are re-exported
lazily (PEP 562), so ``import mmsag_ros.export`` and :func:`load_bundle` load none of them.
"""

from __future__ import annotations

import importlib
from typing import Any

from mmsag_ros.export.manifest import (
    MANIFEST_FORMAT,
    Bundle,
    load_bundle,
    sha256_file,
    write_manifest,
)

__all__ = [
    "MANIFEST_FORMAT",
    "Bundle",
    "ensure_engine",
    "export_bundle",
    "export_onnx",
    "load_bundle",
    "quantize_int8",
    "sha256_file",
    "write_manifest",
]

# public name -> module (relative to this package) that defines it
_LAZY: dict[str, str] = {
    "ensure_engine": "tensorrt",
    "export_bundle": "bundle",
    "export_onnx": "onnx",
    "quantize_int8": "quantize",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module_name}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
