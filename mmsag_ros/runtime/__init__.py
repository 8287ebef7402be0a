"""The Classifier facade over TensorRT, ONNX Runtime and torch backends.

The runtime reads bundles (:mod:`mmsag_ros.bundle`) and nothing the exporter or trainer wrote
in any other way. Names are re-exported lazily (PEP 562): no runtime module imports torch,
onnxruntime or tensorrt before a backend is loaded.
"""

from __future__ import annotations

from mmsag_ros._lazy import lazy_exports

__all__ = [
    "BACKEND_KINDS",
    "Classifier",
    "InferenceBackend",
    "Prediction",
    "StageTimings",
    "create_backend",
    "sigmoid",
]

# public name -> module (relative to this package) that defines it
_EXPORTS: dict[str, str] = {
    "BACKEND_KINDS": "backends",
    "InferenceBackend": "backends",
    "create_backend": "backends",
    "Classifier": "classifier",
    "Prediction": "classifier",
    "StageTimings": "classifier",
    "sigmoid": "postprocess",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
