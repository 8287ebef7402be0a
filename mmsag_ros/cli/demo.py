"""``mmsag demo``: data (drawn or composed) -> fine-tune -> export -> bag -> live node -> report."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mmsag demo`` (all optional: the defaults are the demo)."""
    from mmsag_ros.cli.data_synth import parse_size
    from mmsag_ros.cli.train import add_override_argument
    from mmsag_ros.demo import DemoOptions

    defaults = DemoOptions()
    parser.add_argument(
        "--out",
        type=Path,
        default=defaults.out,
        help="output folder; a previous demo there is replaced [runs/demo]",
    )
    parser.add_argument(
        "--photos",
        type=Path,
        help="compose the scenes from these real photos (<class>/*.jpg) instead of drawing them",
    )
    parser.add_argument(
        "--trainval",
        type=int,
        default=defaults.trainval,
        help="training + validation images [%(default)s]",
    )
    parser.add_argument(
        "--test",
        type=int,
        default=defaults.test,
        help="held-out images, replayed as the bag [%(default)s]",
    )
    parser.add_argument(
        "--size", type=parse_size, default=defaults.image_size, help="frame size WxH [320x240]"
    )
    parser.add_argument(
        "--epochs", type=int, default=defaults.epochs, help="fine-tuning epochs [%(default)s]"
    )
    parser.add_argument(
        "--time-budget-min",
        type=float,
        default=defaults.time_budget_min,
        help="stop training after this long [%(default)s]",
    )
    parser.add_argument("--fps", type=float, default=defaults.fps, help="bag frame rate [10]")
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="data and training seed [%(default)s]"
    )
    add_override_argument(parser)
    parser.add_argument("--quiet", action="store_true", help="do not print each live label")


def run(args: argparse.Namespace) -> int:
    """Run the demo end to end."""
    from mmsag_ros.demo import DemoOptions, run_demo

    run_demo(
        DemoOptions(
            out=args.out,
            photos=args.photos,
            trainval=args.trainval,
            test=args.test,
            image_size=args.size,
            epochs=args.epochs,
            time_budget_min=args.time_budget_min,
            fps=args.fps,
            seed=args.seed,
            overrides=tuple(args.overrides),
            show_labels=not args.quiet,
        )
    )
    return 0
