from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from mmsag_ros import cli
from mmsag_ros.cli import main
from mmsag_ros.export.manifest import Bundle, load_bundle

HAVE_TENSORRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(autouse=True)
def _export_command(monkeypatch: pytest.MonkeyPatch) -> None:
    # Registers the sub-command the way the lead's table entry does (a no-op once it exists).
    summary = cli._COMMANDS.get("export", ("", "export a checkpoint to a deployable bundle"))[1]
    monkeypatch.setitem(cli._COMMANDS, "export", ("mmsag_ros.cli.export", summary))


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_missing_checkpoint_exits_1_with_one_line(tmp_path: Path, capsys) -> None:
    code = main(["export", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "b")])
    assert code == 1
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith("mmsag export: error: checkpoint ") and "does not exist" in line


def test_non_empty_out_exits_1(tiny_bundle: Bundle, tiny_checkpoint: Path, capsys) -> None:
    args = ["export", "--checkpoint", str(tiny_checkpoint), "--out", str(tiny_bundle.root)]
    assert main(args) == 1
    assert "is not empty" in _one_error_line(capsys.readouterr().err)


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed here")
def test_engine_without_tensorrt_exits_1(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    args = ["export", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "b"), "--fp16"]
    assert main(args) == 1
    assert "TensorRT is not installed" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "b").exists()


def test_export_with_static_int8_prints_a_summary(
    tiny_checkpoint: Path, synthetic_voc: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "bundle"
    args = [
        "export",
        "--checkpoint",
        str(tiny_checkpoint),
        "--out",
        str(out),
        "--int8-cpu",
        "--calib-data",
        str(synthetic_voc),
        "--val-data",
        str(synthetic_voc),
        "--max-map-drop",
        "100",  # a bar every int8 model passes: this test is about the plumbing
    ]
    assert main(args) == 0
    bundle = load_bundle(out)
    printed = capsys.readouterr().out
    assert bundle.model_id in printed
    assert "model.onnx" in printed and "model.int8.onnx" in printed and "kept" in printed
    assert "parity" in printed and "logits" in printed
    assert bundle.int8_onnx_path == out / "model.int8.onnx"
    section = bundle.manifest["int8_onnx"]
    assert section["kept"] is True and section["max_drop_points"] == 100
    assert section["validation"] == {"split": "val", "images": 6}
    assert bundle.manifest["onnx"]["parity"]["frames"] == str(synthetic_voc)
