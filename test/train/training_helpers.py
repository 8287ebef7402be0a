"""The training recipe shared by the training tests (uniquely named, unlike conftest.py)."""

from __future__ import annotations

from mmsag_ros.train.config import load_config


def training_config(synth_root, out_dir, *extra):
    """A training run's config on ``synth_root`` into ``out_dir``; ``extra`` overrides last."""
    # The whole trunk training, without the belt's augmentations or a warm-up: the recipe
    # these tests' thresholds were measured with (the CPU recipe's defaults train less).
    return load_config(
        None,
        [
            "model.name=mmsag_effl0_224",
            f"data.path={synth_root}",
            "data.workers=0",
            "batch_size=16",
            "model.freeze_stages=0",
            "augment.vflip=false",
            "augment.rot90=false",
            "augment.lighting=0",
            "optim.lr=0.05",
            "optim.schedule=cosine",
            "optim.warmup_epochs=0",
            f"out_dir={out_dir}",
            *extra,
        ],
    )
