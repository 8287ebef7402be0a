"""load_bundle rejects a broken manifest or model file with one clear BundleError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx
import pytest
from bundle.manifest_helpers import edit_manifest, fix_hash, rewrite_onnx, set_meta

from mmsag_ros.bundle.files import sha256_file
from mmsag_ros.bundle.manifest import load_bundle
from mmsag_ros.bundle.schema import PREPROCESS_FIELDS
from mmsag_ros.errors import BundleError
from mmsag_ros.onnx_session import open_session


def test_intact_copy_loads(bundle_copy: Path) -> None:
    assert load_bundle(bundle_copy).root == bundle_copy


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"bundle directory .*nope does not exist.*mmsag export"):
        load_bundle(tmp_path / "nope")


def test_missing_manifest(bundle_copy: Path) -> None:
    (bundle_copy / "manifest.json").unlink()
    with pytest.raises(BundleError, match=r"is not a bundle: manifest.json is missing"):
        load_bundle(bundle_copy)


def test_bad_json(bundle_copy: Path) -> None:
    path = bundle_copy / "manifest.json"
    path.write_text(path.read_text()[:-40])
    with pytest.raises(BundleError, match=r"is not valid JSON"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (3, "format_version 3; this mmsag_ros reads up to 2: upgrade"),
        (0, "unknown format_version 0"),
        ("1", "no integer format_version"),
        (None, "no integer format_version"),
    ],
)
def test_format_version(bundle_copy: Path, version: object, message: str) -> None:
    edit_manifest(bundle_copy, lambda m: m.update(format_version=version))
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle_copy)


@pytest.mark.parametrize("field", PREPROCESS_FIELDS)
def test_missing_preprocess_field(bundle_copy: Path, field: str) -> None:
    edit_manifest(bundle_copy, lambda m: m["preprocess"].pop(field))
    with pytest.raises(BundleError, match=f"preprocess section lacks {field}"):
        load_bundle(bundle_copy)


def test_unsupported_colour_order(bundle_copy: Path) -> None:
    edit_manifest(bundle_copy, lambda m: m["preprocess"].update(color_order="bgr"))
    with pytest.raises(BundleError, match=r"color_order is 'bgr'; .* only 'rgb'"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize("field", ["classes", "onnx", "thresholds", "model_id"])
def test_missing_top_level_field(bundle_copy: Path, field: str) -> None:
    edit_manifest(bundle_copy, lambda m: m.pop(field))
    with pytest.raises(BundleError, match=f"lacks the field.* {field}"):
        load_bundle(bundle_copy)


def test_class_count_names_vs_display_names(bundle_copy: Path) -> None:
    edit_manifest(bundle_copy, lambda m: m["classes"]["display_names"].pop())
    with pytest.raises(BundleError, match=r"class-count mismatch: 8 names but 7 display names"):
        load_bundle(bundle_copy)


def test_class_count_thresholds(bundle_copy: Path) -> None:
    edit_manifest(bundle_copy, lambda m: m["thresholds"].append(0.5))
    with pytest.raises(BundleError, match=r"class-count mismatch: 9 thresholds for 8 classes"):
        load_bundle(bundle_copy)


def test_class_count_vs_onnx_output(bundle_copy: Path) -> None:
    def drop_a_class(manifest: dict[str, Any]) -> None:
        for key in ("names", "display_names"):
            manifest["classes"][key].pop()
        manifest["thresholds"].pop()
        if manifest.get("reference"):  # kept consistent, to reach the ONNX check
            for key in ("positive_rate", "mean_score"):
                manifest["reference"][key].pop()

    edit_manifest(bundle_copy, drop_a_class)
    with pytest.raises(BundleError, match=r"class-count mismatch: logits have shape .*8\]"):
        load_bundle(bundle_copy)


def test_thresholds_out_of_range(bundle_copy: Path) -> None:
    edit_manifest(bundle_copy, lambda m: m["thresholds"].__setitem__(0, 1.5))
    with pytest.raises(BundleError, match=r"thresholds must be numbers in \[0, 1\]"):
        load_bundle(bundle_copy)


def test_truncated_onnx(bundle_copy: Path) -> None:
    path = bundle_copy / "model.onnx"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(BundleError, match=r"does not match the manifest .*swapped or truncated"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize(("name", "section"), [("model.onnx", "onnx"), ("model.pt", "torch")])
def test_missing_model_file(bundle_copy: Path, name: str, section: str) -> None:
    (bundle_copy / name).unlink()
    with pytest.raises(BundleError, match=f"{section} file .*{name} is missing"):
        load_bundle(bundle_copy)


def test_missing_variant_file(bundle_copy: Path) -> None:
    entry = {"file": "model.int8.onnx", "sha256": "0", "accepted": True}
    edit_manifest(bundle_copy, lambda m: m.update(variants={"int8": entry}))
    with pytest.raises(BundleError, match=r"variants\.int8 file .*model\.int8\.onnx is missing"):
        load_bundle(bundle_copy)


def test_swapped_onnx_with_a_fresh_hash(bundle_copy: Path) -> None:
    rewrite_onnx(bundle_copy, lambda p: set_meta(p, "mmsag.model_id", "other@123456789abc"))
    with pytest.raises(BundleError, match=r"belongs to model other@123456789abc.*swapped"):
        load_bundle(bundle_copy)


def test_external_weights_count_only_when_the_manifest_hashes_them(bundle_copy: Path) -> None:
    # The same model with its weights moved into weights.bin beside it, as ONNX does for
    # models over 2 GB: ONNX Runtime would read that file when it opens model.onnx.
    proto = onnx.load(str(bundle_copy / "model.onnx"))
    onnx.save(
        proto,
        str(bundle_copy / "model.onnx"),
        save_as_external_data=True,
        location="weights.bin",
        size_threshold=0,
    )
    fix_hash(bundle_copy, "fp32", "model.onnx")
    with pytest.raises(BundleError, match=r"keeps weights in weights\.bin, which manifest"):
        load_bundle(bundle_copy)
    weights = {"file": "weights.bin", "sha256": sha256_file(bundle_copy / "weights.bin")}
    edit_manifest(bundle_copy, lambda m: m["onnx"].update(external_data=[weights]))
    bundle = load_bundle(bundle_copy)
    session = open_session(bundle.onnx_path)  # the weights come along
    assert session.get_outputs()[0].name == "logits"
    with (bundle_copy / "weights.bin").open("r+b") as handle:
        handle.seek(100)
        handle.write(b"planted")
    with pytest.raises(BundleError, match=r"weights\.bin .*does not match the manifest"):
        load_bundle(bundle_copy)


def test_onnx_without_metadata(bundle_copy: Path) -> None:
    rewrite_onnx(bundle_copy, lambda p: set_meta(p, "mmsag.labels", None))
    with pytest.raises(BundleError, match=r"lacks the metadata mmsag\.labels"):
        load_bundle(bundle_copy)


def test_outputs_and_grid_disagree(bundle_copy: Path) -> None:
    edit_manifest(bundle_copy, lambda m: m["onnx"].update(attention_grid=None))
    with pytest.raises(BundleError, match=r"attention_grid None disagree"):
        load_bundle(bundle_copy)


def test_outputs_differ_from_the_graph(bundle_copy: Path) -> None:
    edit_manifest(bundle_copy, lambda m: m["onnx"].update(outputs=["logits"], attention_grid=None))
    with pytest.raises(BundleError, match=r"has outputs \['logits', 'attention'\], the manifest"):
        load_bundle(bundle_copy)


def test_model_id_must_name_the_model(bundle_copy: Path) -> None:
    edit_manifest(bundle_copy, lambda m: m.update(model_id="other@123"))
    with pytest.raises(BundleError, match=r"does not start with 'tiny_r18_96@'"):
        load_bundle(bundle_copy)


def test_verify_false_skips_hashing(bundle_copy: Path) -> None:
    path = bundle_copy / "model.onnx"
    path.write_bytes(path.read_bytes()[:100])
    assert load_bundle(bundle_copy, verify=False).onnx_path == path
