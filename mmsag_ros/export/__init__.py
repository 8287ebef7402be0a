"""ONNX export, TensorRT engine building and the model bundle manifest."""

__all__: list[str] = []
