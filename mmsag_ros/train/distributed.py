"""Distributed data parallel set-up from torchrun's environment variables.

``torchrun --nproc-per-node N -m mmsag_ros.cli train ...`` (or ``--nnodes``/``--rdzv-*`` for
several hosts) sets RANK, WORLD_SIZE and LOCAL_RANK; without them training runs in one process.
NCCL on CUDA, gloo on CPU. Only the primary rank logs, writes checkpoints and reports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mmsag_ros.errors import ConfigError

__all__ = ["DistributedContext", "cleanup_distributed", "init_distributed"]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True when several processes train together."""
        return self.world_size > 1

    def is_primary(self) -> bool:
        """True on the one process that logs and saves."""
        return self.rank == 0


def init_distributed(device: torch.device) -> DistributedContext:
    """Join the process group torchrun describes, or return a single-process context."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) <= 1:
        return DistributedContext()
    try:
        rank = int(os.environ["RANK"])
        world_size = int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except (KeyError, ValueError) as err:
        raise ConfigError(
            f"WORLD_SIZE is set but RANK/LOCAL_RANK are missing or invalid ({err}); "
            "start distributed training with torchrun"
        ) from err
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank)


def cleanup_distributed() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
