"""COCO instance-annotation reader (TACO ships in it): image-level multi-hot labels.

An image is positive for a class when at least one of its instance annotations has that class
(at category level) or a category of that supercategory (at supercategory level); images with
no annotation are negatives for every class. Boxes and masks are not used.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mmsag_ros.bundle.labels import LabelSet
from mmsag_ros.data.dataset import AnnotatedSplit, Sample, check_images
from mmsag_ros.errors import ConfigError, DatasetError

__all__ = ["COCO_LEVELS", "read_coco"]

_log = logging.getLogger(__name__)

COCO_LEVELS = ("category", "supercategory")


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise DatasetError(f"annotation file {path} does not exist; pass the COCO .json file")
    try:
        with path.open(encoding="utf-8") as stream:
            return json.load(stream)
    except json.JSONDecodeError as err:
        raise DatasetError(
            f"malformed JSON in {path} at line {err.lineno}, column {err.colno} "
            f"(character {err.pos}): {err.msg}"
        ) from err
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read annotation file {path}: {err}") from err
    except (ValueError, RecursionError) as err:  # a number of thousands of digits, deep nesting
        raise DatasetError(f"{path} is not a usable COCO file: {err}") from err


def _records(data: Any, key: str, path: Path) -> list[Mapping[str, Any]]:
    if not isinstance(data, dict):
        raise DatasetError(
            f"{path} is not a COCO annotation file: the top level is a "
            f"{type(data).__name__}, expected an object with images, annotations, categories"
        )
    if key not in data:
        raise DatasetError(f"{path} has no {key!r} list; a COCO annotation file needs one")
    records = data[key]
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DatasetError(f"{path}: {key!r} must be a list of objects")
    return records


_ID_KEYS = frozenset({"id", "image_id", "category_id"})


def _field(record: Mapping[str, Any], key: str, kind: str, number: int, path: Path) -> Any:
    try:
        value = record[key]
    except KeyError:
        raise DatasetError(
            f"{path}: {kind} number {number} (0-based) has no {key!r} field: {dict(record)}"
        ) from None
    if key in _ID_KEYS and (isinstance(value, bool) or not isinstance(value, (int, str))):
        raise DatasetError(
            f"{path}: {kind} number {number} (0-based) has {key} {value!r}; ids are integers "
            "or strings"
        )
    return value


def _class_table(
    categories: list[Mapping[str, Any]], level: str, path: Path
) -> tuple[LabelSet, dict[Any, int]]:
    """Label set and category id -> class index, categories taken in id order."""
    by_id: dict[Any, tuple[int, Mapping[str, Any]]] = {}
    for number, category in enumerate(categories):
        category_id = _field(category, "id", "category", number, path)
        if category_id in by_id:
            raise DatasetError(f"{path}: category id {category_id!r} appears twice")
        by_id[category_id] = (number, category)
    try:
        ordered = sorted(by_id.items(), key=lambda item: item[0])
    except TypeError as err:
        raise DatasetError(f"{path}: category ids are not all numbers or all strings") from err
    key = "name" if level == "category" else "supercategory"
    names: list[str] = []
    class_of: dict[Any, int] = {}
    for category_id, (number, category) in ordered:
        name = str(_field(category, key, "category", number, path)).strip()
        if not name:
            raise DatasetError(f"{path}: category id {category_id!r} has an empty {key!r}")
        if name not in names:
            names.append(name)
        elif level == "category":
            raise DatasetError(
                f"{path}: category name {name!r} is used by two category ids; rename one, "
                f"or read at supercategory level"
            )
        class_of[category_id] = names.index(name)
    if not names:
        raise DatasetError(f"{path} defines no categories")
    return LabelSet.from_names(names), class_of


def read_coco(
    annotation_json: Path,
    image_root: Path | None = None,
    *,
    level: str = "category",
    check_files: bool = False,
) -> AnnotatedSplit:
    """Read image-level multi-hot labels from a COCO instance-annotation file.

    Args:
        annotation_json: The COCO ``.json`` file.
        image_root: Folder the images' ``file_name`` entries are relative to; defaults to the
            JSON file's folder (TACO's ``data/annotations.json`` beside ``data/batch_*/``).
        level: ``category`` (classes in category-id order) or ``supercategory`` (classes in
            the order their first category appears, by id).
        check_files: Require every image file to exist. Off by default because annotation
            files are often shipped without the images (TACO); the training dataset checks.

    Returns:
        The split, images in the file's order; ``image_id`` is the image's ``file_name``.

    Raises:
        ConfigError: ``level`` is not one of :data:`COCO_LEVELS`.
        DatasetError: Missing or malformed JSON, missing keys, duplicate ids, annotations
            referring to an unknown image or category, missing images with ``check_files``.
    """
    if level not in COCO_LEVELS:
        raise ConfigError(f"level must be one of {', '.join(COCO_LEVELS)}, got {level!r}")
    path = Path(annotation_json)
    data = _load_json(path)
    images = _records(data, "images", path)
    annotations = _records(data, "annotations", path)
    labels, class_of = _class_table(_records(data, "categories", path), level, path)
    root = Path(image_root) if image_root is not None else path.parent

    row_of: dict[Any, int] = {}
    file_names: list[str] = []
    for number, image in enumerate(images):
        image_id = _field(image, "id", "image", number, path)
        file_name = str(_field(image, "file_name", "image", number, path))
        if image_id in row_of:
            raise DatasetError(f"{path}: image id {image_id!r} appears twice")
        row_of[image_id] = len(file_names)
        file_names.append(file_name)

    targets = np.zeros((len(file_names), len(labels)), np.float32)
    for number, annotation in enumerate(annotations):
        image_id = _field(annotation, "image_id", "annotation", number, path)
        category_id = _field(annotation, "category_id", "annotation", number, path)
        if image_id not in row_of:
            raise DatasetError(
                f"{path}: annotation number {number} (id {annotation.get('id')!r}) refers to "
                f"image id {image_id!r}, which is not in 'images'"
            )
        if category_id not in class_of:
            raise DatasetError(
                f"{path}: annotation number {number} (id {annotation.get('id')!r}) refers to "
                f"category id {category_id!r}, which is not in 'categories'"
            )
        targets[row_of[image_id], class_of[category_id]] = 1.0

    samples = tuple(
        Sample(root / name, targets[i].copy(), name) for i, name in enumerate(file_names)
    )
    result = AnnotatedSplit(labels, samples, path.stem, str(path), root)
    _log.debug("read %d images, %d %s classes from %s", len(samples), len(labels), level, path)
    if check_files:
        check_images(result)
    return result
