"""Every ``mmsag`` command the README and the manuals show is one the CLI accepts.

Each command line in a fenced block (continuation lines joined, comments dropped) is parsed by
the real ``mmsag`` parser; a training command's ``--config`` file must exist in the checkout
and its ``--set`` keys must be config keys. A renamed option or sub-command fails here before
a reader copies it.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from mmsag_ros.cli import build_parser
from mmsag_ros.train.config import load_config

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _commands(path: Path) -> list[str]:
    """The ``mmsag ...`` lines of ``path``'s fenced blocks, continuation lines joined."""
    commands = []
    for block in _FENCE.findall(path.read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith("mmsag "):
                commands.append(line.split(" #", 1)[0].strip())
    return commands


_CASES = [(path, command) for path in DOCS for command in _commands(path)]


def test_the_docs_show_commands_to_check() -> None:
    # The scan finds the commands (a changed fence style must not make this file vacuous).
    assert len(_CASES) >= 30, len(_CASES)
    assert {path.name for path, _ in _CASES} >= {"README.md", "training.md", "bags.md"}


@pytest.mark.parametrize(("path", "command"), _CASES, ids=[f"{p.name}:{c[:60]}" for p, c in _CASES])
def test_a_documented_command_parses(path: Path, command: str) -> None:
    argv = shlex.split(command)[1:]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        pytest.fail(f"{path.name}: `{command}` is refused by the CLI (exit {exit_.code})")
    if args.command == "train":
        if args.config is not None:
            assert (REPO / args.config).is_file(), f"{path.name}: no {args.config}"
        load_config(None, args.overrides or [])  # unknown keys raise ConfigError
