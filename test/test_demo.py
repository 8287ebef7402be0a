"""The main job, ``tools/demo.sh`` / ``mmsag demo``, end to end at a small size."""

from __future__ import annotations

import json
import subprocess

import pytest
from support import REPO

from mmsag_ros.bundle.manifest import load_bundle
from mmsag_ros.errors import ConfigError

TEST_IMAGES = 8


@pytest.mark.slow
def test_demo_script_runs_the_whole_pipeline_through_a_live_node(tmp_path, ros_env):
    out = tmp_path / "demo"
    command = [str(REPO / "tools" / "demo.sh"), "--out", str(out), "--trainval", "24"]
    command += ["--test", str(TEST_IMAGES), "--size", "160x120", "--epochs", "1", "--fps", "20"]
    done = subprocess.run(command, env=ros_env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    stdout = done.stdout
    # Said before any work starts: the scores that follow are not about real waste.
    first = next(i for i, line in enumerate(stdout.splitlines()) if line.startswith("mmsag demo"))
    assert stdout.splitlines()[first].startswith("mmsag demo: SYNTHETIC data")
    assert stdout.splitlines()[first + 2].startswith("== 1.")
    assert [line for line in stdout.splitlines() if line.startswith("== ")] == [
        f"== 1. synthetic conveyor dataset -> {out / 'data'}",
        f"== 2. fine-tune mmsag_effl0_224 -> {out / 'train'}",
        f"== 3. export the bundle, fp32 + fp16 + int8 -> {out / 'bundle'}",
        f"== 4. the held-out test split as a rosbag of JPEG frames -> {out / 'test_bag'}",
        "== 5. start the sorter node and replay the bag through it",
    ]
    summary = json.loads((out / "demo.json").read_text())
    report = json.loads((out / "live_eval" / "report.json").read_text())
    live = report["live"]
    # On a busy machine the node may drop frames at 20 Hz; every frame is still accounted for.
    labelled = live["labelled"]
    assert report["mode"] == "live" and live["sent"] == TEST_IMAGES and labelled >= 1
    assert live["complete"] and live["stray_labels"] == 0
    lost = ("dropped_in_node", "rejected_by_node", "failed_in_node", "not_received_by_node")
    assert labelled + sum(live[key] for key in lost) == TEST_IMAGES
    assert sum("| truth:" in line for line in stdout.splitlines()) == labelled
    assert f"On {TEST_IMAGES} held-out SYNTHETIC frames" in stdout
    assert summary["frames_labelled"] == labelled
    assert summary["live_map"] == pytest.approx(report["metrics"]["map"])
    bundle = load_bundle(out / "bundle")
    assert bundle.name == "mmsag_effl0_224"
    # Both variants were scored against fp32, and the demo says how each one did.
    for precision in ("fp16", "int8"):
        entry = bundle.manifest["variants"][precision]
        assert (precision in bundle.variants) is entry["accepted"]
        verdict = "accepted" if entry["accepted"] else "REFUSED"
        assert any(
            line.startswith(f"   {precision} {verdict}: mAP ") for line in stdout.splitlines()
        )
    for name in ("pr_curves.png", "latency_histogram.png"):
        assert (out / "live_eval" / name).stat().st_size > 10_000
    assert (out / "labels_bag" / "metadata.yaml").is_file()

    # Run again into the same folder: the previous demo is replaced, not an error.
    again = subprocess.run(command, env=ros_env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]


def test_demo_refuses_a_folder_that_is_not_a_previous_demo(tmp_path):
    from mmsag_ros.demo import DemoOptions, run_demo

    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="other than a previous demo"):
        run_demo(DemoOptions(out=tmp_path), say=lambda _: None)
    assert (tmp_path / "precious.txt").read_text() == "keep me"
