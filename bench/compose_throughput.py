r"""Composing belt scenes from real photos: scenes/s, and where the time goes.

Runs ``compose_dataset`` on an image-folder dataset (TrashNet in ``../shared/data/trashnet``
by default) into a temporary folder, twice in one process: the first run cuts every photo it
draws (GrabCut, the slow part), the second reuses nothing (a new call cuts again), so the two
give the spread. Also times ``cut_out`` alone on a sample of photos. Prints a table and writes
JSON.

    .venv/bin/python bench/compose_throughput.py --scenes 300 \
        --out bench/results/compose_throughput.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from mmsag_ros.data.compose import compose_dataset
from mmsag_ros.data.cutout import cut_out
from mmsag_ros.runtime.bench import machine_info

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO.parent / "shared" / "data" / "trashnet"
RESULTS = REPO / "bench" / "results" / "compose_throughput.json"


def measure(args: argparse.Namespace) -> dict:
    photos = sorted(args.photos.glob("*/*.jpg"))
    sample = photos[:: max(1, len(photos) // args.cutouts)][: args.cutouts]
    cut_ms = []
    kinds: dict[str, int] = {}
    for path in sample:
        bgr = cv2.imread(str(path))
        started = time.perf_counter()
        cut = cut_out(bgr, np.random.default_rng(0))
        cut_ms.append(1000 * (time.perf_counter() - started))
        kinds[cut.kind] = kinds.get(cut.kind, 0) + 1
    runs = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as work:
            summary = compose_dataset(
                args.photos,
                Path(work) / "scenes",
                num_train=args.scenes,
                num_val=0,
                num_test=0,
                seed=repeat,
            )
        runs.append(
            {
                "scenes": args.scenes,
                "seconds": round(summary.seconds, 2),
                "scenes_per_s": round(args.scenes / summary.seconds, 2),
                "photos_cut": sum(summary.cutouts.values()),
                "cutouts": dict(summary.cutouts),
            }
        )
    return {
        "machine": machine_info(),
        "photos": str(args.photos),
        "image_size": [320, 240],
        "cut_out_ms": {
            "photos": len(sample),
            "median": round(float(np.median(cut_ms)), 1),
            "p90": round(float(np.percentile(cut_ms, 90)), 1),
            "kinds": kinds,
        },
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--scenes", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cutouts", type=int, default=60, help="photos timed for cut_out alone")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not args.photos.is_dir():
        sys.exit(f"no photos at {args.photos}; pass --photos DIR (<class>/*.jpg)")
    result = measure(args)
    print(f"compose on {result['machine']['cpu']} ({result['machine']['usable_cpus']} CPUs)")
    cut = result["cut_out_ms"]
    print(f"  cut_out: median {cut['median']} ms, p90 {cut['p90']} ms over {cut['photos']} photos")
    for run in result["runs"]:
        print(
            f"  {run['scenes']} scenes 320x240 in {run['seconds']} s: "
            f"{run['scenes_per_s']} scenes/s ({run['photos_cut']} photos cut on the way)"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
