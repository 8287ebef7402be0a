"""Checkpoint -> bundle: ONNX export with parity, fp16/int8 variants scored against fp32.

Export writes the bundle format (:mod:`mmsag_ros.bundle`) and reads checkpoints
(:mod:`mmsag_ros.model.checkpoint`); it imports neither the runtime nor the trainer. Engines
are built on the target by the runtime (:mod:`mmsag_ros.runtime.engine_cache`, ``mmsag engine``).
Names are re-exported lazily (PEP 562), so ``import mmsag_ros.export`` loads neither torch
nor ONNX Runtime.
"""

from __future__ import annotations

from mmsag_ros._lazy import lazy_exports

__all__ = [
    "convert_fp16",
    "export_bundle",
    "export_onnx",
    "quantize_int8",
]

# public name -> module (relative to this package) that defines it
_LAZY: dict[str, str] = {
    "convert_fp16": "precision",
    "export_bundle": "write_bundle",
    "export_onnx": "onnx",
    "quantize_int8": "precision",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
