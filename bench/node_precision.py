"""The sorter node end to end with the int8 variant against fp32, alternating in one run.

The node benchmark's first case (``bench/node_latency.py``: 1280x720 rgb8 frames at 30 Hz
over the shipped shared-memory Fast DDS profile, camera-and-receiver peer in its own process)
run on one bundle with ``precision:=fp32`` and ``precision:=int8``, in alternating rounds so
that machine load hits both alike. Reports end-to-end latency (publish stamp -> MultiLabel
receipt) and the node's inference time per variant, and the ratios.

    .venv/bin/python bench/node_precision.py --bundle /tmp/effl0          # ~3 min
    .venv/bin/python bench/node_precision.py --bundle /tmp/effl0 --quick --out-dir /tmp/x
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
PRECISIONS = ("fp32", "int8")

sys.path.insert(0, str(BENCH))


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True, help="bundle with an int8 variant")
    parser.add_argument("--frames", type=int, default=300, help="frames per round and variant")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--out-dir", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.frames, args.rounds = 40, 1
    return args


def _alternating_rounds(bundle: Any, args: argparse.Namespace) -> tuple[dict, list[dict]]:
    """Latency statistics per variant (warm-up left out) and each round's summary."""
    from node_latency import run_case
    from node_latency_report import latency_summary, stats, warmup_count

    e2e: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    infer: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mmsag_node_precision_") as tmp:
        for index in range(args.rounds):
            for precision in PRECISIONS:
                name = f"r{index + 1}_{precision}"
                result = run_case(
                    name,
                    "sorter",
                    bundle.root,
                    rate_hz=30.0,
                    count=args.frames,
                    work=Path(tmp),
                    params=(f"precision:={precision}",),
                )
                skip = warmup_count(result)
                e2e[precision] += result["e2e_ms"][skip:]
                infer[precision] += result["inference_ms"][skip:]
                rounds.append({"case": name, **latency_summary(result)})
    summary = {p: {"e2e_ms": stats(e2e[p]), "inference_ms": stats(infer[p])} for p in PRECISIONS}
    return summary, rounds


def _table(report: dict[str, Any], args: argparse.Namespace) -> str:
    machine, summary = report["machine"], report["summary"]
    lines = [
        f"sorter node, {report['model_id']}, 1280x720 rgb8 at 30 Hz, {args.rounds} alternating "
        f"round(s) of {args.frames} frames per variant",
        f"machine: {machine['cpu']}, {machine['usable_cpus']} usable CPUs, GPU "
        f"{machine['gpu'] or 'none'}; backend onnxruntime CPU",
        f"{'variant':<9}{'e2e p50':>9}{'p95':>8}{'p99':>8}{'infer p50':>11}{'labels':>8}",
    ]
    for precision in PRECISIONS:
        row = summary[precision]
        lines.append(
            f"{precision:<9}{row['e2e_ms']['p50']:>9.1f}{row['e2e_ms']['p95']:>8.1f}"
            f"{row['e2e_ms']['p99']:>8.1f}{row['inference_ms']['p50']:>11.1f}"
            f"{int(row['e2e_ms']['n']):>8}"
        )
    ratios = report["ratios_fp32_over_int8"]
    lines.append(
        f"fp32/int8: e2e p50 {ratios['e2e_ms']['p50']:.2f}x, p99 {ratios['e2e_ms']['p99']:.2f}x; "
        f"inference p50 {ratios['inference_ms']['p50']:.2f}x"
    )
    return "\n".join(lines)


def main() -> int:
    from mmsag_ros.bundle.manifest import load_bundle
    from mmsag_ros.runtime.bench import machine_info

    args = _parse_args()
    bundle = load_bundle(args.bundle)
    bundle.variant("int8")  # refused or missing: the error says why
    out_dir = args.out_dir or (
        Path(tempfile.mkdtemp(prefix="node_precision_")) if args.quick else RESULTS
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    summary, rounds = _alternating_rounds(bundle, args)
    report = {
        "machine": machine_info(),
        "bundle": str(bundle.root),
        "model_id": bundle.model_id,
        "settings": {k: str(v) for k, v in vars(args).items()},
        "int8_accuracy": dict(bundle.variant("int8").entry.get("accuracy", {})),
        "summary": summary,
        "ratios_fp32_over_int8": {
            key: {
                q: summary["fp32"][key][q] / summary["int8"][key][q] for q in ("p50", "p95", "p99")
            }
            for key in ("e2e_ms", "inference_ms")
        },
        "rounds": rounds,
        "wall_s": round(time.monotonic() - started, 1),
    }
    table = _table(report, args)
    print(table)
    stem = out_dir / f"node_precision_{bundle.name}"
    stem.with_suffix(".txt").write_text(table + "\n")
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {stem}.{{txt,json}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
