"""CSV cells from camera data cannot run as spreadsheet formulas, and still read back."""

from __future__ import annotations

import csv

import pytest

from mmsag_ros.bag.csv_cells import read_cell, text_cell
from mmsag_ros.bag.truth import read_gt_csv
from mmsag_ros.bundle.labels import LabelSet

HOSTILE = ['=HYPERLINK("http://x")', "+1+1", "-2", "@SUM(A1)", "\tcmd", "\rcmd", "'quoted"]


@pytest.mark.parametrize("value", [*HOSTILE, "camera_optical", "", "a=b"])
def test_a_cell_never_starts_a_formula_and_reads_back(value):
    cell = text_cell(value)
    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert read_cell(cell) == value
    assert (cell == value) == (value not in HOSTILE)  # ordinary ids are written unchanged


def test_a_ground_truth_table_with_escaped_frame_ids_reads_back(tmp_path):
    path = tmp_path / "gt.csv"
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["stamp_ns", "frame_id", "glass", "metal"])
        for stamp, frame_id in enumerate(HOSTILE):
            writer.writerow([stamp, text_cell(frame_id), 1, 0])
    assert "\n=" not in path.read_text()
    truth = read_gt_csv(path, LabelSet.from_names(("glass", "metal")))
    assert sorted(truth.by_frame) == sorted(enumerate(HOSTILE))
