"""bag/writer.py: every bag the package writes is format 9, and a failed write leaves nothing."""

from __future__ import annotations

import pytest
import yaml
from rosbags.rosbag2 import Reader

from mmsag_ros.bag.typestore import mmsag_typestore
from mmsag_ros.bag.writer import STORAGES, bag_writer, writing_bag
from mmsag_ros.errors import BagError, DatasetError

_TYPE = "std_msgs/msg/String"


@pytest.mark.parametrize("storage", STORAGES)
def test_a_bag_written_is_read_back_in_its_storage(storage, tmp_path):
    store = mmsag_typestore()
    path = tmp_path / "bag"
    with writing_bag(path, storage) as writer:
        connection = writer.add_connection("/note", _TYPE, typestore=store)
        raw = store.serialize_cdr(store.types[_TYPE](data="hello"), _TYPE)
        writer.write(connection, 42, raw)
    with Reader(path) as reader:
        [(connection, stamp, data)] = list(reader.messages())
    metadata = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert metadata["version"] == 9 and metadata["storage_identifier"] == storage
    assert stamp == 42 and store.deserialize_cdr(data, _TYPE).data == "hello"
    assert list(tmp_path.iterdir()) == [path]  # no staging folder left beside it


def test_a_failure_inside_removes_the_bag_and_says_what_it_was_writing(tmp_path):
    path = tmp_path / "labels"
    failure = f"cannot write the labels bag {path}: disk full"
    with pytest.raises(BagError, match=failure), writing_bag(path, what="labels bag") as writer:
        writer.add_connection("/note", _TYPE, typestore=mmsag_typestore())
        raise OSError("disk full")
    assert not path.exists() and not list(tmp_path.iterdir())


def test_our_own_errors_pass_unchanged_and_still_leave_nothing(tmp_path):
    path = tmp_path / "bag"
    with pytest.raises(DatasetError, match="unreadable image"), writing_bag(path):
        raise DatasetError("unreadable image")
    assert not path.exists()


def test_an_existing_path_or_unknown_storage_is_refused_and_kept(tmp_path):
    existing = tmp_path / "old"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    with pytest.raises(BagError, match=r"bag .*: it exists"), writing_bag(existing):
        pass
    with pytest.raises(BagError, match="unknown bag storage 'db3'"):
        bag_writer(tmp_path / "new", "db3")
    assert (existing / "keep.txt").read_text() == "mine"


def test_a_folder_someone_makes_at_the_path_meanwhile_is_left_alone(tmp_path):
    path = tmp_path / "bag"
    with pytest.raises(BagError, match="cannot write the bag"), writing_bag(path) as writer:
        writer.add_connection("/note", _TYPE, typestore=mmsag_typestore())
        path.mkdir()
        (path / "theirs.txt").write_text("theirs")
    assert (path / "theirs.txt").read_text() == "theirs"
    assert list(tmp_path.iterdir()) == [path]
