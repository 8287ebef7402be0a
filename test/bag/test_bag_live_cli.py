"""mmsag bag eval --live on the command line: a line per label, the report, one-line errors.

The command runs as a process (or through ``main``) against a real sorter node process over
real DDS; a node that cannot start and options that need --live are one clear error each.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from bag.bag_helpers import FPS, START_NS
from support import REPO

from mmsag_ros.bag.make import make_bag
from mmsag_ros.errors import BagError
from mmsag_ros.live.replay import replay_through_sorter
from mmsag_ros.live.results import LiveLabel, format_live_label

# This process's rclpy contexts and the node process share the test's own domain.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ros_domain")]


def test_cli_live_prints_each_label_then_the_report(dataset, bundle, tmp_path, ros_env):
    bag = tmp_path / "bag"
    make_bag(dataset, bag, compressed=True, fps=FPS, start_ns=START_NS)
    out = tmp_path / "eval"
    command = [sys.executable, "-m", "mmsag_ros.cli", "bag", "eval", str(bag), "--bundle"]
    command += [str(bundle), "--live", "--backend", "onnxruntime", "--out", str(out)]
    done = subprocess.run(
        command, cwd=REPO, env=ros_env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    label_lines = [line for line in lines if "| truth:" in line]
    report = json.loads((out / "report.json").read_text())
    assert len(label_lines) == report["live"]["labelled"] > 0
    assert label_lines[0].split()[:2] == ["1", "camera_optical_frame"]
    assert any(line.startswith("live, through a sorter node") for line in lines)
    assert any(line.startswith("mAP") for line in lines)
    for name in ("report.json", "pr_curves.png", "latency_histogram.png", "sorter.log"):
        assert (out / name).is_file()
    assert "configured" in (out / "sorter.log").read_text()


def test_a_node_that_cannot_start_is_one_clear_error(dataset, bundle, tmp_path, ros_env):
    bag = tmp_path / "bag"
    make_bag(dataset, bag, compressed=True, fps=FPS, start_ns=START_NS)
    with pytest.raises(BagError, match=r"did not start: the tensorrt backend"):
        replay_through_sorter(bag, bundle, backend="tensorrt")
    command = [sys.executable, "-m", "mmsag_ros.cli", "bag", "eval", str(bag), "--bundle"]
    command += [str(bundle), "--live", "--backend", "tensorrt", "--out", str(tmp_path / "e")]
    done = subprocess.run(command, cwd=REPO, env=ros_env, capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "sorter node did not start" in done.stderr and "node log:" in done.stderr


def test_a_label_line_shows_decisions_truth_and_latency():
    label = LiveLabel(
        stamp_ns=1_700_000_000_500_000_000,
        frame_id="cam",
        scores=np.array([0.9, 0.2, 0.7]),
        decisions=np.array([True, False, True]),
        thresholds=np.full(3, 0.5, np.float32),
        latency_ms=12.34,
        inference_ms=5.0,
        node_latency_ms=10.0,
    )
    names = ("metal", "glass", "shoe")
    line = format_live_label(3, label, None, names)
    assert line == "    3 cam 1700000000.500: metal 0.90, shoe 0.70  [12.3 ms]"
    # shoe is marked ignore (-1): deciding it is neither right nor wrong.
    ignored = format_live_label(3, label, np.array([1.0, 0.0, -1.0]), names)
    assert ignored.endswith("| truth: metal ok  [12.3 ms]")
    assert "| truth: metal, glass MISS" in format_live_label(3, label, np.array([1, 1, 0.0]), names)


def test_live_only_options_without_live_are_refused(dataset, bundle, tmp_path, capsys):
    from mmsag_ros.cli import main

    bag = tmp_path / "bag"
    make_bag(dataset, bag, compressed=True, fps=FPS, start_ns=START_NS)
    base = ["bag", "eval", str(bag), "--bundle", str(bundle), "--out", str(tmp_path / "e")]
    assert main([*base, "--record", str(tmp_path / "rec")]) == 1
    assert "add --live" in capsys.readouterr().err
    assert main([*base, "--live", "--sorter-params", str(tmp_path / "missing.yaml")]) == 1
    assert "missing.yaml does not exist" in capsys.readouterr().err
    assert not (tmp_path / "rec").exists()
