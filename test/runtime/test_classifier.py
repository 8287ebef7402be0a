from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from mmsag_ros.data.transforms import EvalTransform
from mmsag_ros.errors import (
    BackendUnavailableError,
    BundleError,
    ConfigError,
    ImageConversionError,
)
from mmsag_ros.pointing import attention_peaks, instance_peaks
from mmsag_ros.runtime.classifier import Classifier, candidate_backends
from mmsag_ros.runtime.postprocess import sigmoid

ORT_ONE_THREAD = {"onnxruntime": {"intra_op_threads": 1}}


@pytest.fixture(scope="module")
def classifier(bundle):
    with Classifier(bundle, backend="onnxruntime", backend_options=ORT_ONE_THREAD) as clf:
        yield clf


def _reference_scores(classifier, rgb):
    """Scores of the training transform's output, run through the same backend."""
    batch = EvalTransform(classifier.spec)(rgb)[None]
    return sigmoid(classifier.backend.infer(batch)["logits"])[0]


def test_classifier_from_a_path_reports_scores_decisions_and_peaks(bundle_dir, frames):
    with Classifier(bundle_dir, backend="onnxruntime", backend_options=ORT_ONE_THREAD) as clf:
        assert clf.model_id == clf.bundle.model_id and clf.precision == "fp32"
        assert clf.backend_reason == "requested explicitly"
        prediction = clf.classify_one(frames[1])
    assert prediction.source_size == (641, 479)
    assert prediction.scores.shape == (8,) and prediction.scores.dtype == np.float32
    np.testing.assert_array_equal(prediction.decisions, prediction.scores >= clf.thresholds)
    np.testing.assert_array_equal(prediction.thresholds, clf.bundle.thresholds)
    assert prediction.peaks.shape == (8, 3)
    assert ((prediction.peaks[:, :2] >= 0) & (prediction.peaks[:, :2] <= 1)).all()
    assert prediction.timings.batch_size == 1 and prediction.timings.inference_ms > 0
    assert prediction.timings.total_ms >= prediction.timings.preprocess_ms
    with pytest.raises(ValueError, match="read-only"):
        prediction.scores[0] = 1.0


def test_peaks_come_from_the_attention_maps(classifier, frames):
    frame = frames[0]
    prediction = classifier.classify_one(frame)
    batch = EvalTransform(classifier.spec)(frame)[None]
    maps = classifier.backend.infer(batch)["attention"][0]
    expected = attention_peaks(maps, source_size=(160, 120), spec=classifier.spec)
    np.testing.assert_allclose(prediction.peaks, expected, atol=1e-5)


def test_peaks_can_be_switched_off(bundle, frames):
    with Classifier(bundle, backend="onnxruntime", peaks=False) as clf:
        prediction = clf.classify_one(frames[0])
        assert prediction.peaks is None and prediction.instances is None


@pytest.mark.parametrize(("max_instances", "min_relative"), [(4, 0.3), (2, 0.05)])
def test_instance_points_are_the_local_maxima_of_each_map(
    bundle, frames, max_instances, min_relative
):
    with Classifier(
        bundle,
        backend="onnxruntime",
        backend_options=ORT_ONE_THREAD,
        max_instances=max_instances,
        instance_min_relative=min_relative,
    ) as clf:
        prediction = clf.classify_one(frames[1])
        maps = clf.backend.infer(EvalTransform(clf.spec)(frames[1])[None])["attention"][0]
    expected = instance_peaks(
        maps,
        source_size=(641, 479),
        spec=clf.spec,
        min_relative=min_relative,
        max_peaks=max_instances,
    )
    assert len(prediction.instances) == 8
    for points, wanted, peak in zip(prediction.instances, expected, prediction.peaks, strict=True):
        assert 1 <= len(points) <= max_instances
        np.testing.assert_allclose(points, wanted, atol=1e-5)
        np.testing.assert_array_equal(points[0], peak)
    # A low bar finds more than one point for some class: the cap is what limits them.
    if min_relative < 0.1:
        assert max(len(points) for points in prediction.instances) == max_instances


def test_instance_points_can_be_switched_off_and_bad_options_are_refused(bundle, frames):
    with Classifier(bundle, backend="onnxruntime", max_instances=0) as clf:
        prediction = clf.classify_one(frames[0])
        assert prediction.peaks is not None and prediction.instances is None
    for options, match in [
        ({"max_instances": -1}, "max_instances must be an integer >= 0"),
        ({"instance_min_relative": 0.0}, r"instance_min_relative must lie in \(0, 1\]"),
    ]:
        with pytest.raises(ConfigError, match=match):
            Classifier(bundle, backend="onnxruntime", **options)


@pytest.mark.parametrize("index", [0, 1, 3])  # 160x120, 641x479, 97x130
def test_every_colour_order_equals_the_training_transform_on_rgb(classifier, frames, index):
    rgb = frames[index]
    expected = _reference_scores(classifier, rgb)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    bgra = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
    predictions = classifier.classify(
        [rgb, bgr, bgra, np.ascontiguousarray(rgb[:, :, 0])],
        color_orders=["rgb", "bgr", "bgra", "mono"],
    )
    for prediction in predictions[:3]:
        np.testing.assert_allclose(prediction.scores, expected, atol=1e-6, rtol=0)
    # Mono: its RGB equivalent is the grey value on all three channels.
    grey = rgb[:, :, 0]
    mono_expected = _reference_scores(classifier, np.repeat(grey[:, :, None], 3, axis=2))
    np.testing.assert_allclose(predictions[3].scores, mono_expected, atol=1e-6, rtol=0)
    # The comparison can fail: BGR taken for RGB gives other scores.
    wrong = classifier.classify_one(bgr, color_order="rgb")
    assert np.abs(wrong.scores - expected).max() > 1e-5


def test_mono_accepts_a_single_channel_axis(classifier, frames):
    grey = cv2.cvtColor(frames[2], cv2.COLOR_RGB2GRAY)
    flat, with_axis = classifier.classify([grey, grey[:, :, None]], color_orders="mono")
    np.testing.assert_allclose(flat.scores, with_axis.scores, atol=1e-6, rtol=0)


def test_batches_larger_than_max_batch_are_split(bundle, frames):
    images = [frames[i % len(frames)] for i in range(5)]
    with Classifier(bundle, backend="onnxruntime", max_batch=2) as clf:
        predictions = clf.classify(images)
        singles = [clf.classify_one(image) for image in images]
    assert [p.timings.batch_size for p in predictions] == [2, 2, 2, 2, 1]
    assert [p.source_size for p in predictions] == [p.source_size for p in singles]
    for batched, single in zip(predictions, singles, strict=True):
        np.testing.assert_allclose(batched.scores, single.scores, atol=1e-5, rtol=0)


def test_thresholds_override_and_validation(bundle, frames):
    custom = np.linspace(0.1, 0.9, 8)
    with Classifier(bundle, backend="onnxruntime", thresholds=custom) as clf:
        first = clf.classify_one(frames[0])
        np.testing.assert_allclose(first.thresholds, custom, rtol=1e-6)
        np.testing.assert_array_equal(first.decisions, first.scores >= custom.astype(np.float32))
        clf.set_thresholds(np.zeros(8))
        assert clf.classify_one(frames[0]).decisions.all()
        clf.set_thresholds(np.ones(8))
        assert not clf.classify_one(frames[0]).decisions.any()
        with pytest.raises(ConfigError, match="expected 8 thresholds"):
            clf.set_thresholds([0.5] * 7)
        with pytest.raises(ConfigError, match=r"in \[0, 1\], got \[1.2\]"):
            clf.set_thresholds([0.5] * 7 + [1.2])
        np.testing.assert_array_equal(clf.thresholds, np.ones(8))  # unchanged by the failures
        clf.set_thresholds(None)
        np.testing.assert_array_equal(clf.thresholds, bundle.thresholds)
        # Earlier predictions keep the thresholds they were decided with.
        np.testing.assert_allclose(first.thresholds, custom, rtol=1e-6)
    with pytest.raises(ConfigError, match="expected 8 thresholds"):
        Classifier(bundle, backend="onnxruntime", thresholds=[0.5])


@pytest.mark.parametrize(
    ("image", "order", "message"),
    [
        (np.zeros((40, 50, 3), np.float32), "rgb", "dtype float32; expected uint8"),
        (np.zeros((40, 50, 3, 1), np.uint8), "rgb", r"shape \(40, 50, 3, 1\)"),
        (np.zeros((0, 50, 3), np.uint8), "rgb", "H, W > 0"),
        ([[0, 1], [2, 3]], "mono", "is a list, expected a numpy uint8 array"),
        (np.zeros((40, 50, 3), np.uint8), "bgra", "does not match colour order 'bgra'"),
        (np.zeros((40, 50, 4), np.uint8), "rgb", "does not match colour order 'rgb'"),
        (np.zeros((40, 50, 3), np.uint8), "yuv", "unknown colour order 'yuv'"),
    ],
)
def test_bad_frames_raise_image_conversion_errors(classifier, image, order, message):
    with pytest.raises(ImageConversionError, match=message):
        classifier.classify_one(image, color_order=order)


def test_a_bad_frame_in_a_batch_is_named_by_its_index(bundle, frames):
    images = [frames[0], frames[1], frames[2].astype(np.float32), frames[0]]
    with Classifier(bundle, backend="onnxruntime", max_batch=2) as clf:
        with pytest.raises(ImageConversionError, match="image 2 has dtype float32"):
            clf.classify(images)
        with pytest.raises(ImageConversionError, match=r"^image 3: image of shape"):
            clf.classify([*frames[:3], frames[0]], color_orders=[*["rgb"] * 3, "mono"])


def test_classify_each_gives_a_bad_frame_its_error_and_the_others_their_predictions(bundle, frames):
    images = [frames[0], frames[1], frames[2].astype(np.float32), frames[0]]
    with Classifier(bundle, backend="onnxruntime", max_batch=2) as clf:
        results = clf.classify_each(images)
        expected = [clf.classify_one(image) for image in (frames[0], frames[1], frames[0])]
        with pytest.raises(ImageConversionError, match="2 colour orders for 4 images"):
            clf.classify_each(images, color_orders=["rgb", "bgr"])
    assert isinstance(results[2], ImageConversionError)
    assert "has dtype float32" in str(results[2])
    for result, reference in zip([results[0], results[1], results[3]], expected, strict=True):
        np.testing.assert_allclose(result.scores, reference.scores, atol=1e-6)


def test_colour_orders_must_match_the_images(classifier, frames):
    with pytest.raises(ImageConversionError, match="2 colour orders for 3 images"):
        classifier.classify(frames[:3], color_orders=["rgb", "bgr"])


def test_auto_picks_onnxruntime_on_this_machine(bundle):
    with Classifier(bundle) as clf:
        assert clf.backend.name == "onnxruntime@cpu"
        assert "first that loads" in clf.backend_reason
    with Classifier(bundle, device="auto") as clf:
        import torch

        if not torch.cuda.is_available():
            assert clf.backend.name == "onnxruntime@cpu"
            assert "skipped tensorrt@cuda:0" in clf.backend_reason


def test_explicit_cuda_without_a_gpu_names_every_reason(bundle):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(BackendUnavailableError, match="device='cuda'") as info:
        Classifier(bundle, device="cuda")
    message = str(info.value)
    assert "tensorrt@cuda:0" in message and "torch@cuda:0: torch cannot use cuda:0" in message


def test_bad_classifier_options(bundle):
    with pytest.raises(ConfigError, match="max_batch must be a positive integer"):
        Classifier(bundle, max_batch=0)
    with pytest.raises(ConfigError, match="unknown backend 'onnx'"):
        Classifier(bundle, backend="onnx")
    with pytest.raises(ConfigError, match="unknown device 'gpu'"):
        Classifier(bundle, device="gpu")


def test_a_bundle_pointing_outside_itself_is_refused_before_any_backend_reads(bundle_dir, tmp_path):
    # A real model file outside the bundle, hash intact: only the name check refuses it.
    outside = shutil.copy(bundle_dir / "model.pt", tmp_path / "elsewhere.pt")
    copy = shutil.copytree(bundle_dir, tmp_path / "bundle")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["torch"]["file"] = str(outside)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"torch\.file '/.*elsewhere\.pt' is not a plain file"):
        Classifier(copy, backend="torch")


def test_candidate_order():
    assert candidate_backends("auto", "cpu") == [("onnxruntime", "cpu"), ("torch", "cpu")]
    assert candidate_backends("auto", "auto") == [
        ("tensorrt", "cuda"),
        ("onnxruntime", "cuda"),
        ("onnxruntime", "cpu"),
        ("torch", "cuda"),
        ("torch", "cpu"),
    ]
    assert candidate_backends("torch", "cuda:1") == [("torch", "cuda:1")]


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_the_model_id_names_a_reduced_precision(variant_bundle, frames, precision):
    with Classifier(
        variant_bundle, backend="onnxruntime", precision=precision, backend_options=ORT_ONE_THREAD
    ) as clf:
        suffix = "" if precision == "fp32" else f"/{precision}"
        assert clf.model_id == variant_bundle.model_id + suffix
        assert clf.model_id == variant_bundle.run_id(precision)
        assert clf.precision == clf.backend.precision == precision
        assert clf.backend.info()["model"] == variant_bundle.variant(precision).path.name
        assert repr(clf) == f"<Classifier {clf.model_id} on onnxruntime@cpu>"
        prediction = clf.classify_one(frames[0])
    assert prediction.scores.shape == (8,) and prediction.peaks.shape == (8, 3)


def test_auto_runs_a_reduced_variant_on_onnxruntime(variant_bundle, frames):
    with Classifier(variant_bundle, precision="int8") as clf:
        assert clf.backend.name == "onnxruntime@cpu" and clf.backend.precision == "int8"
        assert clf.model_id.endswith("/int8")


def test_a_classifier_on_a_missing_variant_is_a_bundle_error(bundle):
    for precision in ("fp16", "int8"):
        with pytest.raises(BundleError, match=f"has no {precision} variant: it was not exported"):
            Classifier(bundle, backend="onnxruntime", precision=precision)
    with pytest.raises(BundleError, match="unknown precision 'bf16'"):
        Classifier(bundle, precision="bf16")


def test_a_torch_classifier_refuses_cpu_fp16_and_int8(variant_bundle, bundle):
    for precision in ("fp16", "int8"):
        with pytest.raises(BackendUnavailableError, match=f"not {precision} on cpu"):
            Classifier(variant_bundle, backend="torch", precision=precision)
    # torch casts its own module: an fp32-only bundle is refused for the device, not the file.
    with pytest.raises(BackendUnavailableError, match="not fp16 on cpu"):
        Classifier(bundle, backend="torch", precision="fp16")
