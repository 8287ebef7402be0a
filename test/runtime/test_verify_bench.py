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
from mmsag_ros.runtime.verify import (
    DEFAULT_TOLERANCES,
    format_verify_report,
    load_frames,
    verify_bundle,
)


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
    assert len(checks) == len(report["checks"])  # one variant: one row per backend
    assert {c["precision"] for c in report["checks"]} == {"fp32"}
    assert report["tolerances"] == {"fp32": DEFAULT_TOLERANCES["fp32"]}
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
    report = verify_bundle(
        bundle, images_dir=tmp_path, backends=["torch"], tolerances={"fp32": 1e-4}
    )
    assert report.passed and report.num_frames == 2 and report.compared == 1
    assert report.tolerances == {"fp32": 1e-4}


def test_verify_input_errors(bundle, tmp_path):
    with pytest.raises(DatasetError, match="no images"):
        load_frames(tmp_path)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="cannot decode image"):
        load_frames(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        load_frames(tmp_path / "missing")
    with pytest.raises(ConfigError, match="tolerances must be non-negative numbers"):
        verify_bundle(bundle, tolerances={"fp32": -1.0})
    with pytest.raises(ConfigError, match="tolerances must be non-negative numbers"):
        verify_bundle(bundle, tolerances={"int8": float("nan")})
    with pytest.raises(BundleError, match="has no int8 variant: it was not exported"):
        verify_bundle(bundle, precisions=["int8"], num_frames=1)
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
    assert {r["precision"] for r in report["latency"]} == {"fp32"}
    assert report["backends"]["onnxruntime@cpu fp32"]["intra_op_threads"] == 1
    assert report["backends"]["onnxruntime@cpu fp32"]["precision"] == "fp32"
    assert report["backends"]["torch@cpu fp32"]["num_threads"] >= 1
    if "tensorrt@cuda:0 fp32" in report["skipped"]:
        assert "TensorRT" in report["skipped"]["tensorrt@cuda:0 fp32"]
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


def test_verify_checks_every_variant_against_its_own_reference(variant_bundle):
    report = verify_bundle(variant_bundle, backends=["torch", "tensorrt"], num_frames=2)
    assert report.model_id == variant_bundle.model_id
    assert dict(report.tolerances) == dict(DEFAULT_TOLERANCES)
    rows = {(c.name, c.precision): c for c in report.checks}
    assert len(rows) == len(report.checks) == 9
    assert [c.precision for c in report.checks] == ["fp32"] * 3 + ["fp16"] * 3 + ["int8"] * 3
    for precision in ("fp32", "fp16", "int8"):
        reference = rows[("onnxruntime@cpu", precision)]
        assert reference.status == "reference"
        assert set(reference.latency) == {"p50_ms", "p95_ms", "p99_ms", "mean_ms"}
        assert rows[("tensorrt@cuda:0", precision)].status in ("skipped", "ok")
    # fp32 is the reference of the reference rows; a reduced one carries its distance to it.
    fp32 = rows[("onnxruntime@cpu", "fp32")]
    assert fp32.max_abs_diff is None and fp32.reason == ""
    for precision in ("fp16", "int8"):
        reduced = rows[("onnxruntime@cpu", precision)]
        assert reduced.reason == "differences to the fp32 reference"
        assert 0 < reduced.max_abs_diff <= DEFAULT_TOLERANCES[precision]
        assert 0 < reduced.mean_abs_diff <= reduced.max_abs_diff
        assert 0 <= reduced.decision_agreement <= 1
        assert reduced.max_attention_diff is not None
    # torch runs fp32 here; its fp16 (CUDA only) and int8 (none) rows are skipped, with why.
    assert rows[("torch@cpu", "fp32")].status == "ok"
    assert rows[("torch@cpu", "fp32")].max_abs_diff < 1e-4
    for precision in ("fp16", "int8"):
        torch_row = rows[("torch@cpu", precision)]
        assert torch_row.status == "skipped" and "ONNX variants" in torch_row.reason
        assert torch_row.max_abs_diff is None
    assert report.passed and report.compared == 1 + sum(
        rows[("tensorrt@cuda:0", p)].status == "ok" for p in ("fp32", "fp16", "int8")
    )

    text = format_verify_report(report)
    lines = text.splitlines()
    assert lines[0] == (
        f"model {variant_bundle.model_id}: 2 synthetic conveyor frames (seed 0); "
        "score tolerance fp32 0.001, fp16 0.01, int8 0.05"
    )
    assert lines[2].split() == [
        "backend", "variant", "status", "max|d|", "mean|d|", "agree", "p50", "ms", "p95", "ms",
        "p99", "ms",
    ]  # fmt: skip
    for precision in ("fp32", "fp16", "int8"):
        assert any(
            line.split()[:3] == ["onnxruntime@cpu", precision, "reference"] for line in lines
        )
        status = "ok" if precision == "fp32" else "skipped"
        assert any(line.split()[:3] == ["torch@cpu", precision, status] for line in lines)
    fp32_line = next(line for line in lines if line.split()[:2] == ["onnxruntime@cpu", "fp32"])
    assert fp32_line.split()[3:6] == ["-", "-", "-"]
    assert text.count("differences to the fp32 reference") == 2
    assert lines[-1].startswith("passed: ")
    assert report.to_dict()["tolerances"] == dict(DEFAULT_TOLERANCES)


def test_reference_rows_name_the_providers_that_ran(bundle):
    report = verify_bundle(bundle, backends=["torch"], num_frames=1)
    reference = report.checks[0]
    assert reference.status == "reference"
    assert reference.providers == ("CPUExecutionProvider",)


def test_verify_takes_precisions_and_per_precision_tolerances(variant_bundle):
    report = verify_bundle(
        variant_bundle,
        backends=["torch"],
        precisions=["int8"],
        tolerances={"int8": 0.2},
        num_frames=1,
    )
    # Only int8 rows: fp32 is still run, to give the int8 reference its distance to fp32.
    assert [(c.name, c.precision, c.status) for c in report.checks] == [
        ("onnxruntime@cpu", "int8", "reference"),
        ("torch@cpu", "int8", "skipped"),
    ]
    assert report.checks[0].max_abs_diff is not None
    assert report.tolerances == {"int8": 0.2}
    assert report.compared == 0 and report.passed
    assert format_verify_report(report).splitlines()[-1] == (
        "passed, but no other backend ran here: only the variants' references were compared"
    )


def test_a_backend_beyond_the_tolerance_of_its_variant_fails(
    bundle_dir, other_bundle_dir, tmp_path
):
    swapped = swap_onnx(bundle_dir, other_bundle_dir, tmp_path / "swapped", fix_manifest=True)
    from mmsag_ros.bundle.manifest import load_bundle

    report = verify_bundle(
        load_bundle(swapped), backends=["torch"], tolerances={"fp32": 1.0}, num_frames=2
    )
    assert report.passed  # a tolerance of 1 accepts any score
    report = verify_bundle(load_bundle(swapped), backends=["torch"], num_frames=2)
    (failed,) = [c for c in report.checks if c.status == "FAIL"]
    assert failed.name == "torch@cpu" and failed.precision == "fp32"
    assert failed.reason.startswith("scores differ by up to ") and failed.reason.endswith("> 0.001")
    text = format_verify_report(report)
    assert failed.reason in text and text.splitlines()[-1].startswith("FAILED: ")


def test_verify_cli_precisions_and_tolerance_sets_only_fp32(variant_bundle_dir, tmp_path, capsys):
    report_path = tmp_path / "verify.json"
    argv = ["--bundle", str(variant_bundle_dir), "--backends", "torch", "--num-images", "1"]
    argv += ["--threads", "1", "--json", str(report_path)]
    code = run_cli(verify_cli, [*argv, "--precisions", "fp32,int8", "--tolerance", "0.5"])
    out = capsys.readouterr().out
    assert code == 0, out
    report = json.loads(report_path.read_text())
    assert report["tolerances"] == {"fp32": 0.5, "int8": DEFAULT_TOLERANCES["int8"]}
    assert [(c["name"], c["precision"]) for c in report["checks"]] == [
        ("onnxruntime@cpu", "fp32"),
        ("torch@cpu", "fp32"),
        ("onnxruntime@cpu", "int8"),
        ("torch@cpu", "int8"),
    ]
    assert "score tolerance fp32 0.5, int8 0.05" in out
    with pytest.raises(BundleError, match="unknown precision 'fp64'"):
        run_cli(verify_cli, [*argv, "--precisions", "fp64"])


def test_bench_times_each_requested_variant(variant_bundle_dir, tmp_path, capsys):
    out_path = tmp_path / "bench.json"
    argv = ["--bundle", str(variant_bundle_dir), "--backends", "onnxruntime", "torch"]
    argv += ["--precisions", "fp32,int8", "--batch-sizes", "2", "--iterations", "1"]
    argv += ["--warmup", "0", "--threads", "1", "--json", str(out_path)]
    assert run_cli(bench_cli, argv) == 0
    out = capsys.readouterr().out
    report = json.loads(out_path.read_text())
    rows = {(r["backend"], r["precision"]) for r in report["latency"]}
    assert rows == {("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("torch", "fp32")}
    assert set(report["skipped"]) == {"torch@cpu int8"}
    assert report["backends"]["onnxruntime@cpu int8"]["model"] == "model.int8.onnx"
    assert "onnxruntime@cpu int8" in out and "torch@cpu int8 " in out
