"""load_bundle checks the precision variants: swapped, mislabelled, malformed, refused, format 1."""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bundle.manifest_helpers import edit_manifest, fix_hash, rewrite_onnx, set_meta

from mmsag_ros.bundle.files import sha256_file
from mmsag_ros.bundle.manifest import load_bundle
from mmsag_ros.bundle.schema import PRECISION_METADATA_KEY
from mmsag_ros.errors import BundleError


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
    fix_hash(variants_copy, precision, name)
    with pytest.raises(
        BundleError,
        match=rf"{re.escape(name)} holds the {holds} variant, the manifest lists it "
        rf"as {precision}: the files were swapped",
    ):
        load_bundle(variants_copy)
    assert load_bundle(variants_copy, verify=False).variants[precision].path.name == name


def test_a_variant_without_a_precision_tag_counts_as_fp32(variants_copy: Path) -> None:
    name = "model.fp16.onnx"
    rewrite_onnx(
        variants_copy,
        lambda p: set_meta(p, PRECISION_METADATA_KEY, None),
        name=name,
        precision="fp16",
    )
    with pytest.raises(BundleError, match=r"holds the fp32 variant, the manifest lists it as fp16"):
        load_bundle(variants_copy)


def test_a_variant_of_another_model_is_refused(variants_copy: Path) -> None:
    rewrite_onnx(
        variants_copy,
        lambda p: set_meta(p, "mmsag.model_id", "other@123456789abc"),
        name="model.int8.onnx",
        precision="int8",
    )
    with pytest.raises(
        BundleError, match=r"model\.int8\.onnx belongs to model other@123456789abc.*swapped"
    ):
        load_bundle(variants_copy)


def test_an_unknown_variant_is_refused(variants_copy: Path) -> None:
    edit_manifest(variants_copy, lambda m: m["variants"].update(bf16=dict(m["variants"]["fp16"])))
    with pytest.raises(BundleError, match=r"unknown variant\(s\) bf16; known: fp16, int8"):
        load_bundle(variants_copy)


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "engines/model.int8.onnx", ".."])
def test_a_variant_name_that_is_not_a_plain_file_name_is_refused(
    variants_copy: Path, name: str
) -> None:
    edit_manifest(variants_copy, lambda m: m["variants"]["int8"].update(file=name))
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
    edit_manifest(variants_copy, change)
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

    edit_manifest(variants_copy, refuse)
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

    edit_manifest(variants_copy, downgrade)
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
    edit_manifest(
        bundle_copy, lambda m: (m.pop("variants"), m.update(format_version=1, int8_onnx=None))
    )
    with caplog.at_level(logging.WARNING, logger="mmsag_ros.bundle.manifest"):
        bundle = load_bundle(bundle_copy)
    assert list(bundle.variants) == ["fp32"] and caplog.records == []
