"""Bags shared by the offline and live evaluation tests, and the live tests' common checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rosbags.highlevel import AnyReader

from mmsag_ros.bag.make import make_bag
from mmsag_ros.bag.typestore import mmsag_typestore
from mmsag_ros.bag.writer import bag_writer
from mmsag_ros.bundle.labels import LabelSet
from mmsag_ros.data.voc import read_voc
from mmsag_ros.live.results import LiveRun

CAMERAS = ("cam_left", "cam_right")
# The live tests' synthetic bags (test_bag_live_*.py): frames, rate and first stamp.
START_NS = 1_700_000_000_000_000_000
NUM_FRAMES = 10
FPS = 5.0  # far below what the tiny model sustains, though a busy machine may still drop some


def two_camera_bag(datasets: dict[str, Path], path: Path, *, fps: float, start_ns: int) -> None:
    """One camera per dataset (same stamps, own frame_id and topic), each with its own truth.

    Hardware-triggered cameras look like this: every stamp appears once per camera, so only
    ``(stamp, frame_id)`` tells whose frame and whose ground truth a message is.
    """
    parts = []
    for camera, data in datasets.items():
        part = path.parent / f"{path.name}_{camera}"
        topic = f"/{camera}/image_raw/compressed"
        make_bag(data, part, compressed=True, fps=fps, start_ns=start_ns, topic=topic,
                 frame_id=camera)  # fmt: skip
        parts.append(part)
    store = mmsag_typestore()
    with (
        AnyReader(parts, default_typestore=store) as reader,
        bag_writer(path) as writer,
    ):
        out = {}
        for connection in reader.connections:
            if connection.topic not in out:  # both parts write ground truth on one topic
                out[connection.topic] = writer.add_connection(
                    connection.topic, connection.msgtype, typestore=store
                )
        for connection, timestamp, raw in reader.messages():
            writer.write(out[connection.topic], timestamp, raw)


def truth_by_frame(
    datasets: dict[str, Path], labels: LabelSet, *, fps: float, start_ns: int
) -> dict[tuple[int, str], np.ndarray]:
    """``(stamp_ns, frame_id) -> target`` (in ``labels`` order) of a :func:`two_camera_bag`.

    Checks that the cameras' truths differ, or a test could not tell them apart.
    """
    period_ns = round(1e9 / fps)
    truth = {
        (start_ns + index * period_ns, camera): target
        for camera, data in datasets.items()
        for index, target in enumerate(read_voc(data, "test", labels=labels).targets())
    }
    left, right = ({k[0]: v for k, v in truth.items() if k[1] == c} for c in CAMERAS)
    assert any(not np.array_equal(left[stamp], right[stamp]) for stamp in left)
    return truth


def check_accounting(run: LiveRun) -> None:
    """Every frame sent is labelled here or accounted for by the node, nothing in between.

    ``run.complete`` already means nothing was in flight and every published label arrived;
    this adds that the labels received are exactly those the node published, each matching a
    frame of this replay, and that the node saw no frame it was not sent.
    """
    node = run.node
    assert run.complete and run.stray_labels == 0
    assert run.sent == (
        len(run.labels) + node.dropped + node.rejected + node.failed + run.not_received
    )
