"""Training throughput (images/s) of named MM-SAG configurations on this machine.

One forward, backward and SGD step per batch on random normalised images, measured side by
side in one process after a warm-up; data loading is excluded (see train_budget.py for
end-to-end runs). Prints a table and writes JSON.

    .venv/bin/python bench/train_throughput.py --models mmsag_effl0_224 mmsag_r18_224 \
        mmsag_r101_448 --out bench/results/train_throughput.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from mmsag_ros.model import create_model
from mmsag_ros.train.losses import build_loss, multi_head_loss

NUM_LABELS = 8


def measure(name: str, *, batch_size: int, steps: int, warmup: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = create_model(name, num_labels=NUM_LABELS, pretrained=False).train()
    size = model.spec.input_size
    optimizer = torch.optim.SGD(model.param_groups(0.01), lr=0.01, momentum=0.9)
    loss_fn = build_loss("asl")
    images = torch.randn(batch_size, 3, size, size)
    targets = torch.randint(0, 2, (batch_size, NUM_LABELS)).float()
    durations = []
    for step in range(warmup + steps):
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = multi_head_loss(loss_fn, model(images)["head_logits"], targets)
        loss.backward()
        optimizer.step()
        if step >= warmup:
            durations.append(time.perf_counter() - started)
    per_batch_s = float(np.median(durations))
    return {
        "model": name,
        "input_size": size,
        "batch_size": batch_size,
        "images_per_s": batch_size / per_batch_s,
        "ms_per_image": 1000 * per_batch_s / batch_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=["mmsag_effl0_224", "mmsag_r18_224", "mmsag_r101_448"]
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = [
        measure(m, batch_size=args.batch_size, steps=args.steps, warmup=args.warmup)
        for m in args.models
    ]
    machine = (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
    )
    print(f"training throughput, forward+backward+SGD step, batch {args.batch_size} ({machine})")
    print(f"{'model':<18}{'input':>7}{'img/s':>9}{'ms/img':>9}")
    for row in rows:
        print(
            f"{row['model']:<18}{row['input_size']:>7}{row['images_per_s']:>9.1f}{row['ms_per_image']:>9.1f}"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
