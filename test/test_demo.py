"""The main job, ``tools/demo.sh`` / ``mmsag demo``, end to end at a small size."""

from __future__ import annotations

import json
import subprocess

import pytest
from support import REPO, SHARED_DATA

from mmsag_ros.bundle.manifest import load_bundle
from mmsag_ros.errors import ConfigError

TEST_IMAGES = 8
TRASHNET = SHARED_DATA / "trashnet"


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
        "== 6. where the attention peaks point, on the test images' boxes",
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
        # int8 is scored as the CPU runs it and as written (what TensorRT computes).
        scored = "CPU session: mAP " if precision == "int8" else "mAP "
        line = f"   {precision} {verdict}: {scored}"
        assert any(printed.startswith(line) for printed in stdout.splitlines()), line
    assert "; as written (TensorRT): mAP " in stdout
    for name in ("pr_curves.png", "latency_histogram.png", "pointing_examples.png"):
        assert (out / "live_eval" / name).stat().st_size > 10_000
    assert (out / "labels_bag" / "metadata.yaml").is_file()
    # The test boxes score the peaks; the number printed at the end is the one recorded.
    pointing = json.loads((out / "live_eval" / "pointing.json").read_text())
    assert pointing["images"] == TEST_IMAGES and sum(pointing["present"]) >= 1
    assert "pointing accuracy (attention peak inside a box" in stdout
    assert f"inside a box of their class {100 * pointing['accuracy']:.1f} %" in stdout
    assert summary["pointing_accuracy"] == pytest.approx(pointing["accuracy"], abs=1e-6)

    # Run again into the same folder, now on real photos: the previous demo is replaced.
    if not all((TRASHNET / c).is_dir() for c in ("glass", "metal", "paper")):
        pytest.skip(f"the real photos are not at {TRASHNET}")
    photos = tmp_path / "photos"
    for name in ("glass", "metal", "paper"):
        (photos / name).mkdir(parents=True)
        for photo in sorted((TRASHNET / name).glob("*.jpg"))[:40]:
            (photos / name / photo.name).symlink_to(photo)
    again = subprocess.run(
        [*command, "--photos", str(photos)], env=ros_env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "mmsag demo: COMPOSED scenes. Real photos from" in again.stdout
    assert f"== 1. belt scenes composed from the photos -> {out / 'data'}" in again.stdout
    assert f"On {TEST_IMAGES} held-out COMPOSED real-photo frames" in again.stdout
    assert json.loads((out / "data" / "composed.json").read_text())["composed"] is True
    assert load_bundle(out / "bundle").labels.names == ("glass", "metal", "paper")
    assert json.loads((out / "live_eval" / "pointing.json").read_text())["images"] == TEST_IMAGES


def test_demo_refuses_a_folder_that_is_not_a_previous_demo(tmp_path):
    from mmsag_ros.demo import DemoOptions, run_demo

    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="other than a previous demo"):
        run_demo(DemoOptions(out=tmp_path), say=lambda _: None)
    assert (tmp_path / "precious.txt").read_text() == "keep me"
