"""Paths and process helpers shared by tests (a uniquely named module, unlike conftest.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
FASTDDS_PROFILE = REPO / "config" / "fastdds_shm.xml"
# Real material (camera rosbags, TACO annotations) lies beside the checkout, in CI too.
SHARED_DATA = REPO.parent / "shared" / "data"


def start_python(script: Path, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """Start ``script`` with this interpreter as a separate process, capturing its output."""
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
