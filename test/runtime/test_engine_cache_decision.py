"""Whether a cached TensorRT engine is reused, rebuilt or refused, on stand-in cache entries.

An intact entry for the same variant file and a batch profile that covers the request is
reused; nothing there, another variant or a wider batch means a build; a damaged engine or
sidecar is an error that says how to rebuild, never a silent rebuild. Deciding never deletes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runtime.engine_cache_helpers import SHA_A, SHA_B, fake_cache_entry

from mmsag_ros.errors import BundleError
from mmsag_ros.runtime.engine_build import BatchProfile
from mmsag_ros.runtime.engine_cache import cached_engine


def test_cache_reuses_an_intact_matching_engine(tmp_path: Path) -> None:
    engine = fake_cache_entry(tmp_path / "engines")
    assert cached_engine(engine, onnx_sha256=SHA_A, profile=BatchProfile()) == engine
    assert cached_engine(engine, onnx_sha256=SHA_A, profile=BatchProfile(1, 1, 4)) == engine


def test_cache_builds_when_nothing_is_there(tmp_path: Path) -> None:
    missing = tmp_path / "engines" / "orin_sm87_trt10.3.0_fp16_aaaaaaaaaaaa.engine"
    assert cached_engine(missing, onnx_sha256=SHA_A, profile=BatchProfile()) is None


def test_cache_rebuilds_for_another_model_or_a_wider_batch(tmp_path: Path) -> None:
    engine = fake_cache_entry(tmp_path / "engines")
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
    engine = fake_cache_entry(tmp_path)
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
