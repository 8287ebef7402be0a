"""The model bundle format: the contract between the exporter (writes it) and the runtime.

Modules: :mod:`~mmsag_ros.bundle.schema` (constants, ``Bundle``, ``Variant``, the ONNX
metadata), :mod:`~mmsag_ros.bundle.manifest` (reading and writing it, ``load_bundle``),
:mod:`~mmsag_ros.bundle.files` (files checked by hash), :mod:`~mmsag_ros.bundle.onnx_check`
(the graphs against the manifest), :mod:`~mmsag_ros.bundle.preprocess` (the one
preprocessing every model input goes through), :mod:`~mmsag_ros.bundle.labels` (the label
set) and :mod:`~mmsag_ros.bundle.drift_reference` (the reference a node compares live scores
with). This package sits below ``export``, ``runtime``, ``train``, ``data`` and ``model``; it
imports none of them, nor torch or ONNX Runtime. Import names from the module that defines
them.
"""

__all__: list[str] = []
