"""Datasets (VOC/MLKW, COCO, CSV), transforms, label statistics and synthetic scenes.

Names are re-exported lazily (PEP 562), so ``import mmsag_ros.data`` loads neither torch nor
OpenCV: each name's module is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "MLKW_LABELS",
    "AnnotatedSplit",
    "FakeMultiLabelDataset",
    "LabelSet",
    "LabelStatistics",
    "MultiLabelImageDataset",
    "Sample",
    "check_images",
    "conditional_probability",
    "format_adjacency",
    "format_statistics",
    "label_statistics",
    "mlgcn_adjacency",
    "plot_cooccurrence",
    "read_coco",
    "read_csv_labels",
    "read_voc",
    "split_validation",
    "stratified_indices",
    "write_voc_lists",
]

# public name -> module (relative to this package) that defines it
_EXPORTS: dict[str, str] = {
    "MLKW_LABELS": "labels",
    "LabelSet": "labels",
    "AnnotatedSplit": "dataset",
    "FakeMultiLabelDataset": "dataset",
    "MultiLabelImageDataset": "dataset",
    "Sample": "dataset",
    "check_images": "dataset",
    "read_voc": "voc",
    "write_voc_lists": "voc",
    "read_coco": "coco",
    "read_csv_labels": "csv_table",
    "split_validation": "split",
    "stratified_indices": "split",
    "LabelStatistics": "stats",
    "conditional_probability": "stats",
    "format_adjacency": "stats",
    "format_statistics": "stats",
    "label_statistics": "stats",
    "mlgcn_adjacency": "stats",
    "plot_cooccurrence": "stats",
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
