from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from mmsag_ros.errors import BackendUnavailableError, ConfigError, ModelNotFoundError
from mmsag_ros.export.bundle import export_bundle
from mmsag_ros.export.manifest import Bundle, load_bundle, sha256_file, write_manifest
from mmsag_ros.export.onnx import graph_sha256
from mmsag_ros.train.checkpoint import load_checkpoint

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def test_bundle_holds_what_the_contract_lists(tiny_bundle: Bundle, tiny_checkpoint: Path) -> None:
    root = tiny_bundle.root
    assert sorted(p.name for p in root.iterdir()) == ["manifest.json", "model.onnx", "model.pt"]
    assert not any(p.name.startswith(".") for p in root.parent.iterdir())  # no staging left
    manifest = json.loads((root / "manifest.json").read_text())
    checkpoint = load_checkpoint(tiny_checkpoint)

    assert manifest["format_version"] == 1
    assert manifest["name"] == "tiny_r18_96"
    graph_hash = graph_sha256(onnx.load(str(root / "model.onnx")))
    assert manifest["model_id"] == f"tiny_r18_96@{graph_hash[:12]}"
    assert manifest["classes"] == checkpoint.labels.to_dict()
    assert manifest["preprocess"] == {
        **checkpoint.spec.to_dict(),
        "color_order": "rgb",
        "layout": "NCHW",
        "dtype": "float32",
    }
    assert manifest["thresholds"] == checkpoint.thresholds
    assert manifest["onnx"]["sha256"] == sha256_file(root / "model.onnx")
    assert manifest["onnx"]["opset"] == 17
    assert manifest["onnx"]["input"] == "images"
    assert manifest["onnx"]["outputs"] == ["logits", "attention"]
    assert manifest["onnx"]["attention_grid"] == [3, 3]
    parity = manifest["onnx"]["parity"]
    assert parity["batch_sizes"] == [4, 1]
    assert max(parity["max_error"].values()) <= 1e-4
    assert manifest["torch"]["sha256"] == sha256_file(root / "model.pt")
    assert manifest["int8_onnx"] is None
    assert manifest["metrics"]["val"]["ap"][-1] is None  # NaN AP written as JSON null
    assert manifest["source"]["checkpoint_sha256"] == sha256_file(tiny_checkpoint)
    assert manifest["source"]["epoch"] == 3
    assert set(manifest["exporter"]) >= {"mmsag_ros", "torch", "onnx", "onnxruntime"}
    assert manifest["created"].endswith("Z")

    assert tiny_bundle.model_id == manifest["model_id"]
    assert tiny_bundle.labels == checkpoint.labels
    assert tiny_bundle.spec == checkpoint.spec
    assert tiny_bundle.thresholds.dtype == np.float32
    assert tiny_bundle.thresholds.tolist() == pytest.approx(checkpoint.thresholds)
    assert tiny_bundle.has_attention and tiny_bundle.attention_grid == (3, 3)
    assert tiny_bundle.output_names == ("logits", "attention")
    assert tiny_bundle.int8_onnx_path is None
    assert tiny_bundle.engines_dir == root / "engines"


def test_slim_torch_checkpoint_rebuilds_the_same_model(
    tiny_bundle: Bundle, tiny_checkpoint: Path
) -> None:
    slim = load_checkpoint(tiny_bundle.torch_path)
    full = load_checkpoint(tiny_checkpoint)
    assert not {"optimizer", "scheduler", "scaler"} & set(slim.raw)
    assert slim.labels == full.labels and slim.spec == full.spec
    assert slim.thresholds == full.thresholds
    for key, value in full.model_state.items():
        assert torch.equal(slim.model_state[key], value), key


def test_manifest_round_trip(tiny_bundle: Bundle, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(tiny_bundle.root, tmp_path / "copy"))
    write_manifest(copy, tiny_bundle.manifest)
    again = load_bundle(copy)
    assert again.manifest == tiny_bundle.manifest
    for field in ("name", "model_id", "labels", "spec", "output_names", "attention_grid"):
        assert getattr(again, field) == getattr(tiny_bundle, field)
    assert np.array_equal(again.thresholds, tiny_bundle.thresholds)
    assert again.onnx_path == copy / "model.onnx"


def test_no_attention_bundle_overwrites_a_bundle(tiny_bundle: Bundle, tmp_path: Path) -> None:
    out = Path(shutil.copytree(tiny_bundle.root, tmp_path / "bundle"))
    checkpoint = Path(tiny_bundle.manifest["source"]["checkpoint"])
    bundle = export_bundle(checkpoint, out, attention=False, overwrite=True, progress=False)
    assert bundle.output_names == ("logits",)
    assert not bundle.has_attention and bundle.attention_grid is None
    assert bundle.manifest["onnx"]["attention_grid"] is None
    assert [o.name for o in onnx.load(str(bundle.onnx_path)).graph.output] == ["logits"]
    assert bundle.model_id != tiny_bundle.model_id  # another graph, another id
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx", "model.pt"]


def test_linear_model_bundle_has_logits_only(tmp_path: Path) -> None:
    from export.conftest import write_tiny_checkpoint

    checkpoint = write_tiny_checkpoint(
        tmp_path / "linear.pt",
        semantic_attention=False,
        fusion=False,
        static_graph=False,
        dynamic_graph=False,
    )
    bundle = export_bundle(checkpoint, tmp_path / "bundle", progress=False)  # attention=True
    assert bundle.output_names == ("logits",) and bundle.attention_grid is None
    assert max(bundle.manifest["onnx"]["parity"]["max_error"].values()) <= 1e-4


def test_refuses_a_non_empty_folder(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"is not empty; .*--overwrite"):
        export_bundle(tiny_checkpoint, out, progress=False)
    with pytest.raises(ConfigError, match=r"not part of a bundle \(notes.txt\)"):
        export_bundle(tiny_checkpoint, out, overwrite=True, progress=False)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"does not exist"):
        export_bundle(tmp_path / "nope.pt", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_int8_options_need_their_data(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--calib-data DIR and --val-data DIR"):
        export_bundle(tiny_checkpoint, tmp_path / "out", int8_cpu=True, progress=False)
    with pytest.raises(ConfigError, match=r"int8 engine needs calibration images"):
        export_bundle(tiny_checkpoint, tmp_path / "out", int8=True, progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed here")
def test_engine_without_tensorrt_fails_first_in_one_line(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    with pytest.raises(BackendUnavailableError, match=r"TensorRT is not installed") as info:
        export_bundle(tiny_checkpoint, tmp_path / "out", fp16=True, progress=False)
    assert "\n" not in str(info.value)
    assert "--engine" in str(info.value) and "target" in str(info.value)
    assert not (tmp_path / "out").exists()
