"""The bundle manifest: reading, writing and loading a bundle safely.

``manifest.json`` records what the bundle holds (:mod:`~mmsag_ros.bundle.schema`): each
variant's file, hash, how it was made and how it scored against fp32; a variant refused at
export stays in the manifest with its numbers and no file.

:func:`load_bundle` checks everything a backend relies on and raises one
:class:`~mmsag_ros.errors.BundleError` naming the problem: a missing directory or file, bad
JSON, an unknown format version, missing preprocessing fields, inconsistent class counts
(names, display names, thresholds, ONNX outputs), a file whose SHA-256 differs from the
manifest's (swapped or truncated), or a file name that is not a plain name of a regular file in
the bundle directory (``../x``, an absolute path, a symlink leading out, a directory; see
:mod:`~mmsag_ros.bundle.files`). The ONNX graphs are cross-checked by
:mod:`~mmsag_ros.bundle.onnx_check`.

Nothing here imports torch or ONNX Runtime; ``onnx`` is imported only to check the graphs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mmsag_ros.atomic import write_atomic
from mmsag_ros.bundle.drift_reference import parse_reference
from mmsag_ros.bundle.files import checked_file
from mmsag_ros.bundle.labels import LabelSet
from mmsag_ros.bundle.onnx_check import check_onnx_graph, hash_external_data
from mmsag_ros.bundle.preprocess import PreprocessSpec
from mmsag_ros.bundle.schema import (
    INPUT_FORMAT,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    PRECISIONS,
    PREPROCESS_FIELDS,
    READABLE_FORMATS,
    Bundle,
    Variant,
)
from mmsag_ros.errors import BundleError, DatasetError, MmsagError

__all__ = ["load_bundle", "read_manifest", "write_manifest"]

_log = logging.getLogger(__name__)

_REQUIRED_FIELDS = ("name", "model_id", "classes", "preprocess", "thresholds", "onnx")


def write_manifest(root: Path, manifest: Mapping[str, Any]) -> Path:
    """Write ``root/manifest.json`` atomically (unique temporary file, fsync, rename)."""
    text = json.dumps(manifest, indent=2, allow_nan=False) + "\n"
    return write_atomic(Path(root) / MANIFEST_NAME, text.encode("utf-8"))


def read_manifest(root: Path) -> dict[str, Any]:
    """Read and parse ``root/manifest.json``, checking its format version."""
    root = Path(root)
    if not root.is_dir():
        raise BundleError(
            f"bundle directory {root} does not exist; create one with "
            f"`mmsag export --checkpoint CHECKPOINT --out {root}`"
        )
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"{root} is not a bundle: {MANIFEST_NAME} is missing")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise BundleError(f"cannot read {path}: {err}") from err
    except RecursionError as err:
        raise BundleError(f"{path} is nested too deeply to be a manifest") from err
    except ValueError as err:  # JSONDecodeError, UnicodeDecodeError, integers past Python's limit
        raise BundleError(f"{path} is not valid JSON ({err}); export the bundle again") from err
    if not isinstance(manifest, dict):
        raise BundleError(f"{path} must hold a JSON object, got {type(manifest).__name__}")
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise BundleError(f"{path} has no integer format_version (got {version!r})")
    if version > MANIFEST_FORMAT:
        raise BundleError(
            f"{path} has format_version {version}; this mmsag_ros reads up to "
            f"{MANIFEST_FORMAT}: upgrade mmsag_ros"
        )
    if version not in READABLE_FORMATS:
        known = ", ".join(map(str, READABLE_FORMATS))
        raise BundleError(f"{path} has unknown format_version {version}; known: {known}")
    return manifest


def _section(manifest: dict[str, Any], key: str, path: Path) -> dict[str, Any]:
    value = manifest[key]
    if not isinstance(value, dict):
        raise BundleError(f"{path}: {key!r} must be a JSON object, got {value!r}")
    return value


def _parse_spec(section: dict[str, Any], path: Path) -> PreprocessSpec:
    missing = [key for key in PREPROCESS_FIELDS if key not in section]
    if missing:
        raise BundleError(
            f"{path}: the preprocess section lacks {', '.join(missing)}; export the bundle "
            "again with this mmsag_ros"
        )
    for key, expected in INPUT_FORMAT.items():
        if section[key] != expected:
            raise BundleError(
                f"{path}: preprocess {key} is {section[key]!r}; this mmsag_ros supports only "
                f"{expected!r}"
            )
    try:
        return PreprocessSpec.from_dict(section)
    except (MmsagError, TypeError, ValueError) as err:
        raise BundleError(f"{path}: invalid preprocess section: {err}") from err


def _parse_labels(manifest: dict[str, Any], path: Path) -> LabelSet:
    classes = _section(manifest, "classes", path)
    names, display = classes.get("names"), classes.get("display_names")
    if not isinstance(names, list) or not isinstance(display, list):
        raise BundleError(f"{path}: classes needs the lists 'names' and 'display_names'")
    if len(names) != len(display):
        raise BundleError(
            f"{path}: class-count mismatch: {len(names)} names but {len(display)} display names"
        )
    try:
        return LabelSet(tuple(str(n) for n in names), tuple(str(d) for d in display))
    except DatasetError as err:
        raise BundleError(f"{path}: invalid classes: {err}") from err


def _parse_thresholds(manifest: dict[str, Any], num_classes: int, path: Path) -> np.ndarray:
    values = manifest["thresholds"]
    if not isinstance(values, list) or len(values) != num_classes:
        count = len(values) if isinstance(values, list) else "no"
        raise BundleError(
            f"{path}: class-count mismatch: {count} thresholds for {num_classes} classes"
        )
    if not all(isinstance(v, int | float) and 0.0 <= v <= 1.0 for v in values):
        raise BundleError(f"{path}: thresholds must be numbers in [0, 1], got {values}")
    return np.asarray(values, dtype=np.float32)


def _parse_grid(section: dict[str, Any], outputs: tuple[str, ...], path: Path) -> Any:
    grid = section.get("attention_grid")
    if ("attention" in outputs) != (grid is not None):
        raise BundleError(
            f"{path}: onnx outputs {list(outputs)} and attention_grid {grid!r} disagree "
            "(attention maps need a grid, a grid needs the attention output)"
        )
    if grid is None:
        return None
    if not (isinstance(grid, list) and len(grid) == 2 and all(isinstance(v, int) for v in grid)):
        raise BundleError(f"{path}: attention_grid must be [h, w], got {grid!r}")
    return int(grid[0]), int(grid[1])


def _parse_variants(
    manifest: dict[str, Any], root: Path, where: Path, *, verify: bool
) -> tuple[dict[str, Variant], dict[str, str]]:
    """The reduced-precision variants present, and the refused ones with their reasons."""
    if manifest["format_version"] == 1:
        if manifest.get("int8_onnx") is not None:
            _log.warning(
                "%s is a format-1 bundle: its int8_onnx (CPU-only, uint8 activations) is "
                "ignored; export again with --precision fp32,int8 for an int8 variant",
                where,
            )
        return {}, {}
    section = manifest.get("variants", {})
    if not isinstance(section, dict):
        raise BundleError(f"{where}: 'variants' must be a JSON object, got {section!r}")
    unknown = sorted(set(section) - set(PRECISIONS[1:]))
    if unknown:
        raise BundleError(
            f"{where}: unknown variant(s) {', '.join(unknown)}; known: {', '.join(PRECISIONS[1:])}"
        )
    variants, refused = {}, {}
    for precision in PRECISIONS[1:]:
        if precision not in section:
            continue
        entry = _section(section, precision, where)
        if entry.get("accepted") is False:
            refused[precision] = str(entry.get("reason", "no reason recorded"))
            continue
        path = checked_file(root, entry, f"variants.{precision}", where, verify=verify)
        variants[precision] = Variant(precision, path, str(entry["sha256"]), entry)
    return variants, refused


def load_bundle(path: Path, *, verify: bool = True) -> Bundle:
    """Load and validate a bundle directory.

    Args:
        path: The bundle directory.
        verify: Check the SHA-256 of every model file and cross-check the ONNX graph (shapes,
            class count, embedded metadata) against the manifest. Costs about one read of
            each file; leave it on except in tight loops over a bundle already checked.

    Returns:
        The bundle, with resolved paths.

    Raises:
        BundleError: Naming the first problem found.
    """
    root = Path(path)
    manifest = read_manifest(root)
    where = root / MANIFEST_NAME
    missing = [key for key in _REQUIRED_FIELDS if key not in manifest]
    if missing:
        raise BundleError(f"{where} lacks the field(s) {', '.join(missing)}")
    name, model_id = manifest["name"], manifest["model_id"]
    if not isinstance(name, str) or not isinstance(model_id, str):
        raise BundleError(f"{where}: name and model_id must be strings")
    if not model_id.startswith(f"{name}@"):
        raise BundleError(f"{where}: model_id {model_id!r} does not start with {name + '@'!r}")
    labels = _parse_labels(manifest, where)
    spec = _parse_spec(_section(manifest, "preprocess", where), where)
    thresholds = _parse_thresholds(manifest, len(labels), where)
    onnx_section = _section(manifest, "onnx", where)
    outputs = onnx_section.get("outputs")
    if not isinstance(outputs, list) or not outputs or outputs[0] != "logits":
        raise BundleError(f"{where}: onnx outputs must start with 'logits', got {outputs!r}")
    if not set(outputs) <= {"logits", "attention"} or len(set(outputs)) != len(outputs):
        raise BundleError(f"{where}: unknown or repeated onnx outputs {outputs!r}")
    output_names = tuple(str(o) for o in outputs)
    onnx_path = checked_file(root, onnx_section, "onnx", where, verify=verify)
    torch_path = None
    if manifest.get("torch") is not None:
        torch_section = _section(manifest, "torch", where)
        torch_path = checked_file(root, torch_section, "torch", where, verify=verify)
    fp32 = Variant("fp32", onnx_path, str(onnx_section["sha256"]), onnx_section)
    reduced, refused = _parse_variants(manifest, root, where, verify=verify)
    bundle = Bundle(
        root=root,
        manifest=manifest,
        name=name,
        model_id=model_id,
        labels=labels,
        spec=spec,
        thresholds=thresholds,
        onnx_path=onnx_path,
        torch_path=torch_path,
        variants={"fp32": fp32, **reduced},
        refused=refused,
        input_name=str(onnx_section.get("input", "images")),
        output_names=output_names,
        has_attention="attention" in output_names,
        attention_grid=_parse_grid(onnx_section, output_names, where),
        engines_dir=root / "engines",
        reference=parse_reference(manifest.get("reference"), len(labels), str(where)),
    )
    if verify:
        for variant in bundle.variants.values():
            hash_external_data(bundle, variant)  # without the onnx package too
            check_onnx_graph(bundle, variant)
    return bundle
