"""Datasets (VOC/MLKW, COCO, CSV), transforms, label statistics, synthetic and composed scenes.

Names are re-exported lazily (PEP 562), so ``import mmsag_ros.data`` loads neither torch nor
OpenCV: each name's module is imported on first use.
"""

from __future__ import annotations

from mmsag_ros._lazy import lazy_exports

__all__ = [
    "AnnotatedSplit",
    "FakeMultiLabelDataset",
    "LabelStatistics",
    "MultiLabelImageDataset",
    "Sample",
    "check_images",
    "compose_dataset",
    "conditional_probability",
    "format_adjacency",
    "format_statistics",
    "label_statistics",
    "mlgcn_adjacency",
    "plot_cooccurrence",
    "read_coco",
    "read_csv_labels",
    "read_voc",
    "read_voc_boxes",
    "split_validation",
    "stratified_indices",
    "write_voc_lists",
]

# public name -> module (relative to this package) that defines it
_EXPORTS: dict[str, str] = {
    "AnnotatedSplit": "dataset",
    "FakeMultiLabelDataset": "dataset",
    "MultiLabelImageDataset": "dataset",
    "Sample": "dataset",
    "check_images": "dataset",
    "read_voc": "voc",
    "read_voc_boxes": "voc",
    "compose_dataset": "compose",
    "write_voc_lists": "voc",
    "read_coco": "coco",
    "read_csv_labels": "csv_table",
    "split_validation": "stratified_split",
    "stratified_indices": "stratified_split",
    "LabelStatistics": "stats",
    "conditional_probability": "stats",
    "format_adjacency": "stats",
    "format_statistics": "stats",
    "label_statistics": "stats",
    "mlgcn_adjacency": "stats",
    "plot_cooccurrence": "stats",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
