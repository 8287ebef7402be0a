"""TensorRT engine keys, paths and the cache decision; the build itself needs TensorRT + GPU."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from mmsag_ros.errors import BackendUnavailableError, BundleError, ConfigError
from mmsag_ros.export.manifest import Bundle, load_bundle, sha256_file
from mmsag_ros.export.tensorrt import (
    BatchProfile,
    build_engine,
    cached_engine,
    engine_key,
    engine_path,
    ensure_engine,
    import_tensorrt,
)

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_engine_key_names_gpu_capability_version_precision() -> None:
    key = engine_key("NVIDIA GeForce RTX 4090", (8, 9), "10.3.0", "fp16")
    assert key == "nvidia-geforce-rtx-4090_sm89_trt10.3.0_fp16"
    assert engine_key("Orin", (8, 7), "10.3.0.30", "int8") == "orin_sm87_trt10.3.0.30_int8"
    variants = {
        engine_key("Orin", (8, 7), "10.3.0", "fp16"),
        engine_key("NVIDIA H100 80GB HBM3", (8, 7), "10.3.0", "fp16"),
        engine_key("Orin", (9, 0), "10.3.0", "fp16"),
        engine_key("Orin", (8, 7), "10.4.0", "fp16"),
        engine_key("Orin", (8, 7), "10.3.0", "fp32"),
    }
    assert len(variants) == 5


def test_engine_key_rejects_bad_parts() -> None:
    with pytest.raises(ConfigError, match=r"precision must be one of fp32, fp16, int8"):
        engine_key("Orin", (8, 7), "10.3.0", "bf16")
    with pytest.raises(ConfigError, match=r"invalid compute capability"):
        engine_key("Orin", (0, 7), "10.3.0", "fp16")
    with pytest.raises(ConfigError, match=r"trt_version is empty"):
        engine_key("Orin", (8, 7), " ", "fp16")


def test_engine_path_lies_in_the_bundle(tiny_bundle: Bundle) -> None:
    path = engine_path(
        tiny_bundle,
        gpu_name="Orin",
        compute_capability=(8, 7),
        trt_version="10.3.0",
        precision="fp16",
    )
    assert path == tiny_bundle.root / "engines" / "orin_sm87_trt10.3.0_fp16.engine"


def test_batch_profile() -> None:
    assert BatchProfile(1, 1, 8).covers(BatchProfile(1, 1, 4))
    assert not BatchProfile(1, 1, 4).covers(BatchProfile(1, 1, 8))
    assert not BatchProfile(1, 4, 8).covers(BatchProfile(1, 1, 8))  # tuned for another batch
    with pytest.raises(ConfigError, match=r"1 <= min <= opt <= max"):
        BatchProfile(2, 1, 8)


def _fake_cache_entry(directory: Path, *, onnx_sha: str = "a" * 64) -> Path:
    """An engine file (bytes only: TensorRT never reads it here) and its sidecar."""
    directory.mkdir(parents=True, exist_ok=True)
    engine = directory / "orin_sm87_trt10.3.0_fp16.engine"
    engine.write_bytes(b"serialized engine bytes" * 100)
    sidecar = {
        "key": engine.stem,
        "engine_sha256": sha256_file(engine),
        "onnx_sha256": onnx_sha,
        "batch": {"min": 1, "opt": 1, "max": 8},
    }
    engine.with_suffix(".json").write_text(json.dumps(sidecar))
    return engine


def test_cache_reuses_an_intact_matching_engine(tmp_path: Path) -> None:
    engine = _fake_cache_entry(tmp_path / "engines")
    assert cached_engine(engine, onnx_sha256="a" * 64, profile=BatchProfile()) == engine
    assert cached_engine(engine, onnx_sha256="a" * 64, profile=BatchProfile(1, 1, 4)) == engine


def test_cache_builds_when_nothing_is_there(tmp_path: Path) -> None:
    missing = tmp_path / "engines" / "orin_sm87_trt10.3.0_fp16.engine"
    assert cached_engine(missing, onnx_sha256="a" * 64, profile=BatchProfile()) is None


def test_cache_rebuilds_for_another_model_or_a_wider_batch(tmp_path: Path) -> None:
    engine = _fake_cache_entry(tmp_path / "engines")
    assert cached_engine(engine, onnx_sha256="b" * 64, profile=BatchProfile()) is None
    assert cached_engine(engine, onnx_sha256="a" * 64, profile=BatchProfile(1, 1, 16)) is None


def test_cache_rejects_broken_entries(tmp_path: Path) -> None:
    engine = _fake_cache_entry(tmp_path / "a")
    engine.write_bytes(engine.read_bytes()[:50])  # truncated
    with pytest.raises(BundleError, match=r"does not match its sidecar's SHA-256; rebuild"):
        cached_engine(engine, onnx_sha256="a" * 64, profile=BatchProfile())

    engine = _fake_cache_entry(tmp_path / "b")
    engine.unlink()
    with pytest.raises(BundleError, match=r"engine file .* named by its sidecar is missing"):
        cached_engine(engine, onnx_sha256="a" * 64, profile=BatchProfile())

    engine = _fake_cache_entry(tmp_path / "c")
    engine.with_suffix(".json").unlink()
    with pytest.raises(BundleError, match=r"has no sidecar"):
        cached_engine(engine, onnx_sha256="a" * 64, profile=BatchProfile())

    engine = _fake_cache_entry(tmp_path / "d")
    engine.with_suffix(".json").write_text("{not json")
    with pytest.raises(BundleError, match=r"sidecar .* is not valid JSON"):
        cached_engine(engine, onnx_sha256="a" * 64, profile=BatchProfile())


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed here")
def test_without_tensorrt_every_entry_point_says_so_in_one_line(
    tiny_bundle: Bundle, tmp_path: Path
) -> None:
    calls = [
        import_tensorrt,
        lambda: ensure_engine(tiny_bundle, precision="fp16"),
        lambda: build_engine(tiny_bundle.onnx_path, tmp_path / "x.engine", fp16=True),
    ]
    for call in calls:
        with pytest.raises(BackendUnavailableError, match=r"TensorRT is not installed") as info:
            call()
        assert "\n" not in str(info.value)
    assert not (tmp_path / "x.engine").exists()
    assert not tiny_bundle.engines_dir.exists()


@pytest.mark.gpu
@pytest.mark.skipif(not HAVE_TENSORRT, reason="needs TensorRT")
@pytest.mark.skipif(not _has_cuda(), reason="needs an NVIDIA GPU")
def test_engine_is_built_once_then_reused(tiny_bundle: Bundle, tmp_path: Path) -> None:
    bundle = load_bundle(shutil.copytree(tiny_bundle.root, tmp_path / "bundle"))
    first = ensure_engine(bundle, precision="fp16", max_batch=4)
    stamp = first.stat().st_mtime_ns
    sidecar = json.loads(first.with_suffix(".json").read_text())
    assert sidecar["onnx_sha256"] == bundle.manifest["onnx"]["sha256"]
    assert sidecar["batch"] == {"min": 1, "opt": 1, "max": 4}
    assert ensure_engine(bundle, precision="fp16", max_batch=4) == first
    assert first.stat().st_mtime_ns == stamp  # reused, not rebuilt
    ensure_engine(bundle, precision="fp16", max_batch=4, rebuild=True)
    assert first.stat().st_mtime_ns != stamp
