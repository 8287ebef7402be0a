"""Writing a new rosbag2 bag: the one place that chooses the format and cleans up a failure.

Every bag this package writes (``bag make``, labelled bags, recorded replays, the capture ring)
is rosbag2 format 9 in MCAP or SQLite 3, as ``ros2 bag record`` writes on Kilted.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from mmsag_ros.errors import BagError, MmsagError

if TYPE_CHECKING:
    from rosbags.rosbag2 import Writer

__all__ = ["STORAGES", "bag_writer", "writing_bag"]

STORAGES = ("mcap", "sqlite3")  # light to import: the CLI offers them as choices
_FORMAT_VERSION = 9


def bag_writer(path: Path, storage: str = "mcap") -> Writer:
    """An unopened writer of a new bag at ``path`` (which must not exist)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
    if storage not in plugins:
        raise BagError(f"unknown bag storage {storage!r}; use one of {', '.join(STORAGES)}")
    return Writer(Path(path), version=_FORMAT_VERSION, storage_plugin=plugins[storage])


@contextmanager
def writing_bag(path: Path, storage: str = "mcap", *, what: str = "bag") -> Iterator[Writer]:
    """Open a new bag; if anything inside fails, remove it and raise :class:`BagError`.

    ``path`` must not exist. A half-written bag (no footer, no ``metadata.yaml``) would only
    block the next attempt, so it goes. Our own errors pass unchanged; anything else (rosbags'
    writer errors, full disks, unwritable folders) becomes one ``cannot write the <what> <path>``.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        # Refused before anything is written, so that the cleanup below never removes it.
        raise BagError(f"cannot write the {what} {path}: it exists")
    try:
        with bag_writer(path, storage) as writer:
            yield writer
    except Exception as err:
        shutil.rmtree(path, ignore_errors=True)
        if isinstance(err, MmsagError):
            raise
        raise BagError(f"cannot write the {what} {path}: {err}") from err
