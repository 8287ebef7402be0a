"""``mmsag data {stats,synth,compose}``: statistics, synthetic scenes, scenes from photos."""

from __future__ import annotations

import argparse
import importlib

__all__ = ["add_arguments", "run"]

# sub-command -> (module with add_arguments/run, summary)
_ACTIONS = {
    "stats": ("mmsag_ros.cli.data_stats", "label statistics, co-occurrence and ML-GCN adjacency"),
    "synth": ("mmsag_ros.cli.data_synth", "generate a synthetic conveyor dataset (VOC layout)"),
    "compose": (
        "mmsag_ros.cli.data_compose",
        "compose belt scenes from single-object photos (VOC layout)",
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``stats``, ``synth`` and ``compose`` with their own options."""
    actions = parser.add_subparsers(dest="data_action", metavar="ACTION", required=True)
    for name, (module_name, summary) in _ACTIONS.items():
        sub = actions.add_parser(name, help=summary, description=summary, allow_abbrev=False)
        importlib.import_module(module_name).add_arguments(sub)


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen action."""
    return importlib.import_module(_ACTIONS[args.data_action][0]).run(args)
