"""Helpers for the runtime tests: tiny real checkpoints and bundles, a swapped-ONNX bundle.

The model is a ResNet-18 MM-SAG at 96 px with a narrow head (3 x 3 attention grid), so an
export takes a few seconds on two CPU cores (about ten with the fp16 and int8 variants). Also
here: whether this machine has TensorRT and a CUDA GPU, a bundle copied where a test may write,
and frames preprocessed into one batch. A uniquely named module, not conftest.py, so test
modules can import it whatever other conftest modules pytest has loaded.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.util
import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mmsag_ros.bundle.labels import MLKW_LABELS

if TYPE_CHECKING:
    from mmsag_ros.bundle.schema import Bundle

INPUT_SIZE = 96
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
# (seed, attention) -> the bundle exported for it in this process
_EXPORTED: dict[tuple[int, bool], Path] = {}
_TINY = {
    "backbone": "resnet18",
    "input_size": INPUT_SIZE,
    "width": 64,
    "num_heads": 4,
    "ffn_dim": 64,
    "attention_dim": 64,
    "dropout": 0.0,
    "embedding_source": "learnable",
    "embedding_dim": 32,
}


def write_checkpoint(path: Path, *, seed: int) -> Path:
    """A training-style checkpoint of a randomly initialised tiny model."""
    import torch

    from mmsag_ros.model import ModelConfig, build_model
    from mmsag_ros.model.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    config = ModelConfig(name="tiny_r18_96", **_TINY)
    model = build_model(config, num_labels=len(MLKW_LABELS)).eval()
    thresholds = np.linspace(0.3, 0.7, len(MLKW_LABELS)).round(3).tolist()
    return save_checkpoint(
        path,
        {
            "epoch": 0,
            "model_name": config.name,
            "model_config": config.to_dict(),
            "model_state": model.state_dict(),
            "labels": MLKW_LABELS.to_dict(),
            "spec": model.spec.to_dict(),
            "thresholds": thresholds,
            "metrics": {"val": {"map": 0.0}},
            "train_config": {},
            "optimizer": {},
            "scheduler": {},
            "scaler": {},
            "best_map": 0.0,
            "best_thresholds": thresholds,
        },
    )


def make_bundle(out_dir: Path, *, seed: int, attention: bool = True) -> Path:
    """A tiny model's bundle (fp32 only) in ``out_dir``, exported with the product's code.

    Exported once per ``(seed, attention)`` in a test process and copied after: the same
    checkpoint exports to the same files, and each copy is the test's own to damage.
    """
    key = (seed, attention)
    if key not in _EXPORTED:
        from mmsag_ros.export.write_bundle import export_bundle

        root = Path(tempfile.mkdtemp(prefix="mmsag_test_bundle_"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        checkpoint = write_checkpoint(root / "checkpoint" / "best.pt", seed=seed)
        export_bundle(checkpoint, root / "bundle", attention=attention, progress=False)
        _EXPORTED[key] = root / "bundle"
    shutil.copytree(_EXPORTED[key], out_dir, dirs_exist_ok=True)
    return out_dir


def write_voc(root: Path, *, seed: int = 0) -> Path:
    """A small synthetic conveyor dataset in the VOC layout (train/val/trainval splits)."""
    from mmsag_ros.data.synth import generate_dataset

    generate_dataset(root, num_trainval=30, num_test=0, image_size=(128, 96), seed=seed)
    return root


def make_variant_bundle(out_dir: Path, *, seed: int, voc: Path) -> Path:
    """Export a fresh tiny model with its fp16 and int8 variants (16 calibration images)."""
    from export.conftest import write_variant_bundle

    checkpoint = write_checkpoint(out_dir.parent / f"{out_dir.name}_ckpt" / "best.pt", seed=seed)
    write_variant_bundle(out_dir, voc=voc, checkpoint=checkpoint)
    return out_dir


def refuse_variant(bundle_dir: Path, out_dir: Path, precision: str, reason: str) -> Path:
    """Copy ``bundle_dir`` with ``precision`` recorded as refused at export (its file removed)."""
    shutil.copytree(bundle_dir, out_dir)
    manifest = json.loads((out_dir / "manifest.json").read_text())
    entry = manifest["variants"][precision]
    (out_dir / entry["file"]).unlink()
    entry.update(file=None, sha256=None, accepted=False, reason=reason)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out_dir


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def swap_onnx(bundle_dir: Path, other_dir: Path, out_dir: Path, *, fix_manifest: bool) -> Path:
    """Copy ``bundle_dir`` with ``other_dir``'s model.onnx.

    With ``fix_manifest`` the manifest is rewritten to describe the new file (its SHA-256 and
    the model id embedded in it), which load_bundle cannot tell from a genuine bundle: only
    comparing against model.pt reveals that the ONNX is another model's.
    """
    shutil.copytree(bundle_dir, out_dir)
    shutil.copyfile(other_dir / "model.onnx", out_dir / "model.onnx")
    if fix_manifest:
        manifest = json.loads((out_dir / "manifest.json").read_text())
        other = json.loads((other_dir / "manifest.json").read_text())
        manifest["onnx"]["sha256"] = sha256(out_dir / "model.onnx")
        manifest["model_id"] = other["model_id"]
        (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out_dir


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def preprocess_batch(bundle: Bundle, frames) -> np.ndarray:
    """``frames`` preprocessed for ``bundle`` and stacked into one N x 3 x H x W batch."""
    from mmsag_ros.bundle.preprocess import preprocess

    return np.stack([preprocess(f, bundle.spec) for f in frames])


def copy_bundle(bundle: Bundle, where: Path) -> Bundle:
    """A copy of ``bundle`` at ``where``, loaded: the test's own to write engines into."""
    from mmsag_ros.bundle.manifest import load_bundle

    return load_bundle(shutil.copytree(bundle.root, where))
