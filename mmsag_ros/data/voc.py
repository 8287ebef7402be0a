"""PASCAL VOC 2007 layout reader (MLKW ships in it) and a writer for its image-set lists.

Layout: ``ROOT/VOCdevkit/VOC2007/{JPEGImages,Annotations,ImageSets/Main}``; ``ROOT`` may also be
the ``VOC2007`` folder itself. Labels come from the per-class lists
``ImageSets/Main/<class>_<split>.txt`` (lines ``name label``: 1 positive, -1 negative,
0 difficult) or, when a split has none, from ``ImageSets/Main/<split>.txt`` plus
``Annotations/<name>.xml`` (each object's ``<name>`` and ``<difficult>``).

An image with no positive class is valid (a negative for every class); label statistics report
how many there are.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmsag_ros.bundle.labels import MLKW_LABELS, LabelSet
from mmsag_ros.data.dataset import AnnotatedSplit, Sample, check_images
from mmsag_ros.errors import ConfigError, DatasetError

__all__ = [
    "DIFFICULT_POLICIES",
    "VocAnnotation",
    "VocBox",
    "discover_labels",
    "find_voc_dir",
    "read_voc",
    "read_voc_boxes",
    "write_voc_lists",
]

_log = logging.getLogger(__name__)

DIFFICULT_POLICIES = ("ignore", "positive", "negative")
_DIFFICULT_VALUE = {"ignore": -1.0, "positive": 1.0, "negative": 0.0}
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG", ".bmp")
_LIST_LABELS = {"1": 1, "-1": -1, "0": 0}
_BOX_KEYS = ("xmin", "ymin", "xmax", "ymax")


@dataclass(frozen=True)
class VocBox:
    """One annotated object: class, box in VOC's 1-based inclusive pixels, difficult flag."""

    name: str
    box: tuple[int, int, int, int]
    difficult: bool

    def contains(self, x: float, y: float) -> bool:
        """Whether the point (x, y), in pixels from the top-left corner, lies in the box."""
        xmin, ymin, xmax, ymax = self.box
        return xmin - 1 <= x <= xmax and ymin - 1 <= y <= ymax


@dataclass(frozen=True)
class VocAnnotation:
    """The image size and the boxes of one annotation file."""

    width: int
    height: int
    boxes: tuple[VocBox, ...]


def find_voc_dir(root: Path) -> Path:
    """Return the ``VOC2007``-style folder (the one holding ``ImageSets``) under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(
            f"dataset root {root} does not exist or is not a directory; pass the folder that "
            f"holds VOCdevkit/VOC2007 (or the VOC2007 folder itself)"
        )
    for candidate in (root / "VOCdevkit" / "VOC2007", root / "VOC2007", root):
        if (candidate / "ImageSets" / "Main").is_dir():
            return candidate
    raise DatasetError(
        f"no VOC layout under {root}: expected {root}/VOCdevkit/VOC2007/ImageSets/Main or "
        f"{root}/ImageSets/Main (with JPEGImages/ and Annotations/ beside ImageSets/)"
    )


def discover_labels(names: Iterable[str]) -> LabelSet:
    """Label set for class names found on disk: MLKW's order if they are MLKW's, else sorted.

    Display names come from :data:`MLKW_LABELS` for the names it knows.
    """
    found = set(names)
    if not found:
        raise DatasetError("no class names found in the annotations")
    ordered = list(MLKW_LABELS.names) if found == set(MLKW_LABELS.names) else sorted(found)
    mlkw_display = dict(zip(MLKW_LABELS.names, MLKW_LABELS.display_names, strict=True))
    return LabelSet.from_names(ordered, mlkw_display)


def _available_splits(main_dir: Path) -> list[str]:
    return sorted({p.stem.rsplit("_", 1)[-1] for p in main_dir.glob("*.txt")})


def _class_list_files(main_dir: Path, split: str) -> dict[str, Path]:
    suffix = f"_{split}.txt"
    return {
        p.name[: -len(suffix)]: p
        for p in sorted(main_dir.glob(f"*{suffix}"))
        if p.is_file() and len(p.name) > len(suffix)
    }


def _read_class_list(path: Path) -> list[tuple[str, int]]:
    """Parse ``name label`` lines; DatasetError naming the file and line for anything else."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read label list {path}: {err}") from err
    rows: list[tuple[str, int]] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) == 1:
            raise DatasetError(
                f"{path}, line {number}: image {fields[0]!r} has an empty label; every line "
                f"must be 'name label' with label 1 (positive), -1 (negative) or 0 (difficult)"
            )
        if len(fields) != 2:
            raise DatasetError(
                f"{path}, line {number}: expected 'name label', got {line.strip()!r}"
            )
        name, label = fields
        if label not in _LIST_LABELS:
            raise DatasetError(
                f"{path}, line {number}: label {label!r} for image {name!r} is not 1, -1 or 0"
            )
        if name in seen:
            raise DatasetError(f"{path}, line {number}: image {name!r} is listed twice")
        seen.add(name)
        rows.append((name, _LIST_LABELS[label]))
    if not rows:
        raise DatasetError(f"label list {path} is empty; it must list every image of the split")
    return rows


def _read_image_list(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read image list {path}: {err}") from err
    names: list[str] = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if len(fields) > 1:
            raise DatasetError(
                f"{path}, line {number}: expected one image name per line, got {line.strip()!r}"
            )
        names.extend(fields)
    if not names:
        raise DatasetError(f"image list {path} is empty")
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise DatasetError(f"image list {path} lists {duplicate!r} more than once")
    return names


def _image_path(jpeg_dir: Path, name: str) -> Path:
    for suffix in _IMAGE_SUFFIXES:
        candidate = jpeg_dir / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return jpeg_dir / f"{name}.jpg"  # missing: check_images reports it with the others


def _from_class_lists(
    files: dict[str, Path], labels: LabelSet | None, difficult_value: float, split: str
) -> tuple[LabelSet, list[str], np.ndarray]:
    if labels is None:
        labels = discover_labels(files)
    else:
        unknown = sorted(set(files) - set(labels.names))
        if unknown:
            raise DatasetError(
                f"{files[unknown[0]]}: unknown class {unknown[0]!r}; known classes: "
                f"{', '.join(labels.names)}"
            )
        missing = [n for n in labels.names if n not in files]
        if missing:
            main_dir = next(iter(files.values())).parent
            raise DatasetError(
                f"no label list for class {missing[0]!r}: expected "
                f"{main_dir / f'{missing[0]}_{split}.txt'}"
            )
    per_class = [_read_class_list(files[class_name]) for class_name in labels.names]
    first_file = files[labels.names[0]]
    names = [name for name, _ in per_class[0]]
    index = {name: i for i, name in enumerate(names)}
    targets = np.zeros((len(names), len(labels)), np.float32)
    for c, (class_name, rows) in enumerate(zip(labels.names, per_class, strict=True)):
        listed = {name for name, _ in rows}
        extra = [name for name, _ in rows if name not in index]
        absent = [name for name in names if name not in listed]
        if extra or absent:
            here, there = (
                (files[class_name], first_file) if extra else (first_file, files[class_name])
            )
            image = (extra or absent)[0]
            raise DatasetError(
                f"image {image!r} is listed in {here.name} but not in {there.name}; every "
                f"per-class list of a split must list the same images"
            )
        for name, label in rows:
            value = 1.0 if label == 1 else 0.0 if label == -1 else difficult_value
            targets[index[name], c] = value
    return labels, names, targets


def _parse_objects(path: Path) -> list[tuple[str, bool]]:
    """The (class name, difficult) pairs of one VOC annotation file."""
    if not path.is_file():
        raise DatasetError(f"annotation file {path} is missing; every listed image needs one")
    try:
        tree = ET.parse(path)
    except ET.ParseError as err:
        raise DatasetError(f"malformed XML in {path}: {err}") from err
    objects: list[tuple[str, bool]] = []
    for number, obj in enumerate(tree.getroot().iter("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise DatasetError(f"{path}: object {number} has no <name>")
        flag = (obj.findtext("difficult") or "0").strip()
        if flag not in ("0", "1"):
            raise DatasetError(
                f"{path}: object {number} has <difficult>{flag}</difficult>; use 0 or 1"
            )
        objects.append((name, flag == "1"))
    return objects


def _from_annotations(
    names: list[str], annotation_dir: Path, labels: LabelSet | None, difficult_value: float
) -> tuple[LabelSet, np.ndarray]:
    per_image = [_parse_objects(annotation_dir / f"{name}.xml") for name in names]
    if labels is None:
        labels = discover_labels(cls for objects in per_image for cls, _ in objects)
    targets = np.zeros((len(names), len(labels)), np.float32)
    for row, (name, objects) in enumerate(zip(names, per_image, strict=True)):
        for class_name, is_difficult in objects:
            try:
                c = labels.index(class_name)
            except DatasetError as err:
                raise DatasetError(f"{annotation_dir / (name + '.xml')}: {err}") from None
            if not is_difficult:
                targets[row, c] = 1.0
            elif targets[row, c] != 1.0:
                # Only difficult objects of this class: VOC marks the image 0 (difficult).
                targets[row, c] = difficult_value
    return labels, targets


def read_voc(
    root: Path,
    split: str,
    *,
    labels: LabelSet | None = None,
    difficult: str = "ignore",
    check_files: bool = True,
) -> AnnotatedSplit:
    """Read one split of a VOC-layout dataset (MLKW and the synthetic scenes use it).

    Args:
        root: Folder holding ``VOCdevkit/VOC2007``, or the ``VOC2007`` folder itself.
        split: Image-set name, e.g. ``trainval`` or ``test``.
        labels: Expected classes in model order (e.g. a checkpoint's); classes on disk that are
            not in it are an error. None discovers them from the files (MLKW's order when they
            are MLKW's classes, else sorted).
        difficult: What a difficult entry (list label 0, ``<difficult>1``) becomes:
            ``ignore`` (-1, skipped by losses and metrics), ``positive`` or ``negative``.
        check_files: Require every image file to exist (label statistics do not need them).

    Returns:
        The split, images in the order of the first class list (or of ``<split>.txt``).

    Raises:
        ConfigError: ``difficult`` is not one of :data:`DIFFICULT_POLICIES`.
        DatasetError: Missing root or split, malformed lists or XML, unknown or inconsistent
            classes, missing images.
    """
    if difficult not in DIFFICULT_POLICIES:
        raise ConfigError(
            f"difficult must be one of {', '.join(DIFFICULT_POLICIES)}, got {difficult!r}"
        )
    voc_dir = find_voc_dir(Path(root))
    main_dir = voc_dir / "ImageSets" / "Main"
    difficult_value = _DIFFICULT_VALUE[difficult]
    files = _class_list_files(main_dir, split)
    if files:
        labels, names, targets = _from_class_lists(files, labels, difficult_value, split)
        how = "per-class lists"
    elif (main_dir / f"{split}.txt").is_file():
        names = _read_image_list(main_dir / f"{split}.txt")
        labels, targets = _from_annotations(names, voc_dir / "Annotations", labels, difficult_value)
        how = "XML annotations"
    else:
        available = ", ".join(_available_splits(main_dir)) or "none"
        raise DatasetError(
            f"split {split!r} not found in {main_dir}: no <class>_{split}.txt and no "
            f"{split}.txt; available splits: {available}"
        )
    jpeg_dir = voc_dir / "JPEGImages"
    boxes = _sample_boxes(voc_dir, names, labels)
    samples = tuple(
        Sample(_image_path(jpeg_dir, name), targets[i].copy(), name, boxes.get(name))
        for i, name in enumerate(names)
    )
    result = AnnotatedSplit(labels, samples, split, str(voc_dir), jpeg_dir)
    _log.debug("read %d images, %d classes from %s (%s)", len(samples), len(labels), voc_dir, how)
    if check_files:
        check_images(result)
    return result


def _sample_boxes(voc_dir: Path, names: list[str], labels: LabelSet) -> dict[str, np.ndarray]:
    """Each image's non-difficult boxes as :attr:`Sample.boxes` rows, when all have boxes.

    Boxes are an extra (augmentation that keeps labels true, pointing scores): a dataset
    whose boxes are missing or malformed is read without them, said in one warning.
    """
    try:
        annotations = read_voc_boxes(voc_dir, names)
    except DatasetError as err:
        _log.warning("%s: reading the images without their boxes: %s", voc_dir, err)
        return {}
    if annotations is None:
        return {}
    known = set(labels.names)
    result = {}
    for name, annotation in annotations.items():
        scale = np.array([annotation.width, annotation.height] * 2, np.float32)
        rows = [
            [labels.index(box.name), *(np.array(box.box, np.float32) - [1, 1, 0, 0]) / scale]
            for box in annotation.boxes
            if box.name in known and not box.difficult
        ]
        result[name] = np.array(rows, np.float32).reshape(-1, 5)
    return result


def _read_annotation(path: Path) -> VocAnnotation | None:
    """The boxes of one annotation file, or None when it has no box for some object."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as err:
        raise DatasetError(f"cannot read the annotation {path}: {err}") from err
    try:
        width = int(root.findtext("size/width") or 0)
        height = int(root.findtext("size/height") or 0)
        boxes = []
        for number, obj in enumerate(root.iter("object"), start=1):
            box = obj.find("bndbox")
            if box is None:
                return None
            corners = tuple(int(float(box.findtext(k) or "nan")) for k in _BOX_KEYS)
            xmin, ymin, xmax, ymax = corners
            if not (1 <= xmin <= xmax and 1 <= ymin <= ymax):
                raise DatasetError(f"{path}: object {number} has an empty box {corners}")
            name = (obj.findtext("name") or "").strip()
            flag = (obj.findtext("difficult") or "0").strip() == "1"
            boxes.append(VocBox(name, corners, flag))  # type: ignore[arg-type]
    except (ValueError, OverflowError) as err:
        raise DatasetError(f"{path}: a size or box value is not a number ({err})") from err
    if boxes and (width < 1 or height < 1):
        raise DatasetError(f"{path} gives no image <size>; boxes need it")
    return VocAnnotation(width, height, tuple(boxes))


def read_voc_boxes(root: Path, image_ids: Sequence[str]) -> dict[str, VocAnnotation] | None:
    """The boxes of ``image_ids`` from ``Annotations/<id>.xml``; None if some have none.

    A dataset with image-level labels only (no annotation files, or objects without
    ``<bndbox>``) has no boxes, and callers skip localisation scores for it.

    Raises:
        DatasetError: Malformed XML, an empty box, a missing size.
    """
    annotations = find_voc_dir(Path(root)) / "Annotations"
    result = {}
    for image_id in image_ids:
        path = annotations / f"{image_id}.xml"
        annotation = _read_annotation(path) if path.is_file() else None
        if annotation is None:
            return None
        result[image_id] = annotation
    return result


def write_voc_lists(
    voc_dir: Path,
    split: str,
    labels: LabelSet,
    image_ids: Sequence[str],
    targets: np.ndarray,
) -> None:
    """Write ``ImageSets/Main/<split>.txt`` and one ``<class>_<split>.txt`` per class.

    Targets map to list labels as 1 -> 1, 0 -> -1 and -1 (ignore) -> 0 (difficult), so
    :func:`read_voc` with ``difficult="ignore"`` reads back the same targets.
    """
    targets = np.asarray(targets)
    if targets.shape != (len(image_ids), len(labels)):
        raise DatasetError(
            f"targets of shape {targets.shape} do not match {len(image_ids)} images x "
            f"{len(labels)} classes"
        )
    main_dir = Path(voc_dir) / "ImageSets" / "Main"
    main_dir.mkdir(parents=True, exist_ok=True)
    (main_dir / f"{split}.txt").write_text("".join(f"{n}\n" for n in image_ids), encoding="utf-8")
    to_list = {1.0: "1", 0.0: "-1", -1.0: "0"}
    for c, class_name in enumerate(labels.names):
        lines = (
            f"{n} {to_list[float(v)]:>2}\n" for n, v in zip(image_ids, targets[:, c], strict=True)
        )
        (main_dir / f"{class_name}_{split}.txt").write_text("".join(lines), encoding="utf-8")
