"""Synthetic conveyor scenes: VOC layout, list/XML consistency, determinism, errors, CLI."""

from __future__ import annotations

import argparse
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest

from mmsag_ros.bundle.labels import MLKW_LABELS, LabelSet
from mmsag_ros.cli import data_synth, main
from mmsag_ros.data.synth import SPLITS, generate_dataset
from mmsag_ros.data.synth_objects import SYNTH_CLASSES, render_object
from mmsag_ros.data.synth_scene import render_scene
from mmsag_ros.data.voc import read_voc
from mmsag_ros.errors import ConfigError

SIZE = (96, 72)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "out"
    summary = generate_dataset(out, num_trainval=12, num_test=6, image_size=SIZE, seed=3)
    return out, summary


def _voc(out: Path) -> Path:
    return out / "VOCdevkit" / "VOC2007"


def _ids(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split()


def _objects(xml_path: Path) -> list[tuple[str, bool, tuple[int, ...]]]:
    root = ET.parse(xml_path).getroot()
    return [
        (
            obj.findtext("name"),
            obj.findtext("difficult") == "1",
            tuple(int(obj.find("bndbox").findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")),
        )
        for obj in root.iter("object")
    ]


def _all_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_layout_and_image_files(dataset):
    out, summary = dataset
    voc = _voc(out)
    assert summary.voc_root == voc
    assert summary.images == {"trainval": 12, "train": 10, "val": 2, "test": 6}
    main_dir = voc / "ImageSets" / "Main"
    trainval, test = _ids(main_dir / "trainval.txt"), _ids(main_dir / "test.txt")
    assert len(trainval) == 12 and len(test) == 6 and not set(trainval) & set(test)
    train, val = _ids(main_dir / "train.txt"), _ids(main_dir / "val.txt")
    assert sorted(train + val) == sorted(trainval) and not set(train) & set(val)
    for image_id in trainval + test:
        image = cv2.imread(str(voc / "JPEGImages" / f"{image_id}.jpg"))
        assert image.shape == (SIZE[1], SIZE[0], 3)
        assert (voc / "Annotations" / f"{image_id}.xml").is_file()
    assert len(list((voc / "JPEGImages").iterdir())) == 18
    for split in SPLITS:
        for name in MLKW_LABELS.names:
            assert (main_dir / f"{name}_{split}.txt").is_file()


def test_class_lists_agree_with_annotations_and_summary(dataset):
    out, summary = dataset
    voc = _voc(out)
    main_dir = voc / "ImageSets" / "Main"
    for split in SPLITS:
        ids = _ids(main_dir / f"{split}.txt")
        per_image = {i: _objects(voc / "Annotations" / f"{i}.xml") for i in ids}
        object_counts = dict.fromkeys(MLKW_LABELS.names, 0)
        for objects in per_image.values():
            for name, _, (xmin, ymin, xmax, ymax) in objects:
                object_counts[name] += 1
                assert 1 <= xmin <= xmax <= SIZE[0] and 1 <= ymin <= ymax <= SIZE[1]
        assert object_counts == summary.objects[split]
        assert summary.empty_images[split] == sum(not o for o in per_image.values())
        for name in MLKW_LABELS.names:
            rows = [
                line.split() for line in (main_dir / f"{name}_{split}.txt").read_text().splitlines()
            ]
            assert [r[0] for r in rows] == ids  # same images, same order as <split>.txt
            for image_id, label in rows:
                flags = [difficult for n, difficult, _ in per_image[image_id] if n == name]
                expected = -1 if not flags else 0 if all(flags) else 1
                assert int(label) == expected, (image_id, name)
            assert sum(int(r[1]) == 1 for r in rows) == summary.positives[split][name]


def test_metadata_says_synthetic(dataset):
    out, summary = dataset
    meta = json.loads((out / "synthetic.json").read_text())
    assert meta["synthetic"] is True
    assert meta["generator"] == "mmsag_ros.data.synth"
    assert meta["seed"] == 3 and meta["image_size"] == list(SIZE)
    assert meta["classes"] == list(MLKW_LABELS.names)
    assert meta["counts"]["images"] == dict(summary.images)
    assert meta["counts"]["positives"]["test"] == dict(summary.positives["test"])
    assert "SYNTHETIC" in (out / "README.txt").read_text()
    first = _ids(_voc(out) / "ImageSets" / "Main" / "test.txt")[0]
    source = ET.parse(_voc(out) / "Annotations" / f"{first}.xml").getroot().find("source")
    assert "SYNTHETIC" in source.findtext("database")


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = generate_dataset(tmp_path / "a", num_trainval=4, num_test=2, image_size=SIZE, seed=5)
    b = generate_dataset(
        tmp_path / "b", num_trainval=4, num_test=2, image_size=SIZE, seed=5, progress=True
    )
    c = generate_dataset(tmp_path / "c", num_trainval=4, num_test=2, image_size=SIZE, seed=6)
    files_a, files_b, files_c = (_all_files(s.root) for s in (a, b, c))
    assert files_a == files_b
    assert files_a.keys() == files_c.keys()
    jpegs = [k for k in files_a if k.endswith(".jpg")]
    assert all(files_a[k] != files_c[k] for k in jpegs)


def test_every_class_appears_in_a_larger_sample(tmp_path):
    summary = generate_dataset(tmp_path / "big", num_trainval=60, num_test=0, image_size=(64, 48))
    assert all(summary.positives["trainval"][n] > 0 for n in MLKW_LABELS.names)
    counts = [
        len(_objects(summary.voc_root / "Annotations" / f"{i}.xml"))
        for i in _ids(summary.voc_root / "ImageSets" / "Main" / "trainval.txt")
    ]
    assert min(counts) == 0 and max(counts) >= 4  # empty frames and crowded ones
    assert not (summary.voc_root / "ImageSets" / "Main" / "test.txt").exists()


def test_render_scene_marks_occluded_objects_difficult():
    seen_difficult = False
    for index in range(40):
        image, objects = render_scene(np.random.default_rng(index), image_size=(80, 60))
        assert image.shape == (60, 80, 3) and image.dtype == np.uint8
        for obj in objects:
            assert obj.difficult == (obj.visible_fraction < 0.3)
            assert 0.0 < obj.visible_fraction <= 1.0
            seen_difficult |= obj.difficult
    assert seen_difficult


def test_each_class_draws_a_textured_object_inside_its_circle():
    for name in SYNTH_CLASSES:
        patch = render_object(
            name, np.random.default_rng(0), center_xy=(40.0, 40.0), radius_px=30.0, angle_rad=0.5
        )
        covered = (patch.alpha > 0).mean()
        assert 0.03 < covered < 0.9, name  # drawn, and inside its enclosing circle
        assert patch.color[patch.alpha > 0].std() > 3, name  # textured, not a flat blob


def test_label_subset_draws_only_those_classes(tmp_path):
    labels = LabelSet.from_names(["bottle", "plastic"])
    summary = generate_dataset(
        tmp_path / "sub", num_trainval=10, num_test=0, image_size=SIZE, labels=labels
    )
    assert summary.classes == ("bottle", "plastic")
    for xml_path in (summary.voc_root / "Annotations").iterdir():
        assert {n for n, _, _ in _objects(xml_path)} <= {"bottle", "plastic"}
    assert sorted(p.name for p in (summary.voc_root / "ImageSets" / "Main").glob("*_val.txt")) == [
        "bottle_val.txt",
        "plastic_val.txt",
    ]


def test_read_back_with_the_voc_reader(dataset):
    out, summary = dataset
    for split in ("trainval", "test"):
        read = read_voc(out, split, labels=MLKW_LABELS)  # checks that every image exists
        assert len(read.samples) == summary.images[split]
        positives = sum((s.target == 1.0).astype(int) for s in read.samples)
        assert positives.tolist() == [summary.positives[split][n] for n in MLKW_LABELS.names]


def test_overwrite_replaces_a_previous_synthetic_dataset(tmp_path):
    out = tmp_path / "out"
    generate_dataset(out, num_trainval=6, num_test=2, image_size=SIZE)
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match=r"is not empty.*--overwrite"):
        generate_dataset(out, num_trainval=3, num_test=1, image_size=SIZE)
    summary = generate_dataset(out, num_trainval=3, num_test=1, image_size=SIZE, overwrite=True)
    assert len(list((summary.voc_root / "JPEGImages").iterdir())) == 4
    assert len(list((summary.voc_root / "Annotations").iterdir())) == 4
    assert (out / "notes.txt").read_text() == "keep me"


def test_overwrite_refuses_a_foreign_voc_tree(tmp_path):
    (tmp_path / "VOCdevkit" / "VOC2007" / "JPEGImages").mkdir(parents=True)
    with pytest.raises(ConfigError, match="not a dataset this generator wrote"):
        generate_dataset(tmp_path, num_trainval=2, num_test=0, image_size=SIZE, overwrite=True)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_trainval": -1}, "num_trainval must be >= 0, got -1"),
        ({"num_trainval": 0, "num_test": 0}, "both 0"),
        ({"image_size": (20, 72)}, r"image_size \(20, 72\) is too small"),
        ({"seed": -3}, "seed must be >= 0, got -3"),
        ({"labels": LabelSet.from_names(["bottle", "battery"])}, "cannot draw \\['battery'\\]"),
    ],
)
def test_bad_arguments_are_config_errors(tmp_path, kwargs, match):
    options = {"num_trainval": 2, "num_test": 1, "image_size": SIZE, **kwargs}
    with pytest.raises(ConfigError, match=match):
        generate_dataset(tmp_path / "x", **options)


def test_output_path_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file; choose a directory"):
        generate_dataset(tmp_path / "file", num_trainval=1, num_test=0, image_size=SIZE)


def _cli_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    data_synth.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_writes_and_reports_synthetic(tmp_path, capsys):
    out = tmp_path / "cli"
    small = ["--out", str(out), "--trainval", "5", "--test", "2", "--size", "64x48"]
    args = _cli_args(*small)
    assert data_synth.run(args) == 0
    printed = capsys.readouterr().out
    assert "SYNTHETIC" in printed and "64x48" in printed
    for name in MLKW_LABELS.names:
        assert name in printed
    assert json.loads((out / "synthetic.json").read_text())["image_size"] == [64, 48]
    with pytest.raises(ConfigError, match=r"not empty.*--overwrite"):
        data_synth.run(args)
    assert data_synth.run(_cli_args(*small, "--seed", "1", "--overwrite")) == 0
    assert json.loads((out / "synthetic.json").read_text())["seed"] == 1


def test_cli_bad_size_and_exit_code(tmp_path, capsys):
    with pytest.raises(ConfigError, match="--size '320by240' is not WIDTHxHEIGHT"):
        data_synth.run(_cli_args("--out", str(tmp_path / "o"), "--size", "320by240"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    code = main(["data", "synth", "--out", str(tmp_path / "full"), "--size", "64x48"])
    assert code == 1
    assert "is not empty" in capsys.readouterr().err
