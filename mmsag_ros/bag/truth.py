"""What a bag's frames should be labelled, and where their objects are.

Ground truth comes from ``MultiLabel`` messages in the bag (as written by ``mmsag bag make``,
with the frame's header) or from a CSV table keyed by stamp and, optionally, frame_id::

    stamp_ns,frame_id,waste_bag,metal,...
    1700000000000000000,cam_left,1,0,...
    1700000000000000000,cam_right,0,1,...

with 1 positive, 0 negative, -1 ignore. Its classes are matched to the bundle's by name, so
their order may differ. A frame is scored against the ground truth of its ``(stamp,
frame_id)``: hardware-triggered cameras share stamps, so the stamp alone would score one
camera against another's truth. Ground truth without a frame_id (a table without the
``frame_id`` column, an empty cell, an empty ``header.frame_id``) stands for every camera at its
stamp that has no truth of its own. A repeated ``(stamp, frame_id)`` is an error in a table; in
a bag the first message counts. Metrics are the ``mmsag eval`` family at the bundle's
thresholds.

Where a bag says which dataset image each frame shows (bags of ``mmsag bag make`` do) and that
dataset has boxes, the attention peaks are scored as locations too
(:class:`~mmsag_ros.pointing.PointingMeter`): offline those the classifier computes, live the
``peaks`` and ``instances`` of the node's own ``MultiLabel`` messages.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmsag_ros.bag.csv_cells import read_cell
from mmsag_ros.bag.frames import ReadCounts, iter_ground_truth, read_frame_sources
from mmsag_ros.bundle.labels import LabelSet
from mmsag_ros.errors import BagError, DatasetError
from mmsag_ros.pointing import PointingMeter, PointingReport

if TYPE_CHECKING:
    from mmsag_ros.data.voc import VocAnnotation

__all__ = ["BagBoxes", "GroundTruth", "load_bag_boxes", "load_truth", "read_gt_csv"]

_log = logging.getLogger(__name__)

_EXAMPLES = 8


@dataclass
class BagBoxes:
    """The boxes of a bag's frames, by header stamp, and the peaks scored against them."""

    annotations: dict[int, VocAnnotation]
    images: dict[int, Path]
    meter: PointingMeter
    examples: list[tuple[Path, Any, np.ndarray, Any, np.ndarray]] = field(default_factory=list)

    def score(self, stamp_ns: int, peaks: Any, instances: Any, decisions: np.ndarray) -> None:
        """Score one frame's peaks (C x 3) and instance peaks; frames without boxes pass."""
        annotation = self.annotations.get(stamp_ns)
        if annotation is None or peaks is None or len(peaks) == 0:
            return
        peaks = np.asarray(peaks, np.float32).reshape(-1, 3)
        if not instances:  # a node with max_instances 0: the class peak is its one point
            instances = peaks[:, None]
        instances = [np.asarray(p, np.float32).reshape(-1, 3) for p in instances]
        self.meter.update(annotation, peaks, instances)
        if len(self.examples) < _EXAMPLES:
            self.examples.append(
                (self.images[stamp_ns], annotation, peaks, instances, np.asarray(decisions))
            )

    def report(self) -> PointingReport | None:
        """The scores, or None when no frame had both boxes and peaks."""
        return self.meter.compute() if self.meter.images else None


def load_bag_boxes(
    bag: Path, labels: LabelSet, voc_root: Path | None = None
) -> tuple[BagBoxes | None, str]:
    """The boxes of the images a bag's frames show; (None, why) when there are none.

    The bag must say which image each frame is (:func:`~mmsag_ros.bag.frames.
    read_frame_sources`); ``voc_root`` replaces the dataset folder it names (a dataset that
    moved, or another copy of it).

    Raises:
        BagError: ``voc_root`` is given but the bag does not say which image each frame is.
        DatasetError: ``voc_root`` is given and its annotations cannot be read.
    """
    from mmsag_ros.data.voc import find_voc_dir, read_voc_boxes

    sources = read_frame_sources(Path(bag))
    if sources is None:
        if voc_root is not None:
            raise BagError(
                f"bag {bag} does not say which dataset image each frame shows (only bags "
                "written by `mmsag bag make` do), so its frames cannot be matched to boxes"
            )
        return None, "the bag does not say which dataset image each frame shows"
    root = Path(voc_root) if voc_root is not None else sources.voc_root
    try:
        by_id = read_voc_boxes(root, sorted(set(sources.image_ids.values())))
        images = find_voc_dir(root) / "JPEGImages"
    except DatasetError as err:
        if voc_root is not None:
            raise
        return None, f"cannot read the boxes of {root}: {err}"
    if by_id is None:
        return None, f"{root} has no boxes for some of the bag's images"
    boxes = BagBoxes(
        annotations={stamp: by_id[i] for stamp, i in sources.image_ids.items()},
        images={stamp: images / f"{i}.jpg" for stamp, i in sources.image_ids.items()},
        meter=PointingMeter(labels.names),
    )
    return boxes, ""


def _reorder(names: tuple[str, ...], labels: LabelSet, where: str) -> np.ndarray:
    """Column index in ``names`` of each bundle class; DatasetError when classes differ."""
    missing = [n for n in labels.names if n not in names]
    extra = [n for n in names if n not in labels.names]
    if missing or extra:
        raise DatasetError(
            f"ground truth in {where} has classes {list(names)}, the bundle {list(labels.names)}"
            f" (missing {missing}, unknown {extra}); use a bundle trained on these classes"
        )
    return np.array([names.index(n) for n in labels.names])


@dataclass
class GroundTruth:
    """Targets in the bundle's class order, by header stamp and frame_id.

    Attributes:
        by_frame: ``(stamp_ns, frame_id)`` -> target of that camera's frame.
        by_stamp: ``stamp_ns`` -> target of every frame at that stamp without one of its own
            (ground truth that names no frame_id).
    """

    by_frame: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)
    by_stamp: dict[int, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.by_frame) + len(self.by_stamp)

    def get(self, stamp_ns: int, frame_id: str) -> np.ndarray | None:
        """The target of the frame ``(stamp_ns, frame_id)``, or None."""
        target = self.by_frame.get((stamp_ns, frame_id))
        return self.by_stamp.get(stamp_ns) if target is None else target

    def frame_ids(self) -> set[str]:
        """The frame_ids truth is given for (empty when all of it names none)."""
        return {frame_id for _, frame_id in self.by_frame}


def read_gt_csv(path: Path, labels: LabelSet) -> GroundTruth:
    """Read a ``stamp_ns[,frame_id],<class>...`` table into ground truth in bundle order.

    Without the ``frame_id`` column, or with an empty cell, a row stands for every camera at
    its stamp (see :class:`GroundTruth`).

    Raises:
        DatasetError: Missing file or header, a stamp that is not an integer, values other
            than 1/0/-1, a repeated (stamp, frame_id), classes that differ from the bundle's.
    """
    path = Path(path)
    try:
        with path.open(encoding="utf-8-sig", newline="") as stream:
            # Lines counted with the blank ones, so an error names the line an editor shows.
            rows = [
                (line, row)
                for line, row in enumerate(csv.reader(stream), start=1)
                if any(cell.strip() for cell in row)
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f"cannot read ground-truth table {path}: {err}") from err
    header = [cell.strip() for cell in rows[0][1]] if rows else []
    if not header or header[0] != "stamp_ns":
        raise DatasetError(
            f"{path}: the first line must be 'stamp_ns,[frame_id,]<class1>,<class2>,...'"
        )
    first_class = 2 if header[1:2] == ["frame_id"] else 1
    order = _reorder(tuple(header[first_class:]), labels, str(path))
    truth = GroundTruth()
    seen: dict[tuple[int, str], int] = {}
    for line, row in rows[1:]:
        try:
            stamp = int(row[0])
            values = np.array([float(v) for v in row[first_class:]], dtype=np.float32)
        except ValueError as err:
            raise DatasetError(f"{path}, line {line}: {err}; expected integers") from err
        if values.size != order.size or not np.isin(values, (-1.0, 0.0, 1.0)).all():
            raise DatasetError(
                f"{path}, line {line}: need {order.size} values of 1, 0 or -1, "
                f"got {row[first_class:]}"
            )
        frame_id = read_cell(row[1].strip()) if first_class == 2 else ""
        if (stamp, frame_id) in seen:
            which = f"frame_id {frame_id!r}" if frame_id else "no frame_id"
            raise DatasetError(
                f"{path}, line {line}: stamp {stamp} with {which} is already on line "
                f"{seen[stamp, frame_id]}"
            )
        seen[stamp, frame_id] = line
        if frame_id:
            truth.by_frame[stamp, frame_id] = values[order]
        else:
            truth.by_stamp[stamp] = values[order]
    return truth


def _gt_from_bag(bag: Path, topic: str, labels: LabelSet, counts: ReadCounts) -> GroundTruth:
    truth = GroundTruth()
    orders: dict[tuple[str, ...], np.ndarray] = {}
    for record in iter_ground_truth(bag, topic=topic, counts=counts):
        if record.class_names not in orders:
            orders[record.class_names] = _reorder(record.class_names, labels, f"{bag}:{topic}")
        target = record.target[orders[record.class_names]]
        if record.frame_id:
            truth.by_frame.setdefault((record.stamp_ns, record.frame_id), target)
        else:
            truth.by_stamp.setdefault(record.stamp_ns, target)
    if not truth:
        raise BagError(f"bag {bag} has no readable ground truth on {topic}")
    return truth


def load_truth(
    bag: Path, labels: LabelSet, gt_topic: str, gt_csv: Path | None, counts: ReadCounts
) -> GroundTruth:
    """The truth of a bag's frames: from ``gt_csv`` when given, else from ``gt_topic``."""
    if gt_csv is not None:
        return read_gt_csv(gt_csv, labels)
    return _gt_from_bag(bag, gt_topic, labels, counts)


def unmatched_hint(truth: GroundTruth, frame_ids: set[str]) -> str:
    """Why frames found no ground truth, when their frame_ids are not the truth's."""
    named = truth.frame_ids()
    if not named or frame_ids <= named:
        return "check the stamps of --gt-topic/--gt-csv"
    return (
        f"frames have frame_ids {sorted(frame_ids)}, the ground truth {sorted(named)}: check "
        f"--gt-topic/--gt-csv (leave frame_id empty for truth that holds for every camera)"
    )
