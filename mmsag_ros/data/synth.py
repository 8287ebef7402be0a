"""Synthetic conveyor-belt scenes written as a VOC-layout multi-label dataset.

A seeded generator for demos, tests and benchmarks. Every frame is a top-down view of a rubber
belt carrying zero to five waste objects (see :mod:`mmsag_ros.data.synth_scene`). The output
is clearly marked synthetic (``synthetic.json``, ``README.txt``, the VOC ``<source>`` field).
The same seed gives byte-identical files: each image has its own generator derived from
(seed, split, index).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import cv2
import numpy as np
from tqdm import tqdm

from mmsag_ros.bundle.labels import MLKW_LABELS, LabelSet
from mmsag_ros.data.synth_scene import SceneObject, check_synth_labels, render_scene
from mmsag_ros.errors import ConfigError, DatasetError

__all__ = ["SPLITS", "SynthSummary", "generate_dataset"]

_log = logging.getLogger(__name__)

SPLITS = ("trainval", "train", "val", "test")
"""Splits written under ImageSets/Main; trainval is train + val."""
_SPLIT_CODES = {"trainval": 1, "test": 2}
_VAL_EVERY = 5  # every fifth trainval image goes to ``val``, the rest to ``train``
_JPEG_QUALITY = 92
_MIN_SIDE_PX = 32


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate_dataset` wrote.

    Attributes:
        root: The output directory.
        voc_root: ``root/VOCdevkit/VOC2007``.
        seed: Seed of the run.
        image_size: (width, height) in pixels.
        classes: Class names, in label-set order.
        images: split -> number of images (``trainval``, ``train``, ``val``, ``test``).
        positives: split -> class -> images labelled 1 (a non-difficult object present).
        objects: split -> class -> annotated objects, difficult ones included.
        empty_images: split -> images without any annotated object.
    """

    root: Path
    voc_root: Path
    seed: int
    image_size: tuple[int, int]
    classes: tuple[str, ...]
    images: Mapping[str, int]
    positives: Mapping[str, Mapping[str, int]]
    objects: Mapping[str, Mapping[str, int]]
    empty_images: Mapping[str, int]


def _image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_CODES[split], index]))


def _xml(image_id: str, size: tuple[int, int], objects: list[SceneObject]) -> str:
    width, height = size
    parts = [
        "<annotation>",
        "  <folder>VOC2007</folder>",
        f"  <filename>{image_id}.jpg</filename>",
        "  <source>",
        "    <database>mmsag synthetic conveyor scenes (SYNTHETIC, not real data)</database>",
        "    <annotation>mmsag_ros.data.synth</annotation>",
        "    <image>synthetic</image>",
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


def _image_label(name: str, objects: list[SceneObject]) -> int:
    flags = [o.difficult for o in objects if o.name == name]
    if not flags:
        return -1
    return 0 if all(flags) else 1


def _prepare(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"output path {out_dir} is a file; choose a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"output directory {out_dir} is not empty; choose a new or empty directory, or "
                "pass --overwrite (overwrite=True) to replace a previous synthetic dataset there"
            )
        voc = out_dir / "VOCdevkit"
        if voc.exists() and not (out_dir / "synthetic.json").is_file():
            raise ConfigError(
                f"{voc} exists but {out_dir} holds no synthetic.json, so it is not a dataset this "
                "generator wrote; refusing to replace it: choose another output directory"
            )
        for sub in ("JPEGImages", "Annotations", "ImageSets"):
            shutil.rmtree(voc / "VOC2007" / sub, ignore_errors=True)
    try:
        for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
            (out_dir / "VOCdevkit" / "VOC2007" / sub).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DatasetError(f"cannot create the dataset folders under {out_dir}: {err}") from err


def _progress(total: int, enabled: bool) -> tqdm | None:
    if not enabled:
        return None

    return tqdm(total=total, desc="synth", unit="img")


def generate_dataset(
    out_dir: Path,
    *,
    num_trainval: int,
    num_test: int,
    image_size: tuple[int, int] = (320, 240),
    seed: int = 0,
    labels: LabelSet = MLKW_LABELS,
    progress: bool = False,
    overwrite: bool = False,
) -> SynthSummary:
    """Write a synthetic conveyor dataset in the VOC2007 layout.

    Writes ``out_dir/VOCdevkit/VOC2007/{JPEGImages,Annotations,ImageSets/Main}`` with the
    splits ``trainval`` and ``test`` (and VOC's ``train``/``val`` partition of trainval), plus
    ``out_dir/synthetic.json`` and ``out_dir/README.txt`` saying the data are synthetic.

    Args:
        out_dir: Output directory; must be new or empty unless ``overwrite``.
        num_trainval: Number of trainval images.
        num_test: Number of test images.
        image_size: (width, height) in pixels, each at least 32.
        seed: Non-negative seed; the same seed gives byte-identical files.
        labels: Classes to draw, a subset of MLKW's names in any order.
        progress: Show a tqdm progress bar.
        overwrite: Replace a previous synthetic dataset in ``out_dir``.

    Returns:
        Counts of what was written.

    Raises:
        ConfigError: A bad count, size, seed, label set or a non-empty output directory.
        DatasetError: A file cannot be written.
    """
    out_dir = Path(out_dir)
    for key, value in (("num_trainval", num_trainval), ("num_test", num_test)):
        if value < 0:
            raise ConfigError(f"{key} must be >= 0, got {value}")
    if num_trainval + num_test == 0:
        raise ConfigError("num_trainval and num_test are both 0; ask for at least one image")
    width, height = (int(v) for v in image_size)
    if min(width, height) < _MIN_SIDE_PX:
        raise ConfigError(f"image_size {image_size} is too small; use at least 32x32 pixels")
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    names = check_synth_labels(labels)
    _prepare(out_dir, overwrite)
    voc = out_dir / "VOCdevkit" / "VOC2007"
    splits: dict[str, list[str]] = {s: [] for s in SPLITS}
    image_labels: dict[str, dict[str, int]] = {}
    objects: dict[str, dict[str, int]] = {s: dict.fromkeys(names, 0) for s in splits}
    empty = dict.fromkeys(splits, 0)
    bar = _progress(num_trainval + num_test, progress)
    try:
        for split, count in (("trainval", num_trainval), ("test", num_test)):
            for index in range(count):
                image_id = f"{split}_{index:06d}"
                image, scene = render_scene(
                    _image_rng(seed, split, index), image_size=(width, height), labels=labels
                )
                _write_image(voc / "JPEGImages" / f"{image_id}.jpg", image)
                (voc / "Annotations" / f"{image_id}.xml").write_text(
                    _xml(image_id, (width, height), scene), encoding="utf-8"
                )
                image_labels[image_id] = {n: _image_label(n, scene) for n in names}
                groups = [split]
                if split == "trainval":
                    groups.append("val" if index % _VAL_EVERY == _VAL_EVERY - 1 else "train")
                for group in groups:
                    splits[group].append(image_id)
                    empty[group] += not scene
                    for obj in scene:
                        objects[group][obj.name] += 1
                if bar is not None:
                    bar.update(1)
    except OSError as err:
        raise DatasetError(f"cannot write the synthetic dataset under {out_dir}: {err}") from err
    finally:
        if bar is not None:
            bar.close()
    positives = {
        s: {n: sum(image_labels[i][n] == 1 for i in ids) for n in names}
        for s, ids in splits.items()
    }
    summary = SynthSummary(
        root=out_dir,
        voc_root=voc,
        seed=seed,
        image_size=(width, height),
        classes=names,
        images={s: len(ids) for s, ids in splits.items()},
        positives=positives,
        objects=objects,
        empty_images=empty,
    )
    _write_lists(voc / "ImageSets" / "Main", splits, image_labels, names)
    _write_metadata(out_dir, summary, labels)
    _log.debug("wrote %d synthetic images to %s", num_trainval + num_test, voc)
    return summary


def _write_image(path: Path, rgb: np.ndarray) -> None:
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    if not cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY]):
        raise DatasetError(f"OpenCV could not write {path}; check the disk and permissions")


def _write_lists(
    main: Path,
    splits: dict[str, list[str]],
    image_labels: dict[str, dict[str, int]],
    names: tuple[str, ...],
) -> None:
    for split, ids in splits.items():
        if not ids:  # an empty list would be a malformed split; leave it out
            continue
        (main / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
        for name in names:
            lines = "".join(f"{i} {image_labels[i][name]:2d}\n" for i in ids)
            (main / f"{name}_{split}.txt").write_text(lines, encoding="utf-8")


def _write_metadata(out_dir: Path, summary: SynthSummary, labels: LabelSet) -> None:
    meta = {
        "synthetic": True,
        "generator": "mmsag_ros.data.synth",
        "seed": summary.seed,
        "image_size": list(summary.image_size),
        "classes": list(summary.classes),
        "display_names": list(labels.display_names),
        "counts": {
            "images": dict(summary.images),
            "positives": {s: dict(c) for s, c in summary.positives.items()},
            "objects": {s: dict(c) for s, c in summary.objects.items()},
            "empty_images": dict(summary.empty_images),
        },
    }
    (out_dir / "synthetic.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    width, height = summary.image_size
    (out_dir / "README.txt").write_text(
        "SYNTHETIC DATA - not photographs of real waste.\n\n"
        "Top-down conveyor-belt frames drawn by mmsag_ros.data.synth with OpenCV primitives, "
        f"seed {summary.seed}, {width}x{height} pixels, in the PASCAL VOC2007 layout under "
        "VOCdevkit/VOC2007 (splits trainval = train + val, and test). Use them for demos, tests "
        "and benchmarks; scores measured on them say nothing about real-world accuracy.\n"
        f"Classes: {', '.join(summary.classes)}.\n",
        encoding="utf-8",
    )
