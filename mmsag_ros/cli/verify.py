"""``mmsag verify``: do all backends on this machine give the bundle's scores?

Runs every precision variant of the bundle on every available backend (TensorRT, ONNX Runtime
on CUDA, torch) on the same frames and compares their scores with ONNX Runtime on the CPU
running the same variant; exits 1 when one disagrees beyond the tolerance. Run it on the robot
after building its TensorRT engines (``mmsag engine``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mmsag verify``."""
    parser.add_argument("--bundle", type=Path, required=True, help="bundle directory")
    parser.add_argument(
        "--images", type=Path, help="folder of frames (default: synthetic conveyor frames)"
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        metavar="KIND[:DEVICE]",
        help="backends to compare with onnxruntime on the CPU (default: torch, tensorrt, "
        "onnxruntime:cuda, torch:cuda; unavailable ones are skipped)",
    )
    parser.add_argument(
        "--precisions",
        help="comma-separated variants to check (default: every variant in the bundle)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        help="largest fp32 score difference (default 1e-3; fp16 1e-2 and int8 5e-2 stay)",
    )
    parser.add_argument("--cache-dir", type=Path, help="TensorRT engine cache directory")
    parser.add_argument("--num-images", type=int, default=16, help="frames to use (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic frames")
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
    parser.add_argument("--json", type=Path, help="also write the report to this JSON file")


def run(args: argparse.Namespace) -> int:
    """Verify and print the table; 0 when every compared backend agrees, else 1."""
    from mmsag_ros.bundle.manifest import load_bundle
    from mmsag_ros.runtime.verify import (
        DEFAULT_VERIFY_BACKENDS,
        format_verify_report,
        verify_bundle,
    )

    options: dict[str, dict[str, object]] = {}
    if args.threads:
        options["onnxruntime"] = {"intra_op_threads": args.threads}
    if args.cache_dir:
        options["tensorrt"] = {"cache_dir": args.cache_dir}
    precisions = None
    if args.precisions:
        precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    report = verify_bundle(
        load_bundle(args.bundle),
        images_dir=args.images,
        backends=args.backends or DEFAULT_VERIFY_BACKENDS,
        precisions=precisions,
        tolerances=None if args.tolerance is None else {"fp32": args.tolerance},
        num_frames=args.num_images,
        seed=args.seed,
        backend_options=options,
    )
    print(format_verify_report(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return 0 if report.passed else 1
