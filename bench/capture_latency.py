r"""Does capture slow the labelling path? The same replay with capture off and on, side by side.

A bag of real-photo JPEG scenes plays through a real sorter process at 30 Hz
(``replay_through_sorter``), alternating runs without capture and with capture of **every**
frame (``capture_sample_rate`` 1, no rate cap: the worst case, far beyond a cell's setting),
and reports latency percentiles of each, the frames captured and the node's drops.

    .venv/bin/python bench/capture_latency.py --bundle /tmp/effl0 --data /tmp/scenes
    .venv/bin/python bench/capture_latency.py --bundle ... --data ... --quick
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
FPS = 30.0
sys.path.insert(0, str(BENCH))

from swap_latency import percentiles  # noqa: E402


def _run(bundle: Path, bag: Path, work: Path, capture: bool) -> dict[str, Any]:
    from mmsag_ros.live.replay import replay_through_sorter
    from mmsag_ros.ros.capture import bag_bytes

    parameters = ["image_reliability: reliable", "image_depth: 10"]
    folder = work / "capture"
    shutil.rmtree(folder, ignore_errors=True)
    if capture:
        parameters += [
            f"capture_dir: {json.dumps(str(folder))}",
            "capture_sample_rate: 1.0",
            "capture_max_rate_hz: 0.0",
        ]
    params = work / "sorter.yaml"
    params.write_text("/**:\n  ros__parameters:\n" + "".join(f"    {p}\n" for p in parameters))
    run = replay_through_sorter(bag, bundle, backend="onnxruntime", params_file=params)
    labels = run.labels[min(30, len(run.labels) // 10) :]  # warm-up left out
    bags = sorted(folder.glob("capture_*")) if capture else []
    return {
        "capture": capture,
        "sent": run.sent,
        "labelled": len(run.labels),
        "dropped": run.node.dropped,
        "end_to_end_ms": percentiles([label.latency_ms for label in labels]),
        "node_ms": percentiles([label.node_latency_ms for label in labels]),
        "capture_bags": len(bags),
        "capture_mb": sum(bag_bytes(b) for b in bags) / 1e6,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="VOC dataset for the frames")
    parser.add_argument("--split", default="test")
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs")
    parser.add_argument("--quick", action="store_true", help="one pair, temp output")
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/)")
    args = parser.parse_args()
    from mmsag_ros.bag.make import make_bag
    from mmsag_ros.runtime.bench import machine_info

    work = Path(tempfile.mkdtemp(prefix="capture_latency_"))
    bag = work / "bag"
    summary = make_bag(args.data, bag, compressed=True, fps=FPS, split=args.split)
    rounds = 1 if args.quick else args.rounds
    runs = [
        _run(args.bundle, bag, work, capture) for _ in range(rounds) for capture in (False, True)
    ]
    report = {"machine": machine_info(), "fps": FPS, "frames_per_run": summary.frames, "runs": runs}
    out = args.out or (
        work / "capture_latency.json" if args.quick else RESULTS / "capture_latency.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    machine = report["machine"]
    lines = [
        f"Sorter at {FPS:.0f} Hz on real-photo JPEG scenes, capture off vs every frame captured "
        f"({machine['cpu']}, {machine['usable_cpus']} usable CPUs), alternating runs",
        f"{'capture':8s} {'labelled':>9s} {'dropped':>8s} {'p50':>6s} {'p95':>6s} {'p99':>6s}"
        f" {'node p99':>9s} {'bags':>5s} {'MB':>6s}",
    ]
    for run in runs:
        e2e = run["end_to_end_ms"]
        lines.append(
            f"{'on' if run['capture'] else 'off':8s} {run['labelled']:>5d}/{run['sent']:<3d} "
            f"{run['dropped']:>8d} {e2e['p50']:6.1f} {e2e['p95']:6.1f} {e2e['p99']:6.1f} "
            f"{run['node_ms']['p99']:9.1f} {run['capture_bags']:5d} {run['capture_mb']:6.1f}"
        )
    table = "\n".join(lines) + "\n"
    out.with_suffix(".txt").write_text(table)
    print(table)
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
