"""The Classifier facade over TensorRT, ONNX Runtime and torch backends.

Modules: :mod:`~mmsag_ros.runtime.classifier` (:class:`Classifier`, the one entry point),
:mod:`~mmsag_ros.runtime.backends` (one backend per SDK), :mod:`~mmsag_ros.runtime.postprocess`,
:mod:`~mmsag_ros.runtime.engine_cache` and :mod:`~mmsag_ros.runtime.engine_build` (TensorRT
engines), :mod:`~mmsag_ros.runtime.drift`, :mod:`~mmsag_ros.runtime.overlay`,
:mod:`~mmsag_ros.runtime.verify` and :mod:`~mmsag_ros.runtime.bench`. The runtime reads bundles
(:mod:`mmsag_ros.bundle`) and nothing the exporter or trainer wrote in any other way. No module
imports torch, onnxruntime or tensorrt before a backend is loaded.
"""

__all__: list[str] = []
