"""mmsag eval on a real trained checkpoint: the test split's report, and data it cannot score.

The checkpoint is the 3-epoch run's (``trained``, shared per session from conftest.py).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from mmsag_ros.bundle.labels import LabelSet
from mmsag_ros.cli import main
from mmsag_ros.data.synth import generate_dataset

pytestmark = pytest.mark.slow


def test_eval_command_reports_test_split(trained, synth_root, tmp_path, capsys):
    out_dir = tmp_path / "eval"
    code = main(
        [
            "eval",
            "--checkpoint", str(trained.best_checkpoint),
            "--data", str(synth_root),
            "--split", "test",
            "--workers", "0",
            "--out", str(out_dir),
        ]
    )  # fmt: skip
    assert code == 0
    report = json.loads((out_dir / "report.json").read_text())
    assert report["split"] == "test"
    assert report["metrics"]["num_samples"] == 40
    assert (out_dir / "pr_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = capsys.readouterr().out
    assert "tetra pak carton" in table and "mAP" in table
    # The table's mAP is the mean of the per-class APs in the JSON.
    aps = [a for a in report["metrics"]["ap"] if a is not None]
    assert report["metrics"]["map"] == pytest.approx(np.mean(aps))
    # The synthetic scenes have boxes: every present class of every image had its peak scored.
    pointing = report["pointing"]
    annotations = synth_root / "VOCdevkit" / "VOC2007" / "Annotations"
    present = dict.fromkeys(report["classes"], 0)
    for image_id in (annotations.parent / "ImageSets" / "Main" / "test.txt").read_text().split():
        objects = ET.parse(annotations / f"{image_id}.xml").getroot().iter("object")
        for name in {o.findtext("name") for o in objects if o.findtext("difficult") == "0"}:
            present[name] += 1
    assert pointing["present"] == list(present.values()) and pointing["images"] == 40
    assert all(0 <= h <= p for h, p in zip(pointing["hits"], pointing["present"], strict=True))
    # The report rounds to six decimals.
    expected = sum(pointing["hits"]) / sum(present.values())
    assert pointing["accuracy"] == pytest.approx(expected, abs=1e-6)
    assert "pointing accuracy" in table and "instances: recall" in table
    assert (out_dir / "pointing_examples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out_dir / "pointing.json").read_text()) == pointing


def test_eval_rejects_a_dataset_with_other_classes(trained, tmp_path, capsys):
    other = tmp_path / "other"
    two_classes = LabelSet.from_names(["metal", "shoe"])
    generate_dataset(other, num_trainval=4, num_test=4, image_size=(64, 48), labels=two_classes)
    code = main(
        [
            "eval",
            "--checkpoint",
            str(trained.best_checkpoint),
            "--data",
            str(other),
            "--workers",
            "0",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    # One readable line naming the checkpoint's first class the data lacks.
    assert err.count("\n") == 1 and "mmsag eval: error:" in err and "'waste_bag'" in err


def test_a_malformed_box_costs_the_pointing_scores_not_the_report(trained, tmp_path, capsys):
    data = tmp_path / "data"
    generate_dataset(data, num_trainval=2, num_test=6, image_size=(96, 72), seed=4)
    annotations = data / "VOCdevkit" / "VOC2007" / "Annotations"
    xml = annotations / "test_000000.xml"
    xml.write_text(xml.read_text().replace("<width>96</width>", ""))
    out_dir = tmp_path / "eval"
    args = ["eval", "--checkpoint", str(trained.best_checkpoint), "--data", str(data)]
    assert main([*args, "--workers", "0", "--out", str(out_dir)]) == 0
    assert "pointing scores skipped:" in capsys.readouterr().err
    report = json.loads((out_dir / "report.json").read_text())
    assert report["metrics"]["num_samples"] == 6 and "pointing" not in report
    assert not (out_dir / "pointing_examples.png").exists()
