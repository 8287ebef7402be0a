"""TensorRT engines where TensorRT cannot run: the one-line refusals and the load-only path.

Without TensorRT every entry point says so in one line and writes nothing; a TensorRT older
than 10 is refused. The load-only path of :func:`ensure_engine` and :func:`load_engine` (find
a cached engine, or name the command that builds one) runs against a stand-in ``tensorrt``
module that carries only a version, and a stand-in GPU: which cache wins, which bytes the node
is given, a cache others could write, a loader waiting for a build in progress.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import types
from pathlib import Path

import pytest
from runtime.engine_cache_helpers import ORIN, fake_cache_entry
from runtime_helpers import HAS_TENSORRT, copy_bundle

from mmsag_ros.atomic import exclusive_lock
from mmsag_ros.bundle.schema import Bundle
from mmsag_ros.errors import BackendUnavailableError, BundleError
from mmsag_ros.runtime import engine_cache as trt_cache
from mmsag_ros.runtime.engine_build import BatchProfile, build_engine, import_tensorrt
from mmsag_ros.runtime.engine_cache import engine_key, ensure_engine, load_engine


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_without_tensorrt_every_entry_point_says_so_in_one_line(
    variant_bundle: Bundle, tmp_path: Path, user_cache
) -> None:
    from mmsag_ros.runtime.backends import create_backend

    calls = [
        import_tensorrt,
        lambda: ensure_engine(variant_bundle, precision="fp16"),
        lambda: ensure_engine(variant_bundle, precision="int8", build=True),
        lambda: ensure_engine(variant_bundle, precision="fp32", rebuild=True, cache_dir=tmp_path),
        lambda: build_engine(variant_bundle.variant("int8").path, tmp_path / "x.engine"),
        lambda: create_backend("tensorrt", variant_bundle, device="cuda", precision="int8").load(),
    ]
    for call in calls:
        with pytest.raises(BackendUnavailableError, match=r"^TensorRT is not installed") as info:
            call()
        assert "\n" not in str(info.value)
    assert not (tmp_path / "x.engine").exists()
    assert not variant_bundle.engines_dir.exists()
    assert not user_cache.exists()


def test_a_missing_variant_is_named_before_tensorrt_is_needed(bundle: Bundle) -> None:
    with pytest.raises(BundleError, match="has no int8 variant: it was not exported"):
        ensure_engine(bundle, precision="int8", build=True)


def _stand_in_tensorrt(monkeypatch: pytest.MonkeyPatch, version: str) -> types.ModuleType:
    module = types.ModuleType("tensorrt")
    module.__version__ = version
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    return module


@pytest.mark.parametrize("version", ["8.6.1", "7.2.3.4", "unknown"])
def test_old_tensorrt_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch, version) -> None:
    _stand_in_tensorrt(monkeypatch, version)
    with pytest.raises(BackendUnavailableError, match=rf"^TensorRT {version} is too old") as info:
        import_tensorrt()
    assert "\n" not in str(info.value) and "TensorRT 10 or newer" in str(info.value)


@pytest.mark.parametrize("version", ["10.3.0", "11.0.0.8"])
def test_tensorrt_10_and_11_are_accepted(monkeypatch: pytest.MonkeyPatch, version) -> None:
    module = _stand_in_tensorrt(monkeypatch, version)
    assert import_tensorrt() is module


@pytest.fixture
def stand_in_gpu(monkeypatch: pytest.MonkeyPatch) -> str:
    """TensorRT 10.3 and a Jetson Orin, as far as ensure_engine can tell; returns the version."""
    _stand_in_tensorrt(monkeypatch, "10.3.0")
    monkeypatch.setattr(trt_cache, "current_device", lambda: ORIN)
    return "10.3.0"


def _key(bundle: Bundle, precision: str, version: str) -> str:
    return engine_key(*ORIN, version, precision, bundle.variant(precision).sha256)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_a_missing_engine_names_the_command_that_builds_it(
    variant_bundle: Bundle, tmp_path: Path, stand_in_gpu: str, user_cache, precision: str
) -> None:
    copy = copy_bundle(variant_bundle, tmp_path / "bundle")
    key = _key(copy, precision, stand_in_gpu)
    with pytest.raises(BackendUnavailableError) as info:
        ensure_engine(copy, precision=precision)
    message = str(info.value)
    assert "\n" not in message
    assert f"no TensorRT engine {key}.engine for {copy.model_id} ({precision})" in message
    assert message.endswith(f"`mmsag engine --bundle {copy.root} --precision {precision}`")
    with pytest.raises(BackendUnavailableError) as info:
        ensure_engine(copy, precision=precision, cache_dir=tmp_path / "cache")
    assert str(info.value).endswith(
        f"`mmsag engine --bundle {copy.root} --precision {precision} --cache-dir "
        f"{tmp_path / 'cache'}`"
    )


def test_ensure_engine_loads_the_cached_engine_of_the_variant(
    variant_bundle: Bundle, tmp_path: Path, stand_in_gpu: str, user_cache
) -> None:
    copy = copy_bundle(variant_bundle, tmp_path / "bundle")
    variant = copy.variant("int8")
    key = _key(copy, "int8", stand_in_gpu)
    engine = fake_cache_entry(copy.engines_dir, key=key, onnx_sha=variant.sha256)
    assert ensure_engine(copy, precision="int8") == engine
    assert ensure_engine(copy, precision="int8", profile=BatchProfile(1, 1, 4)) == engine
    # Another variant's engine is another key: not served for fp16.
    with pytest.raises(BackendUnavailableError, match=r"no TensorRT engine .*_fp16_"):
        ensure_engine(copy, precision="fp16")
    # A wider batch needs a rebuild, which only `mmsag engine` (build=True) does.
    with pytest.raises(BackendUnavailableError, match="build it once on this machine"):
        ensure_engine(copy, precision="int8", profile=BatchProfile(1, 1, 16))
    assert engine.exists()


def test_a_named_cache_dir_wins_over_the_bundle(
    variant_bundle: Bundle, tmp_path: Path, stand_in_gpu: str
) -> None:
    copy = copy_bundle(variant_bundle, tmp_path / "bundle")
    sha = copy.variant("fp16").sha256
    key = _key(copy, "fp16", stand_in_gpu)
    shipped = fake_cache_entry(copy.engines_dir, key=key, onnx_sha=sha)
    assert ensure_engine(copy, precision="fp16", cache_dir=tmp_path / "cache") == shipped
    local = fake_cache_entry(tmp_path / "cache", key=key, onnx_sha=sha)
    assert ensure_engine(copy, precision="fp16", cache_dir=tmp_path / "cache") == local


def test_a_read_only_bundle_serves_its_shipped_engine_or_the_user_cache(
    variant_bundle: Bundle, tmp_path: Path, stand_in_gpu: str, user_cache
) -> None:
    copy = copy_bundle(variant_bundle, tmp_path / "bundle")
    sha = copy.variant("fp32").sha256
    key = _key(copy, "fp32", stand_in_gpu)
    cached = fake_cache_entry(user_cache, key=key, onnx_sha=sha)
    copy.engines_dir.write_bytes(b"")  # the bundle's engines folder cannot be made
    assert ensure_engine(copy, precision="fp32") == cached


def test_building_with_no_writable_cache_says_where_to_point_it(
    read_only_bundle: Bundle, tmp_path: Path, stand_in_gpu: str, monkeypatch
) -> None:
    (tmp_path / "a file").write_bytes(b"")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a file"))
    with pytest.raises(BackendUnavailableError, match="no writable engine cache") as info:
        ensure_engine(read_only_bundle, precision="fp32", build=True)
    assert "--cache-dir" in str(info.value) and "engine_cache_dir" in str(info.value)


def _bundle_with_engine(
    variant_bundle: Bundle, tmp_path: Path, version: str, precision: str
) -> tuple[Bundle, Path]:
    """A copy of the bundle with a cached engine of ``precision`` in its own engines folder."""
    copy = copy_bundle(variant_bundle, tmp_path / "bundle")
    key = _key(copy, precision, version)
    sha = copy.variant(precision).sha256
    return copy, fake_cache_entry(copy.engines_dir, key=key, onnx_sha=sha)


def test_a_broken_cached_entry_is_an_error_not_a_rebuild(
    variant_bundle: Bundle, tmp_path: Path, stand_in_gpu: str
) -> None:
    copy, engine = _bundle_with_engine(variant_bundle, tmp_path, stand_in_gpu, "fp32")
    engine.write_bytes(b"truncated")
    with pytest.raises(BundleError, match="does not match its sidecar's SHA-256"):
        ensure_engine(copy, precision="fp32", build=True)


def test_the_node_is_given_the_very_bytes_that_matched_the_sidecar(
    variant_bundle: Bundle, tmp_path: Path, stand_in_gpu: str
) -> None:
    copy, engine = _bundle_with_engine(variant_bundle, tmp_path, stand_in_gpu, "fp16")
    path, data = load_engine(copy, precision="fp16")
    assert path == engine and data == engine.read_bytes()
    engine.write_bytes(b"an engine planted after the build")
    with pytest.raises(BundleError, match="does not match its sidecar's SHA-256"):
        load_engine(copy, precision="fp16")


@pytest.mark.parametrize("unsafe", ["symlink", "group_writable", "world_writable", "other_owner"])
def test_an_engine_cache_others_could_write_is_refused(
    variant_bundle: Bundle, tmp_path: Path, stand_in_gpu: str, unsafe: str
) -> None:
    copy = copy_bundle(variant_bundle, tmp_path / "bundle")
    key = _key(copy, "fp32", stand_in_gpu)
    real = tmp_path / "real_cache"
    fake_cache_entry(real, key=key, onnx_sha=copy.variant("fp32").sha256)
    real.chmod(0o700)
    assert load_engine(copy, precision="fp32", cache_dir=real)[0].parent == real  # private: fine
    cache = real
    if unsafe == "symlink":
        cache = tmp_path / "linked_cache"
        cache.symlink_to(real)
    elif unsafe == "other_owner":
        if os.getuid() != 0:
            pytest.skip("only root can give a folder to another user")
        os.chown(real, 12345, -1)
    else:
        real.chmod(0o770 if unsafe == "group_writable" else 0o707)
    with pytest.raises(
        BundleError, match=r"symbolic link|can be written by other users|belongs to another user"
    ):
        load_engine(copy, precision="fp32", cache_dir=cache)
    with pytest.raises(
        BundleError, match=r"symbolic link|can be written by other users|belongs to another user"
    ):
        ensure_engine(copy, precision="fp32", cache_dir=cache, build=True)


def test_a_loader_waits_for_a_build_in_progress(
    variant_bundle: Bundle, tmp_path: Path, stand_in_gpu: str
) -> None:
    copy, engine = _bundle_with_engine(variant_bundle, tmp_path, stand_in_gpu, "fp32")
    waiting, loaded = threading.Event(), []

    class _Waiting(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "waiting for a build" in record.getMessage():
                waiting.set()

    handler, logger = _Waiting(), logging.getLogger(trt_cache.__name__)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with exclusive_lock(engine.with_suffix(".lock")):  # a build holds it
            loader = threading.Thread(target=lambda: loaded.append(load_engine(copy)))
            loader.start()
            assert waiting.wait(60)
            assert not loaded  # it waits; nothing was read while the build runs
        loader.join(60)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert loaded and loaded[0][0] == engine
