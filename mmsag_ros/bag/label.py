"""Labelling a recording that has no ground truth yet: what the model says about every frame.

The first thing an integrator does with a new camera recording is look at what the model
makes of it. :func:`label_bag` classifies every frame of a bag's image topics with the
Classifier (the node's own preprocessing and postprocessing), and :func:`write_bag_labelling`
writes:

- ``predictions.csv``: one row per frame, ``stamp_ns,frame_id,<class>...`` with the model's
  decisions as 1/0. It is the ground-truth table layout of ``mmsag bag eval --gt-csv``: correct
  the rows that are wrong and evaluate the next model against it.
- ``scores.csv``: the same rows with the scores, and the topic.
- ``labels/``: a rosbag2 (mcap) of ``MultiLabel`` on ``/waste/labels``, one per frame with its
  header, as the node would have published them (``ros2 bag play`` it beside the recording).
- ``contact_sheet.png``: frames spread over the recording with their scores, decided classes'
  attention and peaks drawn.
"""

from __future__ import annotations

import csv
import math
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mmsag_ros.bag.csv_cells import text_cell
from mmsag_ros.bag.frames import (
    MULTILABEL_TYPE,
    FrameRecord,
    ReadCounts,
    image_connections,
    iter_frames,
    open_bag,
)
from mmsag_ros.bundle.labels import LabelSet
from mmsag_ros.errors import BagError, ImageConversionError
from mmsag_ros.progress import progress_bar

__all__ = ["BagLabelling", "FrameLabel", "label_bag", "write_bag_labelling"]

LABELS_TOPIC = "/waste/labels"
SHEET_FRAMES = 24
_SHEET_COLUMNS = 4
_SHEET_TILE_WIDTH = 360


@dataclass(frozen=True)
class FrameLabel:
    """The model's answer for one frame of the recording.

    Attributes:
        topic: The frame's topic.
        log_time_ns: When the bag recorded it.
        stamp_ns: Its ``header.stamp`` in integer nanoseconds.
        frame_id: Its ``header.frame_id``.
        scores: (C,) scores in model order.
        decisions: (C,) decisions at the bundle's thresholds.
        thresholds: (C,) those thresholds.
        peaks: (C, 3) attention peaks ``(x, y, strength)``, (0, 3) without attention.
        instances: Per class, (k, 3) instance points; empty without.
        image_size: ``(width, height)`` of the frame in pixels.
    """

    topic: str
    log_time_ns: int
    stamp_ns: int
    frame_id: str
    scores: np.ndarray
    decisions: np.ndarray
    thresholds: np.ndarray
    peaks: np.ndarray
    instances: tuple[np.ndarray, ...] = ()
    image_size: tuple[int, int] = (0, 0)


@dataclass
class BagLabelling:
    """Every frame of a recording as the model labels it.

    Attributes:
        bag: The recording.
        model_id: The model that labelled it.
        labels: Its classes.
        frames: One :class:`FrameLabel` per labelled frame, in recording order.
        messages: Image messages read.
        unreadable: Reason -> messages that could not be decoded or classified.
        sheet: The contact sheet (BGR), or None when no frame was labelled.
    """

    bag: Path
    model_id: str
    labels: LabelSet
    frames: list[FrameLabel] = field(default_factory=list)
    messages: int = 0
    unreadable: Counter[str] = field(default_factory=Counter)
    sheet: np.ndarray | None = None

    def summary(self) -> str:
        """A few lines: counts, and how often each class was decided."""
        lines = [
            f"bag {self.bag}: no ground truth, labelled by {self.model_id}",
            f"{self.messages} image messages, {len(self.frames)} labelled, "
            f"{sum(self.unreadable.values())} unusable",
        ]
        lines += [f"  unusable x{count}: {reason}" for reason, count in self.unreadable.items()]
        if self.frames:
            decided = np.stack([f.decisions for f in self.frames]).mean(axis=0)
            mean = np.stack([f.scores for f in self.frames]).mean(axis=0)
            width = max(len(n) for n in self.labels.display_names)
            lines += ["", f"{'class':{width}s}  decided in  mean score"]
            for name, rate, score in zip(self.labels.display_names, decided, mean, strict=True):
                lines.append(f"{name:{width}s}  {100 * rate:8.1f} %  {score:10.3f}")
        return "\n".join(lines)


def _sheet_positions(bag: Path, topics: Sequence[str] | None) -> tuple[int, set[int]]:
    """The bag's frame count, and which frames (in reading order) the contact sheet shows."""
    with open_bag(bag) as reader:
        total = sum(c.msgcount for c in image_connections(reader, bag, topics))
    count = min(SHEET_FRAMES, total)
    return total, {round(i * (total - 1) / max(count - 1, 1)) for i in range(count)}


def _tile(image: np.ndarray, caption: str) -> np.ndarray:
    height = round(image.shape[0] * _SHEET_TILE_WIDTH / image.shape[1])
    tile = cv2.resize(image, (_SHEET_TILE_WIDTH, max(height, 1)), interpolation=cv2.INTER_AREA)
    band = np.full((22, _SHEET_TILE_WIDTH, 3), 32, np.uint8)
    cv2.putText(band, caption, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
    return np.concatenate([band, tile])


def _contact_sheet(tiles: list[np.ndarray]) -> np.ndarray:
    height = max(t.shape[0] for t in tiles)
    padded = [np.pad(t, ((0, height - t.shape[0]), (0, 0), (0, 0))) for t in tiles]
    columns = min(_SHEET_COLUMNS, len(padded))
    rows = math.ceil(len(padded) / columns)
    padded += [np.zeros_like(padded[0])] * (rows * columns - len(padded))
    return np.concatenate(
        [np.concatenate(padded[r * columns : (r + 1) * columns], axis=1) for r in range(rows)]
    )


def label_bag(
    bag: Path,
    bundle: Path | Any,
    *,
    image_topics: Sequence[str] | None = None,
    backend: str = "auto",
    device: str = "cpu",
    precision: str = "fp32",
    batch_size: int = 8,
    progress: bool = True,
) -> BagLabelling:
    """Classify every frame of ``bag``'s image topics; no ground truth needed.

    Raises:
        BagError: Unreadable bag, no image topic (the message names the bag's image topics
            and counts the others), no frame that could be labelled.
    """
    from mmsag_ros.runtime.classifier import Classifier
    from mmsag_ros.runtime.overlay import draw_overlay

    bag = Path(bag)
    total, sheet_at = _sheet_positions(bag, image_topics)
    counts = ReadCounts()
    with Classifier(
        bundle, backend=backend, device=device, precision=precision, max_batch=batch_size
    ) as classifier:
        result = BagLabelling(bag=bag, model_id=classifier.model_id, labels=classifier.labels)
        names = classifier.labels.display_names
        tiles: list[np.ndarray] = []
        pending: list[tuple[int, FrameRecord]] = []

        def keep(index: int, frame: FrameRecord, prediction: Any) -> None:
            peaks = prediction.peaks
            result.frames.append(
                FrameLabel(
                    topic=frame.topic,
                    log_time_ns=frame.log_time_ns,
                    stamp_ns=frame.stamp_ns,
                    frame_id=frame.frame_id,
                    scores=np.asarray(prediction.scores, np.float32),
                    decisions=np.asarray(prediction.decisions, bool),
                    thresholds=np.asarray(prediction.thresholds, np.float32),
                    peaks=np.zeros((0, 3), np.float32) if peaks is None else peaks,
                    instances=tuple(prediction.instances or ()),
                    image_size=prediction.source_size,
                )
            )
            if index in sheet_at:
                overlay = draw_overlay(
                    frame.image, prediction, names=names, spec=classifier.spec,
                    color_order=frame.color_order,
                )  # fmt: skip
                tiles.append(_tile(overlay, f"#{index + 1} {frame.frame_id} {frame.stamp_ns}"))

        def flush() -> None:
            batch = pending[:]
            pending.clear()
            if not batch:
                return
            predictions = classifier.classify_each(
                [f.image for _, f in batch], color_orders=[f.color_order for _, f in batch]
            )  # one bad frame: the others still get labels
            for (index, frame), prediction in zip(batch, predictions, strict=True):
                if isinstance(prediction, ImageConversionError):
                    result.unreadable[prediction.reason] += 1
                else:
                    keep(index, frame, prediction)

        frames = iter_frames(bag, topics=image_topics, counts=counts)
        bar = progress_bar(frames, desc="labelling", unit="frame", total=total, enabled=progress)
        for index, frame in enumerate(bar):
            if frame.error is not None:
                continue
            pending.append((index, frame))
            if len(pending) >= batch_size:
                flush()
        flush()
    result.messages = counts.messages
    result.unreadable.update(counts.unreadable)
    if not result.frames:
        raise BagError(
            f"no frame of {bag} could be labelled: {counts.messages} image messages, "
            f"{sum(result.unreadable.values())} unusable ({dict(result.unreadable)})"
        )
    result.sheet = _contact_sheet(tiles) if tiles else None
    return result


def _write_labels_bag(labelling: BagLabelling, path: Path) -> None:
    from mmsag_ros.bag.make import header_message
    from mmsag_ros.bag.typestore import mmsag_typestore
    from mmsag_ros.bag.writer import writing_bag

    store = mmsag_typestore()
    types = store.types
    point = types["mmsag_ros/msg/AttentionPeak"]
    group = types["mmsag_ros/msg/InstancePeaks"]

    def points(array: np.ndarray) -> list[Any]:
        return [point(x=float(x), y=float(y), strength=float(s)) for x, y, s in array]

    with writing_bag(path, what="labels bag") as writer:
        connection = writer.add_connection(LABELS_TOPIC, MULTILABEL_TYPE, typestore=store)
        for frame in labelling.frames:
            message = types[MULTILABEL_TYPE](
                header=header_message(types, frame.stamp_ns, frame.frame_id),
                model_id=labelling.model_id,
                class_names=list(labelling.labels.names),
                scores=frame.scores,
                decisions=frame.decisions,
                thresholds=frame.thresholds,
                peaks=points(frame.peaks),
                instances=[group(peaks=points(p)) for p in frame.instances],
                inference_time_ms=0.0,
                latency_ms=0.0,
                image_width=frame.image_size[0],
                image_height=frame.image_size[1],
                contract_version=types[MULTILABEL_TYPE].CONTRACT_VERSION,
            )
            raw = store.serialize_cdr(message, MULTILABEL_TYPE)
            writer.write(connection, frame.log_time_ns, raw)


def write_bag_labelling(labelling: BagLabelling, out_dir: Path) -> str:
    """Write ``predictions.csv``, ``scores.csv``, ``labels/`` and ``contact_sheet.png``.

    Returns the text summary. ``labels/`` is replaced if ``out_dir`` holds one already.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(labelling.labels.names)
    with (
        (out_dir / "predictions.csv").open("w", newline="") as decided,
        (out_dir / "scores.csv").open("w", newline="") as scored,
    ):
        decisions, scores = csv.writer(decided), csv.writer(scored)
        decisions.writerow(["stamp_ns", "frame_id", *names])
        scores.writerow(["stamp_ns", "frame_id", "topic", *names])
        for frame in labelling.frames:
            frame_id, topic = text_cell(frame.frame_id), text_cell(frame.topic)
            decisions.writerow([frame.stamp_ns, frame_id, *(int(d) for d in frame.decisions)])
            scores.writerow([frame.stamp_ns, frame_id, topic, *(f"{v:.6f}" for v in frame.scores)])
    labels_bag = out_dir / "labels"
    shutil.rmtree(labels_bag, ignore_errors=True)
    _write_labels_bag(labelling, labels_bag)
    if labelling.sheet is not None:
        cv2.imwrite(str(out_dir / "contact_sheet.png"), labelling.sheet)
    return labelling.summary()
