"""Writing a dataset split into a rosbag2: camera frames plus ground-truth ``MultiLabel``.

Each image becomes one ``sensor_msgs/Image`` (rgb8) or ``CompressedImage`` (JPEG) and one
``mmsag_ros/MultiLabel`` on the ground-truth topic with the same header, ``frame_id``
included: bags of several cameras merged into one keep each camera's truth apart. Ground-truth
convention: ``scores`` hold the target (1.0 positive, 0.0 negative, NaN for an ignored entry
such as a VOC "difficult" object), ``decisions`` are the positives, ``thresholds`` are 0.5 and
``model_id`` is ``ground-truth``. The bag's ``metadata.yaml`` also records which image each
frame shows (``custom_data``, :data:`~mmsag_ros.bag.frames.FRAME_SOURCES_KEY`), so an evaluation
can score the attention peaks against the dataset's boxes.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mmsag_ros.bag.frames import (
    COMPRESSED_TYPE,
    FRAME_SOURCES_KEY,
    IMAGE_TYPE,
    MULTILABEL_TYPE,
)
from mmsag_ros.bag.typestore import mmsag_typestore
from mmsag_ros.bag.writer import STORAGES, writing_bag
from mmsag_ros.errors import BagError, ConfigError, DatasetError

__all__ = [
    "GT_MODEL_ID",
    "GT_TOPIC",
    "MakeSummary",
    "default_image_topic",
    "ground_truth_scores",
    "header_message",
    "make_bag",
]

_log = logging.getLogger(__name__)

GT_TOPIC = "/waste/labels_gt"
GT_MODEL_ID = "ground-truth"
_NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class MakeSummary:
    """What :func:`make_bag` wrote.

    Attributes:
        path: The bag folder.
        frames: Frames written (as many ground-truth messages).
        image_topic: Topic of the frames.
        gt_topic: Topic of the ground truth.
        start_ns: Stamp of the first frame, integer nanoseconds.
        period_ns: Time between frames, integer nanoseconds.
    """

    path: Path
    frames: int
    image_topic: str
    gt_topic: str
    start_ns: int
    period_ns: int


def default_image_topic(compressed: bool) -> str:
    """``/camera/image_raw``, with ``/compressed`` appended for JPEG frames (image_transport)."""
    return "/camera/image_raw/compressed" if compressed else "/camera/image_raw"


def ground_truth_scores(target: np.ndarray) -> np.ndarray:
    """Targets (1, 0, -1) as ground-truth scores (1.0, 0.0, NaN), float32."""
    scores = np.asarray(target, dtype=np.float32).copy()
    scores[scores < 0] = np.nan
    return scores


def _read_rgb(path: Path) -> np.ndarray:
    data = np.fromfile(path, dtype=np.uint8) if path.is_file() else np.zeros(0, np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DatasetError(f"image {path} is missing or cannot be decoded; fix the dataset")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def header_message(types: dict[str, Any], stamp_ns: int, frame_id: str) -> Any:
    """A rosbags ``std_msgs/Header`` for an integer-nanosecond stamp."""
    sec, nanosec = divmod(stamp_ns, _NS_PER_S)
    stamp = types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
    return types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def _frame_message(types: dict[str, Any], rgb: np.ndarray, header: Any, compressed: bool) -> Any:
    if compressed:
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            raise BagError(f"JPEG encoding of a {rgb.shape} frame failed")
        return types[COMPRESSED_TYPE](header=header, format="jpeg", data=jpeg.reshape(-1))
    height, width = rgb.shape[:2]
    return types[IMAGE_TYPE](
        header=header,
        height=height,
        width=width,
        encoding="rgb8",
        is_bigendian=0,
        step=width * 3,
        data=np.ascontiguousarray(rgb).reshape(-1),
    )


def _gt_message(
    types: dict[str, Any], header: Any, names: list[str], target: np.ndarray, size: tuple[int, int]
) -> Any:
    return types[MULTILABEL_TYPE](
        header=header,
        model_id=GT_MODEL_ID,
        class_names=names,
        scores=ground_truth_scores(target),
        decisions=np.asarray(target == 1, dtype=bool),
        thresholds=np.full(len(names), 0.5, np.float32),
        peaks=[],
        instances=[],
        inference_time_ms=0.0,
        latency_ms=0.0,
        image_width=size[0],
        image_height=size[1],
        contract_version=types[MULTILABEL_TYPE].CONTRACT_VERSION,
    )


def _check_options(out: Path, storage: str, fps: float) -> None:
    if storage not in STORAGES:
        raise ConfigError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
    if not fps > 0:
        raise ConfigError(f"fps must be positive, got {fps}")
    if out.exists():
        raise BagError(f"{out} already exists; choose a new --out path or delete it first")


def make_bag(
    data: Path,
    out: Path,
    *,
    split: str = "test",
    storage: str = "mcap",
    fps: float = 10.0,
    compressed: bool = False,
    topic: str | None = None,
    gt_topic: str = GT_TOPIC,
    frame_id: str = "camera_optical_frame",
    start_ns: int | None = None,
) -> MakeSummary:
    """Write a VOC-layout split as a rosbag2 of frames and ground-truth labels.

    Args:
        data: VOC root (MLKW, the synthetic scenes, ...).
        out: New bag folder; an existing path is refused.
        split: Image-set name to write.
        storage: ``mcap`` or ``sqlite3`` (.db3).
        fps: Frame rate the stamps (and recording times) are spaced at.
        compressed: JPEG ``CompressedImage`` instead of rgb8 ``Image``.
        topic: Frame topic; default :func:`default_image_topic`.
        gt_topic: Ground-truth topic.
        frame_id: ``header.frame_id`` of every message.
        start_ns: Stamp of the first frame; None uses the current time.

    Raises:
        ConfigError: Unknown storage or a non-positive fps.
        DatasetError: The split cannot be read or an image cannot be decoded.
        BagError: ``out`` exists or the bag cannot be written.
    """
    from mmsag_ros.data.voc import read_voc

    out = Path(out)
    _check_options(out, storage, fps)
    split_data = read_voc(Path(data), split)
    if not split_data.samples:
        raise DatasetError(f"split {split!r} of {data} has no images; nothing to write")
    store = mmsag_typestore()
    types = store.types
    names = list(split_data.labels.names)
    image_topic = topic or default_image_topic(compressed)
    image_type = COMPRESSED_TYPE if compressed else IMAGE_TYPE
    period_ns = round(_NS_PER_S / fps)
    first_ns = time.time_ns() if start_ns is None else int(start_ns)
    with writing_bag(out, storage) as writer:
        frames = writer.add_connection(image_topic, image_type, typestore=store)
        labels = writer.add_connection(gt_topic, MULTILABEL_TYPE, typestore=store)
        sources = []
        for index, sample in enumerate(split_data.samples):
            stamp_ns = first_ns + index * period_ns
            header = header_message(types, stamp_ns, frame_id)
            rgb = _read_rgb(sample.image_path)
            frame = _frame_message(types, rgb, header, compressed)
            size = (rgb.shape[1], rgb.shape[0])
            gt = _gt_message(types, header, names, sample.target, size)
            writer.write(frames, stamp_ns, store.serialize_cdr(frame, image_type))
            writer.write(labels, stamp_ns, store.serialize_cdr(gt, MULTILABEL_TYPE))
            sources.append((stamp_ns, sample.image_id))
        record = {"voc": str(Path(data).resolve()), "split": split, "frames": sources}
        writer.set_custom_data(FRAME_SOURCES_KEY, json.dumps(record))
    _log.info("wrote %d frames to %s (%s, %s)", len(split_data), out, storage, image_topic)
    return MakeSummary(out, len(split_data), image_topic, gt_topic, first_ns, period_ns)
