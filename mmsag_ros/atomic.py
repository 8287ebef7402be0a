"""Atomic file writes and an advisory lock, for files that several processes may write at once.

Two sorter nodes starting on the same robot can build the same TensorRT engine, and two exports
can write into the same folder. A fixed temporary name (``.x.tmp``) makes them truncate and
rename each other's half-written files; here every writer gets its own temporary file in the
target's directory (same file system, so the final ``os.replace`` is an atomic rename), flushed
to disk before the rename, and removed if anything fails. Readers see the old file or a whole
new one, never a mix; with concurrent writers the last rename wins.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["atomic_target", "exclusive_lock", "shared_lock", "unique_directory", "write_atomic"]

_FALLBACK_UMASK = 0o022


def _umask() -> int:
    # os.umask() can only be read by setting it, which races with other threads creating files;
    # Linux reports it in /proc instead.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _FALLBACK_UMASK


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort: not every file system allows it)."""
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


@contextlib.contextmanager
def atomic_target(path: Path) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; on success it replaces ``path`` atomically.

    For writers that want a file name (torch.save, ONNX Runtime's quantizer). The temporary
    file is created empty and unique (``mkstemp``); whatever the body writes to it is fsynced
    and renamed onto ``path`` when the body returns. If the body or the rename raises, the
    temporary file is removed and ``path`` keeps its old content.
    """
    path = Path(path)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        # mkstemp creates 0600; give the file the mode an ordinary open() would have.
        os.fchmod(handle, 0o666 & ~_umask())
        os.close(handle)
        handle = -1
        yield temporary
        with temporary.open("rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except BaseException:
        if handle >= 0:
            os.close(handle)
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def unique_directory(parent: Path, *, prefix: str, suffix: str) -> Path:
    """A new, uniquely named directory in ``parent`` with an ordinary directory's mode.

    ``mkdtemp`` makes it 0700; a bundle moved into place from it must stay readable by the
    user the robot's nodes run as, as a plain ``mkdir`` would have left it.
    """
    directory = Path(tempfile.mkdtemp(dir=parent, prefix=prefix, suffix=suffix))
    directory.chmod(0o777 & ~_umask())
    return directory


def write_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (unique temporary file, fsync, rename)."""
    path = Path(path)
    with atomic_target(path) as temporary, temporary.open("wb") as handle:
        handle.write(data)
    return path


@contextlib.contextmanager
def exclusive_lock(
    path: Path, *, on_wait: Callable[[], None] | None = None, optional: bool = False
) -> Iterator[bool]:
    """Hold an exclusive advisory lock (``flock``) on the file ``path`` for the body.

    Blocks until no other holder is left, calling ``on_wait`` first if it has to wait. The
    kernel drops the lock when its holder exits, so a crashed process never leaves it stuck;
    the (empty) lock file stays and is harmless.

    Args:
        path: The lock file, created if missing.
        on_wait: Called once when another process holds the lock (to log why we block).
        optional: If the lock file cannot be created (a read-only folder, where nothing can be
            written anyway), run the body without the lock instead of raising.

    Yields:
        Whether the lock is held.
    """
    with _flock(path, fcntl.LOCK_EX, on_wait, optional) as held:
        yield held


@contextlib.contextmanager
def shared_lock(
    path: Path, *, on_wait: Callable[[], None] | None = None, optional: bool = False
) -> Iterator[bool]:
    """Hold a shared advisory lock on ``path``: readers together, never beside an exclusive one.

    A reader of files that a writer replaces under :func:`exclusive_lock` of the same path
    sees them either before the writer started or after it finished. Arguments as there.
    """
    with _flock(path, fcntl.LOCK_SH, on_wait, optional) as held:
        yield held


@contextlib.contextmanager
def _flock(
    path: Path, mode: int, on_wait: Callable[[], None] | None, optional: bool
) -> Iterator[bool]:
    try:
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        if not optional:
            raise
        yield False
        return
    try:
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle, mode)
        yield True
    finally:
        os.close(handle)  # closing the descriptor releases the lock
