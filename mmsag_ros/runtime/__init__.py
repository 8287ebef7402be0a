"""Preprocessing and the Classifier facade over TensorRT, ONNX Runtime and torch backends.

Names are re-exported lazily (PEP 562): importing this package (which training does, for
``runtime.preprocess``) loads none of the runtime modules, and no runtime module imports torch,
onnxruntime or tensorrt before a backend is loaded.
"""

from __future__ import annotations

import importlib
from typing import Any

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


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module_name}"), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
