"""Preprocessing and the Classifier facade over TensorRT, ONNX Runtime and torch backends."""

__all__: list[str] = []
