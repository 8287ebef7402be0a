"""load_bundle rejects every kind of broken bundle with one clear BundleError."""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import pytest
from export.conftest import write_synthetic_voc, write_variant_bundle

from mmsag_ros.bundle.files import sha256_file
from mmsag_ros.bundle.manifest import load_bundle, write_manifest
from mmsag_ros.bundle.schema import PRECISION_METADATA_KEY, PREPROCESS_FIELDS, Bundle
from mmsag_ros.errors import BundleError
from mmsag_ros.onnx_session import open_session


@pytest.fixture(scope="module")
def variant_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """A real export with fp32, fp16 and int8, both reduced variants kept (bars of 100 points,
    which no mAP drop exceeds)."""
    work = tmp_path_factory.mktemp("manifest")
    voc = write_synthetic_voc(work / "voc")
    return write_variant_bundle(work / "variants", voc=voc, calib_images=8)


@pytest.fixture(scope="module")
def fp32_bundle(variant_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """The same bundle with fp32 only, as ``mmsag export`` writes it by default."""
    root = tmp_path_factory.mktemp("manifest") / "fp32"
    root.mkdir()
    for name in ("model.onnx", "model.pt"):
        shutil.copy(variant_bundle.root / name, root / name)
    write_manifest(root, {**variant_bundle.manifest, "variants": {}})
    return load_bundle(root)


@pytest.fixture
def bundle_copy(fp32_bundle: Bundle, tmp_path: Path) -> Path:
    return Path(shutil.copytree(fp32_bundle.root, tmp_path / "bundle"))


@pytest.fixture
def variants_copy(variant_bundle: Bundle, tmp_path: Path) -> Path:
    return Path(shutil.copytree(variant_bundle.root, tmp_path / "variants"))


def _edit(root: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = root / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def _section(manifest: dict[str, Any], precision: str) -> dict[str, Any]:
    return manifest["onnx"] if precision == "fp32" else manifest["variants"][precision]


def _fix_hash(root: Path, precision: str, name: str) -> None:
    """Record the current hash of ``name`` for ``precision``, as a careless hand edit would."""
    _edit(root, lambda m: _section(m, precision).update(sha256=sha256_file(root / name)))


def _rewrite_onnx(
    root: Path,
    change: Callable[[onnx.ModelProto], None],
    *,
    name: str = "model.onnx",
    precision: str = "fp32",
) -> None:
    """Change an ONNX file of the bundle and record its new hash."""
    proto = onnx.load(str(root / name))
    change(proto)
    onnx.save(proto, str(root / name))
    _fix_hash(root, precision, name)


def _set_meta(proto: onnx.ModelProto, key: str, value: str | None) -> None:
    kept = [p for p in proto.metadata_props if p.key != key]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    if value is not None:
        proto.metadata_props.add(key=key, value=value)


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
    _edit(bundle_copy, lambda m: m.update(format_version=version))
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle_copy)


@pytest.mark.parametrize("field", PREPROCESS_FIELDS)
def test_missing_preprocess_field(bundle_copy: Path, field: str) -> None:
    _edit(bundle_copy, lambda m: m["preprocess"].pop(field))
    with pytest.raises(BundleError, match=f"preprocess section lacks {field}"):
        load_bundle(bundle_copy)


def test_unsupported_colour_order(bundle_copy: Path) -> None:
    _edit(bundle_copy, lambda m: m["preprocess"].update(color_order="bgr"))
    with pytest.raises(BundleError, match=r"color_order is 'bgr'; .* only 'rgb'"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize("field", ["classes", "onnx", "thresholds", "model_id"])
def test_missing_top_level_field(bundle_copy: Path, field: str) -> None:
    _edit(bundle_copy, lambda m: m.pop(field))
    with pytest.raises(BundleError, match=f"lacks the field.* {field}"):
        load_bundle(bundle_copy)


def test_class_count_names_vs_display_names(bundle_copy: Path) -> None:
    _edit(bundle_copy, lambda m: m["classes"]["display_names"].pop())
    with pytest.raises(BundleError, match=r"class-count mismatch: 8 names but 7 display names"):
        load_bundle(bundle_copy)


def test_class_count_thresholds(bundle_copy: Path) -> None:
    _edit(bundle_copy, lambda m: m["thresholds"].append(0.5))
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

    _edit(bundle_copy, drop_a_class)
    with pytest.raises(BundleError, match=r"class-count mismatch: logits have shape .*8\]"):
        load_bundle(bundle_copy)


def test_thresholds_out_of_range(bundle_copy: Path) -> None:
    _edit(bundle_copy, lambda m: m["thresholds"].__setitem__(0, 1.5))
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
    _edit(bundle_copy, lambda m: m.update(variants={"int8": entry}))
    with pytest.raises(BundleError, match=r"variants\.int8 file .*model\.int8\.onnx is missing"):
        load_bundle(bundle_copy)


def test_swapped_onnx_with_a_fresh_hash(bundle_copy: Path) -> None:
    _rewrite_onnx(bundle_copy, lambda p: _set_meta(p, "mmsag.model_id", "other@123456789abc"))
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
    _fix_hash(bundle_copy, "fp32", "model.onnx")
    with pytest.raises(BundleError, match=r"keeps weights in weights\.bin, which manifest"):
        load_bundle(bundle_copy)
    weights = {"file": "weights.bin", "sha256": sha256_file(bundle_copy / "weights.bin")}
    _edit(bundle_copy, lambda m: m["onnx"].update(external_data=[weights]))
    bundle = load_bundle(bundle_copy)
    session = open_session(bundle.onnx_path)  # the weights come along
    assert session.get_outputs()[0].name == "logits"
    with (bundle_copy / "weights.bin").open("r+b") as handle:
        handle.seek(100)
        handle.write(b"planted")
    with pytest.raises(BundleError, match=r"weights\.bin .*does not match the manifest"):
        load_bundle(bundle_copy)


def test_onnx_without_metadata(bundle_copy: Path) -> None:
    _rewrite_onnx(bundle_copy, lambda p: _set_meta(p, "mmsag.labels", None))
    with pytest.raises(BundleError, match=r"lacks the metadata mmsag\.labels"):
        load_bundle(bundle_copy)


def test_outputs_and_grid_disagree(bundle_copy: Path) -> None:
    _edit(bundle_copy, lambda m: m["onnx"].update(attention_grid=None))
    with pytest.raises(BundleError, match=r"attention_grid None disagree"):
        load_bundle(bundle_copy)


def test_outputs_differ_from_the_graph(bundle_copy: Path) -> None:
    _edit(bundle_copy, lambda m: m["onnx"].update(outputs=["logits"], attention_grid=None))
    with pytest.raises(BundleError, match=r"has outputs \['logits', 'attention'\], the manifest"):
        load_bundle(bundle_copy)


def test_model_id_must_name_the_model(bundle_copy: Path) -> None:
    _edit(bundle_copy, lambda m: m.update(model_id="other@123"))
    with pytest.raises(BundleError, match=r"does not start with 'tiny_r18_96@'"):
        load_bundle(bundle_copy)


def test_verify_false_skips_hashing(bundle_copy: Path) -> None:
    path = bundle_copy / "model.onnx"
    path.write_bytes(path.read_bytes()[:100])
    assert load_bundle(bundle_copy, verify=False).onnx_path == path


def _point_at(root: Path, section: str, name: str) -> None:
    _edit(root, lambda m: m[section].update(file=name))


@pytest.fixture
def outside_copy(bundle_copy: Path, tmp_path: Path) -> dict[str, Path]:
    """Byte-identical copies of the model files outside the bundle: with the manifest's hashes
    still matching, only the name check stands between load_bundle and these files."""
    outside = tmp_path / "outside"
    outside.mkdir()
    return {
        section: Path(shutil.copy(bundle_copy / name, outside / name))
        for section, name in (("onnx", "model.onnx"), ("torch", "model.pt"))
    }


@pytest.mark.parametrize("section", ["onnx", "torch"])
def test_a_name_climbing_out_of_the_bundle_is_refused(
    bundle_copy: Path, outside_copy: dict[str, Path], section: str
) -> None:
    name = f"../outside/{outside_copy[section].name}"
    _point_at(bundle_copy, section, name)
    with pytest.raises(
        BundleError, match=rf"{section}\.file '\.\./outside/.*' is not a plain"
    ) as info:
        load_bundle(bundle_copy)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("section", ["onnx", "torch"])
def test_an_absolute_path_is_refused(
    bundle_copy: Path, outside_copy: dict[str, Path], section: str
) -> None:
    _point_at(bundle_copy, section, str(outside_copy[section]))
    with pytest.raises(BundleError, match=rf"{section}\.file '/.*' is not a plain file name"):
        load_bundle(bundle_copy)


def test_a_variant_name_climbing_out_is_refused(
    bundle_copy: Path, outside_copy: dict[str, Path]
) -> None:
    # An ONNX file serves as the variant's bytes: the check must come before any reading.
    sha = sha256_file(outside_copy["onnx"])
    entry = {"file": "../outside/model.onnx", "sha256": sha, "accepted": True}
    _edit(bundle_copy, lambda m: m.update(variants={"int8": entry}))
    with pytest.raises(
        BundleError, match=r"variants\.int8\.file '\.\./outside/model\.onnx' is not a plain"
    ):
        load_bundle(bundle_copy)


@pytest.mark.parametrize("section", ["onnx", "torch"])
def test_a_symlink_leading_out_of_the_bundle_is_refused(
    bundle_copy: Path, outside_copy: dict[str, Path], section: str
) -> None:
    link = bundle_copy / f"linked_{outside_copy[section].name}"
    link.symlink_to(outside_copy[section])
    _point_at(bundle_copy, section, link.name)
    with pytest.raises(BundleError, match=rf"{section}\.file '{link.name}' resolves to .*outside"):
        load_bundle(bundle_copy)


def test_the_model_file_itself_as_a_symlink_out_is_refused(
    bundle_copy: Path, outside_copy: dict[str, Path]
) -> None:
    # The manifest is untouched: the file it names was replaced by a link out of the bundle.
    (bundle_copy / "model.onnx").unlink()
    (bundle_copy / "model.onnx").symlink_to(outside_copy["onnx"])
    with pytest.raises(BundleError, match=r"onnx\.file 'model\.onnx' resolves to .*outside"):
        load_bundle(bundle_copy)


def test_a_symlink_within_the_bundle_is_accepted(bundle_copy: Path) -> None:
    (bundle_copy / "model.onnx").rename(bundle_copy / "model.v2.onnx")
    (bundle_copy / "model.onnx").symlink_to("model.v2.onnx")
    assert load_bundle(bundle_copy).onnx_path == bundle_copy / "model.onnx"


def test_a_directory_instead_of_a_file_is_refused(bundle_copy: Path) -> None:
    (bundle_copy / "model.onnx").unlink()
    (bundle_copy / "model.onnx").mkdir()
    with pytest.raises(BundleError, match=r"onnx\.file 'model\.onnx' is not a regular file"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize("name", ["", ".", "..", "engines/model.onnx", "model.onnx\0.txt"])
def test_names_that_are_not_plain_file_names_are_refused(bundle_copy: Path, name: str) -> None:
    (bundle_copy / "engines").mkdir()
    shutil.copy(bundle_copy / "model.onnx", bundle_copy / "engines" / "model.onnx")
    _point_at(bundle_copy, "onnx", name)
    with pytest.raises(BundleError, match=r"onnx\.file .* is not a plain file name"):
        load_bundle(bundle_copy)


# --------------------------------------------------------------------------- precision variants


def test_an_intact_variant_bundle_loads(variants_copy: Path) -> None:
    bundle = load_bundle(variants_copy)
    assert list(bundle.variants) == ["fp32", "fp16", "int8"] and bundle.refused == {}
    manifest = bundle.manifest
    for precision, name in (("fp16", "model.fp16.onnx"), ("int8", "model.int8.onnx")):
        variant = bundle.variant(precision)
        assert variant.precision == precision and variant.path == variants_copy / name
        assert variant.sha256 == sha256_file(variant.path)
        assert variant.entry == manifest["variants"][precision]
        assert variant.entry["accepted"] is True
        assert bundle.run_id(precision) == f"{bundle.model_id}/{precision}"
    assert bundle.variant("fp32").path == bundle.onnx_path == variants_copy / "model.onnx"
    assert bundle.run_id("fp32") == bundle.model_id


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_a_swapped_variant_file_is_refused(variants_copy: Path, precision: str) -> None:
    other = "int8" if precision == "fp16" else "fp16"
    target = variants_copy / f"model.{precision}.onnx"
    shutil.copy(variants_copy / f"model.{other}.onnx", target)
    with pytest.raises(
        BundleError,
        match=rf"variants\.{precision} file .*model\.{precision}\.onnx does not match the "
        r"manifest .*swapped or truncated",
    ):
        load_bundle(variants_copy)


@pytest.mark.parametrize(
    ("source", "holds", "precision", "name"),
    [
        ("model.onnx", "fp32", "int8", "model.int8.onnx"),
        ("model.fp16.onnx", "fp16", "int8", "model.int8.onnx"),
        ("model.int8.onnx", "int8", "fp16", "model.fp16.onnx"),
        ("model.int8.onnx", "int8", "fp32", "model.onnx"),
    ],
)
def test_a_variant_file_of_another_precision_is_refused(
    variants_copy: Path, source: str, holds: str, precision: str, name: str
) -> None:
    # Same model, same classes, hash fixed up: only the precision tag tells them apart.
    shutil.copy(variants_copy / source, variants_copy / name)
    _fix_hash(variants_copy, precision, name)
    with pytest.raises(
        BundleError,
        match=rf"{re.escape(name)} holds the {holds} variant, the manifest lists it "
        rf"as {precision}: the files were swapped",
    ):
        load_bundle(variants_copy)
    assert load_bundle(variants_copy, verify=False).variants[precision].path.name == name


def test_a_variant_without_a_precision_tag_counts_as_fp32(variants_copy: Path) -> None:
    name = "model.fp16.onnx"
    _rewrite_onnx(
        variants_copy,
        lambda p: _set_meta(p, PRECISION_METADATA_KEY, None),
        name=name,
        precision="fp16",
    )
    with pytest.raises(BundleError, match=r"holds the fp32 variant, the manifest lists it as fp16"):
        load_bundle(variants_copy)


def test_a_variant_of_another_model_is_refused(variants_copy: Path) -> None:
    _rewrite_onnx(
        variants_copy,
        lambda p: _set_meta(p, "mmsag.model_id", "other@123456789abc"),
        name="model.int8.onnx",
        precision="int8",
    )
    with pytest.raises(
        BundleError, match=r"model\.int8\.onnx belongs to model other@123456789abc.*swapped"
    ):
        load_bundle(variants_copy)


def test_an_unknown_variant_is_refused(variants_copy: Path) -> None:
    _edit(variants_copy, lambda m: m["variants"].update(bf16=dict(m["variants"]["fp16"])))
    with pytest.raises(BundleError, match=r"unknown variant\(s\) bf16; known: fp16, int8"):
        load_bundle(variants_copy)


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "engines/model.int8.onnx", ".."])
def test_a_variant_name_that_is_not_a_plain_file_name_is_refused(
    variants_copy: Path, name: str
) -> None:
    _edit(variants_copy, lambda m: m["variants"]["int8"].update(file=name))
    with pytest.raises(
        BundleError, match=rf"variants\.int8\.file '{re.escape(name)}' is not a plain file name"
    ):
        load_bundle(variants_copy)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda m: m.update(variants=["fp16"]), r"'variants' must be a JSON object"),
        (lambda m: m["variants"].update(int8="model.int8.onnx"), r"'int8' must be a JSON object"),
        (
            lambda m: m["variants"]["int8"].pop("sha256"),
            r"the variants\.int8 section needs 'file' and 'sha256' strings",
        ),
        (
            lambda m: m["variants"]["fp16"].update(file=None),
            r"the variants\.fp16 section needs 'file' and 'sha256' strings",
        ),
    ],
)
def test_malformed_variant_sections(
    variants_copy: Path, change: Callable[[dict[str, Any]], None], match: str
) -> None:
    _edit(variants_copy, change)
    with pytest.raises(BundleError, match=match):
        load_bundle(variants_copy)


def test_a_missing_variant_file_is_refused(variants_copy: Path) -> None:
    (variants_copy / "model.fp16.onnx").unlink()
    with pytest.raises(BundleError, match=r"variants\.fp16 file .*model\.fp16\.onnx is missing"):
        load_bundle(variants_copy)


def test_verify_false_skips_the_variant_hashes(variants_copy: Path) -> None:
    path = variants_copy / "model.int8.onnx"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(BundleError, match=r"variants\.int8 file .* does not match"):
        load_bundle(variants_copy)
    assert load_bundle(variants_copy, verify=False).variant("int8").path == path


def test_a_refused_variant_loads_as_refused(variants_copy: Path) -> None:
    reason = "mAP 40.00 vs fp32 45.00 (drop 5.00 > 1.00 points), ..."

    def refuse(manifest: dict[str, Any]) -> None:
        entry = manifest["variants"]["int8"]
        entry.update(file=None, accepted=False, reason=reason)
        entry.pop("sha256")

    _edit(variants_copy, refuse)
    (variants_copy / "model.int8.onnx").unlink()
    bundle = load_bundle(variants_copy)
    assert list(bundle.variants) == ["fp32", "fp16"] and bundle.refused == {"int8": reason}
    with pytest.raises(BundleError, match=r"no int8 variant: it was refused at export") as info:
        bundle.variant("int8")
    assert reason in str(info.value) and "it has fp32, fp16" in str(info.value)


def test_a_format_1_bundle_loads_with_fp32_only(
    variants_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def downgrade(manifest: dict[str, Any]) -> None:
        sha = manifest["variants"]["int8"]["sha256"]
        manifest.pop("variants")
        manifest.update(format_version=1, int8_onnx={"file": "model.int8.onnx", "sha256": sha})

    _edit(variants_copy, downgrade)
    with caplog.at_level(logging.WARNING, logger="mmsag_ros.bundle.manifest"):
        bundle = load_bundle(variants_copy)
    assert list(bundle.variants) == ["fp32"] and bundle.refused == {}
    assert bundle.variant("fp32").path == variants_copy / "model.onnx"
    assert (
        "format-1 bundle: its int8_onnx" in caplog.text and "--precision fp32,int8" in caplog.text
    )
    with pytest.raises(BundleError, match=r"no int8 variant: it was not exported"):
        bundle.variant("int8")


def test_a_format_1_bundle_without_int8_loads_quietly(
    bundle_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _edit(bundle_copy, lambda m: (m.pop("variants"), m.update(format_version=1, int8_onnx=None)))
    with caplog.at_level(logging.WARNING, logger="mmsag_ros.bundle.manifest"):
        bundle = load_bundle(bundle_copy)
    assert list(bundle.variants) == ["fp32"] and caplog.records == []
