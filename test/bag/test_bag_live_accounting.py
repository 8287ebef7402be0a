"""mmsag bag eval --live: every frame sent is labelled or accounted for; broken bags fail cleanly.

Bags replayed through a real sorter node process over real DDS: a replay faster than the node
drops frames, undecodable frames are rejected while the node keeps labelling, truncated and
corrupt bags fail in one line without leaving a node behind; the node's counts are read from
its diagnostics ledger.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from bag.bag_helpers import FPS, NUM_FRAMES, START_NS, check_accounting

from mmsag_ros.bag.frames import IMAGE_TYPE
from mmsag_ros.bag.make import make_bag
from mmsag_ros.bag.typestore import mmsag_typestore
from mmsag_ros.bag.writer import bag_writer
from mmsag_ros.errors import BagError
from mmsag_ros.live.live_eval import evaluate_bag_live
from mmsag_ros.live.replay import replay_through_sorter
from mmsag_ros.live.results import NodeCounts

# This process's rclpy contexts and the node process share the test's own domain.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ros_domain")]


def test_a_fast_replay_drops_frames_and_accounts_for_every_one(dataset, bundle, tmp_path):
    bag = tmp_path / "bag"
    make_bag(dataset, bag, compressed=True, fps=FPS, start_ns=START_NS)
    # The node classifies at most 2 batches a second, the replay sends 10 frames in 4 ms: it
    # must drop, however fast the machine is.
    params = tmp_path / "capped.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"max_rate_hz": 2.0}}}))
    run = replay_through_sorter(bag, bundle, backend="onnxruntime", rate=500.0, params_file=params)
    check_accounting(run)
    assert 0 < len(run.labels) < run.sent == NUM_FRAMES
    assert run.node.dropped + run.not_received > 0


def _write_bag_with_bad_frames(path: Path) -> list[int]:
    """rgb8 frames 200 ms apart on /cam, undecodable ones between them on /cam_bad.

    Each camera ends with a frame nothing newer can overwrite, so the node always gets the
    last good and the last bad frame however busy it is. Returns the good stamps.
    """
    store = mmsag_typestore()
    types = store.types
    good = []
    with bag_writer(path) as writer:
        cameras = {
            name: writer.add_connection(f"/{name}/image_raw", IMAGE_TYPE, typestore=store)
            for name in ("cam", "cam_bad")
        }
        for index in range(7):
            stamp_ns = START_NS + index * 200_000_000
            sec, nanosec = divmod(stamp_ns, 1_000_000_000)
            camera = "cam_bad" if index % 2 else "cam"
            header = types["std_msgs/msg/Header"](
                stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                frame_id=camera,
            )
            pixels = np.full((6, 8, 3), 40 * index, np.uint8).reshape(-1)
            encoding = "rgb8"
            if index % 2:  # too few bytes, or an encoding the node does not take
                pixels, encoding = (pixels[:100], "rgb8") if index % 4 == 1 else (pixels, "32FC1")
            else:
                good.append(stamp_ns)
            image = types[IMAGE_TYPE](
                header=header, height=6, width=8, encoding=encoding, is_bigendian=0, step=24,
                data=pixels,
            )  # fmt: skip
            writer.write(cameras[camera], stamp_ns, store.serialize_cdr(image, IMAGE_TYPE))
    return good


def test_bad_frames_are_rejected_counted_and_the_node_keeps_labelling(bundle, tmp_path):
    bag = tmp_path / "bad"
    good = _write_bag_with_bad_frames(bag)
    run = replay_through_sorter(bag, bundle, backend="onnxruntime")
    check_accounting(run)
    assert run.sent == 7
    # Only good frames are labelled, in order, up to the last one (sent after every bad one).
    stamps = [label.stamp_ns for label in run.labels]
    assert stamps == sorted(stamps) and set(stamps) <= set(good) and stamps[-1] == good[-1]
    # At least the last bad frame reached the node, and the node refused it.
    assert 1 <= run.node.rejected <= 3


def _sorter_children() -> list[str]:
    """Command lines of this process's children that run a sorter node."""
    children = []
    for task in Path("/proc/self/task").iterdir():
        try:
            pids = (task / "children").read_text().split()
        except OSError:
            continue  # a thread that ended meanwhile (its children, if any, are re-parented)
        for pid in pids:
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue  # exited meanwhile
            if "mmsag_ros.ros.sorter" in command:
                children.append(command)
    return children


def test_truncated_and_corrupt_bags_fail_in_one_line_and_leave_no_node(dataset, bundle, tmp_path):
    truncated = tmp_path / "truncated"
    make_bag(dataset, truncated, compressed=True, fps=FPS, start_ns=START_NS)
    (storage,) = truncated.glob("*.mcap")
    storage.write_bytes(storage.read_bytes()[: storage.stat().st_size // 2])
    with pytest.raises(BagError, match="cannot open bag"):
        evaluate_bag_live(truncated, bundle, backend="onnxruntime")

    # Intact index, damaged frames in the middle: found during the replay, with the node up.
    corrupt = tmp_path / "corrupt"
    make_bag(dataset, corrupt, compressed=True, fps=50.0, start_ns=START_NS)
    (storage,) = corrupt.glob("*.mcap")
    data = bytearray(storage.read_bytes())
    start, end = int(0.4 * len(data)), int(0.6 * len(data))
    data[start:end] = bytes(end - start)
    storage.write_bytes(bytes(data))
    with pytest.raises(BagError, match="corrupt or truncated"):
        replay_through_sorter(corrupt, bundle, backend="onnxruntime")
    assert _sorter_children() == []


def test_node_counts_read_the_diagnostics_ledger():
    values = {"received": "9", "published": "4", "dropped": "2", "rejected": "1"}
    ledger = NodeCounts.from_values(
        {**values, "failed": "1", "in_flight": "1", "last_failure": "CUDA error"}
    )
    assert (ledger.failed, ledger.in_flight, ledger.last_failure) == (1, 1, "CUDA error")
    # A node from before the failed and in_flight keys: what its totals leave is in flight.
    assert NodeCounts.from_values(values) == NodeCounts(9, 4, 2, 1, failed=0, in_flight=2)
    with pytest.raises(KeyError):
        NodeCounts.from_values({"received": "9"})
