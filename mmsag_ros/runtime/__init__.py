"""Preprocessing and the Classifier facade over TensorRT, ONNX Runtime and torch backends.

Names are re-exported lazily (PEP 562): importing this package (which training does, for
``runtime.preprocess``) loads none of the runtime modules, and no runtime module imports torch,
onnxruntime or tensorrt before a backend is loaded.
"""

from __future__ import annotations

from mmsag_ros._lazy import lazy_exports

__all__ = [
    "BACKEND_KINDS",
    "Classifier",
    "InferenceBackend",
    "Prediction",
    "PreprocessSpec",
    "StageTimings",
    "attention_peaks",
    "create_backend",
    "preprocess",
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
    "attention_peaks": "postprocess",
    "sigmoid": "postprocess",
    "PreprocessSpec": "preprocess",
    "preprocess": "preprocess",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
