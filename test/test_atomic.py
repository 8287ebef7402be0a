"""Atomic writes and the build lock, with real files and real concurrent writers.

TensorRT cannot be installed here, so the engine, sidecar and cache writes are tested through
the writer they use (:func:`mmsag_ros.atomic.write_atomic`).
"""

from __future__ import annotations

import fcntl
import os
import stat
import threading
from pathlib import Path

import pytest

from mmsag_ros.atomic import atomic_target, exclusive_lock, unique_directory, write_atomic
from mmsag_ros.bundle import manifest
from mmsag_ros.export import precision
from mmsag_ros.export.write_bundle import _staging_dir
from mmsag_ros.runtime import engine_build, engine_cache

_WRITERS = 8
_ROUNDS = 12
_PAYLOAD_BYTES = 1 << 20  # large enough that a write takes many system calls


def _payload(writer: int) -> bytes:
    return bytes([writer]) * _PAYLOAD_BYTES


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_the_engine_cache_uses_the_atomic_writer_and_the_lock() -> None:
    # build_engine writes engines, sidecars and timing caches through this name, and
    # ensure_engine holds this lock from the cache check to the last write.
    assert engine_build.write_atomic is write_atomic
    assert engine_cache.exclusive_lock is exclusive_lock


def test_the_bundle_writers_use_the_atomic_writer() -> None:
    # The manifest and the precision variants are written through these names.
    assert manifest.write_atomic is write_atomic
    assert precision.atomic_target is atomic_target


def test_concurrent_writers_leave_exactly_one_whole_payload(tmp_path: Path) -> None:
    target = tmp_path / "orin_sm87_trt10.3.0_fp16_0123456789ab.engine"
    start = threading.Barrier(_WRITERS)
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        start.wait()  # all writers begin together, so their writes overlap
        try:
            for _ in range(_ROUNDS):
                write_atomic(target, _payload(writer))
        except BaseException as err:  # reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(_WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    data = target.read_bytes()
    assert data in {_payload(i) for i in range(_WRITERS)}
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary file left


def test_writers_get_their_own_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "model.int8.onnx"
    with atomic_target(target) as first, atomic_target(target) as second:
        assert first != second and first.parent == second.parent == tmp_path
        first.write_bytes(b"first")
        second.write_bytes(b"second")
    # The inner one renamed first, the outer one last: the last rename wins, whole.
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_a_failing_writer_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "manifest.json"
    target.write_bytes(b"old")
    with (
        pytest.raises(RuntimeError, match="serialization failed"),
        atomic_target(target) as temporary,
    ):
        temporary.write_bytes(b"half a fi")
        raise RuntimeError("serialization failed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_a_failing_rename_leaves_the_target_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "engine"
    target.mkdir()  # a directory cannot be replaced by a file
    (target / "keep").write_bytes(b"x")
    with pytest.raises(IsADirectoryError):
        write_atomic(target, b"engine bytes")
    assert [p.name for p in target.iterdir()] == ["keep"]
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_written_files_get_the_mode_of_an_ordinary_file(tmp_path: Path) -> None:
    ordinary = tmp_path / "ordinary"
    ordinary.write_bytes(b"")
    written = write_atomic(tmp_path / "written", b"data")
    assert stat.S_IMODE(written.stat().st_mode) == stat.S_IMODE(ordinary.stat().st_mode)
    assert stat.S_IMODE(written.stat().st_mode) == 0o666 & ~_current_umask()


def test_staging_folders_are_unique_and_readable(tmp_path: Path) -> None:
    out = tmp_path / "bundles" / "effl0_224"
    first = _staging_dir(out, overwrite=False)
    (first / "model.onnx").write_bytes(b"being written")
    second = _staging_dir(out, overwrite=False)  # a second export into the same folder
    assert second != first
    assert (first / "model.onnx").read_bytes() == b"being written"  # not deleted under it
    ordinary = tmp_path / "ordinary"
    ordinary.mkdir()
    assert stat.S_IMODE(second.stat().st_mode) == stat.S_IMODE(ordinary.stat().st_mode)


def test_unique_directory_has_an_ordinary_mode(tmp_path: Path) -> None:
    made = unique_directory(tmp_path, prefix=".x.", suffix=".partial")
    assert made.name.startswith(".x.") and made.name.endswith(".partial")
    assert stat.S_IMODE(made.stat().st_mode) == 0o777 & ~_current_umask()


def _locked_elsewhere(path: Path) -> bool:
    """Whether another open file description holds the flock on ``path``."""
    handle = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(handle)
    return False


def test_the_lock_excludes_others_until_released(tmp_path: Path) -> None:
    lock = tmp_path / "orin_sm87_trt10.3.0_fp16_0123456789ab.lock"
    with exclusive_lock(lock) as held:
        assert held
        assert _locked_elsewhere(lock)
    assert not _locked_elsewhere(lock)


def test_a_second_holder_waits_and_says_so(tmp_path: Path) -> None:
    lock = tmp_path / "engine.lock"
    waiting, entered = threading.Event(), threading.Event()

    def second_holder() -> None:
        with exclusive_lock(lock, on_wait=waiting.set):
            entered.set()

    with exclusive_lock(lock):
        thread = threading.Thread(target=second_holder)
        thread.start()
        assert waiting.wait(timeout=60), "the second holder never reported waiting"
        assert not entered.is_set()  # it is blocked while we hold the lock
    thread.join()
    assert entered.is_set()


def test_an_optional_lock_in_an_unwritable_place_runs_unlocked(tmp_path: Path) -> None:
    missing = tmp_path / "no such folder" / "engine.lock"
    with exclusive_lock(missing, optional=True) as held:
        assert not held
    with pytest.raises(FileNotFoundError), exclusive_lock(missing):
        pass
