"""Capture bags to a labelling folder: the frames as image files, the model's decisions as CSV.

``mmsag bag export-frames`` reads bags holding camera frames and the node's ``MultiLabel``
for each (the sorter's capture bags, or any recording with labels), pairs them by header stamp
and ``frame_id``, and writes::

    OUT/images/<bag>_<n>.jpg|png   the frame (compressed frames as recorded, raw ones as PNG)
    OUT/labels.csv                 filename,<class>... the model's decisions as 1/0
    OUT/model_scores.csv           filename,stamp_ns,frame_id,model_id,<class>... its scores

``labels.csv`` is the CSV layout ``mmsag train`` reads (``data.format=csv``,
``data.path=OUT/labels.csv``, ``data.image_root=OUT/images``): correct the rows that are
wrong (1 positive, 0 negative, -1 unsure) and train on it.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2

from mmsag_ros.bag.csv_cells import text_cell
from mmsag_ros.bag.frames import (
    COMPRESSED_TYPE,
    MULTILABEL_TYPE,
    image_connections,
    open_bag,
    raw_messages,
    stamp_to_ns,
)
from mmsag_ros.camera.decode import decode_frame
from mmsag_ros.errors import BagError, ConfigError, ImageConversionError
from mmsag_ros.progress import progress_bar

__all__ = ["ExportSummary", "export_frames"]

_log = logging.getLogger(__name__)

_TO_BGR = {"rgb": cv2.COLOR_RGB2BGR, "rgba": cv2.COLOR_RGBA2BGR, "bgra": cv2.COLOR_BGRA2BGR}


@dataclass
class ExportSummary:
    """What ``export_frames`` wrote."""

    out: Path
    frames: int = 0
    without_label: int = 0
    class_names: tuple[str, ...] = ()
    # Frames that do not decode (corrupt, wrong encoding), skipped; the first reason.
    undecodable: int = 0
    first_undecodable: str = ""


def _labels_by_header(reader: Any, bag: Path, topic: str) -> dict[tuple[int, str], Any]:
    connections = [c for c in reader.connections if c.msgtype == MULTILABEL_TYPE]
    if topic:
        connections = [c for c in connections if c.topic == topic]
    labels = {}
    for connection, _, raw in raw_messages(reader, connections, bag):
        try:
            msg = reader.deserialize(raw, connection.msgtype)
        except Exception as err:  # rosbags' CDR decoder raises assorted errors on bad bytes
            _log.warning("%s: a label that cannot be deserialized is skipped (%s)", bag, err)
            continue
        labels.setdefault((stamp_to_ns(msg.header.stamp), msg.header.frame_id), msg)
    return labels


def export_frames(
    bags: Sequence[Path], out: Path, *, labels_topic: str = "/waste/labels", progress: bool = True
) -> ExportSummary:
    """Write the frames of ``bags`` and their labels as a labelling folder (see module doc).

    Raises:
        ConfigError: ``out`` already holds a labels.csv.
        BagError: An unreadable bag, one without image topics or labels, labels of other
            classes than the first bag's.
    """
    out = Path(out)
    if (out / "labels.csv").exists():
        raise ConfigError(f"{out / 'labels.csv'} exists; export into a new folder")
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    summary = ExportSummary(out=out)
    rows: list[list[Any]] = []
    scores: list[list[Any]] = []
    for bag in progress_bar(
        [Path(b) for b in bags], desc="export frames", unit="bag", enabled=progress
    ):
        with open_bag(bag) as reader:
            labels = _labels_by_header(reader, bag, labels_topic)
            if not labels:
                raise BagError(f"bag {bag} has no {MULTILABEL_TYPE} on {labels_topic}")
            cameras = image_connections(reader, bag)
            for connection, _, raw in raw_messages(reader, cameras, bag):
                try:
                    msg = reader.deserialize(raw, connection.msgtype)
                except Exception as err:  # rosbags' CDR decoder: one bad frame costs only itself
                    summary.undecodable += 1
                    summary.first_undecodable = summary.first_undecodable or f"{bag}: {err}"
                    continue
                label = labels.get((stamp_to_ns(msg.header.stamp), msg.header.frame_id))
                if label is None:
                    summary.without_label += 1
                    continue
                names = tuple(label.class_names)
                if not summary.class_names:
                    summary.class_names = names
                elif names != summary.class_names:
                    raise BagError(
                        f"bag {bag}: labels of classes {list(names)}, earlier ones of "
                        f"{list(summary.class_names)}; export each model's bags on their own"
                    )
                name = f"{bag.name}_{summary.frames:05d}"
                try:
                    image, order = decode_frame(msg)
                except ImageConversionError as err:  # one bad frame costs only itself
                    summary.undecodable += 1
                    summary.first_undecodable = summary.first_undecodable or f"{bag}: {err}"
                    continue
                if connection.msgtype == COMPRESSED_TYPE and "png" not in msg.format.lower():
                    (images / f"{name}.jpg").write_bytes(bytes(msg.data))  # as the camera sent it
                    filename = f"{name}.jpg"
                else:
                    if order in _TO_BGR:
                        image = cv2.cvtColor(image, _TO_BGR[order])
                    filename = f"{name}.png"
                    cv2.imwrite(str(images / filename), image)
                rows.append([filename, *(int(d) for d in label.decisions)])
                scores.append(
                    [filename, stamp_to_ns(msg.header.stamp), text_cell(msg.header.frame_id),
                     text_cell(label.model_id), *(f"{v:.6f}" for v in label.scores)]
                )  # fmt: skip
                summary.frames += 1
    if not rows:
        raise BagError(f"no frame of {', '.join(map(str, bags))} has a label to export")
    with (out / "labels.csv").open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["filename", *summary.class_names])
        writer.writerows(rows)
    with (out / "model_scores.csv").open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["filename", "stamp_ns", "frame_id", "model_id", *summary.class_names])
        writer.writerows(scores)
    return summary
