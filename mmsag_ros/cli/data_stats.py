"""``mmsag data stats``: label statistics and the ML-GCN label graph of a dataset.

Reads annotations only (no image is opened), prints per-class counts, co-occurrence and the
thresholded label graph, and with ``--out`` writes ``stats.json`` and ``cooccurrence.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mmsag_ros.data.dataset import AnnotatedSplit

__all__ = ["add_arguments", "run"]

_FORMATS = ("voc", "coco", "csv")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mmsag data stats``."""
    parser.add_argument("--format", required=True, choices=_FORMATS, help="annotation format")
    parser.add_argument(
        "--path",
        required=True,
        type=Path,
        help="VOC root (holding VOCdevkit/VOC2007), COCO .json file or CSV file",
    )
    parser.add_argument("--split", default="trainval", help="VOC image set [trainval]")
    parser.add_argument(
        "--difficult",
        default="ignore",
        choices=("ignore", "positive", "negative"),
        help="VOC difficult entries count as ... [ignore]",
    )
    parser.add_argument(
        "--level",
        default="category",
        choices=("category", "supercategory"),
        help="COCO class level [category]",
    )
    parser.add_argument(
        "--threshold", type=float, default=0.4, help="label-graph threshold t on P(j|i) [0.4]"
    )
    parser.add_argument(
        "--reweight", type=float, default=0.2, help="label-graph re-weighting p [0.2]"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="write stats.json and cooccurrence.png here"
    )


def _read(args: argparse.Namespace) -> AnnotatedSplit:
    # Readers are imported here so that `mmsag --help` stays light.
    if args.format == "voc":
        from mmsag_ros.data.voc import read_voc

        return read_voc(args.path, args.split, difficult=args.difficult, check_files=False)
    if args.format == "coco":
        from mmsag_ros.data.coco import read_coco

        return read_coco(args.path, level=args.level, check_files=False)
    from mmsag_ros.data.csv_table import read_csv_labels

    return read_csv_labels(args.path, check_files=False)


def run(args: argparse.Namespace) -> int:
    """Print the statistics; write the JSON and the heat map when ``--out`` is given."""
    from mmsag_ros.data.stats import (
        conditional_probability,
        format_adjacency,
        format_statistics,
        label_statistics,
        mlgcn_adjacency,
        plot_cooccurrence,
    )

    split = _read(args)
    stats = label_statistics(split)
    adjacency = mlgcn_adjacency(stats, threshold=args.threshold, reweight=args.reweight)
    print(f"{split.source}  (split {split.name!r}, {len(split.labels)} classes)")
    print(format_statistics(stats, split.labels))
    print()
    print(format_adjacency(adjacency, stats, split.labels, threshold=args.threshold))
    if args.out is not None:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        report = {
            "source": split.source,
            "split": split.name,
            "format": args.format,
            "labels": split.labels.to_dict(),
            "statistics": stats.to_dict(),
            "conditional_probability": conditional_probability(stats).tolist(),
            "adjacency": {
                "threshold": args.threshold,
                "reweight": args.reweight,
                "matrix": adjacency.tolist(),
            },
        }
        (out / "stats.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        plot_cooccurrence(stats, split.labels, out / "cooccurrence.png")
        print(f"\nwrote {out / 'stats.json'} and {out / 'cooccurrence.png'}")
    return 0
