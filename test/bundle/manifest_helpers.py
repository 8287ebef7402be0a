"""Helpers shared by the manifest tests: hand edits of a bundle's manifest and ONNX files.

A uniquely named module, not conftest.py, so test modules can import it
(``from bundle.manifest_helpers import edit_manifest``) whatever conftest modules are loaded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx

from mmsag_ros.bundle.files import sha256_file


def edit_manifest(root: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = root / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def _section(manifest: dict[str, Any], precision: str) -> dict[str, Any]:
    return manifest["onnx"] if precision == "fp32" else manifest["variants"][precision]


def fix_hash(root: Path, precision: str, name: str) -> None:
    """Record the current hash of ``name`` for ``precision``, as a careless hand edit would."""
    edit_manifest(root, lambda m: _section(m, precision).update(sha256=sha256_file(root / name)))


def rewrite_onnx(
    root: Path,
    change: Callable[[onnx.ModelProto], None],
    *,
    name: str = "model.onnx",
    precision: str = "fp32",
) -> None:
    """Change an ONNX file of the bundle and record its new hash."""
    proto = onnx.load(str(root / name))
    change(proto)
    onnx.save(proto, str(root / name))
    fix_hash(root, precision, name)


def set_meta(proto: onnx.ModelProto, key: str, value: str | None) -> None:
    kept = [p for p in proto.metadata_props if p.key != key]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    if value is not None:
        proto.metadata_props.add(key=key, value=value)
