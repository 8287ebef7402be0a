from __future__ import annotations

import csv
from pathlib import Path

import pytest

from export.conftest import CALIB_IMAGES
from mmsag_ros import cli
from mmsag_ros.bundle.manifest import load_bundle
from mmsag_ros.bundle.schema import Bundle
from mmsag_ros.cli import main
from mmsag_ros.data.dataset import AnnotatedSplit
from mmsag_ros.export.variant_score import VariantScore


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


def _error_lines(err: str) -> list[str]:
    # Progress bars share stderr; the command's own errors are the "mmsag export:" lines.
    return [line for line in err.splitlines() if line.startswith("mmsag export:")]


def _int8_args(checkpoint: Path, out: Path, calib: Path) -> list[str]:
    return [
        "export",
        "--checkpoint",
        str(checkpoint),
        "--out",
        str(out),
        "--precision",
        "fp32,int8",
        "--calib-data",
        str(calib),
        "--calib-images",
        str(CALIB_IMAGES),
    ]


@pytest.mark.parametrize(("flags", "head"), [([], "int8"), (["--fp32-head"], "fp32")])
def test_export_with_int8_prints_the_variant_rows(
    tiny_checkpoint: Path,
    synthetic_voc: Path,
    tmp_path: Path,
    capsys,
    flags: list[str],
    head: str,
) -> None:
    out = tmp_path / "bundle"
    args = [
        *_int8_args(tiny_checkpoint, out, synthetic_voc),
        "--val-data",
        str(synthetic_voc),
        "--int8-bar",
        "100",  # a drop every int8 model stays within: this test is about the plumbing
        *flags,
    ]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert _error_lines(captured.err) == []
    bundle = load_bundle(out)
    printed = captured.out
    assert bundle.model_id in printed
    assert "model.onnx" in printed and "model.int8.onnx" in printed and "model.pt" in printed
    assert "parity" in printed and "logits" in printed
    rows = [line for line in printed.splitlines() if line.startswith("int8 ")]
    assert len(rows) == 1, printed
    entry = bundle.manifest["variants"]["int8"]
    cpu, written = (VariantScore(**entry[k]).summary() for k in ("accuracy", "accuracy_as_written"))
    row = f"accepted: CPU session: {cpu}; as written (TensorRT): {written}"
    assert rows[0].split(None, 1)[1] == row
    for summary in (cpu, written):
        assert "<= 100.00 points" in summary and "on 6 images of 'val'" in summary
    assert bundle.variant("int8").path == out / "model.int8.onnx"
    assert entry["accepted"] is True and entry["accuracy"]["bar_points"] == 100.0
    assert entry["accuracy"]["split"] == "val" and entry["accuracy"]["images"] == 6
    assert entry["conversion"]["calibration"] == {"images": CALIB_IMAGES, "method": "minmax"}
    # The first attempt passed a bar of 100 points: where the head runs is the flag's choice.
    assert entry["conversion"]["head"] == head and "attempts" not in entry
    assert "fp16" not in bundle.manifest["variants"]
    assert bundle.manifest["onnx"]["parity"]["frames"] == str(synthetic_voc)


def _write_csv(split: AnnotatedSplit, path: Path) -> tuple[Path, Path]:
    """``split`` as a CSV label table; returns the table and the folder its names are in."""
    roots = {s.image_path.parent for s in split.samples}
    assert len(roots) == 1
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["filename", *split.labels.names])
        for sample in split.samples:
            writer.writerow([sample.image_path.name, *(int(v) for v in sample.target)])
    return path, roots.pop()


def test_a_refused_variant_exits_1_after_writing_the_bundle(
    tiny_checkpoint: Path,
    synthetic_voc: Path,
    int8_losing_split: AnnotatedSplit,
    tmp_path: Path,
    capsys,
) -> None:
    # On this split fp32 ranks the one positive first and int8 second: 50 points down.
    table, images = _write_csv(int8_losing_split, tmp_path / "val.csv")
    out = tmp_path / "bundle"
    args = [
        *_int8_args(tiny_checkpoint, out, synthetic_voc),
        "--val-format",
        "csv",
        "--val-data",
        str(table),
        "--val-image-root",
        str(images),
        "--int8-bar",
        "0",
    ]
    assert main(args) == 1
    captured = capsys.readouterr()
    bundle = load_bundle(out)  # written, without the refused variant
    assert list(bundle.variants) == ["fp32"] and not (out / "model.int8.onnx").exists()
    reason = bundle.refused["int8"]
    assert "drop 50.00 > 0.00 points" in reason
    assert _error_lines(captured.err) == [
        f"mmsag export: error: the int8 variant was refused ({reason}); the bundle was written "
        "without it"
    ]
    rows = [line for line in captured.out.splitlines() if line.startswith("int8 ")]
    assert len(rows) == 1 and rows[0].split(None, 1)[1] == f"REFUSED, file not kept: {reason}"
    assert "model.int8.onnx" not in captured.out
    accuracy = bundle.manifest["variants"]["int8"]["accuracy"]
    assert accuracy["split"] == "val" and accuracy["images"] == 2


def test_reduced_precision_without_validation_data_exits_1(
    tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    args = [
        "export",
        "--checkpoint",
        str(tiny_checkpoint),
        "--out",
        str(tmp_path / "b"),
        "--precision",
        "fp32,fp16",
    ]
    assert main(args) == 1
    # The tiny checkpoint records no training data, so there is no run's split to fall back on.
    line = _one_error_line(capsys.readouterr().err)
    assert "does not record its training data" in line and "--val-data" in line
    assert not (tmp_path / "b").exists()


@pytest.fixture(scope="module")
def trained_on_voc(tiny_checkpoint: Path, synthetic_voc: Path, tmp_path_factory) -> Path:
    """The tiny checkpoint, recording that it trained on synthetic_voc's trainval (carved val)."""
    from mmsag_ros.model.checkpoint import load_checkpoint, save_checkpoint

    raw = dict(load_checkpoint(tiny_checkpoint).raw)
    raw["train_config"] = {"seed": 0, "data": {"format": "voc", "path": str(synthetic_voc)}}
    raw.pop("format_version")
    return save_checkpoint(tmp_path_factory.mktemp("trained") / "best.pt", raw)


def test_variants_default_to_the_training_runs_own_splits(
    trained_on_voc: Path, synthetic_voc: Path, tmp_path: Path
) -> None:
    from mmsag_ros.bundle.labels import MLKW_LABELS
    from mmsag_ros.train.dataset_splits import trainer_splits

    out = tmp_path / "b"
    args = ["export", "--checkpoint", str(trained_on_voc), "--out", str(out)]
    assert main([*args, "--precision", "fp32,fp16", "--fp16-bar", "100"]) == 0
    record = {"seed": 0, "data": {"format": "voc", "path": str(synthetic_voc)}}
    _, held_out = trainer_splits(record, labels=MLKW_LABELS)
    accuracy = load_bundle(out).manifest["variants"]["fp16"]["accuracy"]
    assert (accuracy["split"], accuracy["images"]) == (held_out.name, len(held_out))


def test_a_validation_split_the_checkpoint_trained_on_is_refused(
    trained_on_voc: Path, synthetic_voc: Path, tmp_path: Path, capsys
) -> None:
    args = ["export", "--checkpoint", str(trained_on_voc), "--out", str(tmp_path / "b")]
    args += ["--precision", "fp32,fp16", "--val-data", str(synthetic_voc), "--val-split", "val"]
    assert main(args) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "images of validation split 'val'" in line and "trained this checkpoint" in line
    assert not (tmp_path / "b").exists()


def test_an_unknown_precision_exits_1(tiny_checkpoint: Path, tmp_path: Path, capsys) -> None:
    args = ["export", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "b")]
    assert main([*args, "--precision", "fp32,int4"]) == 1
    assert "unknown precision 'int4'" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    "removed",
    [["--int8-cpu"], ["--engine"], ["--max-map-drop", "1"], ["--max-batch", "4"]],
)
def test_the_old_options_are_gone(
    tiny_checkpoint: Path, tmp_path: Path, capsys, removed: list[str]
) -> None:
    args = ["export", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "b")]
    with pytest.raises(SystemExit) as info:
        main([*args, *removed])
    assert info.value.code == 2
    assert f"unrecognized arguments: {' '.join(removed)}" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
