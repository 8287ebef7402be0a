"""load_bundle rejects every kind of broken bundle with one clear BundleError."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import pytest

from mmsag_ros.errors import BundleError
from mmsag_ros.export.manifest import (
    PREPROCESS_FIELDS,
    Bundle,
    load_bundle,
    sha256_file,
)


@pytest.fixture
def bundle_copy(tiny_bundle: Bundle, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bundle.root, tmp_path / "bundle"))


def _edit(root: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = root / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def _rewrite_onnx(root: Path, change: Callable[[onnx.ModelProto], None]) -> None:
    """Change model.onnx and record its new hash, as a careless hand edit would."""
    proto = onnx.load(str(root / "model.onnx"))
    change(proto)
    onnx.save(proto, str(root / "model.onnx"))
    _edit(root, lambda m: m["onnx"].update(sha256=sha256_file(root / "model.onnx")))


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
        (2, "format_version 2; this mmsag_ros reads up to 1: upgrade"),
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


def test_missing_int8_file(bundle_copy: Path) -> None:
    _edit(bundle_copy, lambda m: m.update(int8_onnx={"file": "model.int8.onnx", "sha256": "0"}))
    with pytest.raises(BundleError, match=r"int8_onnx file .*model.int8.onnx is missing"):
        load_bundle(bundle_copy)


def test_swapped_onnx_with_a_fresh_hash(bundle_copy: Path) -> None:
    _rewrite_onnx(bundle_copy, lambda p: _set_meta(p, "mmsag.model_id", "other@123456789abc"))
    with pytest.raises(BundleError, match=r"belongs to model other@123456789abc.*swapped"):
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


def test_an_int8_name_climbing_out_is_refused(
    bundle_copy: Path, outside_copy: dict[str, Path]
) -> None:
    # An ONNX file serves as the int8 model's bytes: the check must come before any reading.
    sha = sha256_file(outside_copy["onnx"])
    _edit(
        bundle_copy, lambda m: m.update(int8_onnx={"file": "../outside/model.onnx", "sha256": sha})
    )
    with pytest.raises(BundleError, match=r"int8_onnx\.file '\.\./outside/model\.onnx' is not"):
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
