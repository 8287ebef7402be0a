from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from export.conftest import CALIB_IMAGES
from mmsag_ros.bundle.files import sha256_file
from mmsag_ros.bundle.manifest import load_bundle, write_manifest
from mmsag_ros.bundle.schema import MANIFEST_FORMAT, PRECISION_METADATA_KEY, PRECISIONS, Bundle
from mmsag_ros.data.dataset import AnnotatedSplit, Sample
from mmsag_ros.errors import BundleError, ConfigError, DatasetError, ModelNotFoundError
from mmsag_ros.export.onnx import graph_sha256
from mmsag_ros.export.precision import DEFAULT_BARS
from mmsag_ros.export.variant_score import VariantScore, onnx_scores
from mmsag_ros.export.write_bundle import VARIANT_FILES, export_bundle, parse_precisions
from mmsag_ros.metrics import mean_average_precision
from mmsag_ros.model.checkpoint import load_checkpoint


def test_bundle_holds_what_the_contract_lists(tiny_bundle: Bundle, tiny_checkpoint: Path) -> None:
    root = tiny_bundle.root
    assert sorted(p.name for p in root.iterdir()) == ["manifest.json", "model.onnx", "model.pt"]
    assert not any(p.name.startswith(".") for p in root.parent.iterdir())  # no staging left
    manifest = json.loads((root / "manifest.json").read_text())
    checkpoint = load_checkpoint(tiny_checkpoint)

    assert manifest["format_version"] == MANIFEST_FORMAT == 2
    assert manifest["name"] == "tiny_r18_96"
    graph_hash = graph_sha256(onnx.load(str(root / "model.onnx")))
    assert manifest["model_id"] == f"tiny_r18_96@{graph_hash[:12]}"
    assert manifest["classes"] == checkpoint.labels.to_dict()
    assert manifest["preprocess"] == {
        **checkpoint.spec.to_dict(),
        "color_order": "rgb",
        "layout": "NCHW",
        "dtype": "float32",
    }
    assert manifest["thresholds"] == checkpoint.thresholds
    assert manifest["onnx"]["sha256"] == sha256_file(root / "model.onnx")
    assert manifest["onnx"]["opset"] == 17
    assert manifest["onnx"]["input"] == "images"
    assert manifest["onnx"]["outputs"] == ["logits", "attention"]
    assert manifest["onnx"]["attention_grid"] == [3, 3]
    parity = manifest["onnx"]["parity"]
    assert parity["batch_sizes"] == [4, 1]
    assert max(parity["max_error"].values()) <= 1e-4
    assert manifest["torch"]["sha256"] == sha256_file(root / "model.pt")
    assert manifest["variants"] == {} and "int8_onnx" not in manifest
    assert manifest["metrics"]["val"]["ap"][-1] is None  # NaN AP written as JSON null
    assert manifest["source"]["checkpoint_sha256"] == sha256_file(tiny_checkpoint)
    assert manifest["source"]["epoch"] == 3
    assert set(manifest["exporter"]) >= {"mmsag_ros", "torch", "onnx", "onnxruntime"}
    assert manifest["created"].endswith("Z")

    assert tiny_bundle.model_id == manifest["model_id"]
    assert tiny_bundle.labels == checkpoint.labels
    assert tiny_bundle.spec == checkpoint.spec
    assert tiny_bundle.thresholds.dtype == np.float32
    assert tiny_bundle.thresholds.tolist() == pytest.approx(checkpoint.thresholds)
    assert tiny_bundle.has_attention and tiny_bundle.attention_grid == (3, 3)
    assert tiny_bundle.output_names == ("logits", "attention")
    assert tiny_bundle.engines_dir == root / "engines"
    assert list(tiny_bundle.variants) == ["fp32"] and tiny_bundle.refused == {}
    fp32 = tiny_bundle.variant("fp32")
    assert fp32.precision == "fp32" and fp32.path == root / "model.onnx" == tiny_bundle.onnx_path
    assert fp32.sha256 == manifest["onnx"]["sha256"] and fp32.entry == manifest["onnx"]
    assert tiny_bundle.run_id("fp32") == tiny_bundle.model_id
    assert tiny_bundle.run_id("int8") == f"{tiny_bundle.model_id}/int8"


def test_slim_torch_checkpoint_rebuilds_the_same_model(
    tiny_bundle: Bundle, tiny_checkpoint: Path
) -> None:
    slim = load_checkpoint(tiny_bundle.torch_path)
    full = load_checkpoint(tiny_checkpoint)
    assert not {"optimizer", "scheduler", "scaler"} & set(slim.raw)
    assert slim.labels == full.labels and slim.spec == full.spec
    assert slim.thresholds == full.thresholds
    for key, value in full.model_state.items():
        assert torch.equal(slim.model_state[key], value), key


def test_manifest_round_trip(tiny_bundle: Bundle, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(tiny_bundle.root, tmp_path / "copy"))
    write_manifest(copy, tiny_bundle.manifest)
    again = load_bundle(copy)
    assert again.manifest == tiny_bundle.manifest
    for field in ("name", "model_id", "labels", "spec", "output_names", "attention_grid"):
        assert getattr(again, field) == getattr(tiny_bundle, field)
    assert np.array_equal(again.thresholds, tiny_bundle.thresholds)
    assert again.onnx_path == copy / "model.onnx"


def test_no_attention_bundle_overwrites_a_bundle(tiny_bundle: Bundle, tmp_path: Path) -> None:
    out = Path(shutil.copytree(tiny_bundle.root, tmp_path / "bundle"))
    checkpoint = Path(tiny_bundle.manifest["source"]["checkpoint"])
    bundle = export_bundle(checkpoint, out, attention=False, overwrite=True, progress=False)
    assert bundle.output_names == ("logits",)
    assert not bundle.has_attention and bundle.attention_grid is None
    assert bundle.manifest["onnx"]["attention_grid"] is None
    assert [o.name for o in onnx.load(str(bundle.onnx_path)).graph.output] == ["logits"]
    assert bundle.model_id != tiny_bundle.model_id  # another graph, another id
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx", "model.pt"]


def test_linear_model_bundle_has_logits_only(tmp_path: Path) -> None:
    from export.conftest import write_tiny_checkpoint

    checkpoint = write_tiny_checkpoint(
        tmp_path / "linear.pt",
        semantic_attention=False,
        fusion=False,
        static_graph=False,
        dynamic_graph=False,
    )
    bundle = export_bundle(checkpoint, tmp_path / "bundle", progress=False)  # attention=True
    assert bundle.output_names == ("logits",) and bundle.attention_grid is None
    assert max(bundle.manifest["onnx"]["parity"]["max_error"].values()) <= 1e-4


def test_refuses_a_non_empty_folder(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"is not empty; .*--overwrite"):
        export_bundle(tiny_checkpoint, out, progress=False)
    with pytest.raises(ConfigError, match=r"not part of a bundle \(notes.txt\)"):
        export_bundle(tiny_checkpoint, out, overwrite=True, progress=False)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"does not exist"):
        export_bundle(tmp_path / "nope.pt", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_a_bundle_without_variants_explains_each_missing_one(tiny_bundle: Bundle) -> None:
    with pytest.raises(BundleError, match=r"has no fp16 variant: it was not exported; it has fp32"):
        tiny_bundle.variant("fp16")
    with pytest.raises(BundleError, match=r"--precision fp32,int8") as info:
        tiny_bundle.variant("int8")
    assert "\n" not in str(info.value)
    with pytest.raises(BundleError, match=r"unknown precision 'bf16'; a variant is one of fp32"):
        tiny_bundle.variant("bf16")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fp32", ("fp32",)),
        ("int8", ("fp32", "int8")),
        ("int8,fp32", ("fp32", "int8")),
        (" INT8 , fp16 ", ("fp32", "fp16", "int8")),
        ("fp16,fp16", ("fp32", "fp16")),
        (("int8", "fp16"), ("fp32", "fp16", "int8")),
    ],
)
def test_parse_precisions(text: str | tuple[str, ...], expected: tuple[str, ...]) -> None:
    assert parse_precisions(text) == expected


@pytest.mark.parametrize(
    ("text", "match"),
    [("bf16", r"unknown precision 'bf16'"), ("fp32,int4", r"'int4'"), ("", r"unknown precision")],
)
def test_parse_precisions_rejects_unknown_names(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_precisions(text)


@pytest.mark.parametrize("precisions", ["fp32,fp16", "fp32,int8", ("int8", "fp16")])
def test_reduced_precisions_need_a_validation_split(
    tiny_checkpoint: Path, synthetic_voc: Path, tmp_path: Path, precisions: object
) -> None:
    with pytest.raises(ConfigError, match=r"scored against fp32 on a validation split.*--val-data"):
        export_bundle(
            tiny_checkpoint,
            tmp_path / "out",
            precisions=precisions,  # type: ignore[arg-type]
            calib_dir=synthetic_voc,
            progress=False,
        )
    assert not list(tmp_path.iterdir())


def test_int8_needs_calibration_images(
    tiny_checkpoint: Path, validation_split: AnnotatedSplit, tmp_path: Path
) -> None:
    with pytest.raises(
        ConfigError, match=r"int8 variant is calibrated on training images.*--calib"
    ):
        export_bundle(
            tiny_checkpoint,
            tmp_path / "out",
            precisions="fp32,int8",
            validation=validation_split,
            progress=False,
        )
    assert not list(tmp_path.iterdir())


def test_a_validation_split_without_positives_is_refused_first(
    tiny_checkpoint: Path, validation_split: AnnotatedSplit, tmp_path: Path
) -> None:
    negatives = tuple(
        Sample(s.image_path, np.zeros(len(validation_split.labels), np.float32), s.image_id)
        for s in validation_split.samples
    )
    split = AnnotatedSplit(validation_split.labels, negatives, "val", validation_split.source)
    with pytest.raises(DatasetError, match=r"validation split 'val' has no positive labels"):
        export_bundle(tiny_checkpoint, tmp_path / "out", precisions="fp32,fp16", validation=split)
    assert not list(tmp_path.iterdir())


def test_variants_are_kept_exactly_when_they_pass_their_bar(
    variant_bundle: Bundle,
    tiny_bundle: Bundle,
    synthetic_voc: Path,
    validation_split: AnnotatedSplit,
) -> None:
    root = variant_bundle.root
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest == variant_bundle.manifest
    assert manifest["format_version"] == 2 and "int8_onnx" not in manifest
    assert set(manifest["variants"]) == {"fp16", "int8"}
    # Same graph as the fp32-only export: the same model id, and fp32 is the same variant.
    assert variant_bundle.model_id == tiny_bundle.model_id
    assert manifest["onnx"]["parity"]["frames"] == str(synthetic_voc)
    targets = validation_split.targets()
    fp32_scores = onnx_scores(variant_bundle.onnx_path, validation_split, variant_bundle.spec)
    fp32_map = mean_average_precision(fp32_scores, targets)
    kept = []
    for precision in ("fp16", "int8"):
        entry = manifest["variants"][precision]
        # int8 is judged twice: as the CPU session runs it and as written (TensorRT's Q/DQ).
        records = ["accuracy", "accuracy_as_written"] if precision == "int8" else ["accuracy"]
        assert [key for key in entry if key.startswith("accuracy")] == records
        scores = [VariantScore(**entry[key]) for key in records]
        for score in scores:
            assert score.precision == precision
            assert score.bar_points == DEFAULT_BARS[precision]
            assert score.split == "val" and score.images == len(validation_split) == 6
            assert score.fp32_map == pytest.approx(fp32_map, abs=1e-12)
            drop = 100 * (score.fp32_map - score.variant_map)
            assert score.map_drop_points == pytest.approx(drop)
            assert 0.0 <= score.decision_agreement <= 1.0 and score.max_score_diff > 0.0
        accepted = all(s.map_drop_points <= DEFAULT_BARS[precision] + 1e-9 for s in scores)
        assert entry["accepted"] is accepted is all(s.accepted for s in scores)
        path = root / VARIANT_FILES[precision]
        assert path.exists() is accepted
        if accepted:
            kept.append(path.name)
            assert entry["file"] == path.name and entry["sha256"] == sha256_file(path)
            assert "reason" not in entry
            variant = variant_bundle.variant(precision)
            assert variant.path == path and variant.sha256 == entry["sha256"]
            assert variant.entry == entry and precision not in variant_bundle.refused
            props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
            assert props[PRECISION_METADATA_KEY] == precision
            # The recorded mAPs are the file's, measured again here, each run its own way.
            for record in records:
                measured = onnx_scores(
                    path,
                    validation_split,
                    variant_bundle.spec,
                    precision=precision,
                    as_written=record == "accuracy_as_written",
                )
                recorded = VariantScore(**entry[record])
                assert recorded.variant_map == pytest.approx(
                    mean_average_precision(measured, targets)
                )
                diff = np.abs(measured - fp32_scores).max()
                assert recorded.max_score_diff == pytest.approx(diff)
        else:
            assert entry["file"] is None and "sha256" not in entry
            reason = scores[0].summary()
            if precision == "int8":
                reason = f"CPU session: {reason}; as written (TensorRT): {scores[1].summary()}"
            assert entry["reason"] == reason == variant_bundle.refused[precision]
            assert precision not in variant_bundle.variants
            with pytest.raises(BundleError, match=r"refused at export"):
                variant_bundle.variant(precision)
    accepted_ones = [p for p, e in manifest["variants"].items() if e["accepted"]]
    assert list(variant_bundle.variants) == ["fp32", *sorted(accepted_ones, key=PRECISIONS.index)]
    assert set(variant_bundle.refused) == {"fp16", "int8"} - set(accepted_ones)
    assert sorted(p.name for p in root.iterdir()) == sorted(
        ["manifest.json", "model.onnx", "model.pt", *kept]
    )
    fp16, int8 = (manifest["variants"][p]["conversion"] for p in ("fp16", "int8"))
    assert fp16["tool"].startswith("onnxruntime.transformers.float16") and fp16["io"] == "float32"
    assert {"Softmax", "LayerNormalization", "Sigmoid"} <= set(fp16["fp32_ops"])
    assert int8["calibration"] == {"images": CALIB_IMAGES, "method": "minmax"}
    assert int8["activations"] == "int8 symmetric (zero point 0)"
    assert {"fp16 variant", "score fp16 on validation", "int8 (head int8) variant"} <= set(
        manifest["exporter"]["timings_s"]
    )
    assert variant_bundle.run_id("fp16") == f"{variant_bundle.model_id}/fp16"


def test_a_refused_variant_is_recorded_without_its_file(
    tiny_checkpoint: Path,
    synthetic_voc: Path,
    int8_losing_split: AnnotatedSplit,
    tmp_path: Path,
) -> None:
    # On this split fp32 ranks the one positive first and int8 second: mAP 1 against 1/2.
    out = tmp_path / "bundle"
    bundle = export_bundle(
        tiny_checkpoint,
        out,
        precisions="fp32,int8",
        calib_dir=synthetic_voc,
        calib_images=CALIB_IMAGES,
        validation=int8_losing_split,
        bars={"int8": 0.0},
        progress=False,
    )
    entry = bundle.manifest["variants"]["int8"]
    assert entry["accepted"] is False and entry["file"] is None and "sha256" not in entry
    accuracy = entry["accuracy"]
    assert accuracy["fp32_map"] == pytest.approx(1.0)
    assert accuracy["variant_map"] == pytest.approx(0.5)
    assert accuracy["map_drop_points"] == pytest.approx(50.0)
    assert accuracy["bar_points"] == 0.0 and accuracy["images"] == 2
    assert entry["conversion"]["calibration"]["images"] == CALIB_IMAGES
    # Each attempt is recorded: all in int8, then the head in fp32, then the ends too.
    conversions = [attempt["conversion"] for attempt in entry["attempts"]]
    assert [c["head"] for c in conversions] == ["int8", "fp32", "fp32"]
    assert [len(c["fp32_convs"]) for c in conversions] == [0, 0, 2]
    assert all(a["accuracy"]["map_drop_points"] > 0 for a in entry["attempts"])
    assert all(a["accuracy_as_written"]["images"] == 2 for a in entry["attempts"])
    assert entry["accuracy_as_written"] == entry["attempts"][-1]["accuracy_as_written"]
    reason = entry["reason"]
    assert reason.startswith("CPU session: mAP 50.00 vs fp32 100.00 (drop 50.00 > 0.00 points)")
    assert "; as written (TensorRT): mAP " in reason
    assert "on 2 images of 'val'" in reason
    assert bundle.refused == {"int8": reason}
    assert list(bundle.variants) == ["fp32"]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx", "model.pt"]
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no staging left
    with pytest.raises(
        BundleError, match=r"no int8 variant: it was refused at export \(CPU session: mAP 50"
    ) as e:
        bundle.variant("int8")
    assert "drop 50.00 > 0.00 points" in str(e.value) and "it has fp32" in str(e.value)
    again = load_bundle(out)
    assert again.refused == bundle.refused and list(again.variants) == ["fp32"]
