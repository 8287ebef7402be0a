"""``mmsag eval``: score a checkpoint on a dataset split; table, JSON report, PR curves.

On VOC data with boxes the attention peaks are scored as locations as well.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mmsag eval``."""
    parser.add_argument("--checkpoint", type=Path, required=True, help="best.pt or last.pt")
    parser.add_argument("--data", type=Path, required=True, help="VOC root, COCO JSON or CSV")
    parser.add_argument("--format", choices=["voc", "coco", "csv"], default="voc")
    parser.add_argument("--split", default="test", help="VOC split to score (default: test)")
    parser.add_argument("--image-root", type=Path, help="image folder of COCO/CSV data")
    parser.add_argument("--level", choices=["category", "supercategory"], default="category")
    parser.add_argument("--out", type=Path, help="report folder (default: next to checkpoint)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the per-class table."""
    from mmsag_ros.data.voc import read_voc_boxes
    from mmsag_ros.errors import DatasetError
    from mmsag_ros.model.checkpoint import load_checkpoint
    from mmsag_ros.train.checkpoint_eval import evaluate_checkpoint, write_evaluation
    from mmsag_ros.train.config import DataConfig
    from mmsag_ros.train.dataset_splits import load_split
    from mmsag_ros.train.run import resolve_device

    checkpoint = load_checkpoint(args.checkpoint)
    data = DataConfig(
        format=args.format,
        path=str(args.data),
        image_root=str(args.image_root) if args.image_root else None,
        level=args.level,
    )
    split = load_split(data, args.split, labels=checkpoint.labels)
    # VOC annotations with boxes: the attention peaks are scored as locations too.
    # Their absence or a malformed box costs only the pointing scores, never the report.
    boxes = None
    if args.format == "voc":
        try:
            boxes = read_voc_boxes(args.data, [sample.image_id for sample in split.samples])
        except DatasetError as err:
            print(f"pointing scores skipped: {err}", file=sys.stderr)
    evaluation = evaluate_checkpoint(
        checkpoint,
        split,
        batch_size=args.batch_size,
        device=resolve_device(args.device),
        workers=args.workers,
        boxes=boxes,
    )
    out_dir = args.out or args.checkpoint.parent / f"eval_{args.split}"
    print(write_evaluation(evaluation, checkpoint, out_dir))
    print(f"report: {out_dir / 'report.json'}  PR curves: {out_dir / 'pr_curves.png'}")
    if evaluation.pointing is not None:
        print(f"peaks and boxes drawn: {out_dir / 'pointing_examples.png'}")
    return 0
