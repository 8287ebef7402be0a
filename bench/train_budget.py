"""Validation and test mAP reached within a fixed CPU training budget, seeds side by side.

Trains each named run with the same wall-clock budget on the same data, keeps the checkpoint
with the best validation mAP, and scores it on the untouched test split: mAP, OF1 and, where
the data has boxes, the pointing accuracy and instance recall/precision of the attention
peaks. Runs go one after another in one process so that every run sees the same machine.

Data: by default a synthetic conveyor set (clearly synthetic: it says nothing about real
waste). With ``--photos DIR`` the scenes are composed from real single-object photos
(``mmsag data compose``): the test scenes use only photos no training scene saw. With
``--style`` other than ``original``, every run is also scored on the same test photos composed
by the first composer (``reference`` columns), so that no number improves only because a new
composer made the test easier.

    .venv/bin/python bench/train_budget.py --budget-min 10 --out bench/results/train_budget
    .venv/bin/python bench/train_budget.py --photos ../shared/data/trashnet --seeds 0 1 2
        --runs "effl0_224 full MM-SAG" --out bench/results/train_budget_photos   (one line)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from mmsag_ros.data.compose import compose_dataset
from mmsag_ros.data.compose_scene import COMPOSE_STYLES
from mmsag_ros.data.synth import generate_dataset
from mmsag_ros.data.voc import read_voc_boxes
from mmsag_ros.model.checkpoint import load_checkpoint
from mmsag_ros.train.checkpoint_eval import evaluate_checkpoint
from mmsag_ros.train.config import DataConfig, load_config
from mmsag_ros.train.dataset_splits import load_split
from mmsag_ros.train.run import run_training

_STAGES = ("semantic_attention", "fusion", "static_graph", "dynamic_graph")
# Every run starts from this, whatever TrainConfig's defaults are, so that a row means today
# what it meant when it was measured: the whole trunk training, the paper's augmentations.
_BASE = (
    "batch_size=16",
    "model.freeze_stages=0",
    "augment.hflip=true",
    "augment.vflip=false",
    "augment.rot90=false",
    "augment.lighting=0",
    "augment.box_keep=0.4",
    "optim.optimizer=sgd",
    "optim.lr=0.03",
    "optim.backbone_lr_mult=0.1",
    "optim.momentum=0.9",
    "optim.weight_decay=0.0001",
    "optim.schedule=cosine",
    "optim.warmup_epochs=1",
    "optim.loss=asl",
    "optim.attention_weight=1",
)
# name -> (model, pretrained, most epochs, stages switched on, overrides); the cosine schedule
# follows the time budget, so the epoch counts are upper bounds.
_FROZEN_4, _FROZEN_ALL = ("model.freeze_stages=4",), ("model.freeze_stages=9",)
_CACHED_6 = ("model.freeze_stages=6", "cache_frozen=true")
# What changed in December 2026, one at a time on the frozen-backbone recipe: the weights' own
# normalisation (now the default), labels that follow the crop (default), the box attention
# loss, and the belt's augmentations. "model.overrides.KEY=VALUE" joins the model overrides.
_OLD = (
    "model.overrides.normalization=imagenet",
    "augment.box_keep=null",
    "optim.attention_weight=0",
)
_ATTENTION = ("optim.attention_weight=1",)
_BELT = ("augment.vflip=true", "augment.rot90=true", "augment.lighting=0.2")
_CPU = _FROZEN_4 + _ATTENTION + _BELT
# The recipe search of December 7, one change at a time on the CPU recipe.
_NARROW = ("model.overrides.width=256", "model.overrides.attention_dim=256")
_NARROW += ("model.overrides.ffn_dim=512",)
RUNS = {
    "effl0_224 frozen, old recipe": ("mmsag_effl0_224", True, 20, _STAGES, _FROZEN_ALL + _OLD),
    "effl0_224 frozen + attention": (
        "mmsag_effl0_224",
        True,
        20,
        _STAGES,
        _FROZEN_ALL + _ATTENTION,
    ),
    "effl0_224 frozen + att + belt": (
        "mmsag_effl0_224",
        True,
        20,
        _STAGES,
        _FROZEN_ALL + _ATTENTION + _BELT,
    ),
    "effl0_224 1-4 frozen + att + belt": (
        "mmsag_effl0_224",
        True,
        16,
        _STAGES,
        _FROZEN_4 + _ATTENTION + _BELT,
    ),
    "effl0_224 cpu, width 256": ("mmsag_effl0_224", True, 16, _STAGES, _CPU + _NARROW),
    "effl0_224 cpu, dropout 0.3": (
        "mmsag_effl0_224",
        True,
        16,
        _STAGES,
        (*_CPU, "model.overrides.dropout=0.3"),
    ),
    "effl0_224 cpu, wd 5e-4": (
        "mmsag_effl0_224",
        True,
        16,
        _STAGES,
        (*_CPU, "optim.weight_decay=0.0005"),
    ),
    "effl0_224 cpu, adamw 1e-3": (
        "mmsag_effl0_224",
        True,
        16,
        _STAGES,
        (*_CPU, "optim.optimizer=adamw", "optim.lr=0.001", "optim.weight_decay=0.05"),
    ),
    "effl1_240 cpu": ("mmsag_effl1_240", True, 16, _STAGES, _CPU),
    "effl0_224 1-6 cached + attention": (
        "mmsag_effl0_224",
        True,
        40,
        _STAGES,
        _CACHED_6 + _ATTENTION,
    ),
    "effl0_224 1-6 cached x2 + att + belt": (
        "mmsag_effl0_224",
        True,
        40,
        _STAGES,
        (*_CACHED_6, "cache_views=2", *_ATTENTION, *_BELT),
    ),
    "effl0_224 1-4 cached x2 + att + belt": (
        "mmsag_effl0_224",
        True,
        24,
        _STAGES,
        ("model.freeze_stages=4", "cache_frozen=true", "cache_views=2", *_ATTENTION, *_BELT),
    ),
    "effl0_224 full MM-SAG": ("mmsag_effl0_224", True, 12, _STAGES, ()),
    "effl0_224 stages 1-4 frozen": ("mmsag_effl0_224", True, 16, _STAGES, _FROZEN_4),
    "effl0_224 frozen backbone": (
        "mmsag_effl0_224",
        True,
        20,
        _STAGES,
        (*_FROZEN_ALL, "optim.attention_weight=0"),
    ),
    "effl0_224 1-6 frozen, cached": ("mmsag_effl0_224", True, 40, _STAGES, _CACHED_6),
    "effl0_448 frozen backbone": ("mmsag_effl0_448", True, 8, _STAGES, _FROZEN_ALL),
    "r18_224 full, from scratch": ("mmsag_r18_224", False, 8, _STAGES, ()),
    "effl0_224 linear head": ("mmsag_effl0_224", True, 12, (), ()),
    "effl0_224 + semantic attention": ("mmsag_effl0_224", True, 12, _STAGES[:1], ()),
    "effl0_224 + fusion": ("mmsag_effl0_224", True, 12, _STAGES[:2], ()),
}
# The original composer's scenes: the data of an original-style run, the fixed test of others.
_REFERENCE = "composed_scenes"
_METRICS = ("val_map", "test_map", "test_of1", "pointing", "instance_recall", "instance_precision")


def _compose(args: argparse.Namespace, root: Path, style: str, num_trainval: int) -> None:
    if (root / "composed.json").exists():
        return
    num_val = num_trainval // 6
    compose_dataset(
        args.photos,
        root,
        num_train=num_trainval - num_val,
        num_val=num_val,
        num_test=args.test,
        style=style,
        progress=True,
        overwrite=root.exists(),
    )


def _prepare_data(args: argparse.Namespace) -> tuple[Path, list[str], str]:
    """The dataset root, its split overrides, and a sentence saying what it is."""
    if args.photos is None:
        root = args.out / "synthetic_conveyor"
        if not (root / "synthetic.json").exists():
            generate_dataset(root, num_trainval=args.trainval, num_test=args.test, progress=True)
        return root, [], f"{args.trainval} synthetic conveyor frames (not camera frames)"
    suffix = "" if args.style == "original" else f"_{args.style}"
    root = args.out / f"{_REFERENCE}{suffix}"
    _compose(args, root, args.style, args.trainval)
    if args.style != "original":
        # The same seed and test photos, composed as the first composer did: the fixed reference.
        _compose(args, args.out / _REFERENCE, "original", 0)
    splits = ["data.train_split=train", "data.val_split=val"]
    what = f"{args.trainval} scenes composed ({args.style} style) from the photos in {args.photos}"
    return root, splits, what


def _score(checkpoint, data_root: Path) -> dict:
    """Test mAP, OF1 and pointing of a checkpoint on a dataset's test split."""
    test_split = load_split(DataConfig(path=str(data_root)), "test", labels=checkpoint.labels)
    boxes = read_voc_boxes(data_root, [s.image_id for s in test_split.samples])
    evaluation = evaluate_checkpoint(checkpoint, test_split, progress=False, boxes=boxes)
    pointing = evaluation.pointing
    return {
        "test_map": evaluation.report.map,
        "test_of1": evaluation.report.at_threshold["OF1"],
        "pointing": pointing.accuracy if pointing else None,
        "pointing_per_class": (
            {c: pointing.class_accuracy(i) for i, c in enumerate(pointing.classes)}
            if pointing
            else None
        ),
        "instance_recall": pointing.instance_recall if pointing else None,
        "instance_precision": pointing.instance_precision if pointing else None,
    }


def _train_and_score(
    label: str, seed: int, data_root: Path, splits: list[str], args: argparse.Namespace
) -> dict:
    model, pretrained, epochs, stages, overrides = RUNS[label]
    name = label.replace(" ", "_").replace(",", "").replace("+", "plus")
    run_dir = args.out / f"{name}_seed{seed}"
    flags: dict[str, object] = {stage: stage in stages for stage in _STAGES}
    for item in [o for o in overrides if o.startswith("model.overrides.")]:
        key, value = item.removeprefix("model.overrides.").split("=", 1)
        flags[key] = value if key == "normalization" else json.loads(value)
    overrides = tuple(o for o in overrides if not o.startswith("model.overrides."))
    config = load_config(
        None,
        [
            f"data.path={data_root}",
            *splits,
            "data.workers=1",
            f"model.name={model}",
            f"model.pretrained={str(pretrained).lower()}",
            f"model.overrides={json.dumps(flags)}",
            f"epochs={epochs}",
            *_BASE,
            *overrides,  # last, so that a run may change the base
            f"seed={seed}",
            f"time_budget_min={args.budget_min}",
            f"out_dir={run_dir}",
        ],
    )
    started = time.monotonic()
    summary = run_training(config)
    train_min = (time.monotonic() - started) / 60
    checkpoint = load_checkpoint(summary.best_checkpoint)
    reference = args.out / _REFERENCE
    scores = _score(checkpoint, data_root)
    if reference != data_root and reference.is_dir():
        ref = _score(checkpoint, reference)
        scores.update(reference_map=ref["test_map"], reference_pointing=ref["pointing"])
    return {
        "run": label,
        "seed": seed,
        "style": args.style if args.photos else None,
        "val_map": summary.best_val_map,
        **scores,
        "epochs_done": len(summary.epochs),
        "train_images_per_s": statistics.fmean(e.images_per_s for e in summary.epochs),
        "wall_min": train_min,
    }


def _mean_spread(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "-"
    if len(known) == 1:
        return f"{known[0]:.3f}"
    return f"{statistics.fmean(known):.3f}±{statistics.stdev(known):.3f}"


def format_table(results: list[dict], heading: str) -> str:
    """One row per run and style: mean ± sample standard deviation over its seeds."""
    metrics = list(_METRICS)
    columns = ["val mAP", "test mAP", "test OF1", "pointing", "inst R", "inst P"]
    if any("reference_map" in r for r in results):
        metrics += ["reference_map", "reference_pointing"]
        columns += ["ref mAP", "ref pointing"]
    lines = [heading, f"{'run':<36}{'seeds':>6}" + "".join(f"{c:>14}" for c in columns)]
    lines[-1] += f"{'epochs':>8}{'img/s':>7}"
    for label, style in dict.fromkeys((r["run"], r.get("style")) for r in results):
        rows = [r for r in results if r["run"] == label and r.get("style") == style]
        cells = "".join(f"{_mean_spread([r.get(m) for r in rows]):>14}" for m in metrics)
        epochs = statistics.fmean(r["epochs_done"] for r in rows)
        rate = statistics.fmean(r["train_images_per_s"] for r in rows)
        name = label if style in (None, "original") else f"{label} [{style}]"
        lines.append(f"{name:<36}{len(rows):>6}{cells}{epochs:>8.1f}{rate:>7.1f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-min", type=float, default=10.0)
    parser.add_argument("--photos", type=Path, help="compose scenes from these <class>/ photos")
    parser.add_argument(
        "--trainval", type=int, default=4000, help="training + validation scenes [4000]"
    )
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--style",
        default="original",
        choices=list(COMPOSE_STYLES),
        help="compose style of the photo scenes (others are also scored on original's test)",
    )
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--out", type=Path, default=Path("bench/results/train_budget"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data_root, splits, what = _prepare_data(args)
    results = []
    for label in args.runs:
        for seed in args.seeds:
            results.append(_train_and_score(label, seed, data_root, splits, args))
            # Written after every run: a stopped session keeps the rows it finished.
            (args.out / "results.json").write_text(json.dumps(results, indent=2))
            machine = f"{platform.processor() or platform.machine()}"
            heading = f"{args.budget_min:g}-minute CPU budget on {what} ({machine}, "
            heading += f"{torch.get_num_threads()} threads)"
            table = format_table(results, heading)
            (args.out / "results.txt").write_text(table + "\n")
    print("\n" + table)


if __name__ == "__main__":
    main()
