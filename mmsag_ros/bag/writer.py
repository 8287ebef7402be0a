"""Writing a new rosbag2 bag: the one place that chooses the format and cleans up a failure.

Every bag this package writes (``bag make``, labelled bags, recorded replays, the capture ring)
is rosbag2 format 9 in MCAP or SQLite 3, as ``ros2 bag record`` writes on Kilted.
"""

from __future__ import annotations

import os
import shutil
import tempfile
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
    """Write a new bag at ``path``, whole or not at all; :class:`BagError` when it fails.

    The bag is written in a staging folder of its own beside ``path`` and renamed into place
    when it is complete, so a reader never sees a half-written bag (no footer, no
    ``metadata.yaml``) and a failure removes only what this call wrote, never a folder someone
    else made at ``path`` meanwhile. Our own errors pass unchanged; anything else (rosbags'
    writer errors, full disks, unwritable folders) becomes one ``cannot write the <what> <path>``.
    """
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise BagError(f"cannot write the {what} {path}: it exists")
    staging: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
        # The same folder name inside: rosbags names the storage file after it.
        with bag_writer(staging / path.name, storage) as writer:
            yield writer
        os.rename(staging / path.name, path)  # refused if someone has filled `path` meanwhile
    except Exception as err:
        if isinstance(err, MmsagError):
            raise
        raise BagError(f"cannot write the {what} {path}: {err}") from err
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
