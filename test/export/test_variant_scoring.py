"""Scoring a reduced-precision variant against fp32: mAP drop, decision agreement, the bar."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from export.precision_helpers import run_variant
from mmsag_ros.bundle.labels import MLKW_LABELS
from mmsag_ros.bundle.preprocess import preprocess
from mmsag_ros.bundle.schema import Bundle
from mmsag_ros.data.dataset import AnnotatedSplit, Sample
from mmsag_ros.errors import ConfigError, DatasetError
from mmsag_ros.export.precision import DEFAULT_BARS
from mmsag_ros.export.variant_score import (
    VariantScore,
    check_validation_split,
    onnx_scores,
    score_variant,
)


def _split(targets: list[list[float]], name: str = "val") -> AnnotatedSplit:
    """A split of hand-made targets over two classes (the images are never opened)."""
    labels = MLKW_LABELS.from_names(MLKW_LABELS.names[:2])
    samples = tuple(
        Sample(Path(f"img{i}.jpg"), np.asarray(t, np.float32), f"img{i}")
        for i, t in enumerate(targets)
    )
    return AnnotatedSplit(labels, samples, name, "hand-made")


# Keeps the cases of the former int8_acceptable test: the decision is drop <= bar, a drop of
# exactly the bar (computed in floating point, 1.0000000000000009 here) is accepted.
@pytest.mark.parametrize(
    ("fp32", "variant", "bar", "accepted"),
    [
        (0.80, 0.795, 1.0, True),  # 0.5 points down
        (0.80, 0.79, 1.0, True),  # exactly at the bar
        (0.80, 0.785, 1.0, False),  # 1.5 points down
        (0.60, 0.70, 1.0, True),  # the variant scored higher
        (0.60, 0.60, 0.0, True),
        (0.60, 0.599, 0.0, False),
        (0.80, 0.75, 10.0, True),
        (0.80, 0.7949, 0.5, False),  # 0.51 points over an fp16 bar
    ],
)
def test_acceptance_is_the_drop_within_the_bar(
    fp32: float, variant: float, bar: float, accepted: bool
) -> None:
    score = VariantScore(
        precision="int8",
        fp32_map=fp32,
        variant_map=variant,
        map_drop_points=100.0 * (fp32 - variant),  # as score_variant computes it
        decision_agreement=1.0,
        max_score_diff=0.0,
        bar_points=bar,
        split="val",
        images=10,
    )
    assert score.accepted is accepted
    assert (" <= " in score.summary()) is accepted


def _scores() -> tuple[np.ndarray, np.ndarray, AnnotatedSplit]:
    # Class 0: positives 0 and 2. fp32 ranks them first (AP 1); the variant puts negative 1
    # between them (AP (1 + 2/3) / 2 = 5/6). Class 1: positive 1 ranked first by both (AP 1).
    # mAP 1 against 11/12: a drop of 25/3 points. At thresholds 0.5 the variant flips one
    # decision (image 1, class 0) of eight; the largest difference is 0.85 - 0.2.
    split = _split([[1, 0], [0, 1], [1, 0], [0, 0]])
    # Image 3 scores exactly the threshold for class 1 in both: a decision (>=) they share.
    fp32 = np.array([[0.9, 0.1], [0.2, 0.7], [0.8, 0.3], [0.1, 0.5]])
    variant = np.array([[0.9, 0.1], [0.85, 0.7], [0.8, 0.3], [0.1, 0.5]])
    return fp32, variant, split


def test_score_variant_numbers_on_hand_made_scores() -> None:
    fp32, variant, split = _scores()
    score = score_variant("fp16", fp32, variant, split, np.array([0.5, 0.5]), bar_points=10.0)
    assert score.precision == "fp16" and score.split == "val" and score.images == 4
    assert score.fp32_map == pytest.approx(1.0)
    assert score.variant_map == pytest.approx(11 / 12)
    assert score.map_drop_points == pytest.approx(25 / 3)
    assert score.decision_agreement == pytest.approx(7 / 8)
    assert score.max_score_diff == pytest.approx(0.65)
    assert score.bar_points == 10.0 and score.accepted
    summary = score.summary()
    for part in (
        "mAP 91.67 vs fp32 100.00",
        "drop 8.33 <= 10.00 points",
        "decisions agree 87.50%",
        "max score diff 0.6500",
        "on 4 images of 'val'",
    ):
        assert part in summary, summary
    assert VariantScore(**score.to_dict()) == score
    assert set(score.to_dict()) == {
        "precision",
        "fp32_map",
        "variant_map",
        "map_drop_points",
        "decision_agreement",
        "max_score_diff",
        "bar_points",
        "split",
        "images",
    }


def test_score_variant_accepts_at_exactly_the_bar_and_refuses_above() -> None:
    fp32, variant, split = _scores()
    thresholds = np.array([0.5, 0.5])
    at_bar = score_variant("int8", fp32, variant, split, thresholds, bar_points=25 / 3)
    assert at_bar.accepted
    below = score_variant("int8", fp32, variant, split, thresholds, bar_points=8.33)
    assert not below.accepted
    assert "drop 8.33 > 8.33 points" in below.summary()
    same = score_variant("int8", fp32, fp32.copy(), split, thresholds, bar_points=0.0)
    assert same.accepted and same.map_drop_points == 0.0
    assert same.decision_agreement == 1.0 and same.max_score_diff == 0.0
    # The variant better than fp32: a negative drop, accepted at any bar.
    better = score_variant("int8", variant, fp32, split, thresholds, bar_points=0.0)
    assert better.map_drop_points == pytest.approx(-25 / 3) and better.accepted


def test_score_variant_ignores_the_ignored_targets() -> None:
    # Image 1 is "difficult" for class 0: the variant ranking it first costs nothing.
    split = _split([[1, 0], [-1, 1], [0, 0]])
    fp32 = np.array([[0.9, 0.1], [0.2, 0.8], [0.1, 0.2]])
    variant = np.array([[0.9, 0.1], [0.95, 0.8], [0.1, 0.2]])
    score = score_variant("int8", fp32, variant, split, np.array([0.5, 0.5]), bar_points=0.0)
    assert score.map_drop_points == pytest.approx(0.0) and score.accepted


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"bar_points": -0.5}, r"the int8 bar must be >= 0 mAP points, got -0.5"),
        ({"bar_points": math.nan}, r"the int8 bar must be >= 0"),
        ({"bar_points": math.inf}, r"the int8 bar must be >= 0"),
        ({"precision": "fp32"}, r"precision must be one of fp16, int8"),
        ({"precision": "bf16"}, r"precision must be one of fp16, int8"),
        ({"variant": np.zeros((4, 1))}, r"score shapes \(4, 2\) and \(4, 1\) do not match"),
        ({"fp32": np.zeros((3, 2)), "variant": np.zeros((3, 2))}, r"the 4 images of 'val'"),
    ],
)
def test_score_variant_rejects_bad_input(change: dict[str, object], match: str) -> None:
    fp32, variant, split = _scores()
    args: dict[str, object] = {
        "precision": "int8",
        "fp32": fp32,
        "variant": variant,
        "bar_points": 1.0,
        **change,
    }
    with pytest.raises(ConfigError, match=match):
        score_variant(
            args["precision"],  # type: ignore[arg-type]
            args["fp32"],  # type: ignore[arg-type]
            args["variant"],  # type: ignore[arg-type]
            split,
            np.array([0.5, 0.5]),
            bar_points=args["bar_points"],  # type: ignore[arg-type]
        )


@pytest.mark.parametrize(
    "targets",
    [[[0, 0], [0, 0]], [[-1, 0], [0, -1]], []],
    ids=["negatives", "ignored", "empty"],
)
def test_a_split_without_positives_cannot_judge_a_variant(targets: list[list[float]]) -> None:
    split = _split(targets)
    with pytest.raises(DatasetError, match=r"validation split 'val' has no positive labels"):
        check_validation_split(split)
    scores = np.full((len(targets), 2), 0.5)
    with pytest.raises(DatasetError, match=r"has no positive labels"):
        score_variant("fp16", scores, scores, split, np.array([0.5, 0.5]), bar_points=1.0)


def test_default_bars() -> None:
    assert dict(DEFAULT_BARS) == {"fp16": 0.5, "int8": 1.0}


def test_onnx_scores_are_the_sigmoid_of_the_preprocessed_split(
    tiny_bundle: Bundle, validation_split: AnnotatedSplit
) -> None:
    scores = onnx_scores(tiny_bundle.onnx_path, validation_split, tiny_bundle.spec, batch_size=4)
    assert scores.shape == (len(validation_split), 8) and scores.dtype == np.float64
    rgb = [
        cv2.cvtColor(cv2.imread(str(s.image_path)), cv2.COLOR_BGR2RGB)
        for s in validation_split.samples
    ]
    frames = np.stack([preprocess(image, tiny_bundle.spec) for image in rgb])
    logits = run_variant(tiny_bundle.onnx_path, frames, "fp32")["logits"].astype(np.float64)
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-logits)), atol=1e-6)
