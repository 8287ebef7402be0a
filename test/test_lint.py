"""The code base stays clean under the project's ruff configuration (pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support import REPO


def test_ruff_check_is_clean():
    ruff = Path(sys.prefix) / "bin" / "ruff"
    run = subprocess.run(
        [str(ruff), "check", "--output-format", "concise", str(REPO)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stdout + run.stderr
