"""The model bundle format: the contract between the exporter (writes it) and the runtime.

Modules: :mod:`~mmsag_ros.bundle.manifest` (the manifest schema, :func:`load_bundle`,
integrity checks), :mod:`~mmsag_ros.bundle.preprocess` (the one preprocessing every model
input goes through), :mod:`~mmsag_ros.bundle.labels` (the label set) and
:mod:`~mmsag_ros.bundle.drift_reference` (the reference a node compares live scores with).
This package sits below ``export``, ``runtime``, ``train``, ``data`` and ``model``; it imports
none of them, nor torch or ONNX Runtime. Import names from the module that defines them.
"""

__all__: list[str] = []
