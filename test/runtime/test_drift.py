"""The drift watch: reference statistics recorded at export, a window of frames against them."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from export.conftest import write_synthetic_voc, write_tiny_checkpoint
from support import SHARED_DATA

from mmsag_ros.bundle.drift_reference import Reference, frame_brightness_contrast
from mmsag_ros.bundle.manifest import load_bundle
from mmsag_ros.data.voc import read_voc
from mmsag_ros.errors import BundleError, ConfigError
from mmsag_ros.export.variant_score import onnx_scores
from mmsag_ros.export.write_bundle import export_bundle
from mmsag_ros.runtime.classifier import Classifier
from mmsag_ros.runtime.drift import RATE_FLOOR, DriftWatch, check_drift_options

TRASHNET = SHARED_DATA / "trashnet"
WINDOW = 24


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    return write_synthetic_voc(tmp_path_factory.mktemp("drift") / "voc", num_trainval=60, seed=3)


@pytest.fixture(scope="module")
def bundle(voc, tmp_path_factory):
    out = tmp_path_factory.mktemp("drift_bundle")
    checkpoint = write_tiny_checkpoint(out / "ckpt.pt", seed=3)
    return export_bundle(
        checkpoint, out / "bundle", validation=read_voc(voc, "val"),
        calib_dir=read_voc(voc, "train"), progress=False,
    )  # fmt: skip


def _frames(paths) -> list[np.ndarray]:
    return [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths]


def _watch(bundle, frames: list[np.ndarray], reference: Reference | None = None) -> DriftWatch:
    with Classifier(bundle.root, backend="onnxruntime") as classifier:
        watch = DriftWatch(
            reference or bundle.reference, classifier.labels.display_names,
            model_id=classifier.model_id, window=WINDOW,
        )  # fmt: skip
        for frame, prediction in zip(
            frames, classifier.classify(frames, color_orders="bgr"), strict=True
        ):
            watch.add(frame, "bgr", prediction.scores, prediction.decisions)
    return watch


def test_export_records_what_the_model_saw(bundle, voc):
    reference = bundle.reference
    validation, training = read_voc(voc, "val"), read_voc(voc, "train")
    scores = onnx_scores(bundle.onnx_path, validation, bundle.spec)
    np.testing.assert_allclose(reference.positive_rate, (scores >= bundle.thresholds).mean(0))
    np.testing.assert_allclose(reference.mean_score, scores.mean(0))
    measured = [
        frame_brightness_contrast(f, "bgr")
        for f in _frames([s.image_path for s in training.samples])
    ]
    np.testing.assert_allclose((reference.brightness, reference.contrast), np.mean(measured, 0))
    assert reference.input_from == f"training split, {len(training)} of {len(training)} images"
    # A manifest whose statistics name other classes is refused when loaded.
    manifest = json.loads((bundle.root / "manifest.json").read_text())
    manifest["reference"]["positive_rate"] = [0.5]
    (bundle.root / "manifest.json").write_text(json.dumps(manifest))
    try:
        with pytest.raises(BundleError, match="reference statistics for 1 classes"):
            load_bundle(bundle.root)
    finally:
        manifest["reference"] = reference.to_dict()
        (bundle.root / "manifest.json").write_text(json.dumps(manifest))


def test_frames_like_the_training_data_raise_nothing(bundle, voc):
    frames = _frames([s.image_path for s in read_voc(voc, "trainval").samples[:WINDOW]])
    watch = _watch(bundle, frames[: WINDOW - 1])
    assert not watch.report().full and watch.report().findings == ()  # still collecting
    watch = _watch(bundle, frames)
    report = watch.report()
    assert report.full and report.frames == WINDOW
    assert not [f for f in report.findings if f.what in ("brightness", "contrast")]


def test_other_light_is_reported_with_the_ratio(bundle, voc):
    frames = _frames([s.image_path for s in read_voc(voc, "trainval").samples[:WINDOW]])
    # The lamps over the belt changed: every frame 2.5 times as bright.
    brighter = [cv2.convertScaleAbs(f, alpha=2.5) for f in frames]
    report = _watch(bundle, brighter).report()
    findings = {f.what: f for f in report.findings}
    brightness = findings["brightness"]
    assert brightness.ratio > 2.0 and brightness.reference_of == "training"
    assert f"brightness {brightness.ratio:.2f}x training (" in report.describe()
    # Worst first.
    severity = [max(f.ratio, 1 / f.ratio) for f in report.findings]
    assert severity == sorted(severity, reverse=True)


@pytest.mark.skipif(not TRASHNET.is_dir(), reason=f"the real TrashNet photos are not at {TRASHNET}")
def test_real_waste_photos_after_synthetic_training_are_reported(bundle):
    photos = sorted((TRASHNET / "glass").glob("*.jpg"))[:WINDOW]
    findings = {f.what: f for f in _watch(bundle, _frames(photos)).report().findings}
    # Photos on white paper: far brighter and more contrasted than the drawn belt.
    assert findings["brightness"].ratio > 2.0


def test_a_class_decided_far_more_often_than_in_validation_is_named(bundle, voc):
    frames = _frames([s.image_path for s in read_voc(voc, "trainval").samples[:WINDOW]])
    with Classifier(bundle.root, backend="onnxruntime") as classifier:
        decided = np.mean([p.decisions for p in classifier.classify(frames, color_orders="bgr")], 0)
        names = classifier.labels.display_names
    busiest = int(np.argmax(decided))
    assert decided[busiest] >= 0.25  # so that a validation rate of 0 is a clear shift
    rates = bundle.reference.positive_rate.copy()
    rates[busiest] = 0.0
    reference = Reference(
        rates, bundle.reference.mean_score, bundle.reference.brightness,
        bundle.reference.contrast, "", "",
    )  # fmt: skip
    findings = {f.what: f for f in _watch(bundle, frames, reference).report().findings}
    finding = findings[f"{names[busiest]} positive rate"]
    assert finding.ratio == pytest.approx((decided[busiest] + RATE_FLOOR) / RATE_FLOOR)
    assert finding.reference == 0.0 and finding.reference_of == "validation"


def test_drift_options_are_checked():
    check_drift_options(300, 0.0)  # off
    for window, factor in ((5, 2.0), (300, 1.0), (300, -2.0), (300, float("nan"))):
        with pytest.raises(ConfigError):
            check_drift_options(window, factor)
