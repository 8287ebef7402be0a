"""Finding this package's data files (``msg/``, ``config/``) in a checkout or an install."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["share_candidates"]

_PACKAGE = "mmsag_ros"


def share_candidates(relative: str) -> list[Path]:
    """Where ``relative`` (e.g. ``config/fastdds_shm.xml``) may lie, most specific first.

    The source checkout comes first, then ``<prefix>/share/mmsag_ros`` of every prefix on
    ``AMENT_PREFIX_PATH`` (a colcon install or a sourced ROS workspace).
    """
    candidates = [Path(__file__).resolve().parents[1] / relative]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / _PACKAGE / relative)
    return candidates
