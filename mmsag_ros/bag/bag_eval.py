"""Evaluation on a rosbag: score every frame against ground truth matched by header.

:func:`evaluate_bag` runs the Classifier on the bag's frames in this process (offline).
:func:`mmsag_ros.live.live_eval.evaluate_bag_live` replays the bag through a real ``sorter`` node
process and scores the labels it publishes, adding latency percentiles and
the frames the node dropped under its latest-frame policy.

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
import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from mmsag_ros.bag.csv_cells import read_cell, text_cell
from mmsag_ros.bag.frames import (
    FrameRecord,
    ReadCounts,
    iter_frames,
    iter_ground_truth,
    read_frame_sources,
)
from mmsag_ros.bundle.labels import LabelSet
from mmsag_ros.errors import BagError, DatasetError, ImageConversionError
from mmsag_ros.metrics import MetricReport, MultiLabelMeter
from mmsag_ros.pointing import PointingMeter, PointingReport

if TYPE_CHECKING:
    from mmsag_ros.data.voc import VocAnnotation

__all__ = [
    "BagBoxes",
    "BagEvaluation",
    "GroundTruth",
    "LiveReplay",
    "evaluate_bag",
    "read_gt_csv",
    "write_bag_evaluation",
]

_log = logging.getLogger(__name__)


class LiveReplay(Protocol):
    """What a replay through a node process adds to an evaluation (see mmsag_ros.live)."""

    labels: Sequence[Any]
    latencies_ms: np.ndarray

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures of the replay."""
        ...

    def report_lines(self) -> list[str]:
        """The replay's lines of the text report."""
        ...


@dataclass
class BagEvaluation:
    """Result of :func:`evaluate_bag`.

    Attributes:
        bag: The evaluated bag.
        model_id: The bundle's model id.
        labels: The bundle's label set (column order of ``scores`` and ``targets``).
        report: Metrics at the classifier's thresholds.
        stamps_ns: (N,) header stamps of the scored frames, in bag order.
        frame_ids: (N,) their ``header.frame_id``.
        scores: (N, C) classifier scores.
        targets: (N, C) matched targets (1, 0, -1).
        frames: Image messages read (offline) or sent to the node (live).
        unmatched: Frames (labels, live) without ground truth for their stamp and frame_id.
        unreadable: Reason -> count of frames or ground-truth messages that could not be used.
        live: The replay through the node, for a live evaluation.
        pointing: Localisation scores of the peaks, when the frames' boxes are known.
        examples: Frames kept for ``pointing_examples.png``: (image path, annotation, C x 3
            peaks, per-class instance peaks, decisions).
        pointing_skipped: Why the peaks were not scored, when boxes were looked for in vain.
    """

    bag: Path
    model_id: str
    labels: LabelSet
    report: MetricReport
    stamps_ns: np.ndarray
    frame_ids: list[str]
    scores: np.ndarray
    targets: np.ndarray
    frames: int
    unmatched: int
    unreadable: Counter[str] = field(default_factory=Counter)
    live: LiveReplay | None = None
    pointing: PointingReport | None = None
    examples: list[tuple[Path, Any, np.ndarray, Any, np.ndarray]] = field(default_factory=list)
    pointing_skipped: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (metrics, counts, class names, live replay figures)."""
        summary = {
            "bag": str(self.bag),
            "mode": "offline" if self.live is None else "live",
            "model_id": self.model_id,
            "classes": list(self.labels.names),
            "frames": self.frames,
            "scored": int(self.scores.shape[0]),
            "unmatched": self.unmatched,
            "unreadable": dict(self.unreadable),
            "metrics": self.report.to_dict(),
        }
        if self.live is not None:
            summary["live"] = self.live.summary()
        if self.pointing is not None:
            summary["pointing"] = self.pointing.to_dict()
        elif self.pointing_skipped:
            summary["pointing_skipped"] = self.pointing_skipped
        return summary


#: Frames drawn in ``pointing_examples.png``.
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


def _load_truth(
    bag: Path, labels: LabelSet, gt_topic: str, gt_csv: Path | None, counts: ReadCounts
) -> GroundTruth:
    if gt_csv is not None:
        return read_gt_csv(gt_csv, labels)
    return _gt_from_bag(bag, gt_topic, labels, counts)


def _unmatched_hint(truth: GroundTruth, frame_ids: set[str]) -> str:
    """Why frames found no ground truth, when their frame_ids are not the truth's."""
    named = truth.frame_ids()
    if not named or frame_ids <= named:
        return "check the stamps of --gt-topic/--gt-csv"
    return (
        f"frames have frame_ids {sorted(frame_ids)}, the ground truth {sorted(named)}: check "
        f"--gt-topic/--gt-csv (leave frame_id empty for truth that holds for every camera)"
    )


def _score(
    scores: list[np.ndarray], targets: list[np.ndarray], thresholds: np.ndarray
) -> tuple[MultiLabelMeter, MetricReport]:
    meter = MultiLabelMeter(thresholds.size)
    meter.update(np.stack(scores), np.stack(targets))
    return meter, meter.compute(thresholds)


class _Scorer:
    """Batches decoded frames through the classifier; a frame it refuses is counted, not fatal."""

    def __init__(
        self,
        classifier: Any,
        batch_size: int,
        unreadable: Counter[str],
        boxes: BagBoxes | None = None,
    ) -> None:
        self.classifier = classifier
        self.boxes = boxes
        self.batch_size = batch_size
        self.unreadable = unreadable
        self.pending: list[tuple[FrameRecord, np.ndarray]] = []
        self.stamps: list[int] = []
        self.frame_ids: list[str] = []
        self.scores: list[np.ndarray] = []
        self.targets: list[np.ndarray] = []

    def add(self, frame: FrameRecord, target: np.ndarray) -> None:
        self.pending.append((frame, target))
        if len(self.pending) >= self.batch_size:
            self.flush()

    def _keep(self, frame: FrameRecord, target: np.ndarray, prediction: Any) -> None:
        self.stamps.append(frame.stamp_ns)
        self.frame_ids.append(frame.frame_id)
        self.scores.append(np.asarray(prediction.scores, dtype=np.float64))
        self.targets.append(target)
        if self.boxes is not None:
            self.boxes.score(
                frame.stamp_ns, prediction.peaks, prediction.instances, prediction.decisions
            )

    def flush(self) -> None:
        batch, self.pending = self.pending, []
        if not batch:
            return
        results = self.classifier.classify_each(
            [f.image for f, _ in batch], color_orders=[f.color_order for f, _ in batch]
        )
        for (frame, target), result in zip(batch, results, strict=True):
            if isinstance(result, ImageConversionError):
                self.unreadable[result.reason] += 1
            else:
                self._keep(frame, target, result)


def evaluate_bag(
    bag: Path,
    bundle: Path | Any,
    *,
    gt_topic: str = "/waste/labels_gt",
    gt_csv: Path | None = None,
    image_topics: list[str] | None = None,
    backend: str = "auto",
    device: str = "cpu",
    precision: str = "fp32",
    batch_size: int = 8,
    boxes_root: Path | None = None,
) -> BagEvaluation:
    """Classify every frame of a bag and score it against ground truth matched by header.

    Args:
        bag: rosbag2 folder or storage file.
        bundle: Bundle directory or loaded Bundle.
        gt_topic: Topic of ground-truth ``MultiLabel`` messages (ignored with ``gt_csv``).
        gt_csv: A ``stamp_ns[,frame_id],<class>...`` table instead of in-bag ground truth.
        image_topics: Frame topics to score; None scores all Image/CompressedImage topics.
        backend: Classifier backend (``auto``, ``onnxruntime``, ``torch``, ``tensorrt``).
        device: Classifier device.
        precision: The bundle variant to run (``fp32``, ``fp16``, ``int8``).
        batch_size: Frames per inference call.
        boxes_root: The VOC dataset holding the frames' boxes, instead of the one the bag
            names (see :func:`load_bag_boxes`).

    Raises:
        BagError: Unreadable bag, no image topic, no ground truth, no frame matching it;
            ``boxes_root`` for a bag that does not say which image each frame is.
        DatasetError: Ground-truth classes differ from the bundle's, malformed CSV,
            unreadable annotations under ``boxes_root``.
    """
    from mmsag_ros.runtime.classifier import Classifier

    bag = Path(bag)
    classifier = Classifier(
        bundle, backend=backend, device=device, precision=precision, max_batch=batch_size
    )
    labels = classifier.labels
    gt_counts, frame_counts = ReadCounts(), ReadCounts()
    truth = _load_truth(bag, labels, gt_topic, gt_csv, gt_counts)
    boxes, skipped = load_bag_boxes(bag, labels, boxes_root)
    unreadable: Counter[str] = Counter()
    scorer = _Scorer(classifier, batch_size, unreadable, boxes)
    unmatched = 0
    unmatched_ids: set[str] = set()
    for frame in iter_frames(bag, topics=image_topics, counts=frame_counts):
        if frame.error is not None:
            continue
        target = truth.get(frame.stamp_ns, frame.frame_id)
        if target is None:
            unmatched += 1
            unmatched_ids.add(frame.frame_id)
            continue
        scorer.add(frame, target)
    scorer.flush()
    unreadable.update(frame_counts.unreadable)
    unreadable.update(gt_counts.unreadable)
    if not scorer.scores:
        raise BagError(
            f"no frame of {bag} could be scored: {frame_counts.messages} image messages, "
            f"{unmatched} without ground truth for their stamp and frame_id, "
            f"{sum(unreadable.values())} unreadable; {_unmatched_hint(truth, unmatched_ids)}"
        )
    meter, report = _score(scorer.scores, scorer.targets, classifier.thresholds)
    if unreadable:
        _log.warning(
            "%s: %d unusable messages: %s", bag, sum(unreadable.values()), dict(unreadable)
        )
    return BagEvaluation(
        bag=bag,
        model_id=classifier.model_id,
        labels=labels,
        report=report,
        stamps_ns=np.array(scorer.stamps, dtype=np.int64),
        frame_ids=scorer.frame_ids,
        scores=meter.scores,
        targets=meter.targets,
        frames=frame_counts.messages,
        unmatched=unmatched,
        unreadable=unreadable,
        **_pointing_fields(boxes, skipped),
    )


def _pointing_fields(boxes: BagBoxes | None, skipped: str) -> dict[str, Any]:
    report = boxes.report() if boxes is not None else None
    if boxes is not None and report is None:
        skipped = "the bundle has no attention output, so there are no peaks to score"
    return {
        "pointing": report,
        "examples": boxes.examples if boxes is not None else [],
        "pointing_skipped": skipped,
    }


def write_bag_evaluation(evaluation: BagEvaluation, out_dir: Path) -> str:
    """Write the report files of an evaluation; return the text report.

    Files: ``report.json``, ``scores.csv``, ``pr_curves.png``; for a live evaluation
    ``latency_histogram.png``; with pointing scores ``pointing.json`` and
    ``pointing_examples.png``.
    """
    from mmsag_ros.report import (
        format_report_table,
        plot_latency_histogram,
        plot_pr_curves,
        write_pointing_report,
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(evaluation.to_dict(), indent=2) + "\n")
    with (out_dir / "scores.csv").open("w", newline="") as stream:
        writer = csv.writer(stream)
        # The ground-truth table's layout, so the two line up row by row.
        writer.writerow(["stamp_ns", "frame_id", *evaluation.labels.names])
        rows = zip(evaluation.stamps_ns, evaluation.frame_ids, evaluation.scores, strict=True)
        for stamp, frame_id, row in rows:
            writer.writerow([int(stamp), text_cell(frame_id), *(f"{v:.6f}" for v in row)])
    plot_pr_curves(
        evaluation.scores, evaluation.targets, evaluation.labels, out_dir / "pr_curves.png"
    )
    table = format_report_table(evaluation.report, evaluation.labels)
    lines = [
        f"bag {evaluation.bag}: model {evaluation.model_id}",
        f"{evaluation.frames} image messages, {evaluation.scores.shape[0]} scored, "
        f"{evaluation.unmatched} without ground truth, "
        f"{sum(evaluation.unreadable.values())} unusable",
    ]
    lines += [f"  unusable x{count}: {reason}" for reason, count in evaluation.unreadable.items()]
    run = evaluation.live
    if run is not None:
        lines += run.report_lines()
        if run.labels:
            plot_latency_histogram(
                run.latencies_ms,
                out_dir / "latency_histogram.png",
                title=f"{evaluation.model_id}: frame published -> label received",
            )
    sections = [*lines, "", table]
    if evaluation.pointing is not None:
        table = write_pointing_report(
            evaluation.pointing, evaluation.examples, evaluation.labels, out_dir
        )
        sections += ["", table]
    elif evaluation.pointing_skipped:
        sections += ["", f"pointing scores skipped: {evaluation.pointing_skipped}"]
    return "\n".join(sections)
