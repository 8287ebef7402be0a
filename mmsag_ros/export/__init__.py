"""ONNX export, TensorRT engine building and the model bundle manifest.

The manifest side (:mod:`mmsag_ros.export.manifest`) needs only numpy; export needs torch, onnx
and onnxruntime, and engines need TensorRT on the target. The heavier names are re-exported
lazily (PEP 562), so ``import mmsag_ros.export`` and :func:`load_bundle` load none of them.
"""

from __future__ import annotations

from mmsag_ros._lazy import lazy_exports
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


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
