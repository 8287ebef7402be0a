"""The optimiser (SGD or AdamW) and the learning-rate schedule: warm-up, step decay, and a
cosine that follows the time budget."""

from __future__ import annotations

import math

import pytest
import torch

from mmsag_ros.errors import ConfigError
from mmsag_ros.model import create_model
from mmsag_ros.train.config import load_config
from mmsag_ros.train.trainer import build_optimizer, build_scheduler

SMALL = {"width": 32, "num_heads": 4, "ffn_dim": 64, "attention_dim": 16}


def _factors(overrides, epochs, budget_used=None):
    config = load_config(None, ["optim.warmup_epochs=0", *overrides])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(optimizer, config, budget_used)
    factors = []
    for _ in range(epochs):
        factors.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return factors


def test_cosine_by_epochs_after_warm_up():
    factors = _factors(["epochs=5", "optim.schedule=cosine", "optim.warmup_epochs=1"], 5)
    expected = [0.5] + [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert factors == pytest.approx(expected)


def test_step_decay_at_the_milestones():
    factors = _factors(["optim.schedule=step", "optim.milestones=[2, 3]", "optim.gamma=0.1"], 4)
    assert factors == pytest.approx([1.0, 1.0, 0.1, 0.01])


def test_cosine_follows_the_budget_when_time_runs_out_before_the_epochs():
    # 30 epochs planned, but each epoch uses a fifth of the budget: the cosine reaches its end
    # by the fifth epoch instead of staying near the top until the budget cuts it off.
    spent = iter([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    factors = _factors(["epochs=30", "optim.schedule=cosine"], 5, budget_used=lambda: next(spent))
    expected = [0.5 * (1 + math.cos(math.pi * share)) for share in (0.0, 0.2, 0.4, 0.6, 0.8)]
    assert factors == pytest.approx(expected)
    # When the epochs run out first, they set the pace as before.
    slow = _factors(["epochs=5", "optim.schedule=cosine"], 5, budget_used=lambda: 0.0)
    assert slow == pytest.approx(_factors(["epochs=5", "optim.schedule=cosine"], 5))


def _model():
    torch.manual_seed(0)
    return create_model(
        "mmsag_r18_224", num_labels=3, pretrained=False, label_embeddings=None, **SMALL
    )


@pytest.mark.parametrize(
    ("name", "kind", "extra"),
    [("sgd", torch.optim.SGD, {"momentum": 0.8}), ("adamw", torch.optim.AdamW, {})],
)
def test_the_optimizer_named_in_the_config_keeps_the_lr_split_and_decay(name, kind, extra):
    overrides = [f"optim.optimizer={name}", "optim.lr=0.002", "optim.weight_decay=0.05"]
    overrides += ["optim.backbone_lr_mult=0.1", "optim.momentum=0.8"]
    optimizer = build_optimizer(_model(), load_config(None, overrides))
    assert type(optimizer) is kind
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert groups["head"]["lr"] == pytest.approx(0.002)
    assert groups["backbone"]["lr"] == pytest.approx(0.0002)
    assert groups["head"]["weight_decay"] == 0.05
    assert groups["head_no_decay"]["weight_decay"] == 0.0
    for key, value in extra.items():
        assert groups["head"][key] == value


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_each_optimizer_lowers_the_loss_on_a_fixed_batch(name):
    model = _model()
    config = load_config(None, [f"optim.optimizer={name}", "optim.lr=0.001"])
    optimizer = build_optimizer(model, config)
    images, targets = torch.randn(4, 3, 64, 64), torch.tensor([[1.0, 0, 1], [0, 1, 0]] * 2)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        logits = model(images)["logits"]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_an_unknown_optimizer_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"sgd or adamw, got 'adam'"):
        build_optimizer(_model(), load_config(None, ["optim.optimizer=adam"]))
