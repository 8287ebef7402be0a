"""Shared fixtures: an isolated ROS 2 environment per test and helpers for peer processes."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
FASTDDS_PROFILE = REPO / "config" / "fastdds_shm.xml"

# Every process these tests start stays on this machine.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("AMENT_PREFIX_PATH", str(VENV))


@pytest.fixture
def ros_env() -> dict[str, str]:
    """Environment for ROS peer processes: a domain of their own and the shipped DDS profile."""
    env = dict(os.environ)
    env.update(
        ROS_DOMAIN_ID=str(random.Random().randint(1, 101)),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        AMENT_PREFIX_PATH=str(VENV),
        FASTDDS_DEFAULT_PROFILES_FILE=str(FASTDDS_PROFILE),
        PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "test")]),
        PYTHONUNBUFFERED="1",
    )
    return env


def start_python(script: Path, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """Start ``script`` with this interpreter as a separate process, capturing its output."""
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
