"""Helpers for the TensorRT engine cache tests: stand-in variant hashes, a GPU, a cache entry.

TensorRT never reads the engine files written here, so an entry is any bytes plus the sidecar
that describes them. A uniquely named module, not conftest.py, so test modules can import it
whatever other conftest modules pytest has loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

from mmsag_ros.bundle.files import sha256_file
from mmsag_ros.runtime.engine_cache import engine_key

SHA_A = "a" * 64
SHA_B = "b" * 64
ORIN = ("Orin", (8, 7))


def fake_cache_entry(
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
