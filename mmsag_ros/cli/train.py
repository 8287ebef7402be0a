"""``mmsag train``: train a model from a YAML config plus ``--set`` overrides."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_arguments", "add_override_argument", "run"]


def add_override_argument(parser: argparse.ArgumentParser) -> None:
    """Declare ``--set KEY=VALUE`` (repeatable), collected in ``args.overrides``."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one training config key, e.g. --set optim.lr=0.01 (repeatable)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mmsag train``."""
    parser.add_argument("--config", type=Path, help="YAML file (see config/train_*.yaml)")
    add_override_argument(parser)
    parser.add_argument("--resume", type=Path, help="continue from this checkpoint (last.pt)")
    parser.add_argument("--out", type=Path, help="run directory (same as --set out_dir=...)")


def run(args: argparse.Namespace) -> int:
    """Resolve the config, train, and print where the best checkpoint is."""
    from mmsag_ros.train.config import load_config
    from mmsag_ros.train.run import run_training

    overrides = list(args.overrides)
    if args.resume:
        overrides.append(f"resume={args.resume}")
    if args.out:
        overrides.append(f"out_dir={args.out}")
    summary = run_training(load_config(args.config, overrides))
    if summary.primary:
        print(f"best validation mAP {summary.best_val_map:.4f}: {summary.best_checkpoint}")
    return 0
