"""Multi-label belt scenes composed from single-object photos, written in the VOC layout.

Most public waste datasets hold one object per photo, a folder per class
(``<photos>/<class>/*.jpg``, e.g. TrashNet). A sorting cell sees several objects at once. This
module cuts each photo's object out of its background (:mod:`mmsag_ros.data.cutout`) and lays
1 to N of them on a belt (the synthetic generator's belts, lighting and camera), with a box per
object, so the trainer, ``mmsag eval`` and the pointing scores read them like any VOC set.

- **Splits by groups of photos.** Consecutive photo numbers are often the same item photographed
  again, so photos are grouped per class by number, ``number // group_size`` (a photo without a
  number is a group of its own), and whole groups go to ``test``, ``val`` or ``train`` by a
  seeded shuffle, until each split holds its share of the class's photos. A scene of a split
  uses only that split's photos: no photo, and no near-duplicate, is seen by two splits.
- **Scenes.** Each scene has 1 to ``max_objects`` objects; each object's class is drawn
  uniformly (class-balanced; repeats allowed, so several objects of one class occur), then a
  photo of that class. Objects are scaled to a random size, rotated, mirrored and placed where
  they overlap earlier ones by at most ``max_overlap`` of the smaller object; an object that
  finds no such spot (or whose photo had no object to cut out) is replaced by another draw.
  Boxes are each object's visible extent. How each step is drawn is a named style
  (:mod:`mmsag_ros.data.compose_scene`): ``original``, the first composer, kept as a fixed test
  reference, or ``belt``.
- **Cutouts looked at.** The cutout of every photo the scenes drew is on a contact sheet per
  class (``cutouts/<class>.png``); a style that checks cutouts leaves out, counts and lists
  those that fail the sanity check (``cutout_problem``: small, strip, ragged).
- **Marked as composed.** ``composed.json`` and ``README.txt`` say the scenes are composed from
  photos (not camera frames), from which folder, with which seed, and which photo went to
  which split; the VOC ``<source>`` field says so per image.

The same photos and seed give byte-identical files.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmsag_ros.data.compose_scene import ComposeStyle, Cutouts, compose_style, render_scene
from mmsag_ros.data.contact_sheet import write_contact_sheet
from mmsag_ros.data.voc_writer import (
    annotation_xml,
    image_label,
    prepare_voc_dir,
    write_jpeg,
    write_split_lists,
)
from mmsag_ros.errors import ConfigError, DatasetError
from mmsag_ros.progress import progress_bar

__all__ = ["COMPOSE_SPLITS", "ComposeSummary", "PhotoSplit", "compose_dataset", "split_photos"]

#: Splits of the photos (and of the scenes composed from them).
COMPOSE_SPLITS = ("train", "val", "test")
_SPLIT_CODES = {"train": 11, "val": 12, "test": 13}
_MARKER = "composed.json"
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
_NUMBER = re.compile(r"(\d+)$")
_MIN_SIDE_PX = 64
_SOURCE = {
    "database": "mmsag composed belt scenes (COMPOSED from real photos, not camera frames)",
    "tool": "mmsag_ros.data.compose",
    "image_kind": "composed",
}


@dataclass(frozen=True)
class PhotoSplit:
    """Which photos of each class went to which split.

    Attributes:
        photos: split -> class -> photo paths (sorted).
        groups: split -> class -> number of photo groups.
    """

    photos: Mapping[str, Mapping[str, tuple[Path, ...]]]
    groups: Mapping[str, Mapping[str, int]]


@dataclass(frozen=True)
class ComposeSummary:
    """What :func:`compose_dataset` wrote.

    Attributes:
        root: The output directory.
        voc_root: ``root/VOCdevkit/VOC2007``.
        seed: Seed of the run.
        image_size: (width, height) in pixels.
        classes: Class names (the photo folders), sorted.
        images: split -> scenes (``train``, ``val``, ``test``, ``trainval``).
        objects: split -> class -> annotated objects.
        photos: split -> class -> photos available to that split.
        cutouts: cutout kind -> photos (``object``, ``sheet``, ``empty``; empty ones unused).
        style: The style the scenes were drawn in.
        rejected: problem -> photos whose cutouts the style's check left out.
        seconds: Wall time of the run.
    """

    root: Path
    voc_root: Path
    seed: int
    image_size: tuple[int, int]
    classes: tuple[str, ...]
    images: Mapping[str, int]
    objects: Mapping[str, Mapping[str, int]]
    photos: Mapping[str, Mapping[str, int]]
    cutouts: Mapping[str, int]
    style: ComposeStyle
    rejected: Mapping[str, Sequence[str]]
    seconds: float


def _photo_number(path: Path) -> int | None:
    match = _NUMBER.search(path.stem)
    return int(match.group(1)) if match else None


def _class_photos(photos_dir: Path) -> dict[str, list[Path]]:
    if not photos_dir.is_dir():
        raise ConfigError(f"photo folder {photos_dir} does not exist or is not a directory")
    classes = {}
    for folder in sorted(p for p in photos_dir.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        if files:
            classes[folder.name] = files
    if len(classes) < 2:
        raise ConfigError(
            f"{photos_dir} needs at least two class folders of images (<class>/*.jpg); found "
            f"{len(classes)}"
        )
    return classes


def split_photos(
    photos_dir: Path,
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    group_size: int = 10,
) -> PhotoSplit:
    """Assign every photo of an image-folder dataset to train, val or test, by groups.

    Photos of a class are grouped by ``number // group_size`` (the trailing number of the file
    name); groups are shuffled with the seed and handed to test, then val, while each holds
    less than its share of the class's photos; the rest go to train. Each split gets at least
    one group of a class that has three or more.

    Raises:
        ConfigError: A missing folder, fewer than two classes, bad fractions or group size.
    """
    if not (0 < test_fraction < 1 and 0 < val_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(
            f"val_fraction {val_fraction} and test_fraction {test_fraction} must each lie "
            "in (0, 1) and leave photos for training"
        )
    if group_size < 1:
        raise ConfigError(f"group_size must be at least 1, got {group_size}")
    photos: dict[str, dict[str, tuple[Path, ...]]] = {s: {} for s in COMPOSE_SPLITS}
    groups_out: dict[str, dict[str, int]] = {s: {} for s in COMPOSE_SPLITS}
    for class_index, (name, files) in enumerate(_class_photos(Path(photos_dir)).items()):
        groups: dict[str, list[Path]] = {}
        for path in files:
            number = _photo_number(path)
            key = path.stem if number is None else str(number // group_size)
            groups.setdefault(key, []).append(path)
        keys = sorted(groups)
        order = np.random.default_rng([seed, class_index]).permutation(len(keys))
        shares = {"test": test_fraction * len(files), "val": val_fraction * len(files)}
        taken: dict[str, list[Path]] = {s: [] for s in COMPOSE_SPLITS}
        counts = dict.fromkeys(COMPOSE_SPLITS, 0)
        queue = [keys[i] for i in order]
        for split in ("test", "val"):
            while queue and (
                len(taken[split]) < shares[split] or (counts[split] == 0 and len(keys) >= 3)
            ):
                taken[split].extend(groups[queue.pop(0)])
                counts[split] += 1
        for key in queue:
            taken["train"].extend(groups[key])
            counts["train"] += 1
        for split in COMPOSE_SPLITS:
            photos[split][name] = tuple(sorted(taken[split]))
            groups_out[split][name] = counts[split]
    return PhotoSplit(photos=photos, groups=groups_out)


def _check_options(
    counts: dict[str, int],
    image_size: tuple[int, int],
    max_objects: int,
    max_overlap: float,
    seed: int,
) -> tuple[int, int]:
    """ConfigError for a bad count, size, object limit or seed; the scene's (width, height)."""
    for split, count in counts.items():
        if count < 0:
            raise ConfigError(f"num_{split} must be >= 0, got {count}")
    if sum(counts.values()) == 0:
        raise ConfigError("num_train, num_val and num_test are all 0; ask for at least one scene")
    width, height = (int(v) for v in image_size)
    if min(width, height) < _MIN_SIDE_PX:
        raise ConfigError(f"image_size {image_size} is too small; use at least 64x64 pixels")
    if max_objects < 1:
        raise ConfigError(f"max_objects must be at least 1, got {max_objects}")
    if not 0 <= max_overlap < 1:
        raise ConfigError(f"max_overlap must lie in [0, 1), got {max_overlap}")
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    return width, height


def _check_split_photos(split: PhotoSplit, names: tuple[str, ...], counts: dict[str, int]) -> None:
    """ConfigError when a split asked for scenes lacks photos of some class."""
    for name_split, count in counts.items():
        empty = [n for n in names if count and not split.photos[name_split][n]]
        if empty:
            raise ConfigError(
                f"the {name_split} split has no photos of {', '.join(empty)}; lower group_size "
                "or add photos"
            )


def compose_dataset(
    photos_dir: Path,
    out_dir: Path,
    *,
    num_train: int,
    num_val: int,
    num_test: int,
    image_size: tuple[int, int] = (320, 240),
    max_objects: int = 4,
    max_overlap: float = 0.2,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    group_size: int = 10,
    seed: int = 0,
    style: str | ComposeStyle = "original",
    progress: bool = False,
    overwrite: bool = False,
) -> ComposeSummary:
    """Compose belt scenes from an image-folder dataset and write them in the VOC2007 layout.

    Writes ``out_dir/VOCdevkit/VOC2007`` with the splits ``train``, ``val``, ``test`` and
    ``trainval`` (train + val), plus ``composed.json``, ``README.txt`` and a contact sheet of
    each class's cutouts (of the photos the scenes drew), ``cutouts/<class>.png``.

    Args:
        photos_dir: ``<class>/*.jpg`` folders, one object per photo.
        out_dir: Output directory; new or empty unless ``overwrite``.
        num_train: Training scenes.
        num_val: Validation scenes.
        num_test: Test scenes.
        image_size: (width, height) of a scene, each at least 64.
        max_objects: Most objects in a scene (at least 1).
        max_overlap: Largest overlap of two objects, a fraction of the smaller one, in [0, 1).
        val_fraction: Share of each class's photos kept for validation scenes.
        test_fraction: Share kept for test scenes.
        group_size: Consecutive photo numbers grouped into one split (see :func:`split_photos`).
        seed: Non-negative seed; the same photos and seed give byte-identical files.
        style: How scenes are drawn, a :class:`ComposeStyle` or a name in ``COMPOSE_STYLES``.
        progress: Show a progress bar.
        overwrite: Replace a dataset this function wrote to ``out_dir`` before.

    Raises:
        ConfigError: Bad counts, sizes, fractions, seed or style, a missing photo folder, a
            split without usable photos of some class, a non-empty output directory.
        DatasetError: A photo cannot be decoded or a file cannot be written.
    """
    start = time.perf_counter()
    photos_dir, out_dir = Path(photos_dir), Path(out_dir)
    counts = {"train": num_train, "val": num_val, "test": num_test}
    width, height = _check_options(counts, image_size, max_objects, max_overlap, seed)
    style = compose_style(style)
    split = split_photos(
        photos_dir,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        group_size=group_size,
    )
    names = tuple(sorted(split.photos["train"]))
    _check_split_photos(split, names, counts)
    voc = prepare_voc_dir(out_dir, overwrite, _MARKER)
    cutouts = Cutouts(check=style.check_cutouts)
    ids: dict[str, list[str]] = {s: [] for s in (*COMPOSE_SPLITS, "trainval")}
    image_labels: dict[str, dict[str, int]] = {}
    objects = {s: dict.fromkeys(names, 0) for s in ids}
    bar = progress_bar(total=sum(counts.values()), desc="compose", unit="scene", enabled=progress)
    try:
        for name_split in COMPOSE_SPLITS:
            for index in range(counts[name_split]):
                image_id = f"{name_split}_{index:06d}"
                rng = np.random.default_rng([seed, _SPLIT_CODES[name_split], index])
                image, scene = render_scene(
                    rng,
                    split.photos[name_split],
                    cutouts,
                    (width, height),
                    max_objects,
                    max_overlap,
                    style,
                )
                write_jpeg(voc / "JPEGImages" / f"{image_id}.jpg", image)
                (voc / "Annotations" / f"{image_id}.xml").write_text(
                    annotation_xml(image_id, (width, height), scene, **_SOURCE), encoding="utf-8"
                )
                image_labels[image_id] = {n: image_label(n, scene) for n in names}
                for group in (name_split, "trainval") if name_split != "test" else ("test",):
                    ids[group].append(image_id)
                    for obj in scene:
                        objects[group][obj.name] += 1
                bar.update(1)
    except OSError as err:
        raise DatasetError(f"cannot write the composed dataset under {out_dir}: {err}") from err
    finally:
        bar.close()
    write_split_lists(voc / "ImageSets" / "Main", ids, image_labels, names)
    _write_contact_sheets(out_dir / "cutouts", split, cutouts)
    summary = ComposeSummary(
        root=out_dir,
        voc_root=voc,
        seed=seed,
        image_size=(width, height),
        classes=names,
        images={s: len(v) for s, v in ids.items()},
        objects=objects,
        photos={s: {n: len(split.photos[s][n]) for n in names} for s in COMPOSE_SPLITS},
        cutouts=dict(cutouts.kinds),
        style=style,
        rejected={k: tuple(sorted(v)) for k, v in sorted(cutouts.rejected.items())},
        seconds=time.perf_counter() - start,
    )
    _write_metadata(photos_dir, summary, split, group_size, max_objects, max_overlap)
    return summary


def _write_contact_sheets(folder: Path, split: PhotoSplit, cutouts: Cutouts) -> None:
    """Draw each class's cutouts, of every photo the scenes drew, on one sheet per class."""
    shutil.rmtree(folder, ignore_errors=True)  # a replaced dataset's classes may differ
    folder.mkdir()
    for name in split.photos["train"]:
        paths = sorted(p for s in COMPOSE_SPLITS for p in split.photos[s][name] if cutouts.seen(p))
        if paths:
            write_contact_sheet(folder / f"{name}.png", [cutouts.inspect(p) for p in paths])


def _write_metadata(
    photos_dir: Path,
    summary: ComposeSummary,
    split: PhotoSplit,
    group_size: int,
    max_objects: int,
    max_overlap: float,
) -> None:
    meta = {
        "composed": True,
        "synthetic": False,
        "camera_frames": False,
        "generator": "mmsag_ros.data.compose",
        "photos": str(photos_dir.resolve()),
        "seed": summary.seed,
        "style": dataclasses.asdict(summary.style),
        "image_size": list(summary.image_size),
        "classes": list(summary.classes),
        "max_objects": max_objects,
        "max_overlap": max_overlap,
        "group_size": group_size,
        "counts": {
            "images": dict(summary.images),
            "objects": {s: dict(c) for s, c in summary.objects.items()},
            "photos": {s: dict(c) for s, c in summary.photos.items()},
            "photo_groups": {s: dict(c) for s, c in split.groups.items()},
            "cutouts": dict(summary.cutouts),
        },
        "rejected_cutouts": {k: list(v) for k, v in summary.rejected.items()},
        "photo_split": {
            s: {n: [p.name for p in paths] for n, paths in per_class.items()}
            for s, per_class in split.photos.items()
        },
    }
    root = summary.root
    (root / _MARKER).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    width, height = summary.image_size
    (root / "README.txt").write_text(
        "COMPOSED SCENES - not camera frames.\n\n"
        "Belt scenes composed by mmsag_ros.data.compose from single-object photos in "
        f"{photos_dir.resolve()}: each photo's object cut out of its background and laid with "
        "others on a drawn belt, with drawn lighting and camera noise. "
        f"Seed {summary.seed}, style {summary.style.name!r}, {width}x{height} pixels, 1 to "
        f"{max_objects} objects a scene, in "
        "the PASCAL VOC2007 layout under VOCdevkit/VOC2007 (splits train, val, test and "
        "trainval = train + val). Photos were split by groups of "
        f"{group_size} consecutive numbers per class, so no photo (nor its near-duplicates) "
        "appears in two splits; composed.json lists which photo went where and which cutouts "
        "the sanity check left out; cutouts/<class>.png shows every cutout. The objects are "
        "real, the scenes are not: scores on them measure recognition of real objects, not "
        "accuracy on a real belt camera.\n"
        f"Classes: {', '.join(summary.classes)}.\n",
        encoding="utf-8",
    )
