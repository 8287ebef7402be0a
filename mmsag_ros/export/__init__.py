"""Checkpoint -> bundle: ONNX export with parity, fp16/int8 variants scored against fp32.

Modules: :mod:`~mmsag_ros.export.write_bundle` (``export_bundle``, the whole export),
:mod:`~mmsag_ros.export.onnx` and :mod:`~mmsag_ros.export.graph` (the ONNX graph),
:mod:`~mmsag_ros.export.precision` (making fp16 and int8 variants),
:mod:`~mmsag_ros.export.variant_score` (judging them against fp32),
:mod:`~mmsag_ros.export.variants` (made, judged, kept or refused),
:mod:`~mmsag_ros.export.measure_reference` (the drift reference), and
:mod:`~mmsag_ros.export.settings`. Export writes the bundle format (:mod:`mmsag_ros.bundle`)
and reads checkpoints (:mod:`mmsag_ros.model.checkpoint`); it imports neither the runtime nor
the trainer. Engines are built on the target by the runtime
(:mod:`mmsag_ros.runtime.engine_build`, ``mmsag engine``). Import names from the module that
defines them, so that importing the package loads neither torch nor ONNX Runtime.
"""

__all__: list[str] = []
