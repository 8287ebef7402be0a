r"""ONNX Runtime on this CPU: fp32 against the accepted int8 variant, side by side in one run.

Takes bundles exported with ``--precision fp32,int8`` (the int8 variant scored against fp32 on
the validation split and accepted at export; its numbers are read from the manifest and
printed beside the speed), times ``infer`` of both variants per batch size, alternating the
two in rounds so that load from other processes hits both alike, and reports the speed-up.

    mmsag export --checkpoint runs/demo/train/best.pt --out /tmp/effl0 \
        --precision fp32,fp16,int8 --val-data runs/demo/data --calib-data runs/demo/data
    .venv/bin/python bench/precision_latency.py --bundle /tmp/effl0 /tmp/r50
    # the same checkpoint exported again with --fp32-head gets a row of its own:
    .venv/bin/python bench/precision_latency.py --bundle /tmp/effl0 /tmp/effl0_fp32head /tmp/r50
    .venv/bin/python bench/precision_latency.py --bundle /tmp/effl0 --quick --out /tmp/x.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mmsag_ros.bundle.manifest import load_bundle
from mmsag_ros.export.variant_score import describe_accuracy
from mmsag_ros.runtime.backends import create_backend
from mmsag_ros.runtime.bench import bench_backend, machine_info

RESULTS = Path(__file__).resolve().parent / "results" / "precision_latency.json"
PRECISIONS = ("fp32", "int8")
TARGET_SPEEDUP = 2.0


def measure(args: argparse.Namespace) -> dict[str, Any]:
    models = []
    for path in args.bundle:
        bundle = load_bundle(path)
        int8 = bundle.variant("int8")  # refused or missing: the error says why
        backends = {
            p: create_backend("onnxruntime", bundle, precision=p, intra_op_threads=args.threads)
            for p in PRECISIONS
        }
        timings: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for _ in range(args.rounds):
            for batch_size in args.batch_sizes:
                for precision, backend in backends.items():
                    (row,) = bench_backend(
                        backend,
                        batch_sizes=[batch_size],
                        iterations=args.iterations,
                        warmup=args.warmup,
                    )
                    timings.setdefault((precision, batch_size), []).append(row)
        for backend in backends.values():
            backend.close()
        rows = []
        for batch_size in args.batch_sizes:
            # The median over rounds of each round's median call.
            ms = {
                p: float(np.median([r["ms_per_image"] for r in timings[(p, batch_size)]]))
                for p in PRECISIONS
            }
            rows.append(
                {
                    "batch_size": batch_size,
                    "fp32_ms_per_image": ms["fp32"],
                    "int8_ms_per_image": ms["int8"],
                    "speedup": ms["fp32"] / ms["int8"],
                }
            )
        models.append(
            {
                "model": bundle.name,
                "model_id": bundle.model_id,
                "bundle": str(bundle.root),
                "int8_accuracy": dict(int8.entry.get("accuracy", {})),
                "int8_accuracy_as_written": dict(int8.entry.get("accuracy_as_written", {})),
                "int8_conversion": dict(int8.entry.get("conversion", {})),
                "rows": rows,
            }
        )
    return {
        "machine": machine_info(),
        "settings": {
            "iterations": args.iterations,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "threads": args.threads,
            "quick": args.quick,
        },
        "target_speedup": TARGET_SPEEDUP,
        "models": models,
    }


def _label(model: dict[str, Any]) -> str:
    """The model's name, marked when its int8 variant keeps the head in fp32."""
    fp32_head = model["int8_conversion"].get("head", "fp32") == "fp32"
    return f"{model['model']} (fp32 head)" if fp32_head else model["model"]


def format_table(result: dict[str, Any]) -> str:
    machine = result["machine"]
    lines = [
        f"ONNX Runtime CPU, fp32 vs accepted int8 variant, ms per image at the median call "
        f"({machine['cpu']}, {machine['usable_cpus']} usable CPUs, threads "
        f"{result['settings']['threads'] or 'default'}, {result['settings']['rounds']} "
        "alternating rounds)",
        f"{'model':<30}{'batch':>6}{'fp32':>9}{'int8':>9}{'speed-up':>10}  "
        f">= {result['target_speedup']:g}x",
    ]
    for model in result["models"]:
        for row in model["rows"]:
            met = "yes" if row["speedup"] >= result["target_speedup"] else "NO"
            lines.append(
                f"{_label(model):<30}{row['batch_size']:>6}{row['fp32_ms_per_image']:>9.2f}"
                f"{row['int8_ms_per_image']:>9.2f}{row['speedup']:>9.2f}x  {met}"
            )
    lines.append("")
    lines.append("int8 accuracy against fp32 on the validation split (from each manifest):")
    for model in result["models"]:
        records = {
            "accuracy": model["int8_accuracy"],
            "accuracy_as_written": model.get("int8_accuracy_as_written") or None,
        }
        scored = describe_accuracy({k: v for k, v in records.items() if v})
        lines.append(
            f"  {_label(model)}: {scored}; {model['int8_conversion'].get('quantized', '')}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, nargs="+", required=True)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
    parser.add_argument("--quick", action="store_true", help="1-iteration smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON (default {RESULTS})")
    args = parser.parse_args()
    if args.quick:
        args.iterations, args.warmup, args.rounds = 1, 1, 1
    result = measure(args)
    table = format_table(result)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".txt").write_text(table + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.txt')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
