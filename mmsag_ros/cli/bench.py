"""``mmsag bench``: latency and throughput of a bundle per backend and batch size.

Also times preprocessing of 640x480, 1280x720 and 1920x1080 frames (RGB and BGR input) into
the model input. Prints a table naming the machine; ``--json`` writes the numbers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mmsag bench``."""
    parser.add_argument("--bundle", type=Path, required=True, help="bundle directory")
    parser.add_argument(
        "--backends",
        nargs="+",
        metavar="KIND[:DEVICE]",
        help="backends to time (default: onnxruntime, torch, tensorrt, onnxruntime:cuda, "
        "torch:cuda; unavailable ones are skipped)",
    )
    parser.add_argument(
        "--precisions", default="fp32", help="comma-separated bundle variants (default fp32)"
    )
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[1, 4, 8], help="default: 1 4 8"
    )
    parser.add_argument(
        "--iterations", type=int, default=20, help="timed calls per setting (default 20)"
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before timing")
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
    parser.add_argument("--json", type=Path, help="write the measurements to this JSON file")


def run(args: argparse.Namespace) -> int:
    """Benchmark, print the table and optionally write JSON."""
    from mmsag_ros.bundle.manifest import load_bundle
    from mmsag_ros.runtime.bench import DEFAULT_BACKENDS, format_bench_report, run_bench

    options = {"onnxruntime": {"intra_op_threads": args.threads}} if args.threads else {}
    report = run_bench(
        load_bundle(args.bundle),
        backends=args.backends or DEFAULT_BACKENDS,
        precisions=[p.strip() for p in args.precisions.split(",") if p.strip()],
        batch_sizes=args.batch_sizes,
        iterations=args.iterations,
        warmup=args.warmup,
        backend_options=options,
    )
    print(format_bench_report(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
