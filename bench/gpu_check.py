"""Prepared GPU check: torch on CUDA (fp32, fp16) against ONNX Runtime on the CPU, same frames.

One short run for whenever an NVIDIA GPU is at hand (TensorRT is not assumed: it cannot be
installed on the machines this project gets lent). For each model it exports an untrained
bundle (scores depend on the weights, agreement between backends does not), then:

1. parity: the same frames (real trashnet photos when ``../shared/data/trashnet`` is there,
   else synthetic conveyor frames) through ONNX Runtime on the CPU (the reference) and the
   torch backend on CUDA in fp32 and fp16: largest and mean score difference, decision
   agreement at the bundle's thresholds;
2. latency per batch size of each of them (ms per image at the median call).

Without a GPU the CUDA rows are reported as skipped with the reason and the CPU parts still
run (the test suite runs it that way with ``--quick``). Output: a table on stdout and
``bench/results/gpu_check.{json,txt}`` (or ``--out``).

    .venv/bin/python bench/gpu_check.py                 # the full check (~2 min on a GPU box)
    .venv/bin/python bench/gpu_check.py --quick --out /tmp/gpu_check.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results" / "gpu_check.json"
TRASHNET = BENCH.parent.parent / "shared" / "data" / "trashnet"
MODELS = ("mmsag_effl0_224", "mmsag_r50_448")
CASES = (("onnxruntime", "cpu", "fp32"), ("torch", "cuda", "fp32"), ("torch", "cuda", "fp16"))
TOLERANCE = {"fp32": 1e-3, "fp16": 1e-2}

sys.path.insert(0, str(BENCH))


def load_frames(count: int) -> tuple[list[np.ndarray], str]:
    """Real photos spread over the trashnet classes, else synthetic conveyor frames (RGB)."""
    from mmsag_ros.runtime.verify import synthetic_frames

    if not TRASHNET.is_dir():
        return synthetic_frames(count), f"{count} synthetic conveyor frames (no {TRASHNET})"
    import cv2

    photos = sorted(TRASHNET.glob("*/*.jpg"))
    chosen = [photos[int(i)] for i in np.linspace(0, len(photos) - 1, count).round()]
    frames = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in chosen]
    return frames, f"{count} trashnet photos from {TRASHNET}"


def run_case(bundle: Any, batch: np.ndarray, kind: str, device: str, precision: str, args: Any):
    """Outputs on ``batch`` (one frame per call) and latency rows, or the reason it cannot run."""
    from mmsag_ros.errors import BackendUnavailableError
    from mmsag_ros.runtime.backends import create_backend
    from mmsag_ros.runtime.bench import bench_backend

    backend = create_backend(kind, bundle, device=device, precision=precision)
    try:
        with backend:
            logits = np.concatenate(
                [backend.infer(batch[i : i + 1])["logits"] for i in range(len(batch))]
            )
            rows = bench_backend(
                backend,
                batch_sizes=args.batch_sizes,
                iterations=args.iterations,
                warmup=args.warmup,
            )
            return logits, rows, list(backend.providers), None
    except BackendUnavailableError as err:
        return None, [], [], str(err)


def check_model(name: str, work: Path, frames: list[np.ndarray], args: Any) -> dict[str, Any]:
    from runtime_latency import build_bundle

    from mmsag_ros.bundle.manifest import load_bundle
    from mmsag_ros.bundle.preprocess import preprocess
    from mmsag_ros.runtime.postprocess import decide, sigmoid

    bundle = load_bundle(build_bundle(name, work)[0])
    size = bundle.spec.input_size
    batch = np.stack([preprocess(frame, bundle.spec) for frame in frames]).astype(np.float32)
    assert batch.shape[1:] == (3, size, size)
    results = []
    reference = None
    for kind, device, precision in CASES:
        logits, rows, providers, skipped = run_case(bundle, batch, kind, device, precision, args)
        row: dict[str, Any] = {
            "backend": f"{kind}@{device}",
            "precision": precision,
            "providers": providers,
            "skipped": skipped,
            "latency": rows,
        }
        if logits is not None and reference is None:
            reference = sigmoid(logits)
            row["status"] = "reference"
        elif logits is not None:
            scores = sigmoid(logits)
            diff = np.abs(scores - reference)
            agree = decide(scores, bundle.thresholds) == decide(reference, bundle.thresholds)
            row.update(
                max_abs_diff=float(diff.max()),
                mean_abs_diff=float(diff.mean()),
                decision_agreement=float(agree.mean()),
                status="ok" if float(diff.max()) <= TOLERANCE[precision] else "FAIL",
            )
        else:
            row["status"] = "skipped"
        results.append(row)
    return {"model": name, "model_id": bundle.model_id, "cases": results}


def format_table(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        f"GPU check on {machine['cpu']} + GPU {machine['gpu'] or 'none'} "
        f"(torch {report['torch']}, CUDA {report['cuda'] or 'none'}); {report['frames']}",
        f"{'model':<17}{'backend':<18}{'prec':<6}{'status':<10}{'max|d|':>9}{'agree':>8}  "
        "ms/image per batch",
    ]
    for model in report["models"]:
        for case in model["cases"]:
            if case["status"] == "skipped":
                lines.append(
                    f"{model['model']:<17}{case['backend']:<18}{case['precision']:<6}skipped   "
                    f"{case['skipped']}"
                )
                continue
            diff = f"{case['max_abs_diff']:>9.1e}" if "max_abs_diff" in case else f"{'-':>9}"
            agree = (
                f"{100 * case['decision_agreement']:>7.1f}%"
                if "decision_agreement" in case
                else f"{'-':>8}"
            )
            speed = ", ".join(
                f"b{r['batch_size']} {r['ms_per_image']:.2f}" for r in case["latency"]
            )
            lines.append(
                f"{model['model']:<17}{case['backend']:<18}{case['precision']:<6}"
                f"{case['status']:<10}{diff}{agree}  {speed}"
            )
    verdict = "FAILED" if report["failed"] else "passed"
    limits = ", ".join(f"{p} {t:g}" for p, t in TOLERANCE.items())
    lines.append(f"{verdict}: score tolerance {limits}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smallest run (the test suite's)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON (default {RESULTS})")
    args = parser.parse_args()
    if args.quick:
        args.models, args.frames, args.batch_sizes = args.models[:1], 4, [1, 2]
        args.iterations, args.warmup = 2, 1
    import torch

    from mmsag_ros.runtime.bench import machine_info

    started = time.monotonic()
    frames, source = load_frames(args.frames)
    with tempfile.TemporaryDirectory(prefix="mmsag_gpu_check_") as work:
        models = [check_model(name, Path(work), frames, args) for name in args.models]
    report = {
        "machine": machine_info(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "frames": source,
        "settings": {k: str(v) for k, v in vars(args).items()},
        "models": models,
        "failed": any(c["status"] == "FAIL" for m in models for c in m["cases"]),
        "wall_s": round(time.monotonic() - started, 1),
    }
    table = format_table(report)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".txt").write_text(table + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.txt')}")
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
