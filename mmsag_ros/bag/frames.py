"""Reading camera frames and ground truth out of rosbag2 files (.mcap or .db3).

Bags are opened with rosbags' ``AnyReader`` (no ROS needed); image messages are deserialized
from their raw CDR bytes and decoded by the sorter node's own
:func:`~mmsag_ros.camera.decode.decode_frame`, so offline evaluation sees exactly the arrays
the node would. A message that
cannot be turned into an image (size mismatch, corrupt JPEG, bad CDR) becomes a
:class:`FrameRecord` with an ``error`` instead of an exception; a bag that cannot be read at
all raises :class:`~mmsag_ros.errors.BagError`.
"""

from __future__ import annotations

import json
import logging
import struct
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmsag_ros.bag.typestore import mmsag_typestore
from mmsag_ros.camera.decode import decode_frame
from mmsag_ros.errors import BagError, ImageConversionError, MmsagError

__all__ = [
    "COMPRESSED_TYPE",
    "FRAME_SOURCES_KEY",
    "IMAGE_TYPE",
    "IMAGE_TYPES",
    "MULTILABEL_TYPE",
    "FrameRecord",
    "FrameSources",
    "GroundTruthRecord",
    "ReadCounts",
    "cdr_header",
    "image_connections",
    "iter_frames",
    "iter_ground_truth",
    "open_bag",
    "raw_messages",
    "read_frame_sources",
    "restamp_cdr",
    "stamp_to_ns",
    "summarize_topics",
]

_log = logging.getLogger(__name__)

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
MULTILABEL_TYPE = "mmsag_ros/msg/MultiLabel"
#: The rosbag2 ``custom_data`` key under which ``mmsag bag make`` says which image each frame is.
FRAME_SOURCES_KEY = "mmsag_ros.frame_sources"


@dataclass(frozen=True)
class FrameSources:
    """Which dataset image each frame of a bag shows (bags written by ``mmsag bag make``).

    Attributes:
        voc_root: The VOC root the frames were read from, as it was when the bag was made.
        split: The image set written.
        image_ids: ``header.stamp`` in nanoseconds -> image id in that split.
    """

    voc_root: Path
    split: str
    image_ids: dict[int, str]


def read_frame_sources(bag: Path) -> FrameSources | None:
    """The frame sources recorded in a bag's ``metadata.yaml``; None for any other bag.

    Raises:
        BagError: The record is there but malformed.
    """
    import yaml

    path = Path(bag)
    metadata = (path if path.is_dir() else path.parent) / "metadata.yaml"
    if not metadata.is_file():
        return None
    try:
        info = yaml.safe_load(metadata.read_text())["rosbag2_bagfile_information"]
        text = (info.get("custom_data") or {}).get(FRAME_SOURCES_KEY)
        if text is None:
            return None
        record = json.loads(text)
        return FrameSources(
            voc_root=Path(record["voc"]),
            split=str(record["split"]),
            image_ids={int(stamp): str(image_id) for stamp, image_id in record["frames"]},
        )
    except (yaml.YAMLError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise BagError(
            f"{metadata}: unreadable {FRAME_SOURCES_KEY} record ({err!r}); the bag's frames "
            "cannot be matched to their images"
        ) from err


def stamp_to_ns(stamp: Any) -> int:
    """A ``builtin_interfaces/Time`` (rosbags or rclpy) as integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def cdr_header(raw: bytes) -> tuple[int, str]:
    """``(stamp_ns, frame_id)`` of a serialized message that starts with a ``std_msgs/Header``.

    Reads only the first bytes of the CDR stream, so a replay can key a multi-megabyte frame
    without deserializing it.

    Raises:
        BagError: The bytes are too short or not CDR.
    """
    if len(raw) < 16 or raw[0] != 0 or raw[1] not in (0, 1):
        raise BagError("not a CDR message with a header")
    endian = "<" if raw[1] == 1 else ">"
    sec, nanosec, length = struct.unpack_from(f"{endian}iII", raw, 4)
    if length == 0 or 16 + length > len(raw):
        raise BagError("CDR header with a bad frame_id length")
    frame_id = bytes(raw[16 : 16 + length - 1]).decode("utf-8", errors="replace")
    return sec * 1_000_000_000 + nanosec, frame_id


def restamp_cdr(raw: bytes, stamp_ns: int) -> bytes:
    """A copy of a serialized message that starts with a ``std_msgs/Header``, restamped.

    Only the eight stamp bytes change, so a replay can restamp a multi-megabyte frame without
    deserializing it; ``frame_id`` and the payload stay as they were.

    Raises:
        BagError: The bytes are not CDR with a header (see :func:`cdr_header`).
    """
    cdr_header(raw)
    endian = "<" if raw[1] == 1 else ">"
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    stamp = struct.pack(f"{endian}iI", sec, nanosec)
    return b"".join((raw[:4], stamp, memoryview(raw)[12:]))


@dataclass
class ReadCounts:
    """What a pass over a bag saw: messages read and why some were unusable.

    Attributes:
        messages: Messages read on the selected topics.
        unreadable: Reason -> number of messages that could not be used.
    """

    messages: int = 0
    unreadable: Counter[str] = field(default_factory=Counter)

    @property
    def num_unreadable(self) -> int:
        """Total messages that could not be used."""
        return sum(self.unreadable.values())


@dataclass(frozen=True)
class FrameRecord:
    """One camera message of a bag, decoded when possible.

    Attributes:
        topic: Topic it was recorded on.
        msgtype: ``sensor_msgs/msg/Image`` or ``sensor_msgs/msg/CompressedImage``.
        log_time_ns: Recording time in the bag, integer nanoseconds.
        stamp_ns: ``header.stamp`` in integer nanoseconds (0 when the message is unreadable).
        frame_id: ``header.frame_id``.
        image: uint8 H x W (x C) array, None when ``error`` is set.
        color_order: Colour order of ``image`` for the classifier (``rgb``, ``bgr`` ...).
        error: Why the message could not be decoded, else None.
    """

    topic: str
    msgtype: str
    log_time_ns: int
    stamp_ns: int
    frame_id: str
    image: np.ndarray | None
    color_order: str = ""
    error: str | None = None


@dataclass(frozen=True)
class GroundTruthRecord:
    """One ground-truth ``MultiLabel`` message.

    Attributes:
        stamp_ns: ``header.stamp`` in integer nanoseconds (that of the labelled frame).
        frame_id: ``header.frame_id``.
        class_names: Class names in the message's order.
        target: float32 targets in that order: 1 positive, 0 negative, -1 ignore (NaN score).
    """

    stamp_ns: int
    frame_id: str
    class_names: tuple[str, ...]
    target: np.ndarray


def _check_path(bag: Path) -> Path:
    path = Path(bag)
    if not path.exists():
        raise BagError(f"bag {path} does not exist; pass a rosbag2 folder or .mcap/.db3 file")
    return path


@contextmanager
def open_bag(bag: Path) -> Iterator[Any]:
    """Open a rosbag2 folder (or a single .mcap/.db3 file) with rosbags' AnyReader.

    Raises:
        BagError: Missing path, unreadable metadata, truncated or corrupt storage.
    """
    from rosbags.highlevel import AnyReader

    path = _check_path(bag)
    reader = AnyReader([path], default_typestore=mmsag_typestore())
    try:
        reader.open()
    except Exception as err:  # rosbags raises several unrelated error classes here
        raise BagError(f"cannot open bag {path}: {err}; is it a complete rosbag2?") from err
    try:
        yield reader
    finally:
        try:
            reader.close()
        except Exception as err:  # a storage that failed mid-read may fail again on close
            _log.debug("closing %s failed: %s", path, err)


def raw_messages(
    reader: Any, connections: list[Any], bag: Path
) -> Iterator[tuple[Any, int, bytes]]:
    """``(connection, log_time_ns, raw)`` of ``connections``; storage failures as BagError.

    A storage that ends early without an error (zeroed records inside an MCAP chunk read as
    its end) is caught too: every connection must yield as many messages as the bag's index
    says it holds.
    """
    if not connections:
        return  # rosbags reads every connection when given none
    iterator = reader.messages(connections=connections)
    read = {id(c): 0 for c in connections}
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            break
        except MmsagError:
            raise
        except Exception as err:  # truncated chunks, bad sqlite pages, CRC mismatches
            raise BagError(f"bag {bag} is corrupt or truncated: {err}") from err
        read[id(item[0])] += 1
        yield item
    short = [
        f"{c.topic}: {read[id(c)]} of {c.msgcount}"
        for c in connections
        if c.msgcount and read[id(c)] < c.msgcount
    ]
    if short:
        raise BagError(
            f"bag {bag} is corrupt or truncated: its index lists more messages than could be "
            f"read ({'; '.join(short)})"
        )


def summarize_topics(connections: Sequence[Any], examples: int = 5) -> str:
    """A bag's image and MultiLabel topics by name and type, every other topic only counted.

    A recording from a real robot has dozens of topics (tf, odometry, lidar, ...); an error
    that names them all on one line hides the few that matter.
    """
    by_topic = {c.topic: c.msgtype for c in connections}
    images = sorted(t for t, m in by_topic.items() if m in IMAGE_TYPES)
    labels = sorted(t for t, m in by_topic.items() if m == MULTILABEL_TYPE)
    others = sorted(set(by_topic) - set(images) - set(labels))
    named = ", ".join(f"{t} ({by_topic[t].rsplit('/', 1)[-1]})" for t in images) or "none"
    parts = [f"image topics: {named}"]
    if labels:
        parts.append(f"MultiLabel topics: {', '.join(labels)}")
    if others:
        shown = f" (e.g. {', '.join(others[:examples])})" if not images else ""
        parts.append(f"{len(others)} other topic{'s' if len(others) != 1 else ''}{shown}")
    return "; ".join(parts)


def image_connections(reader: Any, bag: Path, topics: Sequence[str] | None = None) -> list[Any]:
    """The reader's Image/CompressedImage connections, restricted to ``topics`` if given.

    Raises:
        BagError: There is none (among ``topics``); the message lists the bag's topics.
    """
    found = [c for c in reader.connections if c.msgtype in IMAGE_TYPES]
    if topics:
        found = [c for c in found if c.topic in set(topics)]
    if not found:
        wanted = f" among {', '.join(topics)}" if topics else ""
        raise BagError(
            f"bag {bag} has no sensor_msgs/Image or CompressedImage topic{wanted}; "
            f"{summarize_topics(reader.connections)}"
        )
    return found


def _decode(reader: Any, raw: bytes, msgtype: str) -> tuple[Any, np.ndarray, str]:
    try:
        msg = reader.deserialize(raw, msgtype)
    except Exception as err:  # rosbags' CDR decoder raises assorted errors on bad bytes
        # One reason for every such frame (the decoder's text names byte offsets), details logged.
        _log.debug("cannot deserialize %s: %s", msgtype, err)
        raise ImageConversionError(f"cannot deserialize {msgtype}; corrupt CDR") from err
    image, order = decode_frame(msg)
    return msg, image, order


def iter_frames(
    bag: Path,
    *,
    topics: Sequence[str] | None = None,
    counts: ReadCounts | None = None,
) -> Iterator[FrameRecord]:
    """Yield every camera frame of a bag in recording order.

    Args:
        bag: rosbag2 folder or storage file.
        topics: Image/CompressedImage topics to read; None reads all of them.
        counts: Filled with messages read and reasons for unusable ones.

    Raises:
        BagError: The bag cannot be read, or it has no Image/CompressedImage topic (among
            ``topics`` when given).
    """
    counts = counts if counts is not None else ReadCounts()
    with open_bag(bag) as reader:
        connections = image_connections(reader, Path(bag), topics)
        for connection, log_time_ns, raw in raw_messages(reader, connections, Path(bag)):
            counts.messages += 1
            try:
                msg, image, order = _decode(reader, raw, connection.msgtype)
            except ImageConversionError as err:
                counts.unreadable[err.reason] += 1
                _log.debug("%s at %d: %s", connection.topic, log_time_ns, err)
                yield FrameRecord(
                    connection.topic, connection.msgtype, int(log_time_ns), 0, "", None,
                    error=str(err),
                )  # fmt: skip
                continue
            yield FrameRecord(
                topic=connection.topic,
                msgtype=connection.msgtype,
                log_time_ns=int(log_time_ns),
                stamp_ns=stamp_to_ns(msg.header.stamp),
                frame_id=msg.header.frame_id,
                image=image,
                color_order=order,
            )


def _target_of(msg: Any) -> np.ndarray:
    scores = np.asarray(msg.scores, dtype=np.float32)
    target = np.where(scores >= 0.5, 1.0, 0.0).astype(np.float32)
    target[np.isnan(scores)] = -1.0
    return target


def iter_ground_truth(
    bag: Path,
    *,
    topic: str = "/waste/labels_gt",
    counts: ReadCounts | None = None,
) -> Iterator[GroundTruthRecord]:
    """Yield the ground-truth ``MultiLabel`` messages of ``topic``.

    A ground-truth score of 1 is a positive, 0 a negative and NaN an ignored entry (see
    :func:`mmsag_ros.bag.make.make_bag`). Messages that cannot be deserialized or whose arrays
    disagree in length are counted in ``counts`` and skipped.

    Raises:
        BagError: The bag cannot be read or holds no MultiLabel messages on ``topic``.
    """
    counts = counts if counts is not None else ReadCounts()
    with open_bag(bag) as reader:
        connections = [
            c for c in reader.connections if c.topic == topic and c.msgtype == MULTILABEL_TYPE
        ]
        if not connections:
            raise BagError(
                f"bag {bag} has no ground truth: no {MULTILABEL_TYPE} on {topic}; "
                f"{summarize_topics(reader.connections)}. Pass --gt-topic or --gt-csv"
            )
        for connection, _, raw in raw_messages(reader, connections, Path(bag)):
            counts.messages += 1
            try:
                msg = reader.deserialize(raw, connection.msgtype)
            except Exception as err:  # rosbags' CDR decoder raises assorted errors
                counts.unreadable[f"cannot deserialize ground truth: {err}"] += 1
                continue
            if len(msg.scores) != len(msg.class_names):
                counts.unreadable[
                    "ground truth with scores and class_names of different length"
                ] += 1
                continue
            yield GroundTruthRecord(
                stamp_to_ns(msg.header.stamp),
                msg.header.frame_id,
                tuple(msg.class_names),
                _target_of(msg),
            )
