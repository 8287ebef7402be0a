"""The shell lines the README and the manuals show, for the tests that check them.

Every line of a fenced shell block, continuation lines joined and a trailing ``# comment``
dropped, with the file it is in. ``mmsag ...`` and ``python -m mmsag_ros.cli ...`` are the same
command (the second is how the robot runs it, without the console script).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from support import REPO

DOCS = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
# Shell blocks by any of their usual names (the layout trees and Python blocks are not shell).
_FENCE = re.compile(r"^```(?:bash|sh|shell|console)\n(.*?)^```", re.DOTALL | re.MULTILINE)
_MMSAG = (("mmsag",), ("python", "-m", "mmsag_ros.cli"))


@dataclass(frozen=True)
class DocCommand:
    """One shell line of a document."""

    path: Path
    line: str

    @property
    def words(self) -> list[str]:
        return shlex.split(self.line)

    @property
    def mmsag_args(self) -> list[str] | None:
        """The arguments of an ``mmsag`` command (after the program), None for other lines."""
        words = self.words
        for program in _MMSAG:
            if tuple(words[: len(program)]) == program:
                return words[len(program) :]
        return None

    @property
    def label(self) -> str:
        return f"{self.path.name}:{self.line[:70]}"


def _lines(block: str) -> list[str]:
    lines = []
    for line in block.replace("\\\n", " ").splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            lines.append(" ".join(line.split()))
    return lines


def doc_commands() -> list[DocCommand]:
    """Every shell line of every document's ``bash`` blocks, in reading order."""
    return [
        DocCommand(path, line)
        for path in DOCS
        for block in _FENCE.findall(path.read_text())
        for line in _lines(block)
    ]


def mmsag_commands() -> list[DocCommand]:
    """The documented ``mmsag`` commands, in reading order."""
    return [command for command in doc_commands() if command.mmsag_args is not None]
