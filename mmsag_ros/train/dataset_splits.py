"""Which annotated images train, validate and test, from a DataConfig.

Validation is read from ``val_split`` when the dataset has one; otherwise it is carved from the
training split (seeded, stratified by label). Either way the test split is never seen during
training, checkpoint selection or threshold calibration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from mmsag_ros.bundle.labels import LabelSet
from mmsag_ros.data.coco import read_coco
from mmsag_ros.data.csv_table import read_csv_labels
from mmsag_ros.data.dataset import AnnotatedSplit
from mmsag_ros.data.stratified_split import split_validation
from mmsag_ros.data.voc import read_voc
from mmsag_ros.errors import ConfigError, DatasetError
from mmsag_ros.train.config import DataConfig

__all__ = ["FORMATS", "load_split", "load_train_val", "trainer_splits"]

FORMATS = ("voc", "coco", "csv")


def load_split(
    data: DataConfig, split_name: str, *, labels: LabelSet | None = None
) -> AnnotatedSplit:
    """Read one split. COCO and CSV files are a split each: ``split_name`` is not used there.

    ``labels`` pins the class order (that of the training split or a checkpoint); a split whose
    classes differ raises DatasetError.
    """
    if not data.path:
        raise ConfigError("data.path is empty: point it at the dataset (VOC root, COCO JSON, CSV)")
    path = Path(data.path)
    image_root = Path(data.image_root) if data.image_root else None
    if data.format == "voc":
        return read_voc(path, split_name, labels=labels, difficult=data.difficult)
    if data.format == "coco":
        split = read_coco(path, image_root, level=data.level)
    elif data.format == "csv":
        split = read_csv_labels(path, image_root)
    else:
        raise ConfigError(f"data.format must be one of {', '.join(FORMATS)}, got {data.format!r}")
    if labels is not None and split.labels.names != labels.names:
        raise DatasetError(
            f"{path} has classes {list(split.labels.names)}, expected {list(labels.names)}"
        )
    return split


def _with_extra(train: AnnotatedSplit, tables: list[str]) -> AnnotatedSplit:
    """``train`` plus the images of each extra label table (``data.extra_train``)."""
    samples = list(train.samples)
    for table in tables:
        path = Path(table)
        extra = read_csv_labels(path, path.parent / "images")
        if extra.labels.names != train.labels.names:
            raise DatasetError(
                f"data.extra_train {path} has classes {list(extra.labels.names)}, the training "
                f"data {list(train.labels.names)}"
            )
        samples += extra.samples
    return AnnotatedSplit(
        labels=train.labels,
        samples=tuple(samples),
        name=f"{train.name}+{len(samples) - len(train)} extra",
        source=f"{train.source} + {', '.join(tables)}",
    )


def load_train_val(data: DataConfig, *, seed: int) -> tuple[AnnotatedSplit, AnnotatedSplit]:
    """Training and validation splits, carving validation out of training when needed.

    ``data.extra_train`` tables join the training split after validation is carved, so
    their images never validate.
    """
    train = load_split(data, data.train_split)
    if data.val_split:
        val = load_split(data, data.val_split, labels=train.labels)
    else:
        train, val = split_validation(train, fraction=data.val_fraction, seed=seed)
    return (_with_extra(train, data.extra_train) if data.extra_train else train), val


def trainer_splits(
    train_config: Mapping[str, Any], *, labels: LabelSet
) -> tuple[AnnotatedSplit, AnnotatedSplit]:
    """The training and validation splits of the run that wrote a checkpoint, rebuilt.

    Args:
        train_config: The checkpoint's recorded training config (its ``data`` and ``seed``).
        labels: The checkpoint's classes (the rebuilt splits must have them, in this order).

    Raises:
        ConfigError: The config records no data, or its classes differ from ``labels``.
        DatasetError: The recorded data cannot be read (moved, deleted).
    """
    recorded = train_config.get("data")
    if not isinstance(recorded, Mapping) or not recorded.get("path"):
        raise ConfigError(
            "the checkpoint does not record its training data, so its validation split cannot "
            "be rebuilt: name a held-out split with --val-data"
        )
    known = {f.name for f in fields(DataConfig)}
    data = DataConfig(**{k: v for k, v in recorded.items() if k in known})
    train, val = load_train_val(data, seed=int(train_config.get("seed", 0)))
    if train.labels.names != labels.names:
        raise ConfigError(
            f"the checkpoint's training data {data.path} now has classes {list(train.labels.names)}"
            f", the checkpoint {list(labels.names)}: name a held-out split with --val-data"
        )
    return train, val
