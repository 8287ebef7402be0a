"""Writing generated scenes (synthetic or composed) as a PASCAL VOC2007 folder.

Shared by :mod:`mmsag_ros.data.synth` and :mod:`mmsag_ros.data.compose`: the folder layout,
one annotation file per image with each object's visible box, the per-class image lists the
trainer reads, and a marker file that says what generated the data (so a second run may
replace only its own kind of output).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import cv2
import numpy as np

from mmsag_ros.data.synth_scene import SceneObject
from mmsag_ros.errors import ConfigError, DatasetError

__all__ = [
    "annotation_xml",
    "image_label",
    "prepare_voc_dir",
    "write_jpeg",
    "write_split_lists",
]

_JPEG_QUALITY = 92


def prepare_voc_dir(out_dir: Path, overwrite: bool, marker: str) -> Path:
    """Create ``out_dir/VOCdevkit/VOC2007`` and its folders; return the VOC2007 path.

    A non-empty ``out_dir`` is refused unless ``overwrite``, and even then only when it holds
    ``marker`` (the metadata file the same generator writes), so nothing else is replaced.
    ``marker`` is written at once, marked incomplete, so an interrupted run's folder is
    recognised too.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"output path {out_dir} is a file; choose a directory")
    voc = out_dir / "VOCdevkit" / "VOC2007"
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"output directory {out_dir} is not empty; choose a new or empty directory, or "
                "pass --overwrite (overwrite=True) to replace a dataset this generator wrote there"
            )
        if (out_dir / "VOCdevkit").exists() and not (out_dir / marker).is_file():
            raise ConfigError(
                f"{out_dir / 'VOCdevkit'} exists but {out_dir} holds no {marker}, so it is not "
                "a dataset this generator wrote; refusing to replace it: choose another output "
                "directory"
            )
        for sub in ("JPEGImages", "Annotations", "ImageSets"):
            shutil.rmtree(voc / sub, ignore_errors=True)
    try:
        for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
            (voc / sub).mkdir(parents=True, exist_ok=True)
        # Claimed before the first image, so an interrupted run can be overwritten; the
        # generator replaces it with the full record at the end.
        (out_dir / marker).write_text('{"complete": false}\n', encoding="utf-8")
    except OSError as err:
        raise DatasetError(f"cannot create the dataset folders under {out_dir}: {err}") from err
    return voc


def annotation_xml(
    image_id: str,
    size: tuple[int, int],
    objects: Sequence[SceneObject],
    *,
    database: str,
    tool: str,
    image_kind: str,
) -> str:
    """One VOC annotation file; ``<source>`` says what made the image (``database`` etc.)."""
    width, height = size
    parts = [
        "<annotation>",
        "  <folder>VOC2007</folder>",
        f"  <filename>{image_id}.jpg</filename>",
        "  <source>",
        f"    <database>{escape(database)}</database>",
        f"    <annotation>{escape(tool)}</annotation>",
        f"    <image>{escape(image_kind)}</image>",
        "  </source>",
        f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
        "  <segmented>0</segmented>",
    ]
    for obj in objects:
        xmin, ymin, xmax, ymax = obj.bbox
        parts += [
            "  <object>",
            f"    <name>{escape(obj.name)}</name>",
            "    <pose>Unspecified</pose>",
            f"    <truncated>{int(obj.truncated)}</truncated>",
            f"    <difficult>{int(obj.difficult)}</difficult>",
            f"    <bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
            f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox>",
            "  </object>",
        ]
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


def image_label(name: str, objects: Sequence[SceneObject]) -> int:
    """VOC list label of class ``name``: 1 present, 0 only difficult, -1 absent."""
    flags = [o.difficult for o in objects if o.name == name]
    if not flags:
        return -1
    return 0 if all(flags) else 1


def write_jpeg(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image as JPEG; DatasetError if OpenCV cannot."""
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    if not cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY]):
        raise DatasetError(f"OpenCV could not write {path}; check the disk and permissions")


def write_split_lists(
    main: Path,
    splits: Mapping[str, Sequence[str]],
    image_labels: Mapping[str, Mapping[str, int]],
    names: Sequence[str],
) -> None:
    """``ImageSets/Main/<split>.txt`` and ``<class>_<split>.txt`` for every non-empty split."""
    for split, ids in splits.items():
        if not ids:  # an empty list would be a malformed split; leave it out
            continue
        (main / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
        for name in names:
            lines = "".join(f"{i} {image_labels[i][name]:2d}\n" for i in ids)
            (main / f"{name}_{split}.txt").write_text(lines, encoding="utf-8")
