"""CSV label table reader: one row per image, one 0/1 column per class.

Format::

    filename,waste_bag,metal,plastic
    img_0001.jpg,0,1,1
    img_0002.jpg,1,0,-1

The first header cell names the file-name column (``filename``; ``file_name``, ``file``,
``image`` and ``path`` are accepted too); the other header cells are the class names in model
order. Values are 1 (positive), 0 (negative) or -1 (ignore). Rows whose cells are all empty
(spreadsheet exports often end with some) are skipped.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from mmsag_ros.bundle.labels import LabelSet
from mmsag_ros.data.dataset import AnnotatedSplit, Sample, check_images
from mmsag_ros.errors import DatasetError

__all__ = ["read_csv_labels"]

_log = logging.getLogger(__name__)

_FILE_COLUMNS = ("filename", "file_name", "file", "image", "path")
_VALUES = {"1": 1.0, "0": 0.0, "-1": -1.0}


def _read_rows(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise DatasetError(f"label table {path} does not exist; pass the CSV file")
    try:
        with path.open(encoding="utf-8-sig", newline="") as stream:
            return list(csv.reader(stream))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"cannot read label table {path}: {err}") from err


def _check_header(header: list[str], path: Path) -> tuple[str, ...]:
    cells = [cell.strip() for cell in header]
    looks_like_data = len(cells) > 1 and all(cell in _VALUES for cell in cells[1:])
    if not cells or cells[0].lower() not in _FILE_COLUMNS or looks_like_data:
        raise DatasetError(
            f"{path}: missing header; the first line must be 'filename,<class1>,<class2>,...', "
            f"got {','.join(cells)!r}"
        )
    classes = cells[1:]
    if not classes:
        raise DatasetError(f"{path}: the header names no class columns after {cells[0]!r}")
    if any(not name for name in classes):
        raise DatasetError(f"{path}: the header has an empty class name: {','.join(cells)!r}")
    if len(set(classes)) != len(classes):
        duplicate = next(name for name in classes if classes.count(name) > 1)
        raise DatasetError(f"{path}: class {duplicate!r} appears twice in the header")
    return tuple(classes)


def read_csv_labels(
    csv_path: Path,
    image_root: Path | None = None,
    *,
    check_files: bool = True,
) -> AnnotatedSplit:
    """Read a ``filename,<class>...`` table of 0/1 (and -1 = ignore) labels.

    Args:
        csv_path: The CSV file.
        image_root: Folder the file names are relative to; defaults to the CSV's folder.
        check_files: Require every image file to exist (label statistics do not need them).

    Returns:
        The split, images in row order; ``image_id`` is the file-name cell.

    Raises:
        DatasetError: Missing header, a value other than 1/0/-1 (with its line number), a row
            with empty cells or the wrong number of cells, a duplicate file name, no rows,
            missing images with ``check_files``.
    """
    path = Path(csv_path)
    rows = _read_rows(path)
    if not rows:
        raise DatasetError(f"{path} is empty: missing header 'filename,<class1>,<class2>,...'")
    classes = _check_header(rows[0], path)
    root = Path(image_root) if image_root is not None else path.parent
    file_names: list[str] = []
    line_of: dict[str, int] = {}
    targets: list[np.ndarray] = []
    for line, row in enumerate(rows[1:], start=2):
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        if len(cells) != len(classes) + 1:
            raise DatasetError(
                f"{path}, line {line}: {len(cells)} cells, expected {len(classes) + 1} "
                f"(a file name and one value per class)"
            )
        name, values = cells[0], cells[1:]
        if not name:
            raise DatasetError(f"{path}, line {line}: the file name is empty")
        if not any(values):
            raise DatasetError(
                f"{path}, line {line}: empty label row for {name!r}; give 1, 0 or -1 per class"
            )
        for class_name, value in zip(classes, values, strict=True):
            if value not in _VALUES:
                raise DatasetError(
                    f"{path}, line {line}: value {value!r} for class {class_name!r} of {name!r} "
                    f"is not 1, 0 or -1"
                )
        if name in line_of:
            raise DatasetError(
                f"{path}, line {line}: file name {name!r} already appears on line "
                f"{line_of[name]}; each image needs exactly one row"
            )
        line_of[name] = line
        file_names.append(name)
        targets.append(np.array([_VALUES[v] for v in values], np.float32))
    if not file_names:
        raise DatasetError(f"{path} has a header but no rows")
    samples = tuple(
        Sample(root / name, target, name) for name, target in zip(file_names, targets, strict=True)
    )
    result = AnnotatedSplit(LabelSet.from_names(classes), samples, path.stem, str(path), root)
    _log.debug("read %d images, %d classes from %s", len(samples), len(classes), path)
    if check_files:
        check_images(result)
    return result
