from __future__ import annotations

import argparse
import json

import cv2
import pytest
from runtime_helpers import swap_onnx

from mmsag_ros.cli import bench as bench_cli
from mmsag_ros.cli import verify as verify_cli
from mmsag_ros.errors import BundleError, ConfigError, DatasetError
from mmsag_ros.runtime.bench import latency_stats, parse_backend_spec
from mmsag_ros.runtime.verify import load_frames, verify_bundle


def run_cli(module, argv):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.run(parser.parse_args(argv))


def test_verify_passes_on_a_good_bundle(bundle_dir, capsys, tmp_path):
    report_path = tmp_path / "verify.json"
    code = run_cli(
        verify_cli,
        [
            "--bundle",
            str(bundle_dir),
            "--num-images",
            "3",
            "--threads",
            "1",
            "--json",
            str(report_path),
        ],
    )
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads(report_path.read_text())
    checks = {c["name"]: c for c in report["checks"]}
    assert report["passed"] and report["num_frames"] == 3
    assert checks["onnxruntime@cpu"]["status"] == "reference"
    assert checks["torch@cpu"]["status"] == "ok"
    assert checks["torch@cpu"]["max_abs_diff"] < 1e-4
    assert checks["torch@cpu"]["decision_agreement"] == 1.0
    assert set(checks["torch@cpu"]["latency"]) == {"p50_ms", "p95_ms", "p99_ms", "mean_ms"}
    assert checks["tensorrt@cuda:0"]["status"] in ("skipped", "ok")
    assert "torch@cpu" in out and "passed: " in out


def test_verify_fails_on_an_onnx_swapped_for_another_model(
    bundle_dir, other_bundle_dir, tmp_path, capsys
):
    swapped = swap_onnx(bundle_dir, other_bundle_dir, tmp_path / "swapped", fix_manifest=True)
    code = run_cli(
        verify_cli, ["--bundle", str(swapped), "--backends", "torch", "--num-images", "2"]
    )
    out = capsys.readouterr().out
    assert code == 1, out
    assert "FAIL" in out and "FAILED: a backend disagrees" in out


def test_a_swapped_onnx_without_a_matching_manifest_is_rejected_on_load(
    bundle_dir, other_bundle_dir, tmp_path
):
    swapped = swap_onnx(bundle_dir, other_bundle_dir, tmp_path / "swapped", fix_manifest=False)
    with pytest.raises(BundleError, match="swapped"):
        run_cli(verify_cli, ["--bundle", str(swapped)])


def test_verify_reads_an_image_folder(bundle, frames, tmp_path):
    for index, frame in enumerate(frames[:2]):
        cv2.imwrite(str(tmp_path / f"{index}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("not an image")
    loaded = load_frames(tmp_path)
    assert [f.shape for f in loaded] == [f.shape for f in frames[:2]]
    assert (loaded[0] == frames[0]).all()  # PNG is lossless and RGB order survives
    report = verify_bundle(bundle, images_dir=tmp_path, backends=["torch"], tolerance=1e-4)
    assert report.passed and report.num_frames == 2 and report.compared == 1


def test_verify_input_errors(bundle, tmp_path):
    with pytest.raises(DatasetError, match="no images"):
        load_frames(tmp_path)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="cannot decode image"):
        load_frames(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        load_frames(tmp_path / "missing")
    with pytest.raises(ConfigError, match="tolerance must be a non-negative number"):
        verify_bundle(bundle, tolerance=-1.0)
    with pytest.raises(ConfigError, match="num_frames must be at least 1"):
        verify_bundle(bundle, num_frames=0)
    with pytest.raises(ConfigError, match="unknown backend 'trt'"):
        verify_bundle(bundle, backends=["trt"], num_frames=1)


def test_bench_writes_json_with_one_iteration(bundle_dir, tmp_path, capsys):
    out_path = tmp_path / "bench" / "result.json"
    code = run_cli(
        bench_cli,
        [
            "--bundle",
            str(bundle_dir),
            "--backends",
            "onnxruntime",
            "torch",
            "tensorrt",
            "--batch-sizes",
            "1",
            "2",
            "--iterations",
            "1",
            "--warmup",
            "0",
            "--threads",
            "1",
            "--json",
            str(out_path),
        ],
    )
    out = capsys.readouterr().out
    assert code == 0
    report = json.loads(out_path.read_text())
    rows = {(r["backend"], r["batch_size"]): r for r in report["latency"]}
    assert set(rows) == {("onnxruntime", 1), ("onnxruntime", 2), ("torch", 1), ("torch", 2)}
    assert rows[("onnxruntime", 2)]["images_per_s"] > 0
    assert rows[("onnxruntime", 2)]["iterations"] == 1
    sizes = {(r["width"], r["height"], r["color_order"]) for r in report["preprocess"]}
    assert sizes == {
        (w, h, o) for w, h in [(640, 480), (1280, 720), (1920, 1080)] for o in ("rgb", "bgr")
    }
    assert report["machine"]["cpu"] and report["machine"]["logical_cpus"] >= 1
    assert report["backends"]["onnxruntime@cpu"]["intra_op_threads"] == 1
    assert report["backends"]["torch@cpu"]["num_threads"] >= 1
    if "tensorrt@cuda:0" in report["skipped"]:
        assert "TensorRT" in report["skipped"]["tensorrt@cuda:0"]
    assert "1920x1080->96" in out and "onnxruntime@cpu" in out


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("torch", ("torch", "cpu")),
        ("tensorrt", ("tensorrt", "cuda:0")),
        ("onnxruntime:cuda", ("onnxruntime", "cuda:0")),
        ("torch:cuda:1", ("torch", "cuda:1")),
    ],
)
def test_parse_backend_spec(spec, expected):
    assert parse_backend_spec(spec) == expected


@pytest.mark.parametrize(("spec", "message"), [(":cuda", "bad backend"), ("torch:tpu", "device")])
def test_parse_backend_spec_rejects_malformed_specs(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_backend_spec(spec)


def test_latency_stats():
    stats = latency_stats([0.001 * i for i in range(1, 101)])
    assert stats["p50_ms"] == pytest.approx(50.5)
    assert stats["p99_ms"] == pytest.approx(99.01)
    assert stats["mean_ms"] == pytest.approx(50.5)
    with pytest.raises(ValueError, match="no durations"):
        latency_stats([])
