"""CSV label table reader: values, image root, file check and every malformed-table error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmsag_ros.data.csv_table import read_csv_labels
from mmsag_ros.errors import DatasetError

GOOD = """filename,plastic,metal,glass
a.jpg,1,0,0
sub/b.jpg, 0 ,1,-1
c.jpg,0,0,0
,,,
"""


def _write(tmp_path: Path, text: str, name: str = "labels.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_values_and_paths(tmp_path):
    split = read_csv_labels(_write(tmp_path, GOOD), check_files=False)
    assert split.labels.names == ("plastic", "metal", "glass")
    np.testing.assert_array_equal(split.targets(), [[1, 0, 0], [0, 1, -1], [0, 0, 0]])
    assert [s.image_id for s in split.samples] == ["a.jpg", "sub/b.jpg", "c.jpg"]
    assert split.samples[1].image_path == tmp_path / "sub" / "b.jpg"
    assert split.name == "labels" and split.source == str(tmp_path / "labels.csv")


def test_image_root_and_file_check(tmp_path):
    path = _write(tmp_path, GOOD)
    root = tmp_path / "images"
    with pytest.raises(DatasetError, match=r"images are missing: 3 of 3 .*expected under .*images"):
        read_csv_labels(path, root)
    for name in ("a.jpg", "sub/b.jpg", "c.jpg"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    split = read_csv_labels(path, root)
    assert split.samples[0].image_path == root / "a.jpg"


def test_byte_order_mark_and_alternative_file_column(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffimage,bottle\nx.png,1\n".encode())
    split = read_csv_labels(path, check_files=False)
    assert split.labels.names == ("bottle",)
    np.testing.assert_array_equal(split.targets(), [[1]])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty: missing header"),
        ("a.jpg,1,0\nb.jpg,0,1\n", r"missing header; .* got 'a\.jpg,1,0'"),
        ("name,1,0\nb.jpg,0,1\n", "missing header"),
        ("filename\na.jpg\n", "names no class columns"),
        ("filename,x,,y\na.jpg,1,0,1\n", "empty class name"),
        ("filename,x,y,x\na.jpg,1,0,1\n", "class 'x' appears twice"),
        ("filename,x,y\n", "header but no rows"),
        ("filename,x,y\na.jpg,1,0\nb.jpg,2,0\n", r"line 3: value '2' for class 'x' of 'b\.jpg'"),
        ("filename,x,y\na.jpg,1,yes\n", r"line 2: value 'yes' for class 'y'"),
        ("filename,x,y\na.jpg,1,0.5\n", r"value '0\.5'"),
        ("filename,x,y\na.jpg,1,\n", r"line 2: value '' for class 'y'"),
        ("filename,x,y\na.jpg,1,0\nb.jpg,,\n", r"line 3: empty label row for 'b\.jpg'"),
        ("filename,x,y\na.jpg,1\n", r"line 2: 2 cells, expected 3"),
        ("filename,x,y\n,1,0\n", r"line 2: the file name is empty"),
        (
            "filename,x,y\na.jpg,1,0\nb.jpg,0,1\na.jpg,0,0\n",
            r"line 4: file name 'a\.jpg' already appears on line 2",
        ),
    ],
)
def test_malformed_tables(tmp_path, text, message):
    with pytest.raises(DatasetError, match=message):
        read_csv_labels(_write(tmp_path, text), check_files=False)


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        read_csv_labels(tmp_path / "nope.csv")


def test_undecodable_file(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(b"filename,x\n\xff\xfe.jpg,1\n")
    with pytest.raises(DatasetError, match="cannot read label table"):
        read_csv_labels(path, check_files=False)
