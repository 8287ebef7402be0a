"""Validation mAP reached within a fixed CPU training budget, plus the ablation table.

Generates a synthetic conveyor set (clearly synthetic: it says nothing about real waste), then
trains each configuration with the same wall-clock budget and recipe, keeps the checkpoint with
the best validation mAP, and scores it on the untouched test split. Runs one after another in
one process so that every run sees the same machine.

    .venv/bin/python bench/train_budget.py --budget-min 10 --out bench/results/train_budget
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from mmsag_ros.data.synth import generate_dataset
from mmsag_ros.model.checkpoint import load_checkpoint
from mmsag_ros.train.config import DataConfig, load_config
from mmsag_ros.train.evaluate import evaluate_checkpoint
from mmsag_ros.train.run import run_training
from mmsag_ros.train.splits import load_split

_STAGES = ("semantic_attention", "fusion", "static_graph", "dynamic_graph")
# name -> (model, pretrained, epochs planned for the budget, stages switched on)
RUNS = {
    "effl0_224 full MM-SAG": ("mmsag_effl0_224", True, 5, _STAGES),
    "r18_224 full, from scratch": ("mmsag_r18_224", False, 8, _STAGES),
    "effl0_224 linear head": ("mmsag_effl0_224", True, 5, ()),
    "effl0_224 + semantic attention": ("mmsag_effl0_224", True, 5, _STAGES[:1]),
    "effl0_224 + fusion": ("mmsag_effl0_224", True, 5, _STAGES[:2]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-min", type=float, default=10.0)
    parser.add_argument("--trainval", type=int, default=2000)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--out", type=Path, default=Path("bench/results/train_budget"))
    args = parser.parse_args()
    data_root = args.out / "synthetic_conveyor"
    if not (data_root / "synthetic.json").exists():
        generate_dataset(data_root, num_trainval=args.trainval, num_test=args.test, progress=True)
    results = []
    for label in args.runs:
        model, pretrained, epochs, stages = RUNS[label]
        run_dir = args.out / label.replace(" ", "_").replace(",", "").replace("+", "plus")
        flags = {stage: stage in stages for stage in _STAGES}
        config = load_config(
            None,
            [
                f"data.path={data_root}",
                f"model.name={model}",
                f"model.pretrained={str(pretrained).lower()}",
                f"model.overrides={json.dumps(flags)}",
                f"epochs={epochs}",
                "batch_size=16",
                "optim.lr=0.03",
                "optim.schedule=cosine",
                "optim.warmup_epochs=1",
                f"time_budget_min={args.budget_min}",
                f"out_dir={run_dir}",
            ],
        )
        started = time.monotonic()
        summary = run_training(config)
        train_min = (time.monotonic() - started) / 60
        checkpoint = load_checkpoint(summary.best_checkpoint)
        test_split = load_split(DataConfig(path=str(data_root)), "test", labels=checkpoint.labels)
        test = evaluate_checkpoint(checkpoint, test_split, progress=False).report
        results.append(
            {
                "run": label,
                "val_map": summary.best_val_map,
                "test_map": test.map,
                "test_of1": test.at_threshold["OF1"],
                "epochs_done": len(summary.epochs),
                "train_images_per_s": summary.epochs[-1].images_per_s,
                "wall_min": train_min,
            }
        )
        (args.out / "results.json").write_text(json.dumps(results, indent=2))
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"\n{args.budget_min:g}-minute CPU budget on synthetic conveyor data ({machine})")
    print(f"{'run':<32}{'val mAP':>9}{'test mAP':>10}{'test OF1':>10}{'epochs':>8}{'img/s':>8}")
    for r in results:
        print(
            f"{r['run']:<32}{r['val_map']:>9.3f}{r['test_map']:>10.3f}{r['test_of1']:>10.3f}"
            f"{r['epochs_done']:>8}{r['train_images_per_s']:>8.1f}"
        )


if __name__ == "__main__":
    main()
