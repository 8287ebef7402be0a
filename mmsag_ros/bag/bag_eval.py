"""Evaluation on a rosbag: score every frame against ground truth matched by header.

:func:`evaluate_bag` runs the Classifier on the bag's frames in this process (offline).
:func:`mmsag_ros.live.live_eval.evaluate_bag_live` replays the bag through a real ``sorter`` node
process and scores the labels it publishes, adding latency percentiles and
the frames the node dropped under its latest-frame policy.

Ground truth and the frames' boxes: :mod:`~mmsag_ros.bag.truth`. Metrics are the ``mmsag eval``
family at the bundle's thresholds.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mmsag_ros.bag.csv_cells import text_cell
from mmsag_ros.bag.frames import (
    FrameRecord,
    ReadCounts,
    iter_frames,
)
from mmsag_ros.bag.truth import (
    BagBoxes,
    load_bag_boxes,
    load_truth,
    unmatched_hint,
)
from mmsag_ros.bundle.labels import LabelSet
from mmsag_ros.errors import BagError, ImageConversionError
from mmsag_ros.metrics import MetricReport, MultiLabelMeter
from mmsag_ros.pointing import PointingReport

__all__ = [
    "BagEvaluation",
    "LiveReplay",
    "evaluate_bag",
    "pointing_fields",
    "score_labels",
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


def score_labels(
    scores: list[np.ndarray], targets: list[np.ndarray], thresholds: np.ndarray
) -> tuple[MultiLabelMeter, MetricReport]:
    """The metrics of matched scores and targets at ``thresholds`` (offline or live alike)."""
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
    truth = load_truth(bag, labels, gt_topic, gt_csv, gt_counts)
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
            f"{sum(unreadable.values())} unreadable; {unmatched_hint(truth, unmatched_ids)}"
        )
    meter, report = score_labels(scorer.scores, scorer.targets, classifier.thresholds)
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
        **pointing_fields(boxes, skipped),
    )


def pointing_fields(boxes: BagBoxes | None, skipped: str) -> dict[str, Any]:
    """The pointing part of a BagEvaluation: scores and examples, or why there are none."""
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
