"""Belt scenes composed from real single-object photos: cutouts, group splits, VOC, CLI."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
from support import SHARED_DATA

from mmsag_ros.cli import main
from mmsag_ros.data.compose import COMPOSE_SPLITS, compose_dataset, split_photos
from mmsag_ros.data.compose_scene import COMPOSE_STYLES, Cutouts
from mmsag_ros.data.cutout import Cutout, cut_out, cutout_problem
from mmsag_ros.data.voc import read_voc
from mmsag_ros.data.voc_writer import prepare_voc_dir
from mmsag_ros.errors import ConfigError, DatasetError

# Minutes of processes, training or composing: outside the fast tier (-m 'not slow').
pytestmark = pytest.mark.slow

TRASHNET = SHARED_DATA / "trashnet"
CLASSES = ("cardboard", "glass", "metal", "paper", "plastic", "trash")
needs_photos = pytest.mark.skipif(
    not all((TRASHNET / c).is_dir() for c in CLASSES),
    reason=f"the real TrashNet photos are not at {TRASHNET}",
)
SIZE = (128, 96)


def _photo_subset(root: Path, per_class: int) -> Path:
    """Links to the first ``per_class`` photos (by number) of each class: a small real set."""
    for name in CLASSES:
        photos = sorted(
            (TRASHNET / name).glob("*.jpg"), key=lambda p: int(p.stem.removeprefix(name))
        )
        (root / name).mkdir(parents=True)
        for photo in photos[:per_class]:
            (root / name / photo.name).symlink_to(photo)
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    if not all((TRASHNET / c).is_dir() for c in CLASSES):
        pytest.skip(f"the real TrashNet photos are not at {TRASHNET}")
    return _photo_subset(tmp_path_factory.mktemp("photos"), per_class=30)


@pytest.fixture(scope="module")
def composed(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("composed") / "scenes"
    summary = compose_dataset(
        photos, out, num_train=10, num_val=4, num_test=4, image_size=SIZE, seed=5
    )
    return out, summary


def _objects(xml_path: Path) -> list[tuple[str, tuple[int, ...]]]:
    root = ET.parse(xml_path).getroot()
    return [
        (
            o.findtext("name"),
            tuple(int(o.find("bndbox").findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")),
        )
        for o in root.iter("object")
    ]


def test_a_drawn_object_on_a_light_sheet_is_cut_out_along_its_edge():
    rng = np.random.default_rng(0)
    photo = np.full((384, 288, 3), 236, np.uint8)
    photo += (np.linspace(0, 14, 288)[None, :, None]).astype(np.uint8)  # uneven light
    cv2.circle(photo, (150, 200), 70, (40, 60, 200), -1)  # a red disk (BGR)
    cut = cut_out(photo, rng)
    assert cut.kind == "object"
    # The crop is the disk's extent and its opaque pixels are the disk.
    # (plus the feathered edge, a few pixels wide)
    assert abs(cut.alpha.shape[0] - 141) <= 8 and abs(cut.alpha.shape[1] - 141) <= 8
    disk = np.zeros(cut.alpha.shape, bool)
    cy, cx = (s / 2 for s in cut.alpha.shape)
    yy, xx = np.mgrid[: disk.shape[0], : disk.shape[1]]
    disk = (yy - cy + 0.5) ** 2 + (xx - cx + 0.5) ** 2 <= 70**2
    opaque = cut.alpha >= 128
    assert (opaque & disk).sum() / (opaque | disk).sum() > 0.95
    assert cut.rgb[cut.alpha.shape[0] // 2, cut.alpha.shape[1] // 2].tolist() == [200, 60, 40]


def test_a_photo_filled_by_its_item_is_a_sheet_and_a_blank_one_is_empty():
    rng = np.random.default_rng(0)
    cardboard = np.zeros((384, 288, 3), np.uint8)
    cardboard[:] = (95, 140, 180)  # brown, BGR
    cardboard += np.random.default_rng(1).integers(0, 12, cardboard.shape, dtype=np.uint8)
    sheet = cut_out(cardboard, rng)
    assert sheet.kind == "sheet" and 0.6 < sheet.area_fraction < 0.97
    blank = cut_out(np.full((384, 288, 3), 240, np.uint8), rng)
    assert blank.kind == "empty" and blank.alpha.size == 0


@needs_photos
def test_real_photos_are_cut_out_mostly_as_objects():
    kinds = {}
    for name in CLASSES:
        for photo in sorted((TRASHNET / name).glob("*.jpg"))[:8]:
            cut = cut_out(cv2.imread(str(photo)), np.random.default_rng(0))
            kinds[cut.kind] = kinds.get(cut.kind, 0) + 1
            if cut.kind == "object":
                # An object is neither a speck nor the whole photo.
                assert 0.015 <= cut.area_fraction <= 0.8, photo
    assert kinds.get("object", 0) >= 0.7 * sum(kinds.values()), kinds


def _cutout(mask: np.ndarray, area_fraction: float = 0.2, kind: str = "object") -> Cutout:
    alpha = mask.astype(np.uint8) * 255
    return Cutout(np.full((*mask.shape, 3), 90, np.uint8), alpha, kind, area_fraction)


def test_the_sanity_check_finds_specks_strips_and_fragments():
    yy, xx = np.mgrid[:100, :100]
    disk = (yy - 50) ** 2 + (xx - 50) ** 2 <= 45**2
    assert cutout_problem(_cutout(disk)) is None
    assert cutout_problem(_cutout(disk, area_fraction=0.02)) == "small"
    strip = np.zeros((100, 100), bool)
    strip[45:53, :] = True  # 100 x 8 px
    assert cutout_problem(_cutout(strip)) == "strip"
    diagonal = np.abs(yy - xx) <= 4  # a strip at 45 degrees: its upright box is square
    assert cutout_problem(_cutout(diagonal)) == "strip"
    fragments = np.zeros((100, 100), bool)
    for y, x in ((10, 10), (10, 80), (80, 10), (80, 80)):
        fragments[y : y + 12, x : x + 12] = True
    assert cutout_problem(_cutout(fragments)) == "ragged"
    assert cutout_problem(_cutout(fragments, kind="sheet")) is None  # a sheet is the photo


def test_a_checking_style_leaves_out_faulty_cutouts_and_lists_them(tmp_path):
    speck = np.full((384, 288, 3), 236, np.uint8)
    cv2.circle(speck, (150, 200), 27, (40, 60, 200), -1)  # 2 % of the photo
    disk = np.full((384, 288, 3), 236, np.uint8)
    cv2.circle(disk, (150, 200), 70, (40, 60, 200), -1)
    cv2.imwrite(str(tmp_path / "speck1.jpg"), speck)
    cv2.imwrite(str(tmp_path / "disk1.jpg"), disk)
    checked, unchecked = Cutouts(check=True), Cutouts(check=False)
    assert checked.get(tmp_path / "speck1.jpg") is None
    assert unchecked.get(tmp_path / "speck1.jpg") is not None
    assert checked.get(tmp_path / "disk1.jpg") is not None
    assert checked.rejected == {"small": ["speck1.jpg"]} and unchecked.rejected == {}
    assert checked.inspect(tmp_path / "speck1.jpg")[1] == "small"  # still there to look at


@needs_photos
def test_near_duplicate_photos_stay_in_one_split(photos):
    split = split_photos(photos, seed=3, val_fraction=0.2, test_fraction=0.2, group_size=5)
    for name in CLASSES:
        groups = {
            s: {int(p.stem.removeprefix(name)) // 5 for p in split.photos[s][name]}
            for s in COMPOSE_SPLITS
        }
        assert not groups["train"] & groups["val"]
        assert not groups["train"] & groups["test"]
        assert not groups["val"] & groups["test"]
        every = sorted(p.name for s in COMPOSE_SPLITS for p in split.photos[s][name])
        assert every == sorted(p.name for p in (photos / name).iterdir())
        assert all(split.photos[s][name] for s in COMPOSE_SPLITS)
    again = split_photos(photos, seed=3, val_fraction=0.2, test_fraction=0.2, group_size=5)
    other = split_photos(photos, seed=4, val_fraction=0.2, test_fraction=0.2, group_size=5)
    assert again.photos == split.photos and other.photos != split.photos


@needs_photos
def test_composed_scenes_are_a_voc_dataset_with_a_box_per_object(composed):
    out, summary = composed
    voc = out / "VOCdevkit" / "VOC2007"
    assert summary.images == {"train": 10, "val": 4, "test": 4, "trainval": 14}
    assert summary.classes == CLASSES
    for split in ("train", "val", "trainval", "test"):
        data = read_voc(out, split)
        assert data.labels.names == CLASSES and len(data) == summary.images[split]
        for sample in data.samples:
            image_id, targets = sample.image_id, sample.target
            objects = _objects(voc / "Annotations" / f"{image_id}.xml")
            assert 1 <= len(objects) <= 4, image_id  # 1 to max_objects, never empty
            present = {name for name, _ in objects}
            assert {CLASSES[c] for c in np.flatnonzero(targets == 1)} == present
            for _, (xmin, ymin, xmax, ymax) in objects:
                assert 1 <= xmin <= xmax <= SIZE[0] and 1 <= ymin <= ymax <= SIZE[1]
            image = cv2.imread(str(voc / "JPEGImages" / f"{image_id}.jpg"))
            assert image.shape == (SIZE[1], SIZE[0], 3)
    counted = {s: sum(summary.objects[s].values()) for s in COMPOSE_SPLITS}
    listed = {
        s: sum(
            len(_objects(voc / "Annotations" / f"{i}.xml"))
            for i in (voc / "ImageSets" / "Main" / f"{s}.txt").read_text().split()
        )
        for s in COMPOSE_SPLITS
    }
    assert counted == listed


@needs_photos
def test_composed_data_says_what_it_is_and_where_each_photo_went(composed, photos):
    out, summary = composed
    meta = json.loads((out / "composed.json").read_text())
    assert meta["composed"] is True and meta["camera_frames"] is False
    assert meta["photos"] == str(photos.resolve()) and meta["seed"] == 5
    names = {s: {p for ps in meta["photo_split"][s].values() for p in ps} for s in COMPOSE_SPLITS}
    assert not names["train"] & names["test"] and not names["val"] & names["test"]
    assert sum(len(v) for v in names.values()) == len(list(photos.glob("*/*.jpg")))
    assert "COMPOSED SCENES - not camera frames" in (out / "README.txt").read_text()
    xml = (out / "VOCdevkit" / "VOC2007" / "Annotations" / "test_000000.xml").read_text()
    assert "COMPOSED from real photos" in xml and "<image>composed</image>" in xml
    assert sum(summary.cutouts.values()) <= len(list(photos.glob("*/*.jpg")))


@needs_photos
def test_each_class_gets_a_contact_sheet_of_its_cutouts(composed, photos):
    out, summary = composed
    tiles = 0
    for sheet_path in sorted((out / "cutouts").glob("*.png")):
        sheet = cv2.imread(str(sheet_path))
        assert sheet_path.stem in CLASSES and sheet.shape[0] % 64 == 0 and sheet.shape[1] <= 1280
        assert sheet[:64].std() > 10  # cutouts drawn, not a blank page
        # 64-px tiles in rows of 20, white where the last row ends.
        full = (sheet.shape[0] // 64 - 1) * 20
        last = (sheet[-64:].reshape(64, -1, 64, 3) != 255).any(axis=(0, 2, 3))
        tiles += full + int(last.sum())
    # One tile per photo the 18 scenes drew, each photo cut once.
    assert tiles == sum(summary.cutouts.values()) <= len(list(photos.glob("*/*.jpg")))


@needs_photos
def test_a_style_changes_only_its_steps(photos, composed, tmp_path):
    out, summary = composed
    assert summary.style == COMPOSE_STYLES["original"]
    plain = tmp_path / "plain"
    style = COMPOSE_STYLES["original"].replace(name="no camera", camera=False)
    options = {"num_train": 10, "num_val": 4, "num_test": 4, "image_size": SIZE, "seed": 5}
    compose_dataset(photos, plain, style=style, **options)
    for xml in sorted((out / "VOCdevkit" / "VOC2007" / "Annotations").glob("*.xml")):
        twin = plain / xml.relative_to(out)
        assert _objects(twin) == _objects(xml), xml.name  # the same objects in the same places
    image = "VOCdevkit/VOC2007/JPEGImages/train_000000.jpg"
    assert (plain / image).read_bytes() != (out / image).read_bytes()
    meta = json.loads((plain / "composed.json").read_text())
    assert meta["style"]["name"] == "no camera" and meta["style"]["camera"] is False


@needs_photos
def test_the_belt_style_lists_what_its_check_left_out(photos, tmp_path):
    summary = compose_dataset(
        photos, tmp_path / "belt", num_train=6, num_val=0, num_test=0, image_size=SIZE,
        style="belt",
    )  # fmt: skip
    meta = json.loads((tmp_path / "belt" / "composed.json").read_text())
    assert meta["style"]["check_cutouts"] is True
    assert meta["rejected_cutouts"] == {k: list(v) for k, v in summary.rejected.items()}
    listed = {name for names in summary.rejected.values() for name in names}
    assert listed, "30 real photos a class hold some faulty cutouts"
    for path in photos.glob("*/*.jpg"):
        if path.name in listed:  # every listed photo's cutout is faulty, for the listed reason
            problem = cutout_problem(cut_out(cv2.imread(str(path)), np.random.default_rng(0)))
            assert path.name in summary.rejected[problem], path.name


@needs_photos
def test_the_same_seed_writes_the_same_bytes(photos, composed, tmp_path):
    out, _ = composed
    again = tmp_path / "again"
    compose_dataset(photos, again, num_train=10, num_val=4, num_test=4, image_size=SIZE, seed=5)
    for path in sorted((out / "VOCdevkit").rglob("*")):
        if path.is_file():
            twin = again / path.relative_to(out)
            assert twin.read_bytes() == path.read_bytes(), path
    other = tmp_path / "other"
    compose_dataset(photos, other, num_train=2, num_val=0, num_test=0, image_size=SIZE, seed=6)
    image = "VOCdevkit/VOC2007/JPEGImages/train_000000.jpg"
    assert (other / image).read_bytes() != (out / image).read_bytes()


@needs_photos
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_train": -1}, "num_train must be >= 0"),
        ({"num_train": 0, "num_val": 0, "num_test": 0}, "all 0"),
        ({"image_size": (32, 96)}, "too small"),
        ({"max_objects": 0}, "max_objects must be at least 1"),
        ({"max_overlap": 1.0}, r"max_overlap must lie in \[0, 1\)"),
        ({"test_fraction": 0.9}, "leave photos for training"),
        ({"group_size": 0}, "group_size must be at least 1"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"style": "studio"}, "unknown compose style 'studio'; choose one of original, belt"),
    ],
)
def test_bad_options_are_one_clear_error(photos, tmp_path, kwargs, match):
    options = {"num_train": 2, "num_val": 1, "num_test": 1, "image_size": SIZE, **kwargs}
    with pytest.raises(ConfigError, match=match):
        compose_dataset(photos, tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()


def test_a_folder_without_class_folders_is_refused(tmp_path):
    (tmp_path / "only").mkdir()
    cv2.imwrite(str(tmp_path / "only" / "a1.jpg"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ConfigError, match="at least two class folders"):
        split_photos(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        split_photos(tmp_path / "missing")


@needs_photos
def test_output_of_another_tool_is_never_replaced(photos, tmp_path):
    foreign = tmp_path / "foreign"
    (foreign / "VOCdevkit" / "VOC2007" / "JPEGImages").mkdir(parents=True)
    with pytest.raises(ConfigError, match="not a dataset this generator wrote"):
        compose_dataset(photos, foreign, num_train=1, num_val=0, num_test=0, overwrite=True)
    assert (foreign / "VOCdevkit" / "VOC2007" / "JPEGImages").is_dir()


@needs_photos
def test_cli_composes_and_prints_the_split_table(photos, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["data", "compose", "--photos", str(photos), "--out", str(out), "--size", "96x72"]
    code = main([*args, "--train", "3", "--val", "1", "--test", "1", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "COMPOSED scenes" in printed and "not camera frames" in printed
    assert "style original: 0 cutouts left out" in printed
    assert all(name in printed for name in CLASSES)
    assert len(read_voc(out, "test")) == 1
    assert main([*args, "--train", "1"]) != 0  # not empty now, no --overwrite
    assert "not empty" in capsys.readouterr().err


@needs_photos
def test_an_interrupted_run_can_be_overwritten(photos, tmp_path):
    out = tmp_path / "out"
    prepare_voc_dir(out, False, "composed.json")  # what a run leaves when stopped at once
    (out / "VOCdevkit" / "VOC2007" / "JPEGImages" / "train_000000.jpg").write_bytes(b"partial")
    summary = compose_dataset(
        photos, out, num_train=1, num_val=0, num_test=0, image_size=SIZE, overwrite=True
    )
    assert summary.images["train"] == 1
    assert json.loads((out / "composed.json").read_text())["composed"] is True


@needs_photos
def test_a_photo_that_does_not_decode_is_named(tmp_path):
    for name in ("glass", "metal"):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for number, photo in enumerate(sorted((TRASHNET / name).glob("*.jpg"))[:3]):
            (tmp_path / "photos" / name / f"{name}{number}.jpg").symlink_to(photo)
    broken = tmp_path / "photos" / "metal" / "metal2.jpg"
    broken.unlink()
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DatasetError, match=r"cannot decode photo .*metal2\.jpg"):
        compose_dataset(
            tmp_path / "photos",
            tmp_path / "out",
            num_train=30,
            num_val=30,
            num_test=30,
            image_size=SIZE,
            group_size=1,
        )
