"""The learning-rate schedule: warm-up, step decay, and a cosine that follows the time budget."""

from __future__ import annotations

import math

import pytest
import torch

from mmsag_ros.train.config import load_config
from mmsag_ros.train.trainer import build_scheduler


def _factors(overrides, epochs, budget_used=None):
    config = load_config(None, overrides)
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
