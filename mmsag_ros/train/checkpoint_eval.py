"""``mmsag eval``: score a checkpoint on a split with the full metric family.

Thresholds come from the checkpoint (calibrated on validation during training); the evaluated
split never tunes anything. Scores are independent sigmoids, preprocessed by the same function
the node uses. When the split has boxes (VOC annotations), the attention peaks are scored as
locations too (:mod:`mmsag_ros.pointing`), with a grid of examples drawn.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from mmsag_ros.bundle.labels import LabelSet
from mmsag_ros.data.dataset import AnnotatedSplit, MultiLabelImageDataset, check_images
from mmsag_ros.data.transforms import EvalTransform
from mmsag_ros.data.voc import VocAnnotation
from mmsag_ros.errors import DatasetError
from mmsag_ros.metrics import MetricReport, MultiLabelMeter
from mmsag_ros.model.checkpoint import Checkpoint
from mmsag_ros.pointing import PointingMeter, PointingReport, attention_peaks, instance_peaks
from mmsag_ros.progress import progress_bar
from mmsag_ros.report import format_report_table, plot_pr_curves, write_pointing_report

__all__ = [
    "Evaluation",
    "PointingExample",
    "evaluate_checkpoint",
    "write_evaluation",
    "write_pointing",
]

#: Images drawn in ``pointing_examples.png``.
EXAMPLE_IMAGES = 12


@dataclass(frozen=True)
class PointingExample:
    """One image of the examples grid: its boxes, peaks, instance peaks and decisions."""

    image_path: Path
    annotation: VocAnnotation
    peaks: np.ndarray
    instances: tuple[np.ndarray, ...]
    decisions: np.ndarray


@dataclass(frozen=True)
class Evaluation:
    """Scores, targets and the metric report of one checkpoint on one split."""

    split_name: str
    model_name: str
    report: MetricReport
    thresholds: np.ndarray
    scores: np.ndarray
    targets: np.ndarray
    pointing: PointingReport | None = None
    examples: tuple[PointingExample, ...] = field(default=())


@torch.no_grad()
def evaluate_checkpoint(
    checkpoint: Checkpoint,
    split: AnnotatedSplit,
    *,
    batch_size: int = 32,
    device: torch.device | None = None,
    workers: int = 2,
    progress: bool = True,
    boxes: Mapping[str, VocAnnotation] | None = None,
) -> Evaluation:
    """Run the checkpoint's model over every image of ``split``.

    With ``boxes`` (image id -> annotation, e.g. from
    :func:`~mmsag_ros.data.voc.read_voc_boxes`) and a model with attention maps, the peaks
    are scored as locations and the first images kept as drawn examples.
    """
    if split.labels.names != checkpoint.labels.names:
        raise DatasetError(
            f"the data's classes {list(split.labels.names)} differ from the checkpoint's"
            f" {list(checkpoint.labels.names)}"
        )
    check_images(split)
    device = device or torch.device("cpu")
    model = checkpoint.build_model().to(device)
    dataset = MultiLabelImageDataset(split, EvalTransform(checkpoint.spec))
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    meter = MultiLabelMeter()
    thresholds = np.asarray(checkpoint.thresholds, dtype=np.float64)
    pointing = PointingMeter(checkpoint.labels.names) if boxes is not None else None
    examples: list[PointingExample] = []
    bar = progress_bar(loader, desc=f"eval {split.name}", enabled=progress)
    for images, targets, indices in bar:
        outputs = model(images.to(device))
        scores = torch.sigmoid(outputs["logits"].float()).cpu()
        meter.update(scores, targets, indices)
        if pointing is not None and "attention" in outputs:
            maps = outputs["attention"].float().cpu().numpy()
            for row, index in enumerate(indices.tolist()):
                sample = split.samples[index]
                annotation = boxes[sample.image_id]
                size = (annotation.width, annotation.height)
                peaks = attention_peaks(maps[row], source_size=size, spec=checkpoint.spec)
                instances = instance_peaks(maps[row], source_size=size, spec=checkpoint.spec)
                pointing.update(annotation, peaks, instances)
                if len(examples) < EXAMPLE_IMAGES:
                    decisions = scores[row].numpy() >= thresholds
                    examples.append(
                        PointingExample(
                            sample.image_path, annotation, peaks, tuple(instances), decisions
                        )
                    )
    return Evaluation(
        split_name=split.name,
        model_name=checkpoint.model_name,
        report=meter.compute(thresholds),
        thresholds=thresholds,
        scores=meter.scores,
        targets=meter.targets,
        pointing=pointing.compute() if pointing is not None and pointing.images else None,
        examples=tuple(examples),
    )


def write_evaluation(evaluation: Evaluation, checkpoint: Checkpoint, out_dir: Path) -> str:
    """Write ``report.json`` and ``pr_curves.png`` into ``out_dir``; return the terminal table.

    With pointing scores, ``report.json`` holds them under ``pointing`` too, the table shows
    them and :func:`write_pointing` writes their files.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    document = {
        "model": evaluation.model_name,
        "checkpoint": str(checkpoint.path),
        "split": evaluation.split_name,
        "classes": list(checkpoint.labels.names),
        "thresholds": evaluation.thresholds.tolist(),
        "metrics": evaluation.report.to_dict(),
    }
    if evaluation.pointing is not None:
        document["pointing"] = evaluation.pointing.to_dict()
    (out_dir / "report.json").write_text(json.dumps(document, indent=2))
    plot_pr_curves(
        evaluation.scores, evaluation.targets, checkpoint.labels, out_dir / "pr_curves.png"
    )
    table = format_report_table(evaluation.report, checkpoint.labels)
    pointing = write_pointing(evaluation, checkpoint.labels, out_dir)
    return table if pointing is None else f"{table}\n{pointing}"


def write_pointing(evaluation: Evaluation, labels: LabelSet, out_dir: Path) -> str | None:
    """Write ``pointing.json`` and ``pointing_examples.png``; return the table (None: no boxes)."""
    if evaluation.pointing is None:
        return None
    examples = [
        (e.image_path, e.annotation, e.peaks, e.instances, e.decisions) for e in evaluation.examples
    ]
    return write_pointing_report(evaluation.pointing, examples, labels, out_dir)
