"""Shared fixtures: an isolated ROS 2 environment per test."""

from __future__ import annotations

import os

import pytest
from support import FASTDDS_PROFILE, VENV, ros_environment

# Every process these tests start stays on this machine.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("AMENT_PREFIX_PATH", str(VENV))
# Like every process of a cell, this one carries the shipped DDS profile from its first
# participant on (Fast DDS reads the file once per process).
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(FASTDDS_PROFILE))


@pytest.fixture
def ros_env() -> dict[str, str]:
    """Environment for ROS peer processes: a domain of their own and the shipped DDS profile."""
    return ros_environment()


@pytest.fixture
def ros_domain(ros_env, monkeypatch) -> dict[str, str]:
    """``ros_env`` for this process too: its rclpy contexts and the nodes it starts share the
    test's own domain (for tests that replay into a node process from here)."""
    for name in ("ROS_DOMAIN_ID", "FASTDDS_DEFAULT_PROFILES_FILE", "AMENT_PREFIX_PATH"):
        monkeypatch.setenv(name, ros_env[name])
    monkeypatch.setenv("PYTHONPATH", ros_env["PYTHONPATH"])
    return ros_env
