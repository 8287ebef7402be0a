"""Helpers shared by the reduced-precision tests: run an ONNX variant, read its metadata.

A uniquely named module, not conftest.py, so the scoring, fp16 and int8 test modules can import
it (``from export.precision_helpers import run_variant``) whatever conftest modules are loaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from mmsag_ros.onnx_session import open_session


def run_variant(path: Path, frames: np.ndarray, precision: str) -> dict[str, np.ndarray]:
    """The logits and attention maps of the model at ``path``, opened for ``precision``."""
    session = open_session(path, precision=precision)
    logits, attention = session.run(["logits", "attention"], {"images": frames})
    return {"logits": logits, "attention": attention}


def onnx_metadata(path: Path) -> dict[str, str]:
    """The metadata properties of the ONNX file at ``path`` (its weights are not read)."""
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
