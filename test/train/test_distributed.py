"""One DDP step with 2 gloo processes equals one single-process step on the same global batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mmsag_ros.bundle.labels import LabelSet
from mmsag_ros.model import create_model
from mmsag_ros.train.config import load_config
from mmsag_ros.train.distributed import DistributedContext
from mmsag_ros.train.trainer import Trainer, freeze_batchnorm

LABELS = LabelSet.from_names(["metal", "plastic", "bottle", "carton"])
GLOBAL_BATCH = 4


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(5)
    images = torch.from_numpy(rng.normal(size=(GLOBAL_BATCH, 3, 224, 224)).astype(np.float32))
    targets = torch.from_numpy(rng.integers(0, 2, (GLOBAL_BATCH, len(LABELS))).astype(np.float32))
    return images, targets


def _trainer(context: DistributedContext, out_dir) -> Trainer:
    torch.manual_seed(0)  # identical initial weights in every process
    # Dropout off and BatchNorm statistics frozen: otherwise a half batch normalises
    # differently from the whole one and the two runs cannot agree.
    model = create_model("mmsag_r18_224", num_labels=len(LABELS), pretrained=False, dropout=0.0)
    config = load_config(None, ["model.freeze_bn=true", "optim.lr=0.1"])
    trainer = Trainer(
        model,
        config,
        labels=LABELS,
        train_loader=None,
        val_loader=None,
        device=torch.device("cpu"),
        context=context,
        out_dir=out_dir,
    )
    trainer.model.train()
    freeze_batchnorm(trainer.model)
    return trainer


def _ddp_worker(rank: int, world_size: int, init_file: str, out_path: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        trainer = _trainer(DistributedContext(rank=rank, world_size=world_size), out_path)
        images, targets = _batch()
        shard = slice(rank * GLOBAL_BATCH // world_size, (rank + 1) * GLOBAL_BATCH // world_size)
        trainer._run_batch(images[shard], targets[shard])
        if rank == 0:
            torch.save(trainer.model.state_dict(), out_path)
    finally:
        dist.destroy_process_group()


def _single_step(tmp_path, batch_slice: slice) -> dict[str, torch.Tensor]:
    trainer = _trainer(DistributedContext(), tmp_path)
    images, targets = _batch()
    trainer._run_batch(images[batch_slice], targets[batch_slice])
    return trainer.model.state_dict()


@pytest.mark.slow
def test_ddp_step_equals_single_process_step(tmp_path):
    out_path = tmp_path / "ddp_state.pt"
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(out_path)), nprocs=2, join=True)
    ddp_state = torch.load(out_path, weights_only=True)

    initial = _trainer(DistributedContext(), tmp_path).model.state_dict()
    full_batch = _single_step(tmp_path, slice(None))
    half_batch = _single_step(tmp_path, slice(0, GLOBAL_BATCH // 2))

    changed = [k for k in full_batch if not torch.equal(full_batch[k], initial[k])]
    assert len(changed) > 50, "the step did not update the model"
    for key in full_batch:
        torch.testing.assert_close(ddp_state[key], full_batch[key], rtol=1e-4, atol=1e-6)
    # The comparison can fail: one rank's half batch alone gives a different update.
    assert any(not torch.allclose(half_batch[k], full_batch[k], atol=1e-6) for k in changed)


@pytest.mark.slow
def test_torchrun_launches_mmsag_train_with_two_gloo_processes(tmp_path):
    """The documented multi-process launch: torchrun env vars -> init_distributed -> DDP."""
    import subprocess
    import sys
    from pathlib import Path

    from mmsag_ros.data.synth import generate_dataset

    data = tmp_path / "data"
    generate_dataset(data, num_trainval=20, num_test=4, image_size=(96, 72), seed=2)
    out_dir = tmp_path / "run"
    torchrun = Path(sys.executable).parent / "torchrun"
    command = [
        str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "mmsag_ros.cli", "train",
        "--set", f"data.path={data}", "--set", "data.workers=0",
        "--set", "model.name=mmsag_r18_224", "--set", "model.pretrained=false",
        "--set", "model.freeze_stages=0",
        "--set", "model.embeddings=learnable", "--set", "epochs=1", "--set", "batch_size=2",
        "--set", "max_batches_per_epoch=2", "--set", "device=cpu", "--out", str(out_dir),
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    # Only the primary rank logs and writes: one line per epoch, one set of checkpoints.
    assert len((out_dir / "metrics.jsonl").read_text().splitlines()) == 1
    assert (out_dir / "best.pt").is_file() and (out_dir / "last.pt").is_file()
    assert run.stdout.count("best validation mAP") == 1
