"""TensorRT engine keys, cache folders and the cache decision; building needs TensorRT + GPU.

TensorRT cannot be installed on the development machines. What does not need it is tested with
real files: keys, where engines are looked for and written, whether a cached entry is reused,
and what every entry point says without TensorRT. The load-only path of :func:`ensure_engine`
(find a cached engine, or name the command that builds one) runs against a stand-in
``tensorrt`` module that carries only a version, and a stand-in GPU.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import stat
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest

from mmsag_ros.atomic import exclusive_lock
from mmsag_ros.bundle.files import sha256_file
from mmsag_ros.bundle.manifest import load_bundle
from mmsag_ros.bundle.schema import Bundle
from mmsag_ros.errors import BackendUnavailableError, BundleError, ConfigError
from mmsag_ros.runtime import engine_cache as trt_cache
from mmsag_ros.runtime.engine_build import BatchProfile, build_engine, import_tensorrt
from mmsag_ros.runtime.engine_cache import (
    _cache_dirs,
    cached_engine,
    default_cache_dir,
    engine_key,
    ensure_engine,
    load_engine,
)

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None
SHA_A = "a" * 64
SHA_B = "b" * 64
ORIN = ("Orin", (8, 7))


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# --- keys -----------------------------------------------------------------------------------


def test_engine_key_names_gpu_capability_version_precision_and_variant() -> None:
    sha = "0123456789abcdef" * 4
    key = engine_key("NVIDIA GeForce RTX 4090", (8, 9), "10.3.0", "fp16", sha)
    assert key == "nvidia-geforce-rtx-4090_sm89_trt10.3.0_fp16_0123456789ab"
    assert engine_key("Orin", (8, 7), "10.3.0.30", "int8", SHA_A) == (
        "orin_sm87_trt10.3.0.30_int8_aaaaaaaaaaaa"
    )
    assert engine_key("Orin", (8, 7), "10.3.0+cuda12.6", "fp32", SHA_A) == (
        "orin_sm87_trt10.3.0-cuda12.6_fp32_aaaaaaaaaaaa"
    )
    keys = {
        engine_key("Orin", (8, 7), "10.3.0", "fp16", SHA_A),
        engine_key("NVIDIA H100 80GB HBM3", (8, 7), "10.3.0", "fp16", SHA_A),
        engine_key("Orin", (9, 0), "10.3.0", "fp16", SHA_A),
        engine_key("Orin", (8, 7), "10.4.0", "fp16", SHA_A),
        engine_key("Orin", (8, 7), "10.3.0", "fp32", SHA_A),
        engine_key("Orin", (8, 7), "10.3.0", "fp16", SHA_B),  # another variant file
    }
    assert len(keys) == 6


def test_engine_key_reads_the_sha_case_insensitively_and_keeps_12_digits() -> None:
    upper = engine_key(*ORIN, "10.3.0", "fp16", "ABCDEF012345" + "0" * 52)
    assert upper == engine_key(*ORIN, "10.3.0", "fp16", "abcdef012345" + "f" * 52)
    assert upper.endswith("_fp16_abcdef012345")
    assert engine_key(*ORIN, "10.3.0", "fp16", "abcdef012345").endswith("_abcdef012345")


def test_each_variant_of_a_bundle_gets_its_own_key(variant_bundle: Bundle) -> None:
    keys = {
        engine_key(*ORIN, "10.3.0", precision, variant.sha256)
        for precision, variant in variant_bundle.variants.items()
    }
    assert len(keys) == 3
    fp32 = engine_key(*ORIN, "10.3.0", "fp32", variant_bundle.variant("fp32").sha256)
    assert fp32.endswith(variant_bundle.variant("fp32").sha256[:12])
    assert variant_bundle.variant("fp32").sha256 == sha256_file(variant_bundle.onnx_path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("Orin", (8, 7), "10.3.0", "bf16", SHA_A), r"precision must be one of fp32, fp16, int8"),
        (("Orin", (0, 7), "10.3.0", "fp16", SHA_A), r"invalid compute capability"),
        (("Orin", (8, 7), " ", "fp16", SHA_A), r"trt_version is empty"),
        (("Orin", (8, 7), "10.3.0", "fp16", "xyz" * 10), r"variant_sha256 must be a hex SHA-256"),
        (("Orin", (8, 7), "10.3.0", "fp16", ""), r"variant_sha256 must be a hex SHA-256"),
        (("Orin", (8, 7), "10.3.0", "fp16", "a" * 11), r"variant_sha256 must be a hex SHA-256"),
        (("Orin", (8, 7), "10.3.0", "fp16", "a" * 65), r"variant_sha256 must be a hex SHA-256"),
        (("Orin", (8, 7), "10.3.0", "fp16", "a" * 63 + "g"), r"must be a hex SHA-256"),
    ],
)
def test_engine_key_rejects_bad_parts(args: tuple, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        engine_key(*args)


def test_batch_profile() -> None:
    assert BatchProfile(1, 1, 8).covers(BatchProfile(1, 1, 4))
    assert not BatchProfile(1, 1, 4).covers(BatchProfile(1, 1, 8))
    assert not BatchProfile(1, 4, 8).covers(BatchProfile(1, 1, 8))  # tuned for another batch
    with pytest.raises(ConfigError, match=r"1 <= min <= opt <= max"):
        BatchProfile(2, 1, 8)


# --- cache folders --------------------------------------------------------------------------


@pytest.fixture
def user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``$XDG_CACHE_HOME`` in a fresh folder; returns where engines go in it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "mmsag_ros" / "engines"


def _copy(bundle: Bundle, where: Path) -> Bundle:
    return load_bundle(shutil.copytree(bundle.root, where))


def test_default_cache_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "mmsag_ros" / "engines"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "mmsag_ros" / "engines"
    monkeypatch.setenv("XDG_CACHE_HOME", "")  # empty counts as unset
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "mmsag_ros" / "engines"


def test_a_writable_bundle_keeps_its_engines(bundle: Bundle, tmp_path: Path, user_cache) -> None:
    copy = _copy(bundle, tmp_path / "bundle")
    assert _cache_dirs(copy, None) == ([copy.engines_dir], copy.engines_dir)
    # Deciding creates nothing: only a build makes the folder.
    assert not copy.engines_dir.exists() and not user_cache.exists()


def _make_engines_unwritable(bundle: Bundle, how: str) -> None:
    if how == "read-only folder":
        bundle.engines_dir.mkdir()
        bundle.engines_dir.chmod(0o555)
        if os.access(bundle.engines_dir, os.W_OK):  # root ignores the mode bits
            bundle.engines_dir.chmod(0o755)
            pytest.skip("running as root: a 0o555 folder stays writable")
    else:  # a regular file where the folder would be: it cannot be created on any account
        bundle.engines_dir.write_bytes(b"not a folder")


@pytest.fixture(params=["read-only folder", "file in the way"])
def read_only_bundle(request, bundle: Bundle, tmp_path: Path):
    """A copy of the bundle whose ``engines`` folder cannot be written to."""
    copy = _copy(bundle, tmp_path / "read-only")
    _make_engines_unwritable(copy, request.param)
    yield copy
    if copy.engines_dir.is_dir():  # let pytest clean up
        copy.engines_dir.chmod(stat.S_IRWXU)


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
    copy = _copy(bundle, tmp_path / "bundle")
    cache = tmp_path / "cache"
    assert _cache_dirs(copy, cache) == ([cache, copy.engines_dir], cache)
    assert not cache.exists() and not user_cache.exists()
    assert _cache_dirs(copy, str(cache)) == ([cache, copy.engines_dir], cache)  # str works too


def test_an_unwritable_named_cache_dir_gives_no_target(bundle: Bundle, tmp_path: Path) -> None:
    copy = _copy(bundle, tmp_path / "bundle")
    (tmp_path / "a file").write_bytes(b"")
    cache = tmp_path / "a file" / "cache"
    # The named folder is the only build target: no silent fallback to another one.
    assert _cache_dirs(copy, cache) == ([cache, copy.engines_dir], None)


# --- the cache decision ---------------------------------------------------------------------


def _fake_cache_entry(
    directory: Path, *, key: str | None = None, onnx_sha: str = SHA_A, max_batch: int = 8
) -> Path:
    """An engine file (bytes only: TensorRT never reads it here) and its sidecar."""
    key = key or engine_key(*ORIN, "10.3.0", "fp16", onnx_sha)
    directory.mkdir(parents=True, exist_ok=True)
    engine = directory / f"{key}.engine"
    engine.write_bytes(b"serialized engine bytes" * 100)
    sidecar = {
        "key": engine.stem,
        "engine_sha256": sha256_file(engine),
        "onnx_sha256": onnx_sha,
        "batch": {"min": 1, "opt": 1, "max": max_batch},
    }
    engine.with_suffix(".json").write_text(json.dumps(sidecar))
    return engine


def test_cache_reuses_an_intact_matching_engine(tmp_path: Path) -> None:
    engine = _fake_cache_entry(tmp_path / "engines")
    assert cached_engine(engine, onnx_sha256=SHA_A, profile=BatchProfile()) == engine
    assert cached_engine(engine, onnx_sha256=SHA_A, profile=BatchProfile(1, 1, 4)) == engine


def test_cache_builds_when_nothing_is_there(tmp_path: Path) -> None:
    missing = tmp_path / "engines" / "orin_sm87_trt10.3.0_fp16_aaaaaaaaaaaa.engine"
    assert cached_engine(missing, onnx_sha256=SHA_A, profile=BatchProfile()) is None


def test_cache_rebuilds_for_another_model_or_a_wider_batch(tmp_path: Path) -> None:
    engine = _fake_cache_entry(tmp_path / "engines")
    assert cached_engine(engine, onnx_sha256=SHA_B, profile=BatchProfile()) is None
    assert cached_engine(engine, onnx_sha256=SHA_A, profile=BatchProfile(1, 1, 16)) is None
    assert cached_engine(engine, onnx_sha256=SHA_A, profile=BatchProfile(1, 2, 8)) is None
    assert engine.exists()  # deciding never deletes


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate", r"does not match its sidecar's SHA-256; rebuild it: `mmsag engine"),
        ("drop engine", r"engine file .* named by its sidecar is missing"),
        ("drop sidecar", r"has no sidecar"),
        ("bad json", r"sidecar .* is not valid JSON"),
        ("not an object", r"sidecar .* must hold a JSON object"),
        ("no batch", r"has no valid batch profile"),
        ("bad batch", r"has no valid batch profile"),
    ],
)
def test_cache_rejects_broken_entries(tmp_path: Path, damage: str, message: str) -> None:
    engine = _fake_cache_entry(tmp_path)
    sidecar = engine.with_suffix(".json")
    record = json.loads(sidecar.read_text())
    if damage == "truncate":
        engine.write_bytes(engine.read_bytes()[:50])
    elif damage == "drop engine":
        engine.unlink()
    elif damage == "drop sidecar":
        sidecar.unlink()
    elif damage == "bad json":
        sidecar.write_text("{not json")
    elif damage == "not an object":
        sidecar.write_text("[1, 2]")
    elif damage == "no batch":
        del record["batch"]
        sidecar.write_text(json.dumps(record))
    else:
        record["batch"] = {"min": 4, "opt": 1, "max": 8}
        sidecar.write_text(json.dumps(record))
    with pytest.raises(BundleError, match=message):
        cached_engine(engine, onnx_sha256=SHA_A, profile=BatchProfile())


# --- without TensorRT -----------------------------------------------------------------------


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed here")
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
    copy = _copy(variant_bundle, tmp_path / "bundle")
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
    copy = _copy(variant_bundle, tmp_path / "bundle")
    variant = copy.variant("int8")
    key = _key(copy, "int8", stand_in_gpu)
    engine = _fake_cache_entry(copy.engines_dir, key=key, onnx_sha=variant.sha256)
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
    copy = _copy(variant_bundle, tmp_path / "bundle")
    sha = copy.variant("fp16").sha256
    key = _key(copy, "fp16", stand_in_gpu)
    shipped = _fake_cache_entry(copy.engines_dir, key=key, onnx_sha=sha)
    assert ensure_engine(copy, precision="fp16", cache_dir=tmp_path / "cache") == shipped
    local = _fake_cache_entry(tmp_path / "cache", key=key, onnx_sha=sha)
    assert ensure_engine(copy, precision="fp16", cache_dir=tmp_path / "cache") == local


def test_a_read_only_bundle_serves_its_shipped_engine_or_the_user_cache(
    variant_bundle: Bundle, tmp_path: Path, stand_in_gpu: str, user_cache
) -> None:
    copy = _copy(variant_bundle, tmp_path / "bundle")
    sha = copy.variant("fp32").sha256
    key = _key(copy, "fp32", stand_in_gpu)
    cached = _fake_cache_entry(user_cache, key=key, onnx_sha=sha)
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
    copy = _copy(variant_bundle, tmp_path / "bundle")
    key = _key(copy, precision, version)
    sha = copy.variant(precision).sha256
    return copy, _fake_cache_entry(copy.engines_dir, key=key, onnx_sha=sha)


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
    copy = _copy(variant_bundle, tmp_path / "bundle")
    key = _key(copy, "fp32", stand_in_gpu)
    real = tmp_path / "real_cache"
    _fake_cache_entry(real, key=key, onnx_sha=copy.variant("fp32").sha256)
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


# --- what TensorRT will be given --------------------------------------------------------------


def _dequantize_inputs(model) -> dict[str, np.dtype]:
    """The element type of each DequantizeLinear input: an initializer's, or int8 from a Q."""
    from onnx import numpy_helper

    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    quantized = {n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    types = {}
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        source = node.input[0]
        types[node.name or source] = (
            np.dtype(np.int8) if source in quantized else initializers[source].dtype
        )
    return types


def test_the_int8_variant_holds_only_q_dq_that_tensorrt_parses(variant_bundle: Bundle) -> None:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(variant_bundle.variant("int8").path))
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            assert not initializers[node.input[2]].any(), f"{node.name}: zero point must be 0"
    types = _dequantize_inputs(model)
    assert types
    assert {name: t for name, t in types.items() if t != np.int8} == {}


# --- on a GPU with TensorRT -----------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not HAVE_TENSORRT, reason="needs TensorRT")
@pytest.mark.skipif(not _has_cuda(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_is_built_once_then_reused(
    variant_bundle: Bundle, tmp_path: Path, precision: str
) -> None:
    bundle = _copy(variant_bundle, tmp_path / "bundle")
    profile = BatchProfile(1, 1, 4)
    first = ensure_engine(bundle, precision=precision, build=True, profile=profile)
    assert first.parent == bundle.engines_dir and f"_{precision}_" in first.name
    stamp = first.stat().st_mtime_ns
    sidecar = json.loads(first.with_suffix(".json").read_text())
    assert sidecar["onnx_sha256"] == bundle.variant(precision).sha256
    assert sidecar["precision"] == precision and sidecar["strongly_typed"] is True
    assert sidecar["batch"] == {"min": 1, "opt": 1, "max": 4}
    assert ensure_engine(bundle, precision=precision, profile=profile) == first
    assert first.stat().st_mtime_ns == stamp  # reused, not rebuilt
    ensure_engine(bundle, precision=precision, profile=profile, rebuild=True)
    assert first.stat().st_mtime_ns != stamp


@pytest.mark.gpu
@pytest.mark.skipif(not HAVE_TENSORRT, reason="needs TensorRT")
@pytest.mark.skipif(not _has_cuda(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize(("precision", "atol"), [("fp32", 1e-3), ("fp16", 1e-2), ("int8", 5e-2)])
def test_the_tensorrt_backend_matches_onnxruntime(
    variant_bundle: Bundle, frames, tmp_path: Path, precision: str, atol: float
) -> None:
    from mmsag_ros.bundle.preprocess import preprocess
    from mmsag_ros.runtime.backends import create_backend
    from mmsag_ros.runtime.postprocess import sigmoid

    bundle = _copy(variant_bundle, tmp_path / "bundle")
    ensure_engine(bundle, precision=precision, build=True, profile=BatchProfile(1, 1, 4))
    batch = np.stack([preprocess(f, bundle.spec) for f in frames])
    with create_backend("onnxruntime", bundle, precision=precision) as reference:
        expected = sigmoid(reference.infer(batch)["logits"])
    with create_backend("tensorrt", bundle, precision=precision, max_batch=4) as backend:
        assert backend.providers[1] == precision
        got = sigmoid(backend.infer(batch)["logits"])
    np.testing.assert_allclose(got, expected, atol=atol, rtol=0)
