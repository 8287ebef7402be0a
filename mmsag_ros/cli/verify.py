"""``mmsag verify``: do all backends on this machine give the bundle's scores?

Runs every available backend (TensorRT, ONNX Runtime on CUDA, torch) on the same frames and
compares their scores with ONNX Runtime on the CPU; exits 1 when one disagrees beyond the
tolerance. Run it on the robot after the first TensorRT engine build.
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
        "--tolerance", type=float, default=1e-3, help="largest score difference (default 1e-3)"
    )
    parser.add_argument("--num-images", type=int, default=16, help="frames to use (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic frames")
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
    parser.add_argument("--json", type=Path, help="also write the report to this JSON file")


def run(args: argparse.Namespace) -> int:
    """Verify and print the table; 0 when every compared backend agrees, else 1."""
    from mmsag_ros.export.manifest import load_bundle
    from mmsag_ros.runtime.verify import (
        DEFAULT_VERIFY_BACKENDS,
        format_verify_report,
        verify_bundle,
    )

    options = {"onnxruntime": {"intra_op_threads": args.threads}} if args.threads else {}
    report = verify_bundle(
        load_bundle(args.bundle),
        images_dir=args.images,
        backends=args.backends or DEFAULT_VERIFY_BACKENDS,
        tolerance=args.tolerance,
        num_frames=args.num_images,
        seed=args.seed,
        backend_options=options,
    )
    print(format_verify_report(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return 0 if report.passed else 1
