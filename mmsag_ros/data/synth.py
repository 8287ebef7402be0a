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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmsag_ros.bundle.labels import MLKW_LABELS, LabelSet
from mmsag_ros.data.synth_scene import check_synth_labels, render_scene
from mmsag_ros.data.voc_writer import (
    annotation_xml,
    image_label,
    prepare_voc_dir,
    write_jpeg,
    write_split_lists,
)
from mmsag_ros.errors import ConfigError, DatasetError
from mmsag_ros.progress import progress_bar

__all__ = ["SPLITS", "SynthSummary", "generate_dataset"]

_log = logging.getLogger(__name__)

SPLITS = ("trainval", "train", "val", "test")
"""Splits written under ImageSets/Main; trainval is train + val."""
_SPLIT_CODES = {"trainval": 1, "test": 2}
_VAL_EVERY = 5  # every fifth trainval image goes to ``val``, the rest to ``train``
_SOURCE = {
    "database": "mmsag synthetic conveyor scenes (SYNTHETIC, not real data)",
    "tool": "mmsag_ros.data.synth",
    "image_kind": "synthetic",
}
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
        progress: Show a progress bar.
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
    voc = prepare_voc_dir(out_dir, overwrite, "synthetic.json")
    splits: dict[str, list[str]] = {s: [] for s in SPLITS}
    image_labels: dict[str, dict[str, int]] = {}
    objects: dict[str, dict[str, int]] = {s: dict.fromkeys(names, 0) for s in splits}
    empty = dict.fromkeys(splits, 0)
    bar = progress_bar(total=num_trainval + num_test, desc="synth", unit="img", enabled=progress)
    try:
        for split, count in (("trainval", num_trainval), ("test", num_test)):
            for index in range(count):
                image_id = f"{split}_{index:06d}"
                image, scene = render_scene(
                    _image_rng(seed, split, index), image_size=(width, height), labels=labels
                )
                write_jpeg(voc / "JPEGImages" / f"{image_id}.jpg", image)
                (voc / "Annotations" / f"{image_id}.xml").write_text(
                    annotation_xml(image_id, (width, height), scene, **_SOURCE), encoding="utf-8"
                )
                image_labels[image_id] = {n: image_label(n, scene) for n in names}
                groups = [split]
                if split == "trainval":
                    groups.append("val" if index % _VAL_EVERY == _VAL_EVERY - 1 else "train")
                for group in groups:
                    splits[group].append(image_id)
                    empty[group] += not scene
                    for obj in scene:
                        objects[group][obj.name] += 1
                bar.update(1)
    except OSError as err:
        raise DatasetError(f"cannot write the synthetic dataset under {out_dir}: {err}") from err
    finally:
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
    write_split_lists(voc / "ImageSets" / "Main", splits, image_labels, names)
    _write_metadata(out_dir, summary, labels)
    _log.debug("wrote %d synthetic images to %s", num_trainval + num_test, voc)
    return summary


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
