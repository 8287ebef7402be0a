"""load_bundle refuses file names and symlinks that leave the bundle or name no plain file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from bundle.manifest_helpers import edit_manifest

from mmsag_ros.bundle.files import sha256_file
from mmsag_ros.bundle.manifest import load_bundle
from mmsag_ros.errors import BundleError


def _point_at(root: Path, section: str, name: str) -> None:
    edit_manifest(root, lambda m: m[section].update(file=name))


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
    edit_manifest(bundle_copy, lambda m: m.update(variants={"int8": entry}))
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
