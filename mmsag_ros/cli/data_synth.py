"""``mmsag data synth``: write a synthetic conveyor-belt dataset in the VOC layout.

The frames are drawn, not photographed: they serve demos, tests and benchmarks, and the output
says so (``synthetic.json``, ``README.txt``).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from mmsag_ros.errors import ConfigError

__all__ = ["add_arguments", "run"]

_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mmsag data synth``."""
    parser.add_argument("--out", required=True, type=Path, help="output directory (new or empty)")
    parser.add_argument("--trainval", type=int, default=2000, help="trainval images [2000]")
    parser.add_argument("--test", type=int, default=500, help="test images [500]")
    parser.add_argument("--size", default="320x240", help="image size WIDTHxHEIGHT [320x240]")
    parser.add_argument("--seed", type=int, default=0, help="seed; same seed, same bytes [0]")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a synthetic dataset previously written to --out",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``WIDTHxHEIGHT`` (e.g. ``320x240``); ConfigError with an example otherwise."""
    match = _SIZE.match(text)
    if match is None:
        raise ConfigError(f"--size {text!r} is not WIDTHxHEIGHT; write it like 320x240")
    return int(match.group(1)), int(match.group(2))


def run(args: argparse.Namespace) -> int:
    """Generate the dataset and print a per-class summary table."""
    # Imported here: the generator pulls in OpenCV, which `mmsag --help` must not load.
    from mmsag_ros.data.synth import generate_dataset

    size = parse_size(args.size)
    start = time.perf_counter()
    summary = generate_dataset(
        args.out,
        num_trainval=args.trainval,
        num_test=args.test,
        image_size=size,
        seed=args.seed,
        progress=not args.no_progress and sys.stderr.isatty(),
        overwrite=args.overwrite,
    )
    elapsed_s = time.perf_counter() - start
    total = summary.images["trainval"] + summary.images["test"]
    print(f"SYNTHETIC data (drawn, not real photographs) written to {summary.voc_root}")
    print(
        f"{total} images {size[0]}x{size[1]}, seed {summary.seed}, in {elapsed_s:.1f} s; "
        f"trainval {summary.images['trainval']} (train {summary.images['train']}, "
        f"val {summary.images['val']}), test {summary.images['test']}"
    )
    print(f"  {'class':<12} {'trainval img':>12} {'objects':>8} {'test img':>9} {'objects':>8}")
    for name in summary.classes:
        print(
            f"  {name:<12} {summary.positives['trainval'][name]:>12} "
            f"{summary.objects['trainval'][name]:>8} {summary.positives['test'][name]:>9} "
            f"{summary.objects['test'][name]:>8}"
        )
    print(
        f"  {'(empty)':<12} {summary.empty_images['trainval']:>12} {'':>8} "
        f"{summary.empty_images['test']:>9}"
    )
    print("Scores measured on these images say nothing about accuracy on real waste.")
    return 0
