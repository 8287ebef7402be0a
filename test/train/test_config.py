"""The config system: defaults, YAML, --set overrides, and clear errors."""

from __future__ import annotations

import pytest

from mmsag_ros.errors import ConfigError
from mmsag_ros.train.config import TrainConfig, config_to_dict, load_config


def test_defaults_follow_the_recipe():
    config = load_config()
    assert config == TrainConfig()
    assert (config.optim.lr, config.optim.backbone_lr_mult, config.optim.momentum) == (
        0.03,
        0.1,
        0.9,
    )
    assert (config.batch_size, config.epochs, config.optim.schedule) == (16, 16, "cosine")
    assert (config.model.freeze_stages, config.optim.loss) == (4, "asl")


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("model:\n  name: mmsag_r18_224\noptim:\n  lr: 0.01\nepochs: 3\n")
    config = load_config(
        path, ["optim.lr=0.002", "model.overrides={fusion: false}", "data.val_split=null"]
    )
    assert config.model.name == "mmsag_r18_224"
    assert config.optim.lr == 0.002  # the command line wins over the file
    assert config.epochs == 3
    assert config.model.overrides == {"fusion": False}
    assert config.data.val_split is None
    assert config_to_dict(config)["optim"]["lr"] == 0.002


def test_int_is_accepted_for_float():
    assert load_config(None, ["optim.lr=1"]).optim.lr == 1.0


def test_scientific_notation_is_a_float_though_yaml_reads_it_as_text(tmp_path):
    # YAML 1.1 reads 5e-4 (no dot) as the string "5e-4".
    assert load_config(None, ["optim.weight_decay=5e-4"]).optim.weight_decay == 0.0005
    path = tmp_path / "run.yaml"
    path.write_text("optim:\n  lr: 3E-2\n")
    assert load_config(path, []).optim.lr == 0.03
    with pytest.raises(ConfigError, match="expected float, got 'e-4'"):
        load_config(None, ["optim.weight_decay=e-4"])


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("optim.lrr=0.1", r"unknown config key 'optim.lrr'; did you mean optim.lr\?"),
        ("epoch=3", r"did you mean epochs\?"),
        ("epochs=three", "epochs: expected int, got 'three'"),
        ("epochs=2.5", "epochs: expected int, got 2.5"),
        ("amp=1", "amp: expected bool, got 1"),
        ("optim=3", "expected a mapping of optim"),
        ("optim.milestones=[1, x]", r"optim.milestones\[1\]: expected int"),
        ("noequals", "--set expects key=value"),
    ],
)
def test_bad_overrides_fail_clearly(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_bad_files_fail_clearly(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("optim: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(scalar)


@pytest.mark.parametrize(
    "name", ["train_mlkw_r101_448.yaml", "train_effl0_224.yaml", "train_effl0_224_cpu.yaml"]
)
def test_shipped_configs_load(name):
    from support import REPO

    config = load_config(REPO / "config" / name)
    assert config.model.name.startswith("mmsag_")


def test_the_defaults_are_the_cpu_preset():
    """One recipe: ``mmsag train`` and the demo with no config train what the CPU preset says."""
    from support import REPO

    preset = load_config(REPO / "config" / "train_effl0_224_cpu.yaml")
    defaults = load_config(None)
    for section in ("model", "augment", "optim"):
        assert getattr(defaults, section) == getattr(preset, section), section
    assert (defaults.epochs, defaults.batch_size) == (preset.epochs, preset.batch_size)
    assert defaults.data.workers == preset.data.workers
    assert preset.time_budget_min == 10 and defaults.time_budget_min is None


def test_the_gpu_and_paper_presets_train_every_stage():
    from support import REPO

    gpu = load_config(REPO / "config" / "train_effl0_224.yaml")
    paper = load_config(REPO / "config" / "train_mlkw_r101_448.yaml")
    assert gpu.model.freeze_stages == paper.model.freeze_stages == 0
    assert gpu.augment.rot90 and not paper.augment.rot90
    assert (paper.optim.schedule, paper.optim.warmup_epochs, paper.epochs) == ("step", 0, 50)
