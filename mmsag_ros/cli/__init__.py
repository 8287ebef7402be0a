"""The ``mmsag`` command: one entry point, sub-commands imported only when they run.

Sub-commands live in a name -> (module, summary) table so that ``mmsag --help`` never imports
torch, ONNX Runtime or rclpy. Each module has a ``add_arguments(parser)`` and a typed
``run(args) -> int`` and no logic of its own beyond calling the library.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence
from types import ModuleType

from mmsag_ros import __version__
from mmsag_ros.errors import MmsagError

__all__ = ["build_parser", "main"]

# name -> (module implementing add_arguments/run, one-line summary)
_COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("mmsag_ros.cli.data", "dataset statistics and synthetic conveyor scenes"),
    "train": ("mmsag_ros.cli.train", "train an MM-SAG model"),
    "eval": ("mmsag_ros.cli.eval", "score a checkpoint on a dataset split"),
    "export": ("mmsag_ros.cli.export", "export a checkpoint to a deployable bundle"),
    "engine": ("mmsag_ros.cli.engine", "build the TensorRT engine of a bundle on this GPU"),
    "verify": ("mmsag_ros.cli.verify", "check every backend and variant against ONNX Runtime"),
    "bench": ("mmsag_ros.cli.bench", "latency and throughput per backend and batch size"),
    "bag": ("mmsag_ros.cli.bag", "make, replay and evaluate rosbags"),
    "demo": ("mmsag_ros.cli.demo", "end-to-end demo on synthetic data, through a live node"),
    "info": ("mmsag_ros.cli.info", "show the version and which components this machine has"),
}


def build_parser() -> argparse.ArgumentParser:
    """The whole ``mmsag`` argument parser (also what the docs' commands are checked with)."""
    # No abbreviations: a retired option (--fp16) must fail, not turn into a new one (--fp16-bar).
    parser = argparse.ArgumentParser(
        prog="mmsag",
        allow_abbrev=False,
        description="MM-SAG multi-label waste classification: train, export, run, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"mmsag {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks; re-raise errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, summary) in _COMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=summary, allow_abbrev=False)
        sub.set_defaults(_module=module_name)
        # Argument definitions are cheap; only run() may import heavy libraries.
        _load(module_name).add_arguments(sub)
    return parser


def _load(module_name: str) -> ModuleType:
    return importlib.import_module(module_name)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``mmsag`` command line; return the process exit code.

    Exit codes: 0 success, 1 a reported problem (bad input, missing file, ...: one line on
    stderr), 2 an unexpected error (traceback printed) or a usage error.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(message)s",
    )
    try:
        return int(_load(args._module).run(args))
    except MmsagError as err:
        if args.debug:
            raise
        print(f"mmsag {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"mmsag {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception:
        if args.debug:
            raise
        traceback.print_exc()
        print(f"mmsag {args.command}: unexpected error (a bug: please report it)", file=sys.stderr)
        return 2
