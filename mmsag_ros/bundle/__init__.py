"""The model bundle format: the contract between the exporter (writes it) and the runtime.

What a bundle holds and how it is read: the manifest schema and :func:`load_bundle`
(:mod:`.manifest`), the preprocessing every model input goes through (:mod:`.preprocess`) and
the label set (:mod:`.labels`). This package sits below ``export``, ``runtime``, ``train``,
``data`` and ``model``; it imports none of them, nor torch or ONNX Runtime.
"""

from __future__ import annotations

from mmsag_ros._lazy import lazy_exports

__all__ = [
    "MANIFEST_FORMAT",
    "MLKW_LABELS",
    "PRECISIONS",
    "Bundle",
    "LabelSet",
    "PreprocessSpec",
    "Variant",
    "load_bundle",
    "preprocess",
    "sha256_file",
    "write_manifest",
]

# public name -> module (relative to this package) that defines it
_EXPORTS: dict[str, str] = {
    "MANIFEST_FORMAT": "manifest",
    "PRECISIONS": "manifest",
    "Bundle": "manifest",
    "Variant": "manifest",
    "load_bundle": "manifest",
    "sha256_file": "manifest",
    "write_manifest": "manifest",
    "MLKW_LABELS": "labels",
    "LabelSet": "labels",
    "PreprocessSpec": "preprocess",
    "preprocess": "preprocess",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
