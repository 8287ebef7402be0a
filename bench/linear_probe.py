r"""Linear probe: how much class signal the frozen trunk keeps at each step of composing a scene.

A logistic regression is trained on the pooled features of the frozen, ImageNet-pretrained
trunk and scored on photos it never saw. The photos are split by groups of consecutive numbers
(``split_photos``, seed 0: ``train`` + ``val`` photos train the probe, ``test`` photos score
it), so near-duplicates never cross. Each row feeds the same objects in another form:

- ``photo``: the whole photo (object, backdrop and light);
- ``photo at scene scale``: shrunk to the size an object has in a scene, then back up;
- ``cutout``: the object cut out (``data/cutout.py``), on mid-grey at scene scale;
- ``scene boxes WxH STYLE``: each object's box cropped from scenes ``compose_dataset`` made
  (train scenes from train photos, test scenes from test photos), in a compose style or with
  one of its steps switched off (``ABLATIONS``), to measure each step's share of the loss.

Each row is scored under every normalisation of ``NORMALIZATIONS``, so the one the trunk's
weights were trained with can be compared with the others. Rows are appended to the JSON-lines
file as they finish. About a minute per row on two cores.

    .venv/bin/python bench/linear_probe.py --out bench/results/linear_probe.jsonl
    .venv/bin/python bench/linear_probe.py --rows "scene boxes" --styles original "no camera"
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from mmsag_ros.bundle.preprocess import NORMALIZATIONS, PreprocessSpec, preprocess
from mmsag_ros.data.compose import compose_dataset, split_photos
from mmsag_ros.data.compose_scene import COMPOSE_STYLES, ComposeStyle
from mmsag_ros.data.cutout import cut_out
from mmsag_ros.data.voc import find_voc_dir, read_voc_boxes
from mmsag_ros.model import create_backbone
from mmsag_ros.model.registry import get_backbone_entry
from mmsag_ros.runtime.bench import machine_info

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO.parent / "shared" / "data" / "trashnet"
RESULTS = REPO / "bench" / "results" / "linear_probe.jsonl"
GREY = 128

# A labelled object in some form: (RGB uint8 image, class name).
Sample = tuple[np.ndarray, str]

_ORIGINAL = COMPOSE_STYLES["original"]
#: Compose styles the scene rows can use: the named styles, and the first composer with one
#: step switched off or changed at a time.
ABLATIONS: dict[str, ComposeStyle] = {
    **COMPOSE_STYLES,
    "no rotation": _ORIGINAL.replace(name="no rotation", rotation=False),
    "no camera": _ORIGINAL.replace(name="no camera", camera=False),
    "no shadows": _ORIGINAL.replace(name="no shadows", shadows=False),
    "no enlarging": _ORIGINAL.replace(name="no enlarging", max_enlarge=1.0),
    "edge inset 2 px": _ORIGINAL.replace(name="edge inset 2 px", edge_inset=2.0),
    "cutouts checked": _ORIGINAL.replace(name="cutouts checked", check_cutouts=True),
    "light camera": _ORIGINAL.replace(name="light camera", blur_sigma=(0.2, 0.5), motion_blur=0.05),
    "no camera lighting": _ORIGINAL.replace(name="no camera lighting", camera_lighting=False),
    "no camera blur": _ORIGINAL.replace(name="no camera blur", blur_sigma=(0, 0), motion_blur=0),
    "no camera noise": _ORIGINAL.replace(name="no camera noise", noise=(0, 0)),
}


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _shrink(image: np.ndarray, side: int) -> np.ndarray:
    scale = side / max(image.shape[:2])
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _on_grey(path: Path, side: int) -> np.ndarray | None:
    cut = cut_out(cv2.imread(str(path)), np.random.default_rng(0))
    if cut.kind == "empty":
        return None
    alpha = cut.alpha[..., None].astype(np.float32) / 255
    rgb = cut.rgb.astype(np.float32) * alpha + GREY * (1 - alpha)
    return _shrink(rgb.round().astype(np.uint8), side)


def photo_samples(
    photos: dict[str, tuple[Path, ...]], view: Callable[[Path], np.ndarray | None]
) -> Iterator[Sample]:
    """Every photo of ``photos`` (class -> paths) in the form ``view`` makes; None skips it."""
    for name, paths in photos.items():
        for path in paths:
            image = view(path)
            if image is not None:
                yield image, name


def box_samples(root: Path, split: str) -> Iterator[Sample]:
    """Each annotated object's box, cropped from the scenes of ``split``."""
    voc = find_voc_dir(root)
    ids = (voc / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
    for image_id, annotation in (read_voc_boxes(root, ids) or {}).items():
        scene = _rgb(voc / "JPEGImages" / f"{image_id}.jpg")
        for box in annotation.boxes:
            xmin, ymin, xmax, ymax = box.box
            yield scene[ymin - 1 : ymax, xmin - 1 : xmax], box.name


@torch.no_grad()
def features(trunk: torch.nn.Module, samples: list[Sample], spec: PreprocessSpec) -> np.ndarray:
    """Globally pooled trunk features, one row per sample."""
    rows = []
    for start in range(0, len(samples), 32):
        batch = np.stack([preprocess(image, spec) for image, _ in samples[start : start + 32]])
        # Channels-last: about 1.5x faster convolutions on a CPU.
        batch = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
        rows.append(trunk(batch).mean(dim=(2, 3)).numpy())
    return np.concatenate(rows)


def probe_accuracy(train: np.ndarray, y_train: list[str], test: np.ndarray, y_test: list[str]):
    """Test accuracy of a logistic regression on standardised features."""
    scaler = StandardScaler().fit(train)
    probe = LogisticRegression(max_iter=3000, C=0.1).fit(scaler.transform(train), y_train)
    return float(probe.score(scaler.transform(test), y_test))


def score_row(
    trunk, name: str, train: list[Sample], test: list[Sample], size: int, norms: list[str]
) -> dict:
    row = {"row": name, "train": len(train), "test": len(test)}
    for norm in norms:
        mean, std = NORMALIZATIONS[norm]
        spec = PreprocessSpec(input_size=size, mean=mean, std=std)
        started = time.perf_counter()
        accuracy = probe_accuracy(
            features(trunk, train, spec),
            [c for _, c in train],
            features(trunk, test, spec),
            [c for _, c in test],
        )
        row[norm] = round(accuracy, 3)
        row[f"{norm}_s"] = round(time.perf_counter() - started, 1)
    return row


def rows(args: argparse.Namespace, work: Path) -> Iterator[tuple[str, list, list]]:
    split = split_photos(args.photos, seed=0)
    cap = args.per_class  # None: every photo
    train_photos = {
        c: (split.photos["train"][c] + split.photos["val"][c])[:cap] for c in split.photos["test"]
    }
    test_photos = {c: paths[:cap] for c, paths in split.photos["test"].items()}
    side = args.scene_side
    views: dict[str, Callable[[Path], np.ndarray | None]] = {
        "photo": _rgb,
        f"photo at scene scale ({side} px)": lambda p: _shrink(_rgb(p), side),
        f"cutout on grey ({side} px)": lambda p: _on_grey(p, side),
    }
    for name, view in views.items():
        if args.rows and not any(r in name for r in args.rows):
            continue
        yield name, list(photo_samples(train_photos, view)), list(photo_samples(test_photos, view))
    for (width, height), style in itertools.product(args.scene_sizes, args.styles):
        name = f"scene boxes {width}x{height} {style}"
        if args.max_objects != 4:
            name += f", {args.max_objects} objects at most"
        if args.rows and not any(r in name for r in args.rows):
            continue
        root = work / name.replace(" ", "_")
        compose_dataset(
            args.photos,
            root,
            num_train=args.scenes,
            num_val=0,
            num_test=args.scenes // 3,
            image_size=(width, height),
            max_objects=args.max_objects,
            seed=0,
            style=ABLATIONS[style],
        )
        yield name, list(box_samples(root, "train")), list(box_samples(root, "test"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--size", type=int, default=224, help="trunk input side")
    parser.add_argument("--scene-side", type=int, default=100, help="object's long side")
    parser.add_argument("--scenes", type=int, default=600, help="train scenes per scene row")
    parser.add_argument(
        "--scene-sizes",
        type=lambda s: tuple(int(v) for v in s.split("x")),
        nargs="*",
        default=[(320, 240)],
        help="scene rows to compose, WxH",
    )
    parser.add_argument(
        "--styles",
        nargs="+",
        default=["original"],
        choices=list(ABLATIONS),
        help="compose styles (or one-step ablations) of the scene rows",
    )
    parser.add_argument(
        "--normalizations",
        nargs="+",
        default=list(NORMALIZATIONS),
        choices=list(NORMALIZATIONS),
        help="score each row under these input normalisations",
    )
    parser.add_argument("--max-objects", type=int, default=4, help="objects per scene, 1..N")
    parser.add_argument("--rows", nargs="*", help="only rows whose name contains one of these")
    parser.add_argument("--per-class", type=int, help="at most this many photos per class")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    trunk = create_backbone(args.backbone, pretrained=True).eval()
    trunk = trunk.to(memory_format=torch.channels_last)
    header = {
        "bench": "linear_probe",
        "date": time.strftime("%Y-%m-%d"),
        "backbone": args.backbone,
        "weights_normalization": get_backbone_entry(args.backbone).normalization,
        "split": "split_photos seed 0: train+val photos train, test photos score",
        "machine": machine_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as out:
        out.write(json.dumps(header) + "\n")
    print(f"{'row':<50}{'train':>7}{'test':>6}" + "".join(f"{n:>11}" for n in args.normalizations))
    with tempfile.TemporaryDirectory() as work:
        for name, train, test in rows(args, Path(work)):
            row = score_row(trunk, name, train, test, args.size, args.normalizations)
            with args.out.open("a") as out:
                out.write(json.dumps(row) + "\n")
            scores = "".join(f"{row[n]:>11.3f}" for n in args.normalizations)
            print(f"{name:<50}{row['train']:>7}{row['test']:>6}{scores}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
