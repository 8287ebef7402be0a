"""Live evaluation: a bag replayed through a real ``sorter`` node process, its labels scored.

The same ground truth, matching and metrics as the offline :func:`mmsag_ros.bag.bag_eval.
evaluate_bag`, on the labels the node publishes (:func:`~mmsag_ros.live.replay.
replay_through_sorter`), with the replay's latency and frame accounting on top.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mmsag_ros.bag.bag_eval import BagEvaluation, pointing_fields, score_labels
from mmsag_ros.bag.frames import ReadCounts
from mmsag_ros.bag.truth import load_bag_boxes, load_truth, unmatched_hint
from mmsag_ros.bundle.manifest import load_bundle
from mmsag_ros.errors import BagError
from mmsag_ros.live.replay import replay_through_sorter
from mmsag_ros.live.results import LiveLabel

__all__ = ["evaluate_bag_live"]


def evaluate_bag_live(
    bag: Path,
    bundle: Path,
    *,
    gt_topic: str = "/waste/labels_gt",
    gt_csv: Path | None = None,
    image_topics: Sequence[str] | None = None,
    rate: float = 1.0,
    backend: str | None = None,
    device: str | None = None,
    precision: str | None = None,
    params_file: Path | None = None,
    record: Path | None = None,
    log_path: Path | None = None,
    on_label: Callable[[LiveLabel, np.ndarray | None], None] | None = None,
    stop: threading.Event | None = None,
    boxes_root: Path | None = None,
) -> BagEvaluation:
    """Replay a bag through a sorter node process and score its labels against ground truth.

    Args:
        bag: rosbag2 folder or storage file.
        bundle: Bundle directory the node loads.
        gt_topic: Topic of ground-truth ``MultiLabel`` messages (ignored with ``gt_csv``).
        gt_csv: A ``stamp_ns[,frame_id],<class>...`` table instead of in-bag ground truth.
        image_topics: Camera topics to replay; None replays all of them.
        rate: Replay speed factor; above what the node sustains, it drops frames.
        backend: The node's inference backend (None: the parameter file's, else ``auto``).
        device: The node's device (None: the parameter file's, else ``cpu``).
        precision: The node's bundle variant (None: the parameter file's, else ``fp32``).
        params_file: The cell's sorter parameter file, to replay with its settings.
        record: Also write the node's labels to this new bag.
        log_path: Keep the node's output in this file.
        on_label: Called with each label as it arrives and its target (None without one).
        stop: A ``threading.Event`` that ends the replay early.
        boxes_root: The VOC dataset holding the frames' boxes, instead of the one the bag
            names (see :func:`load_bag_boxes`).

    Raises:
        BagError: Unreadable bag, no ground truth, a node that fails to start, no label
            matching the ground truth.
        BundleError: A bundle that does not load.
        DatasetError: Ground-truth classes differ from the bundle's, malformed CSV.
    """
    bag = Path(bag)
    # Fail on a broken bundle or missing ground truth before any process starts.
    loaded = load_bundle(Path(bundle))
    if precision is not None:
        loaded.variant(precision)  # a missing variant fails here, not inside the node
    gt_counts = ReadCounts()
    truth = load_truth(bag, loaded.labels, gt_topic, gt_csv, gt_counts)
    boxes, skipped = load_bag_boxes(bag, loaded.labels, boxes_root)

    def announce(label: LiveLabel) -> None:
        if on_label is not None:
            on_label(label, truth.get(label.stamp_ns, label.frame_id))

    run = replay_through_sorter(
        bag,
        Path(bundle),
        topics=image_topics,
        rate=rate,
        backend=backend,
        device=device,
        precision=precision,
        params_file=params_file,
        record=record,
        log_path=log_path,
        on_label=announce,
        stop=stop,
    )
    stamps, frame_ids, scores, targets = [], [], [], []
    for label in run.labels:
        target = truth.get(label.stamp_ns, label.frame_id)
        if target is not None:
            stamps.append(label.stamp_ns)
            frame_ids.append(label.frame_id)
            scores.append(label.scores)
            targets.append(target)
            if boxes is not None:
                boxes.score(label.stamp_ns, label.peaks, label.instances, label.decisions)
    unreadable = Counter(gt_counts.unreadable)
    if run.node.rejected:
        unreadable["rejected by the sorter node (see its log)"] += run.node.rejected
    if not scores:
        raise BagError(
            f"no label of the sorter matched ground truth in {bag}: {run.sent} frames sent, "
            f"{len(run.labels)} labelled, {run.node.rejected} rejected, {run.node.failed} "
            f"failed, {run.not_received} never reached the node; "
            f"{unmatched_hint(truth, {label.frame_id for label in run.labels})}"
        )
    # The node's thresholds: a parameter file may have replaced the bundle's.
    meter, report = score_labels(scores, targets, run.labels[0].thresholds)
    return BagEvaluation(
        bag=bag,
        model_id=loaded.model_id,
        labels=loaded.labels,
        report=report,
        stamps_ns=np.array(stamps, dtype=np.int64),
        frame_ids=frame_ids,
        scores=meter.scores,
        targets=meter.targets,
        frames=run.sent,
        unmatched=len(run.labels) - len(scores),
        unreadable=unreadable,
        live=run,
        **pointing_fields(boxes, skipped),
    )
