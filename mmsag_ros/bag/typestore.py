"""The rosbags type store: ROS 2 Kilted's standard types plus this package's messages.

rosbags (de)serializes without ROS, from message definitions. Ours are read from the ``.msg``
files, found in the source checkout or, on an installed system, in the ament index
(``<prefix>/share/mmsag_ros/msg``).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from mmsag_ros._share import share_candidates
from mmsag_ros.errors import BagError

__all__ = ["MESSAGE_TYPES", "find_msg_dir", "mmsag_typestore"]

_PACKAGE = "mmsag_ros"
# Dependencies first: MultiLabel refers to InstancePeaks, both to AttentionPeak.
MESSAGE_TYPES = ("AttentionPeak", "InstancePeaks", "MultiLabel")


def find_msg_dir() -> Path:
    """Return the folder holding this package's ``.msg`` files."""
    candidates = share_candidates("msg")
    for folder in candidates:
        if all((folder / f"{name}.msg").is_file() for name in MESSAGE_TYPES):
            return folder
    searched = ", ".join(str(c) for c in candidates)
    raise BagError(
        f"cannot find the {_PACKAGE} message definitions (searched {searched});"
        " build the package or set AMENT_PREFIX_PATH to its install prefix"
    )


@cache
def mmsag_typestore(msg_dir: Path | None = None) -> Typestore:
    """Return a Kilted type store with ``mmsag_ros/msg/*`` registered."""
    folder = msg_dir or find_msg_dir()
    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for name in MESSAGE_TYPES:
        definition = (folder / f"{name}.msg").read_text()
        try:
            types.update(get_types_from_msg(definition, f"{_PACKAGE}/msg/{name}"))
        except Exception as err:  # rosbags raises its own parser errors
            raise BagError(f"cannot parse {folder / name}.msg: {err}") from err
    store.register(types)
    return store
