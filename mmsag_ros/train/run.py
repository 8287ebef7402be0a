"""``mmsag train`` end to end: data, label priors, model, loaders, trainer, run directory."""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler

from mmsag_ros.data.dataset import AnnotatedSplit, MultiLabelImageDataset, check_images
from mmsag_ros.data.stats import label_statistics, mlgcn_adjacency
from mmsag_ros.data.transforms import EvalTransform, TrainTransform
from mmsag_ros.errors import ConfigError
from mmsag_ros.model import MMSAG, create_model
from mmsag_ros.model.text import embed_labels, label_phrases
from mmsag_ros.train.config import TrainConfig, config_to_dict
from mmsag_ros.train.dataset_splits import load_train_val
from mmsag_ros.train.distributed import (
    DistributedContext,
    cleanup_distributed,
    init_distributed,
)
from mmsag_ros.train.trainer import EpochResult, Trainer

__all__ = [
    "TrainingSummary",
    "build_label_priors",
    "prepare_training",
    "resolve_device",
    "run_training",
]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingSummary:
    """Where the run went and how it ended."""

    out_dir: Path
    best_checkpoint: Path
    best_val_map: float
    epochs: tuple[EpochResult, ...]
    primary: bool = True  # False on the other ranks of a distributed run


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; an explicit CUDA device without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available; use cpu")
    return device


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _loader(dataset, *, batch_size: int, sampler, workers: int, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        # Not persistent: a kept worker holds the copy of the dataset it started with, so
        # set_epoch would never reach it and every epoch would repeat epoch 0's augmentations.
        persistent_workers=False,
        generator=generator,
        drop_last=False,
    )


def build_label_priors(split: AnnotatedSplit, config: TrainConfig) -> tuple[np.ndarray, object]:
    """Static ML-GCN adjacency from training annotations and the label text embeddings."""
    stats = label_statistics(split)
    adjacency = mlgcn_adjacency(
        stats,
        threshold=config.model.adjacency_threshold,
        reweight=config.model.adjacency_reweight,
    )
    embeddings = embed_labels(
        label_phrases(split.labels),
        source=config.model.embeddings,
        trust_pickle=config.model.trust_pickle,
    )
    return adjacency, embeddings


def _freeze_pretrained_stages(model: MMSAG, config: TrainConfig) -> None:
    # create_model refuses pretrained=True where no packaged weights exist.
    if not (config.model.weights or config.model.pretrained):
        raise ConfigError(
            f"model.freeze_stages={config.model.freeze_stages} keeps backbone stages at their "
            f"starting weights, but {model.config.backbone} starts from random initialisation "
            "here; give model.weights=FILE or set model.freeze_stages=0"
        )
    model.backbone.freeze_stages(config.model.freeze_stages)
    _log.info(
        "backbone stages 1-%d of %d frozen at their pretrained weights",
        config.model.freeze_stages,
        len(model.backbone.stages()),
    )


def _train_transform(model: MMSAG, config: TrainConfig) -> EvalTransform | TrainTransform:
    if config.cache_frozen and config.cache_views == 1:
        # One stored view: the evaluation transform's (train/feature_cache.py).
        return EvalTransform(model.spec)
    augment = config.augment
    return TrainTransform(
        model.spec,
        flip=augment.hflip,
        vflip=augment.vflip,
        rot90=augment.rot90,
        lighting=augment.lighting,
    )


def _attention_grid(model: MMSAG, config: TrainConfig) -> int | None:
    """Side of the attention maps the box loss compares with boxes; None when it is off."""
    weight = config.optim.attention_weight
    if weight < 0:
        raise ConfigError(f"optim.attention_weight must be 0 or more, got {weight}")
    if not weight:
        return None
    if not model.config.semantic_attention:
        _log.warning(
            "optim.attention_weight=%g is not used: this model has no class attention maps "
            "(model.overrides.semantic_attention is off)",
            weight,
        )
        return None
    # Padded strided convolutions round up: 240 px at stride 32 gives 8 cells, not 7.
    return -(-model.config.input_size // model.backbone.stride)


def prepare_training(
    config: TrainConfig, *, device: torch.device, context: DistributedContext
) -> Trainer:
    """Read the data, build label priors, model and loaders; return a ready Trainer.

    With ``config.resume`` the trainer continues from that checkpoint's weights, optimizer,
    schedule and epoch.
    """
    _seed_everything(config.seed + context.rank)
    train_split, val_split = load_train_val(config.data, seed=config.seed)
    for split in (train_split, val_split):
        check_images(split)
    adjacency, embeddings = build_label_priors(train_split, config)
    model = create_model(
        config.model.name,
        num_labels=len(train_split.labels),
        label_embeddings=embeddings,
        adjacency=adjacency,
        pretrained=config.model.pretrained,
        weights=Path(config.model.weights) if config.model.weights else None,
        embedding_source=config.model.embeddings,
        **config.model.overrides,
    )
    if config.model.freeze_stages:
        _freeze_pretrained_stages(model, config)
    train_set = MultiLabelImageDataset(
        train_split,
        _train_transform(model, config),
        seed=config.seed,
        box_keep=config.augment.box_keep,
        box_grid=_attention_grid(model, config),
    )
    val_set = MultiLabelImageDataset(val_split, EvalTransform(model.spec), seed=config.seed)
    if context.enabled:
        train_sampler = DistributedSampler(train_set, shuffle=True, seed=config.seed)
        val_sampler = DistributedSampler(val_set, shuffle=False)
    else:
        generator = torch.Generator().manual_seed(config.seed)
        train_sampler = RandomSampler(train_set, generator=generator)
        val_sampler = SequentialSampler(val_set)
    out_dir = Path(config.out_dir)
    if context.is_primary():
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(config)))
        _log.info(
            "training %s on %d images (%d validation), %d classes, device %s, %d process(es)",
            config.model.name,
            len(train_set),
            len(val_set),
            len(train_split.labels),
            device,
            context.world_size,
        )
    workers, seed = config.data.workers, config.seed
    trainer = Trainer(
        model,
        config,
        labels=train_split.labels,
        train_loader=_loader(
            train_set,
            batch_size=config.batch_size,
            sampler=train_sampler,
            workers=workers,
            seed=seed,
        ),
        val_loader=_loader(
            val_set,
            batch_size=config.eval_batch_size,
            sampler=val_sampler,
            workers=workers,
            seed=seed,
        ),
        device=device,
        context=context,
        out_dir=out_dir,
    )
    if config.resume:
        trainer.resume(Path(config.resume))
    return trainer


def run_training(config: TrainConfig) -> TrainingSummary:
    """Train as the config says; return where the best checkpoint is."""
    device = resolve_device(config.device)
    context = init_distributed(device)
    try:
        trainer = prepare_training(config, device=device, context=context)
        results = trainer.fit()
        best = trainer.out_dir / "best.pt"
        if context.is_primary():
            summary = {
                "best_checkpoint": str(best),
                "best_val_map": trainer.best_map,
                "epochs": [r.epoch + 1 for r in results],
                "images_per_s": [r.images_per_s for r in results],
            }
            (trainer.out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        return TrainingSummary(
            trainer.out_dir, best, trainer.best_map, tuple(results), context.is_primary()
        )
    finally:
        cleanup_distributed()
