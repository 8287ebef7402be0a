"""Finding this package's data files (``msg/``, ``config/``) in a checkout or an install."""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

__all__ = ["DDS_PROFILE_VARIABLE", "default_dds_profile", "share_candidates"]

_PACKAGE = "mmsag_ros"
#: Fast DDS reads the XML profile this names once per process, at its first participant.
DDS_PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"


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


def default_dds_profile(env: MutableMapping[str, str]) -> str | None:
    """Point ``env`` at the shipped shared-memory profile unless it names one already.

    Camera frames need the profile's large segment (see README). Fast DDS loads the file
    when a process creates its first participant, so setting ``os.environ`` helps only a
    process that has none yet. Returns the profile ``env`` names afterwards, if any.
    """
    if DDS_PROFILE_VARIABLE not in env:
        profile = next((p for p in share_candidates("config/fastdds_shm.xml") if p.is_file()), None)
        if profile is not None:
            env[DDS_PROFILE_VARIABLE] = str(profile)
    return env.get(DDS_PROFILE_VARIABLE)
