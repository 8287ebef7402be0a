"""``mmsag engine``: build (or find) the TensorRT engine of a bundle variant on this GPU.

Run it once on the target (a Jetson with TensorRT 10, a workstation or server with TensorRT
11) after copying the bundle there: it takes minutes, and the sorter node only loads engines,
so it never freezes its executor building one. Engines are cached by GPU, compute capability,
TensorRT version and the variant's hash; a bundle on a read-only mount needs ``--cache-dir``
(the node's ``engine_cache_dir``) or gets the user cache.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mmsag engine``."""
    parser.add_argument("--bundle", type=Path, required=True, help="bundle directory")
    parser.add_argument(
        "--precision",
        default="fp32",
        help="comma-separated variants to build engines for (default: fp32)",
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        help="engine cache directory (default: BUNDLE/engines, or ~/.cache/mmsag_ros/engines "
        "when the bundle is read-only); give the node the same engine_cache_dir",
    )
    parser.add_argument("--max-batch", type=int, default=8, help="largest engine batch")
    parser.add_argument("--workspace-mb", type=int, default=2048, help="builder workspace (MiB)")
    parser.add_argument("--rebuild", action="store_true", help="build even if one is cached")


def run(args: argparse.Namespace) -> int:
    """Build or find each requested engine and print where it is."""
    from mmsag_ros.bundle.manifest import load_bundle
    from mmsag_ros.runtime.engine_build import BatchProfile
    from mmsag_ros.runtime.engine_cache import ensure_engine

    bundle = load_bundle(args.bundle)
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    for precision in precisions:
        bundle.variant(precision)  # every variant is checked before minutes of building
    for precision in precisions:
        path = ensure_engine(
            bundle,
            precision=precision,
            cache_dir=args.cache_dir,
            build=True,
            rebuild=args.rebuild,
            profile=BatchProfile(1, 1, args.max_batch),
            workspace_mb=args.workspace_mb,
        )
        print(f"{precision}: {path}")
    return 0
