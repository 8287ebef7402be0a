"""Where TensorRT engines are looked for and written: the cache folders, with real files.

A writable bundle keeps its engines; a read-only one is still searched first, with new engines
going to the user cache (``$XDG_CACHE_HOME``); a named cache folder is searched before the
bundle and is the only build target. Deciding creates no folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from runtime_helpers import copy_bundle

from mmsag_ros.bundle.schema import Bundle
from mmsag_ros.runtime.engine_cache import _cache_dirs, default_cache_dir


def test_default_cache_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "mmsag_ros" / "engines"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "mmsag_ros" / "engines"
    monkeypatch.setenv("XDG_CACHE_HOME", "")  # empty counts as unset
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "mmsag_ros" / "engines"


def test_a_writable_bundle_keeps_its_engines(bundle: Bundle, tmp_path: Path, user_cache) -> None:
    copy = copy_bundle(bundle, tmp_path / "bundle")
    assert _cache_dirs(copy, None) == ([copy.engines_dir], copy.engines_dir)
    # Deciding creates nothing: only a build makes the folder.
    assert not copy.engines_dir.exists() and not user_cache.exists()


def test_a_read_only_bundle_falls_back_to_the_user_cache(read_only_bundle: Bundle, user_cache):
    search, target = _cache_dirs(read_only_bundle, None)
    # Engines shipped in the bundle are still found, first; new ones go to the user cache.
    assert search == [read_only_bundle.engines_dir, user_cache]
    assert target == user_cache and not user_cache.exists()


def test_no_writable_cache_at_all_gives_no_target(
    read_only_bundle: Bundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a file"
    blocker.write_bytes(b"")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    fallback = blocker / "mmsag_ros" / "engines"
    assert _cache_dirs(read_only_bundle, None) == ([read_only_bundle.engines_dir, fallback], None)


def test_a_named_cache_dir_is_searched_first_then_the_bundle(
    bundle: Bundle, tmp_path: Path, user_cache
) -> None:
    copy = copy_bundle(bundle, tmp_path / "bundle")
    cache = tmp_path / "cache"
    assert _cache_dirs(copy, cache) == ([cache, copy.engines_dir], cache)
    assert not cache.exists() and not user_cache.exists()
    assert _cache_dirs(copy, str(cache)) == ([cache, copy.engines_dir], cache)  # str works too


def test_an_unwritable_named_cache_dir_gives_no_target(bundle: Bundle, tmp_path: Path) -> None:
    copy = copy_bundle(bundle, tmp_path / "bundle")
    (tmp_path / "a file").write_bytes(b"")
    cache = tmp_path / "a file" / "cache"
    # The named folder is the only build target: no silent fallback to another one.
    assert _cache_dirs(copy, cache) == ([cache, copy.engines_dir], None)
