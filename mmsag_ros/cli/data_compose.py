"""``mmsag data compose``: belt scenes composed from single-object photos (VOC layout).

The objects are real photos, cut out and laid on a drawn belt; the output says so
(``composed.json``, ``README.txt``) and lists which photo went to which split.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmsag_ros.cli.data_synth import parse_size

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mmsag data compose``."""
    parser.add_argument(
        "--photos", required=True, type=Path, help="image folders, one per class (<class>/*.jpg)"
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory (new or empty)")
    # 4000 scenes: the CPU recipe's best measured (bench/results/train_budget_photos_search_*).
    parser.add_argument("--train", type=int, default=3400, help="training scenes [3400]")
    parser.add_argument("--val", type=int, default=600, help="validation scenes [600]")
    parser.add_argument("--test", type=int, default=400, help="test scenes [400]")
    parser.add_argument("--size", default="320x240", help="scene size WIDTHxHEIGHT [320x240]")
    parser.add_argument("--max-objects", type=int, default=4, help="objects per scene, 1..N [4]")
    parser.add_argument(
        "--max-overlap",
        type=float,
        default=0.2,
        help="largest overlap of two objects, a fraction of the smaller [0.2]",
    )
    parser.add_argument("--val-fraction", type=float, default=0.15, help="photos for val [0.15]")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="photos for test [0.2]")
    parser.add_argument(
        "--group-size",
        type=int,
        default=10,
        help="consecutive photo numbers kept in one split (near-duplicates) [10]",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed; same seed, same bytes [0]")
    parser.add_argument(
        "--style",
        default="original",
        help="how scenes are drawn: original (the first composer) or belt [original]",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a dataset composed into --out before"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    """Compose the dataset and print per-split photos, scenes and objects."""
    # Imported here: the composer pulls in OpenCV, which `mmsag --help` must not load.
    from mmsag_ros.data.compose import COMPOSE_SPLITS, compose_dataset

    summary = compose_dataset(
        args.photos,
        args.out,
        num_train=args.train,
        num_val=args.val,
        num_test=args.test,
        image_size=parse_size(args.size),
        max_objects=args.max_objects,
        max_overlap=args.max_overlap,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        group_size=args.group_size,
        seed=args.seed,
        style=args.style,
        progress=not args.no_progress and sys.stderr.isatty(),
        overwrite=args.overwrite,
    )
    width, height = summary.image_size
    total = sum(summary.images[s] for s in COMPOSE_SPLITS)
    print(f"COMPOSED scenes (real photos on a drawn belt, not camera frames) in {summary.voc_root}")
    print(
        f"{total} scenes {width}x{height}, seed {summary.seed}, in {summary.seconds:.1f} s "
        f"({total / max(summary.seconds, 1e-9):.1f} scenes/s); photos cut out: "
        + ", ".join(f"{k} {v}" for k, v in summary.cutouts.items())
    )
    rejected = sum(len(v) for v in summary.rejected.values())
    print(
        f"style {summary.style.name}: {rejected} cutouts left out by the sanity check"
        + "".join(f", {k} {len(v)}" for k, v in summary.rejected.items())
        + f"; contact sheets in {summary.root / 'cutouts'}"
    )
    header = "".join(f" {s + ' photos':>13} {s + ' objects':>14}" for s in COMPOSE_SPLITS)
    print(f"  {'class':<12}{header}")
    for name in summary.classes:
        cells = "".join(
            f" {summary.photos[s][name]:>13} {summary.objects[s][name]:>14}" for s in COMPOSE_SPLITS
        )
        print(f"  {name:<12}{cells}")
    print("  scenes      " + "".join(f" {'':>13} {summary.images[s]:>14}" for s in COMPOSE_SPLITS))
    return 0
