"""Datasets (VOC/MLKW, COCO, CSV), transforms, label statistics and synthetic scenes."""

__all__: list[str] = []
