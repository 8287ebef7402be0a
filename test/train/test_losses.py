"""ASL and BCE against hand computations; ignored targets; head summation; errors."""

from __future__ import annotations

import math

import pytest
import torch

from mmsag_ros.errors import ConfigError
from mmsag_ros.train.losses import (
    AsymmetricLoss,
    BCEWithIgnore,
    attention_box_loss,
    build_loss,
    multi_head_loss,
)

LOGITS = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 0.0, 1.5]])
TARGETS = torch.tensor([[1.0, 0.0, -1.0], [1.0, 0.0, 0.0]])


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _asl_element(x: float, y: float, gamma_neg=4.0, gamma_pos=0.0, clip=0.05) -> float:
    p = _sigmoid(x)
    if y == 1:
        return -((1 - p) ** gamma_pos) * math.log(p)
    shifted = max(p - clip, 0.0)
    return -(shifted**gamma_neg) * math.log(1 - shifted)


def _bce_element(x: float, y: float) -> float:
    p = _sigmoid(x)
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def _hand_total(element) -> tuple[float, int]:
    total, count = 0.0, 0
    for row_x, row_y in zip(LOGITS.tolist(), TARGETS.tolist(), strict=True):
        for x, y in zip(row_x, row_y, strict=True):
            if y >= 0:
                total += element(x, y)
                count += 1
    return total, count


def test_asl_matches_hand_computation() -> None:
    total, count = _hand_total(_asl_element)
    batch = LOGITS.shape[0]
    assert AsymmetricLoss()(LOGITS, TARGETS).item() == pytest.approx(total / batch, rel=1e-6)
    summed = AsymmetricLoss(reduction="sum")(LOGITS, TARGETS).item()
    assert summed == pytest.approx(total, rel=1e-6)
    mean = AsymmetricLoss(reduction="mean")(LOGITS, TARGETS).item()
    assert mean == pytest.approx(total / count, rel=1e-6)


def test_asl_with_other_exponents_by_hand() -> None:
    def element(x: float, y: float) -> float:
        return _asl_element(x, y, gamma_neg=2.0, gamma_pos=1.0, clip=0.0)

    total, _ = _hand_total(element)
    loss = AsymmetricLoss(gamma_neg=2.0, gamma_pos=1.0, clip=0.0, reduction="sum")
    assert loss(LOGITS, TARGETS).item() == pytest.approx(total, rel=1e-6)


def test_asl_discards_easy_negatives() -> None:
    # p = sigmoid(-4) ~ 0.018 < clip: the shifted probability is 0, so is the loss.
    loss = AsymmetricLoss(reduction="sum")(torch.tensor([[-4.0]]), torch.tensor([[0.0]]))
    assert loss.item() == 0.0


def test_asl_without_focusing_is_bce() -> None:
    plain = AsymmetricLoss(gamma_neg=0.0, gamma_pos=0.0, clip=0.0)(LOGITS, TARGETS)
    torch.testing.assert_close(plain, BCEWithIgnore()(LOGITS, TARGETS))


def test_bce_matches_hand_computation() -> None:
    total, count = _hand_total(_bce_element)
    assert BCEWithIgnore()(LOGITS, TARGETS).item() == pytest.approx(total / 2, rel=1e-6)
    mean = BCEWithIgnore(reduction="mean")(LOGITS, TARGETS).item()
    assert mean == pytest.approx(total / count, rel=1e-6)


@pytest.mark.parametrize("name", ["asl", "bce"])
def test_ignored_entries_have_no_effect(name: str) -> None:
    loss = build_loss(name)
    logits = LOGITS.clone().requires_grad_(True)
    value = loss(logits, TARGETS)
    value.backward()
    assert logits.grad[0, 2] == 0.0
    assert (logits.grad[TARGETS >= 0] != 0).any()
    wild = LOGITS.clone()
    wild[0, 2] = 1e4
    torch.testing.assert_close(loss(wild, TARGETS), value.detach())


@pytest.mark.parametrize("name", ["asl", "bce"])
def test_extreme_logits_stay_finite(name: str) -> None:
    logits = torch.tensor([[80.0, -80.0], [-80.0, 80.0]], requires_grad=True)
    value = build_loss(name)(logits, torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()


def test_all_ignored_gives_zero() -> None:
    targets = torch.full_like(LOGITS, -1.0)
    for reduction in ("batch_mean", "sum", "mean"):
        assert AsymmetricLoss(reduction=reduction)(LOGITS, targets).item() == 0.0


def test_multi_head_loss_sums_heads() -> None:
    loss = build_loss("asl")
    second = LOGITS.flip(1)
    expected = loss(LOGITS, TARGETS) + loss(second, TARGETS)
    torch.testing.assert_close(multi_head_loss(loss, (LOGITS, second), TARGETS), expected)
    torch.testing.assert_close(multi_head_loss(loss, [LOGITS], TARGETS), loss(LOGITS, TARGETS))


def test_multi_head_loss_needs_heads() -> None:
    with pytest.raises(ValueError, match="at least one head"):
        multi_head_loss(build_loss("bce"), [], TARGETS)


def test_shape_mismatch() -> None:
    with pytest.raises(ValueError, match=r"logits \(2, 3\) and targets \(2, 2\)"):
        BCEWithIgnore()(LOGITS, TARGETS[:, :2])


def test_build_loss_errors() -> None:
    with pytest.raises(ConfigError, match=r"unknown loss 'asll'; did you mean 'asl'"):
        build_loss("asll")
    with pytest.raises(ConfigError, match=r"invalid options .*'gama_neg'"):
        build_loss("asl", gama_neg=2)
    with pytest.raises(ConfigError, match=r"reduction must be one of"):
        build_loss("bce", reduction="avg")
    with pytest.raises(ConfigError, match=r"0 <= clip < 1"):
        AsymmetricLoss(clip=1.5)
    assert build_loss("asl", gamma_neg=2.0).gamma_neg == 2.0


def test_attention_box_loss_rewards_mass_on_the_objects():
    masks = torch.zeros(1, 2, 4, 4)
    masks[0, 0, :2, :2] = 1.0
    targets = torch.tensor([[1.0, 1.0]])  # class 1 has no box: it does not count
    on = torch.zeros(1, 2, 16)
    on[0, 0, 0] = 1.0
    spread = torch.full((1, 2, 16), 1 / 16, requires_grad=True)
    assert attention_box_loss(on.reshape(1, 2, 4, 4), masks, targets).item() == pytest.approx(0.0)
    loss = attention_box_loss(spread.reshape(1, 2, 4, 4), masks, targets)
    assert loss.item() == pytest.approx(-math.log(4 / 16), rel=1e-5)
    loss.backward()
    assert spread.grad[0, 0].abs().sum() > 0 and spread.grad[0, 1].abs().sum() == 0
    # A negative label or an empty mask counts for nothing.
    none = attention_box_loss(spread.reshape(1, 2, 4, 4), masks, torch.tensor([[0.0, 1.0]]))
    assert none.item() == 0.0
    with pytest.raises(ValueError, match="differ"):
        attention_box_loss(torch.zeros(1, 2, 3, 3), masks, targets)
