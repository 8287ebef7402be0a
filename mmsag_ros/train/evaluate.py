"""``mmsag eval``: score a checkpoint on a split with the full metric family.

Thresholds come from the checkpoint (calibrated on validation during training); the evaluated
split never tunes anything. Scores are independent sigmoids, preprocessed by the same function
the node uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from mmsag_ros.data.dataset import AnnotatedSplit, MultiLabelImageDataset, check_images
from mmsag_ros.data.transforms import EvalTransform
from mmsag_ros.errors import DatasetError
from mmsag_ros.metrics import MetricReport, MultiLabelMeter
from mmsag_ros.model.checkpoint import Checkpoint
from mmsag_ros.train.report import format_report_table, plot_pr_curves

__all__ = ["Evaluation", "evaluate_checkpoint", "write_evaluation"]


@dataclass(frozen=True)
class Evaluation:
    """Scores, targets and the metric report of one checkpoint on one split."""

    split_name: str
    model_name: str
    report: MetricReport
    thresholds: np.ndarray
    scores: np.ndarray
    targets: np.ndarray


@torch.no_grad()
def evaluate_checkpoint(
    checkpoint: Checkpoint,
    split: AnnotatedSplit,
    *,
    batch_size: int = 32,
    device: torch.device | None = None,
    workers: int = 2,
    progress: bool = True,
) -> Evaluation:
    """Run the checkpoint's model over every image of ``split``."""
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
    for images, targets, indices in tqdm(loader, desc=f"eval {split.name}", disable=not progress):
        logits = model(images.to(device))["logits"]
        meter.update(torch.sigmoid(logits.float()).cpu(), targets, indices)
    thresholds = np.asarray(checkpoint.thresholds, dtype=np.float64)
    return Evaluation(
        split_name=split.name,
        model_name=checkpoint.model_name,
        report=meter.compute(thresholds),
        thresholds=thresholds,
        scores=meter.scores,
        targets=meter.targets,
    )


def write_evaluation(evaluation: Evaluation, checkpoint: Checkpoint, out_dir: Path) -> str:
    """Write ``report.json`` and ``pr_curves.png`` into ``out_dir``; return the terminal table."""
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
    (out_dir / "report.json").write_text(json.dumps(document, indent=2))
    plot_pr_curves(
        evaluation.scores, evaluation.targets, checkpoint.labels, out_dir / "pr_curves.png"
    )
    return format_report_table(evaluation.report, checkpoint.labels)
