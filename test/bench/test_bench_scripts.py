"""The prepared benchmark scripts run end to end on this machine (their CPU parts, --quick)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from export.conftest import write_synthetic_voc, write_tiny_checkpoint, write_variant_bundle

from mmsag_ros.export.write_bundle import export_bundle

# Minutes of processes, training or composing: outside the fast tier (-m 'not slow').
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _run(
    script: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


def test_gpu_check_runs_its_cpu_parts_and_says_why_cuda_is_skipped(tmp_path: Path) -> None:
    import torch

    out = tmp_path / "gpu_check.json"
    result = _run("gpu_check.py", "--quick", "--out", str(out))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert out.with_suffix(".txt").read_text().splitlines()[0].startswith("GPU check on ")
    (model,) = report["models"]
    reference, *cuda = model["cases"]
    assert (reference["backend"], reference["status"]) == ("onnxruntime@cpu", "reference")
    assert [row["batch_size"] for row in reference["latency"]] == [1, 2]
    assert all(row["ms_per_image"] > 0 for row in reference["latency"])
    assert [(c["backend"], c["precision"]) for c in cuda] == [
        ("torch@cuda", "fp32"),
        ("torch@cuda", "fp16"),
    ]
    for case in cuda:
        if torch.cuda.is_available():
            assert case["status"] == "ok" and case["max_abs_diff"] >= 0.0
        else:
            assert case["status"] == "skipped" and "CUDA" in case["skipped"]


def test_precision_latency_times_fp32_against_the_int8_variant(tmp_path: Path) -> None:
    voc = write_synthetic_voc(tmp_path / "voc", num_trainval=24)
    bundle = write_variant_bundle(
        tmp_path / "bundle", voc=voc, precisions="fp32,int8", calib_images=8
    )
    assert "int8" in bundle.variants
    out = tmp_path / "precision.json"
    result = _run(
        "precision_latency.py", "--bundle", str(bundle.root), "--quick", "--out", str(out)
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (model,) = json.loads(out.read_text())["models"]
    assert model["model_id"] == bundle.model_id
    entry = bundle.variant("int8").entry
    assert model["int8_accuracy"] == entry["accuracy"]
    assert model["int8_accuracy_as_written"] == entry["accuracy_as_written"]
    for row in model["rows"]:
        assert row["speedup"] == pytest.approx(row["fp32_ms_per_image"] / row["int8_ms_per_image"])
    table = out.with_suffix(".txt").read_text()
    assert "speed-up" in table and "as written (TensorRT): mAP " in table


def test_precision_latency_refuses_a_bundle_without_int8(tmp_path: Path) -> None:
    bundle = export_bundle(
        write_tiny_checkpoint(tmp_path / "best.pt"), tmp_path / "b", progress=False
    )
    result = _run(
        "precision_latency.py",
        "--bundle",
        str(bundle.root),
        "--quick",
        "--out",
        str(tmp_path / "x.json"),
    )
    assert result.returncode != 0
    assert "has no int8 variant: it was not exported" in result.stderr


def test_compose_throughput_times_cutouts_and_scenes(tmp_path: Path) -> None:
    photos = REPO.parent / "shared" / "data" / "trashnet"
    if not photos.is_dir():
        pytest.skip(f"the real TrashNet photos are not at {photos}")
    out = tmp_path / "compose.json"
    result = _run(
        "compose_throughput.py", "--scenes", "3", "--repeats", "1", "--cutouts", "4",
        "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["cut_out_ms"]["photos"] == 4 and report["cut_out_ms"]["median"] > 0
    (run,) = report["runs"]
    assert run["scenes"] == 3 and run["scenes_per_s"] > 0 and run["photos_cut"] >= 1
    assert "scenes/s" in result.stdout


def test_linear_probe_scores_each_row_under_each_normalisation(tmp_path: Path) -> None:
    photos = REPO.parent / "shared" / "data" / "trashnet"
    if not photos.is_dir():
        pytest.skip(f"the real TrashNet photos are not at {photos}")
    out = tmp_path / "probe.jsonl"
    result = _run(
        "linear_probe.py", "--per-class", "4", "--scenes", "9", "--rows", "photo", "scene",
        "--styles", "original", "no camera", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    header, *rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert header["weights_normalization"] == "inception" and header["machine"]["cpu"]
    assert [r["row"] for r in rows] == [
        "photo",
        "photo at scene scale (100 px)",
        "scene boxes 320x240 original",
        "scene boxes 320x240 no camera",
    ]
    assert rows[0]["train"] == rows[0]["test"] == 24
    for row in rows:
        assert 0 <= row["imagenet"] <= 1 and 0 <= row["inception"] <= 1
    assert "scene boxes 320x240 no camera" in result.stdout


def test_train_budget_scores_each_seed_and_tabulates_the_spread(tmp_path: Path) -> None:
    out = tmp_path / "budget"
    result = _run(
        "train_budget.py", "--budget-min", "0.02", "--trainval", "24", "--test", "8",
        "--runs", "effl0_224 frozen backbone", "--seeds", "0", "1", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    runs = json.loads((out / "results.json").read_text())
    assert [(r["run"], r["seed"]) for r in runs] == [
        ("effl0_224 frozen backbone", s) for s in (0, 1)
    ]
    for run in runs:
        assert 0 <= run["test_map"] <= 1 and run["epochs_done"] >= 1
        # The synthetic frames have boxes: the peaks are scored as locations.
        assert 0 <= run["pointing"] <= 1 and 0 <= run["instance_recall"] <= 1
    table = (out / "results.txt").read_text()
    mean = sum(r["test_map"] for r in runs) / 2
    assert f"{mean:.3f}±" in table and "synthetic conveyor frames" in table


def test_train_budget_scores_a_new_compose_style_on_the_original_test_too(tmp_path: Path):
    trashnet = REPO.parent / "shared" / "data" / "trashnet"
    if not trashnet.is_dir():
        pytest.skip(f"the real TrashNet photos are not at {trashnet}")
    for folder in sorted(p for p in trashnet.iterdir() if p.is_dir()):
        (tmp_path / "photos" / folder.name).mkdir(parents=True)
        # The first 30 by number: three groups of ten, one for each split.
        numbered = sorted(folder.glob("*.jpg"), key=lambda p: int(p.stem.removeprefix(folder.name)))
        for photo in numbered[:30]:
            (tmp_path / "photos" / folder.name / photo.name).symlink_to(photo)
    out = tmp_path / "budget"
    result = _run(
        "train_budget.py", "--budget-min", "0.02", "--trainval", "12", "--test", "6",
        "--photos", str(tmp_path / "photos"), "--style", "belt",
        "--runs", "effl0_224 frozen backbone", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (run,) = json.loads((out / "results.json").read_text())
    assert run["style"] == "belt" and 0 <= run["reference_map"] <= 1
    styles = [json.loads((out / d / "composed.json").read_text())["style"]["name"] for d in (
        "composed_scenes_belt", "composed_scenes")]  # fmt: skip
    assert styles == ["belt", "original"]
    table = (out / "results.txt").read_text()
    assert "ref mAP" in table and "effl0_224 frozen backbone [belt]" in table


def test_swap_latency_swaps_a_running_sorter_and_splits_latency_by_phase(tmp_path, ros_env):
    from runtime.runtime_helpers import make_bundle

    from mmsag_ros.data.synth import generate_dataset

    first, second = make_bundle(tmp_path / "a", seed=2), make_bundle(tmp_path / "b", seed=3)
    data = tmp_path / "data"
    generate_dataset(data, num_trainval=1, num_test=20, image_size=(160, 120), seed=4)
    out = tmp_path / "swap.json"
    result = _run(
        "swap_latency.py", "--bundle", str(first), str(second), "--data", str(data),
        "--steady-s", "2", "--after-s", "2", "--out", str(out), env=ros_env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["accounted"] and report["single_switch"]
    phases = report["phases"]
    assert phases["steady"]["end_to_end_ms"]["count"] > 0
    assert phases["after"]["end_to_end_ms"]["count"] > 0
    assert "model id switches at one frame: yes" in result.stdout


def test_capture_latency_runs_the_sorter_with_and_without_capture(tmp_path, ros_env):
    from runtime.runtime_helpers import make_bundle

    from mmsag_ros.data.synth import generate_dataset

    bundle = make_bundle(tmp_path / "a", seed=2)
    data = tmp_path / "data"
    generate_dataset(data, num_trainval=1, num_test=40, image_size=(160, 120), seed=4)
    out = tmp_path / "capture.json"
    result = _run(
        "capture_latency.py", "--bundle", str(bundle), "--data", str(data), "--quick",
        "--out", str(out), env=ros_env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    off, on = json.loads(out.read_text())["runs"]
    assert (off["capture"], on["capture"]) == (False, True)
    assert off["capture_bags"] == 0 and on["capture_bags"] >= 1 and on["capture_mb"] > 0
