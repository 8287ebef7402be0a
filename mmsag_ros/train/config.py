"""Training configuration: dataclass defaults, then a YAML file, then ``--set`` overrides.

The defaults are the CPU recipe, the best measured on scenes composed from real photos
(``bench/results/train_budget_photos_fixed_2026-12-07.txt``): EfficientNet-Lite0 at 224 with
its stem and first three block stages frozen, the belt camera's augmentations, a cosine
schedule after one warm-up epoch, SGD. ``config/train_effl0_224_cpu.yaml`` adds the
measured 10-minute budget; ``config/train_effl0_224.yaml`` is the GPU preset (every stage
trains) and ``config/train_mlkw_r101_448.yaml`` the paper's setting.

One config system for the project. Every key a YAML file or ``--set key=value`` names is
checked against these dataclasses: an unknown key fails with the closest valid one, a value of
the wrong type fails with the expected type. The resolved config is written into the run
directory and into every checkpoint.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmsag_ros.errors import ConfigError

_SCIENTIFIC = re.compile(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+")
__all__ = [
    "AugmentConfig",
    "DataConfig",
    "ModelSection",
    "OptimConfig",
    "TrainConfig",
    "config_to_dict",
    "load_config",
]


@dataclass
class DataConfig:
    """Where the labelled images are and how to split them."""

    format: str = "voc"  # voc | coco | csv
    path: str = ""  # VOC root, COCO annotation JSON or CSV file
    image_root: str | None = None  # images of COCO/CSV data
    train_split: str = "trainval"
    val_split: str | None = None  # None: carve a stratified split from train_split
    val_fraction: float = 0.2
    test_split: str = "test"
    difficult: str = "ignore"  # VOC difficult entries: ignore | positive | negative
    level: str = "category"  # COCO: category | supercategory
    workers: int = 1  # decoding processes beside the trainer: 1 on 2 cores, more on more
    # Extra training images: label tables in the CSV layout (`mmsag bag export-frames` writes
    # <folder>/labels.csv with <folder>/images), appended to the training split only, so
    # validation and test stay the dataset's own. Same classes, same order.
    extra_train: list[str] = field(default_factory=list)


@dataclass
class ModelSection:
    """Which network to build and with which priors."""

    name: str = "mmsag_effl0_224"
    pretrained: bool = True  # packaged ImageNet weights, where a backbone has them
    weights: str | None = None  # a local backbone state-dict file
    embeddings: str = "minilm"  # minilm | learnable | path to .npy/.pkl
    trust_pickle: bool = False  # allow a .pkl embedding file (unpickling runs code)
    adjacency_threshold: float = 0.4  # ML-GCN t
    adjacency_reweight: float = 0.2  # ML-GCN p
    freeze_bn: bool = False  # keep BatchNorm statistics fixed (small batches, exact DDP)
    # Leading backbone stages (the stem is stage 1) kept at their pretrained weights.
    freeze_stages: int = 4
    overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {fusion: false}


@dataclass
class AugmentConfig:
    """Training augmentation beyond ML-GCN's random crop (data/transforms.py)."""

    hflip: bool = True
    vflip: bool = True  # a top-down belt camera has no "up"
    rot90: bool = True  # ... and no "left": random quarter turns
    lighting: float = 0.2  # brightness, contrast and lamp colour changes of up to +-s
    # With boxes (VOC annotations), a positive label stays positive while one of its objects
    # shows at least this share of its area in the crop, is ignored below it and becomes
    # negative when none shows. null: labels never change (datasets without boxes).
    box_keep: float | None = 0.4


@dataclass
class OptimConfig:
    """SGD or AdamW with a head/backbone learning-rate split and a step or cosine schedule."""

    # sgd: Nesterov-free SGD with momentum; adamw: decoupled weight decay (momentum unused;
    # it wants a smaller lr, about 1e-3, and a larger weight_decay, about 0.05).
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.03
    backbone_lr_mult: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"  # cosine | step (milestones, gamma)
    milestones: list[int] = field(default_factory=lambda: [30, 40])
    gamma: float = 0.1
    warmup_epochs: int = 1
    grad_clip: float = 10.0
    loss: str = "asl"  # asl | bce
    # With boxes: weight of the loss that pulls each present class's attention map onto its
    # objects (train/losses.py attention_box_loss); data without boxes is not affected.
    # 0: attention is learned from labels alone. On a frozen trunk 1 took pointing from 0.36
    # to 0.56 at a cost of 0.035 test mAP; with stages 5-9 training, the CPU preset reached
    # 0.79 and 0.736 (bench/results/train_budget_photos_2026-12-06.txt, one seed); 5 diverged.
    attention_weight: float = 1.0


@dataclass
class TrainConfig:
    """Everything ``mmsag train`` needs; the defaults are the CPU recipe (module docstring)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelSection = field(default_factory=ModelSection)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    epochs: int = 16
    batch_size: int = 16
    eval_batch_size: int = 32
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # mixed precision, on CUDA only
    channels_last: bool = True  # NHWC tensors: about 2x faster convolutions on CPUs
    out_dir: str = "runs/mmsag"
    # With model.freeze_stages: run the frozen stages once and train on their stored outputs
    # (fp16, in memory). See train/feature_cache.py.
    cache_frozen: bool = False
    # With cache_frozen: 1 stores the evaluation view (a horizontal flip of the maps the only
    # augmentation); N > 1 stores N views drawn by the training transform, labels and boxes
    # following each, and every epoch draws one of them per image.
    cache_views: int = 1
    time_budget_min: float | None = None  # stop cleanly after this much training time
    max_batches_per_epoch: int | None = None  # cap for smoke runs
    resume: str | None = None


def config_to_dict(config: object) -> dict[str, Any]:
    """The config as plain data (for YAML, JSON and checkpoints)."""
    return dataclasses.asdict(config)


def _check_type(value: Any, expected: Any, key: str) -> Any:
    """Return ``value`` converted to ``expected`` where lossless, else raise ConfigError."""
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(expected)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(value, option, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: expected {expected}, got {value!r}")
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_type,) = typing.get_args(expected)
        return [_check_type(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is float and isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
        # YAML 1.1 reads 5e-4 (no dot) as a string; a person wrote a number.
        return float(value)
    # Exact types only: YAML's `yes` is a bool, and a bool must not pass as an int.
    if expected in (int, float, str, bool) and type(value) is expected:
        return value
    raise ConfigError(f"{key}: expected {expected.__name__}, got {value!r}")


def _apply(target: object, values: Mapping[str, Any], prefix: str = "") -> None:
    hints = typing.get_type_hints(type(target))
    names = [f.name for f in dataclasses.fields(target)]
    for name, value in values.items():
        key = f"{prefix}{name}"
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else ""
            raise ConfigError(f"unknown config key {key!r}{hint}")
        current = getattr(target, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{key}: expected a mapping of {key}.* keys, got {value!r}")
            _apply(current, value, f"{key}.")
        else:
            setattr(target, name, _check_type(value, hints[name], key))


def _parse_override(text: str) -> dict[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value (e.g. optim.lr=0.01), got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {err}") from err
    nested: dict[str, Any] = value
    for part in reversed(key.strip().split(".")):
        nested = {part: nested}
    return nested


def load_config(path: Path | None = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Resolve a training config: defaults, then the YAML file, then ``key=value`` overrides."""
    config = TrainConfig()
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        _apply(config, loaded)
    for text in overrides:
        _apply(config, _parse_override(text))
    return config
