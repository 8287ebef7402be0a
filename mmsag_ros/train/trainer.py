"""The training loop: one epoch of SGD, validation, checkpointing, resume.

Shaped like pytorch/examples' DDP trainer: ``_run_batch`` -> ``_run_epoch`` -> ``validate`` ->
``fit``. The same code runs in one process or under torchrun; only the primary rank logs and
writes files. Checkpoint selection and threshold calibration use the validation split only.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from mmsag_ros.bundle.labels import LabelSet
from mmsag_ros.errors import ConfigError
from mmsag_ros.metrics import MetricReport, MultiLabelMeter, calibrate_thresholds
from mmsag_ros.model.checkpoint import load_checkpoint, save_checkpoint
from mmsag_ros.model.mmsag import MMSAG
from mmsag_ros.progress import progress_bar
from mmsag_ros.train.config import TrainConfig, config_to_dict
from mmsag_ros.train.distributed import DistributedContext
from mmsag_ros.train.feature_cache import ModelTail, cache_frozen_features
from mmsag_ros.train.losses import attention_box_loss, build_loss, multi_head_loss

__all__ = ["EpochResult", "Trainer", "build_scheduler", "freeze_batchnorm"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochResult:
    """What one epoch produced (primary rank's view)."""

    epoch: int
    train_loss: float
    images_per_s: float
    val_map: float
    val_report: dict[str, Any]
    stopped_early: bool


def build_optimizer(model: MMSAG, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum or AdamW over the model's parameter groups (head/backbone lr split)."""
    optim = config.optim
    groups = model.param_groups(
        optim.lr, backbone_lr_mult=optim.backbone_lr_mult, weight_decay=optim.weight_decay
    )
    if optim.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum)
    if optim.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=optim.lr)
    raise ConfigError(f"optim.optimizer must be sgd or adamw, got {optim.optimizer!r}")


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    budget_used: Callable[[], float] | None = None,
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch learning-rate factor: linear warm-up, then step decay or cosine.

    With ``budget_used`` (the share of the time budget spent, 0 to 1), the cosine follows
    whichever of epochs and time runs out first, so a run that the budget stops still ends
    at a low learning rate instead of being cut off at a high one.
    """
    optim = config.optim
    if optim.schedule not in ("step", "cosine"):
        raise ConfigError(f"optim.schedule must be step or cosine, got {optim.schedule!r}")

    def factor(epoch: int) -> float:
        if epoch < optim.warmup_epochs:
            return (epoch + 1) / (optim.warmup_epochs + 1)
        if optim.schedule == "step":
            return optim.gamma ** sum(epoch >= m for m in optim.milestones)
        progress = (epoch - optim.warmup_epochs) / max(1, config.epochs - optim.warmup_epochs)
        if budget_used is not None:
            progress = max(progress, budget_used())
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _check_resumable(path: Path, saved: dict[str, Any], config: TrainConfig) -> None:
    """Refuse a resume whose optimiser state cannot fit: another optimiser or frozen stages.

    Checkpoints from before these options trained SGD with every stage, as their defaults did.
    """
    then = (
        saved.get("optim", {}).get("optimizer", "sgd"),
        saved.get("model", {}).get("freeze_stages", 0),
    )
    now = (config.optim.optimizer, config.model.freeze_stages)
    if then != now:
        raise ConfigError(
            f"{path} trained with optim.optimizer={then[0]} and model.freeze_stages={then[1]}; "
            f"resuming needs the same (this config has {now[0]} and {now[1]}): add "
            f"--set optim.optimizer={then[0]} --set model.freeze_stages={then[1]}"
        )


def freeze_batchnorm(model: nn.Module) -> None:
    """Keep BatchNorm running statistics fixed while the rest trains (call after .train())."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


class Trainer:
    """Trains one model on one dataset; see module docstring."""

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        *,
        labels: LabelSet,
        train_loader: DataLoader,
        val_loader: DataLoader,
        device: torch.device,
        context: DistributedContext,
        out_dir: Path,
    ) -> None:
        self.config = config
        self.labels = labels
        self.device = device
        self.context = context
        self.out_dir = Path(out_dir)
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.memory_format = (
            torch.channels_last if config.channels_last else torch.contiguous_format
        )
        # Unwrapped: what checkpoints store (state dicts load whatever the memory format).
        self.model = model.to(device, memory_format=self.memory_format)
        self.ddp_model = (
            DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None
            )
            if context.enabled
            else self.model
        )
        # What maps a loader batch to outputs: the whole model on images, or with
        # cache_frozen the stages after the frozen ones on stored features (_use_feature_cache).
        self._train_forward: nn.Module = self.ddp_model
        self._eval_forward: nn.Module = self.model
        if config.cache_frozen or config.cache_views != 1:
            self._check_cache_config()
        self.optimizer = build_optimizer(model, config)
        self._deadline = (
            time.monotonic() + 60 * config.time_budget_min if config.time_budget_min else None
        )
        self.scheduler = build_scheduler(
            self.optimizer, config, self._budget_used if self._deadline else None
        )
        self.use_amp = config.amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.loss_fn = build_loss(config.optim.loss)
        self.start_epoch = 0
        self.best_map = -1.0
        self.best_thresholds = [0.5] * len(labels)

    def _check_cache_config(self) -> None:
        if not self.config.cache_frozen:
            raise ConfigError(
                "cache_views stores views of frozen-stage features; set cache_frozen=true"
            )
        if self.config.model.freeze_stages < 1:
            raise ConfigError(
                "cache_frozen=true stores the output of the frozen backbone stages; "
                "set model.freeze_stages=N (N >= 1) as well"
            )
        if self.context.enabled:
            raise ConfigError(
                "cache_frozen=true runs in one process; drop it or train without torchrun"
            )
        views = self.config.cache_views
        if isinstance(views, bool) or not isinstance(views, int) or views < 1:
            raise ConfigError(f"cache_views must be 1 or more, got {views!r}")

    def _use_feature_cache(self) -> None:
        """Run the frozen stages once over both loaders and train on their stored outputs.

        With one view the training loader must use the evaluation transform, with several the
        training transform (prepare_training does this): the stored maps are what the epochs see.
        """
        stages = self.config.model.freeze_stages
        common = {"device": self.device, "memory_format": self.memory_format}
        train = cache_frozen_features(
            self.model,
            self.train_loader,
            stages,
            views=self.config.cache_views,
            flip=True,
            seed=self.config.seed,
            desc="caching training features",
            **common,
        )
        val = cache_frozen_features(
            self.model, self.val_loader, stages, desc="caching validation features", **common
        )
        generator = torch.Generator().manual_seed(self.config.seed)
        self.train_loader = DataLoader(
            train, batch_size=self.config.batch_size, shuffle=True, generator=generator
        )
        self.val_loader = DataLoader(val, batch_size=self.config.eval_batch_size)
        self._train_forward = self._eval_forward = ModelTail(self.model, stages)

    def _budget_used(self) -> float:
        remaining_s = self._deadline - time.monotonic()
        return 1.0 - remaining_s / (60 * self.config.time_budget_min)

    def _out_of_time(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _images_to_device(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(self.device, memory_format=self.memory_format, non_blocking=True)

    def _run_batch(
        self, images: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor | None = None
    ) -> float:
        images = self._images_to_device(images)
        targets = targets.to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
            outputs = self._train_forward(images)
        loss = multi_head_loss(self.loss_fn, [h.float() for h in outputs["head_logits"]], targets)
        if masks is not None:
            masks = masks.to(self.device, non_blocking=True)
            box_loss = attention_box_loss(outputs["attention"], masks, targets)
            loss = loss + self.config.optim.attention_weight * box_loss
        self.scaler.scale(loss).backward()
        if self.config.optim.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach())

    def _run_epoch(self, epoch: int) -> tuple[float, float, bool]:
        """Train one epoch; return mean loss, images/s and whether the time budget ran out."""
        sampler = getattr(self.train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        self.train_loader.dataset.set_epoch(epoch)
        self.model.train()
        if self.config.model.freeze_bn:
            freeze_batchnorm(self.model)
        limit = self.config.max_batches_per_epoch or len(self.train_loader)
        progress = progress_bar(
            total=min(limit, len(self.train_loader)),
            desc=f"epoch {epoch + 1}/{self.config.epochs}",
            enabled=self.context.is_primary(),
            leave=False,
        )
        losses, seen, started, out_of_time = [], 0, time.perf_counter(), False
        for step, (images, targets, _, *masks) in enumerate(self.train_loader):
            if step >= limit:
                break
            # A fourth part, the box masks, comes with optim.attention_weight (run.py).
            losses.append(self._run_batch(images, targets, *masks))
            seen += len(images)
            progress.update()
            progress.set_postfix(loss=f"{losses[-1]:.4f}")
            if self._out_of_time():
                out_of_time = True
                break
        progress.close()
        elapsed_s = time.perf_counter() - started
        self.scheduler.step()
        return (
            float(np.mean(losses)) if losses else float("nan"),
            seen * self.context.world_size / max(elapsed_s, 1e-9),
            out_of_time,
        )

    @torch.no_grad()
    def predict(self, loader: DataLoader) -> MultiLabelMeter:
        """Sigmoid scores and targets of every sample in ``loader``, gathered over ranks."""
        self.model.eval()
        meter = MultiLabelMeter()
        for images, targets, indices in loader:
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
                logits = self._eval_forward(self._images_to_device(images))["logits"]
            meter.update(torch.sigmoid(logits.float()).cpu(), targets, indices)
        meter.all_reduce()
        return meter

    def validate(self) -> tuple[MetricReport, list[float]]:
        """Validation metrics at thresholds calibrated on this same validation split."""
        meter = self.predict(self.val_loader)
        thresholds = calibrate_thresholds(meter.scores, meter.targets).tolist()
        return meter.compute(np.asarray(thresholds)), thresholds

    def _checkpoint_payload(
        self, epoch: int, report: MetricReport, thresholds: list[float]
    ) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "model_name": self.config.model.name,
            "model_config": self.model.config.to_dict(),
            "model_state": self.model.state_dict(),
            "labels": self.labels.to_dict(),
            "spec": self.model.spec.to_dict(),
            "thresholds": thresholds,
            "metrics": {"val": report.to_dict()},
            "train_config": config_to_dict(self.config),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "best_map": max(self.best_map, report.map),
            "best_thresholds": self.best_thresholds,
        }

    def resume(self, path: Path) -> None:
        """Continue from a checkpoint: weights, optimizer, schedule, AMP scaler, best metric."""
        checkpoint = load_checkpoint(path, map_location=self.device)
        raw = checkpoint.raw
        _check_resumable(path, raw.get("train_config") or {}, self.config)
        self.model.load_state_dict(checkpoint.model_state)
        self.optimizer.load_state_dict(raw["optimizer"])
        self.scheduler.load_state_dict(raw["scheduler"])
        self.scaler.load_state_dict(raw["scaler"])
        self.start_epoch = checkpoint.epoch + 1
        self.best_map = float(raw["best_map"])
        self.best_thresholds = list(raw["best_thresholds"])
        _log.info("resumed from %s at epoch %d", path, self.start_epoch + 1)

    def fit(self, max_epochs: int | None = None) -> list[EpochResult]:
        """Train until ``max_epochs`` (default: config.epochs) or the time budget runs out."""
        if self.config.cache_frozen and not isinstance(self._train_forward, ModelTail):
            self._use_feature_cache()  # inside the time budget: it is part of training's cost
        results = []
        for epoch in range(self.start_epoch, max_epochs or self.config.epochs):
            loss, rate, out_of_time = self._run_epoch(epoch)
            report, thresholds = self.validate()
            improved = report.map > self.best_map
            if improved:
                self.best_map, self.best_thresholds = report.map, thresholds
            result = EpochResult(epoch, loss, rate, report.map, report.to_dict(), out_of_time)
            results.append(result)
            if self.context.is_primary():
                self._record(result, report, thresholds, improved)
            if out_of_time:
                _log.info("time budget of %s min reached", self.config.time_budget_min)
                break
        return results

    def _record(
        self, result: EpochResult, report: MetricReport, thresholds: list[float], improved: bool
    ) -> None:
        payload = self._checkpoint_payload(result.epoch, report, thresholds)
        save_checkpoint(self.out_dir / "last.pt", payload)
        if improved:
            save_checkpoint(self.out_dir / "best.pt", payload)
        with (self.out_dir / "metrics.jsonl").open("a") as log_file:
            record = {
                "epoch": result.epoch + 1,
                "train_loss": result.train_loss,
                "images_per_s": result.images_per_s,
                "val_map": result.val_map,
                "best": improved,
            }
            log_file.write(json.dumps(record) + "\n")
        _log.info(
            "epoch %d: loss %.4f, %.1f img/s, val mAP %.4f%s",
            result.epoch + 1,
            result.train_loss,
            result.images_per_s,
            result.val_map,
            " (best)" if improved else "",
        )
