"""ONNX Runtime vs torch eager inference latency on this CPU, side by side in one run.

Exports untrained (``pretrained=False``) models to temporary bundles (latency does not depend
on the weights), then times ``infer`` of both backends, alternating per batch size so that
load from other processes hits both alike, and times preprocessing of camera-sized frames.
Prints a table with torch/ONNX Runtime ratios and writes JSON.

    .venv/bin/python bench/runtime_latency.py                 # full run
    .venv/bin/python bench/runtime_latency.py --quick         # 1-iteration smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mmsag_ros.bundle.labels import MLKW_LABELS
from mmsag_ros.bundle.manifest import load_bundle
from mmsag_ros.export.write_bundle import export_bundle
from mmsag_ros.model import create_model
from mmsag_ros.model.checkpoint import save_checkpoint
from mmsag_ros.runtime.backends import create_backend
from mmsag_ros.runtime.bench import bench_backend, bench_preprocess, machine_info

MODELS = ("mmsag_effl0_224", "mmsag_r50_448")
KINDS = ("onnxruntime", "torch")
RESULTS = Path(__file__).resolve().parent / "results" / "runtime_latency.json"


def build_bundle(name: str, work_dir: Path) -> tuple[Path, float]:
    """Export an untrained ``name`` to ``work_dir/name``; return the bundle and export seconds."""
    torch.manual_seed(0)
    model = create_model(name, num_labels=len(MLKW_LABELS), pretrained=False).eval()
    thresholds = [0.5] * len(MLKW_LABELS)
    checkpoint = save_checkpoint(
        work_dir / f"{name}.pt",
        {
            "epoch": 0,
            "model_name": name,
            "model_config": model.config.to_dict(),
            "model_state": model.state_dict(),
            "labels": MLKW_LABELS.to_dict(),
            "spec": model.spec.to_dict(),
            "thresholds": thresholds,
            "metrics": {},
            "train_config": {},
        },
    )
    started = time.perf_counter()
    export_bundle(checkpoint, work_dir / name)
    return work_dir / name, time.perf_counter() - started


def measure(args: argparse.Namespace, work_dir: Path) -> dict:
    options = {
        "onnxruntime": {"intra_op_threads": args.threads},
        "torch": {"num_threads": args.threads},
    }
    rows, export_s, specs = [], {}, {}
    for name in args.models:
        bundle_dir, export_s[name] = build_bundle(name, work_dir)
        bundle = load_bundle(bundle_dir)
        specs[bundle.spec.input_size] = bundle.spec
        backends = [create_backend(k, bundle, device="cpu", **options[k]) for k in KINDS]
        for batch_size in args.batch_sizes:
            for backend in backends:
                for row in bench_backend(
                    backend,
                    batch_sizes=[batch_size],
                    iterations=args.iterations,
                    warmup=args.warmup,
                ):
                    rows.append({"model": name, **row})
        for backend in backends:
            backend.close()
    preprocess_rows = [
        row
        for spec in specs.values()
        for row in bench_preprocess(spec, iterations=args.preprocess_iterations)
    ]
    return {
        "machine": machine_info(),
        "settings": {
            "iterations": args.iterations,
            "warmup": args.warmup,
            "threads": args.threads,
            "quick": args.quick,
        },
        "export_s": export_s,
        "latency": rows,
        "preprocess": preprocess_rows,
    }


def format_table(result: dict) -> str:
    machine = result["machine"]
    lines = [
        f"CPU inference latency, ms per image at the median call ({machine['cpu']}, "
        f"{machine['usable_cpus']} usable CPUs, torch threads {machine.get('torch_threads')}, "
        f"ONNX Runtime threads {result['settings']['threads'] or 'default'})",
        f"{'model':<18}{'batch':>6}{'onnxruntime':>13}{'torch':>10}{'torch/ort':>11}",
    ]
    by_key = {(r["model"], r["batch_size"], r["backend"]): r for r in result["latency"]}
    for model, batch, _ in sorted({(k[0], k[1], 0) for k in by_key}):
        ort = by_key[(model, batch, "onnxruntime")]["ms_per_image"]
        eager = by_key[(model, batch, "torch")]["ms_per_image"]
        lines.append(f"{model:<18}{batch:>6}{ort:>13.1f}{eager:>10.1f}{eager / ort:>10.2f}x")
    lines += ["", "preprocessing to the model input, ms (p50 / p95)"]
    for row in result["preprocess"]:
        frame = f"{row['width']}x{row['height']} {row['color_order']}"
        lines.append(
            f"  {frame:<16} -> {row['input_size']:>3} px  {row['p50_ms']:6.2f} / "
            f"{row['p95_ms']:6.2f}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--preprocess-iterations", type=int, default=50)
    parser.add_argument("--threads", type=int, help="threads for both backends (default: each's)")
    parser.add_argument("--quick", action="store_true", help="1-iteration smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON (default {RESULTS})")
    args = parser.parse_args()
    if args.quick:
        args.iterations, args.warmup, args.preprocess_iterations = 1, 1, 1
    np.random.seed(0)
    with tempfile.TemporaryDirectory(prefix="mmsag_latency_") as work:
        result = measure(args, Path(work))
    print(format_table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
