"""The bundle manifest: what a deployable model directory holds, and loading it safely.

A bundle is a directory with ``manifest.json``, ``model.onnx`` (the fp32 graph), optional
reduced-precision copies of it (``model.fp16.onnx``, ``model.int8.onnx``: precision is a
property of the ONNX, so the same file serves ONNX Runtime and strongly typed TensorRT), an
optional ``model.pt`` (slim torch checkpoint) and optionally ``engines/`` (TensorRT engines
built on the target). Each variant's manifest entry records its file, hash, how it was made and
how it scored against fp32; a variant refused at export stays in the manifest with its numbers
and no file.

:func:`load_bundle` checks everything a backend relies on and raises one
:class:`~mmsag_ros.errors.BundleError` naming the problem: a missing directory or file, bad
JSON, an unknown format version, missing preprocessing fields, inconsistent class counts
(names, display names, thresholds, ONNX outputs), a file whose SHA-256 differs from the
manifest's (swapped or truncated), or a file name that is not a plain name of a regular file in
the bundle directory (``../x``, an absolute path, a symlink leading out, a directory).

The model id is ``<name>@<first 12 hex digits of the SHA-256 of the fp32 ONNX graph>``: the
graph (structure and weights) rather than the whole file, because the file itself carries the
id in its metadata. Re-exporting the same checkpoint gives the same id. A run on a reduced
precision variant reports ``<model id>/<precision>`` (:meth:`Bundle.run_id`).

Nothing here imports torch or ONNX Runtime; ``onnx`` is imported only to check the graphs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmsag_ros.atomic import write_atomic
from mmsag_ros.bundle.drift_reference import Reference, parse_reference
from mmsag_ros.bundle.labels import LabelSet
from mmsag_ros.bundle.preprocess import PreprocessSpec
from mmsag_ros.errors import BundleError, DatasetError, MmsagError

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "ONNX_METADATA_KEYS",
    "PRECISIONS",
    "PRECISION_METADATA_KEY",
    "PREPROCESS_FIELDS",
    "Bundle",
    "Variant",
    "check_onnx_metadata",
    "load_bundle",
    "onnx_metadata",
    "preprocess_manifest",
    "read_manifest",
    "sha256_file",
    "write_manifest",
]

_log = logging.getLogger(__name__)

MANIFEST_FORMAT = 2
#: Formats this version reads: 1 had no precision variants (its ``int8_onnx``, a CPU-only
#: static-int8 model with uint8 activations, is ignored: export again to get an int8 variant).
READABLE_FORMATS = (1, 2)
#: Precision variants a bundle can hold, fp32 first (always present: ``model.onnx``).
PRECISIONS = ("fp32", "fp16", "int8")
MANIFEST_NAME = "manifest.json"
PREPROCESS_FIELDS = ("input_size", "mean", "std", "resize", "color_order", "layout", "dtype")
ONNX_METADATA_KEYS = (
    "mmsag.format_version",
    "mmsag.name",
    "mmsag.model_id",
    "mmsag.labels",
    "mmsag.preprocess",
    "mmsag.version",
)
#: ``metadata_props`` key naming a reduced-precision variant's precision (absent in fp32).
PRECISION_METADATA_KEY = "mmsag.precision"
_REQUIRED_FIELDS = ("name", "model_id", "classes", "preprocess", "thresholds", "onnx")
# What this version writes and reads for the model input.
_INPUT_FORMAT = {"color_order": "rgb", "layout": "NCHW", "dtype": "float32"}
_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Bundle:
    """A loaded, validated model bundle.

    Attributes:
        root: The bundle directory.
        manifest: The parsed ``manifest.json``.
        name: Model configuration name (``mmsag_effl0_224``).
        model_id: ``name@<12 hex>``, the content hash of the ONNX graph.
        labels: Class names and display names in model order.
        spec: Input size, normalisation and resize policy.
        thresholds: Per-class decision thresholds on sigmoid scores, float32 (C,).
        onnx_path: The fp32 ONNX model.
        torch_path: The slim torch checkpoint, or None if the bundle has none.
        variants: The ONNX variants present, by precision; ``fp32`` is always there.
        refused: Variants refused at export, precision -> the reason with its numbers.
        input_name: Name of the image input (``images``).
        output_names: ``("logits",)`` or ``("logits", "attention")``.
        has_attention: Whether the models output per-class attention maps.
        attention_grid: (h, w) of the attention maps, or None.
        engines_dir: Where TensorRT engines are cached (may not exist yet).
        reference: What the model saw at export, for the drift watch; None in a bundle
            exported without a validation split (or by a version that did not record it).
    """

    root: Path
    manifest: dict[str, Any]
    name: str
    model_id: str
    labels: LabelSet
    spec: PreprocessSpec
    thresholds: np.ndarray
    onnx_path: Path
    torch_path: Path | None
    variants: Mapping[str, Variant]
    refused: Mapping[str, str]
    input_name: str
    output_names: tuple[str, ...]
    has_attention: bool
    attention_grid: tuple[int, int] | None
    engines_dir: Path
    reference: Reference | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes C."""
        return len(self.labels)

    def variant(self, precision: str) -> Variant:
        """The ONNX variant of ``precision``; BundleError saying why when the bundle lacks it."""
        if precision not in PRECISIONS:
            raise BundleError(
                f"unknown precision {precision!r}; a variant is one of {', '.join(PRECISIONS)}"
            )
        found = self.variants.get(precision)
        if found is not None:
            return found
        have = ", ".join(self.variants)
        if precision in self.refused:
            why = f"it was refused at export ({self.refused[precision]})"
        else:
            why = "it was not exported"
        raise BundleError(
            f"bundle {self.root} has no {precision} variant: {why}; it has {have}. Export one "
            f"with `mmsag export ... --precision fp32,{precision}` or run another precision"
        )

    def run_id(self, precision: str) -> str:
        """The id a run on ``precision`` reports: the model id, plus ``/<precision>`` if reduced."""
        return self.model_id if precision == "fp32" else f"{self.model_id}/{precision}"


@dataclass(frozen=True)
class Variant:
    """One precision of the bundle's network as an ONNX file.

    Attributes:
        precision: ``fp32``, ``fp16`` or ``int8``.
        path: The ONNX file in the bundle.
        sha256: Hex SHA-256 of the file (engine caches key on it).
        entry: The manifest's record of it: its ``variants`` entry (conversion tool, accuracy
            against fp32), for fp32 the ``onnx`` section.
    """

    precision: str
    path: Path
    sha256: str
    entry: Mapping[str, Any]


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def preprocess_manifest(spec: PreprocessSpec) -> dict[str, Any]:
    """The manifest's ``preprocess`` section for ``spec`` (RGB, NCHW, float32 input)."""
    return {**spec.to_dict(), **_INPUT_FORMAT}


def onnx_metadata(
    *, name: str, model_id: str, labels: LabelSet, spec: PreprocessSpec, version: str
) -> dict[str, str]:
    """The ``metadata_props`` embedded in every exported ONNX file (keys in ONNX_METADATA_KEYS)."""
    return {
        "mmsag.format_version": str(MANIFEST_FORMAT),
        "mmsag.name": name,
        "mmsag.model_id": model_id,
        "mmsag.labels": json.dumps(labels.to_dict()),
        "mmsag.preprocess": json.dumps(preprocess_manifest(spec)),
        "mmsag.version": version,
    }


def check_onnx_metadata(props: Mapping[str, str], *, source: str) -> dict[str, Any]:
    """Parse ONNX ``metadata_props``; BundleError if any of ONNX_METADATA_KEYS is missing.

    Returns:
        The values, with ``mmsag.labels`` and ``mmsag.preprocess`` decoded from JSON.
    """
    missing = [key for key in ONNX_METADATA_KEYS if key not in props]
    if missing:
        raise BundleError(
            f"{source} lacks the metadata {', '.join(missing)}; it was not exported by "
            "`mmsag export` (or was edited): export it again"
        )
    values: dict[str, Any] = {key: props[key] for key in ONNX_METADATA_KEYS}
    for key in ("mmsag.labels", "mmsag.preprocess"):
        try:
            values[key] = json.loads(props[key])
        except json.JSONDecodeError as err:
            raise BundleError(f"{source}: metadata {key} is not valid JSON ({err})") from err
    return values


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
    for key, expected in _INPUT_FORMAT.items():
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


def _bundle_file(root: Path, name: str, what: str, where: Path) -> Path:
    """``root / name`` once ``name`` is proven to be a regular file directly inside ``root``.

    The manifest is data from wherever the bundle came from: a name like ``../x``, an absolute
    path or a symlink leading out of the folder would make every backend read (and hash) an
    arbitrary file. So only plain file names are accepted, and the resolved file must still sit
    in the (resolved) bundle directory.
    """
    field = f"{what}.file"
    separators = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    if (
        not name
        or name in {".", ".."}
        or "\0" in name
        or any(sep in name for sep in separators)
        or os.path.isabs(name)
    ):
        raise BundleError(
            f"{where}: {field} {name!r} is not a plain file name; a bundle names its files "
            "without folders, '..' or absolute paths: export the bundle again"
        )
    file_path = root / name
    try:
        resolved, home = file_path.resolve(), root.resolve()
    except (OSError, RuntimeError) as err:  # a symlink loop (RuntimeError before Python 3.13)
        raise BundleError(f"{where}: {field} {name!r} cannot be resolved ({err})") from err
    if resolved.parent != home:
        raise BundleError(
            f"{where}: {field} {name!r} resolves to {resolved}, outside the bundle directory "
            f"{home}; copy the file into the bundle instead of linking to it"
        )
    if not file_path.exists():
        raise BundleError(f"{what} file {file_path} is missing; export the bundle again")
    if not file_path.is_file():
        raise BundleError(
            f"{where}: {field} {name!r} is not a regular file ({file_path} is a directory or "
            "special file); export the bundle again"
        )
    return file_path


def _checked_file(
    root: Path, section: dict[str, Any], what: str, path: Path, *, verify: bool
) -> Path:
    name, expected = section.get("file"), section.get("sha256")
    if not isinstance(name, str) or not isinstance(expected, str):
        raise BundleError(f"{path}: the {what} section needs 'file' and 'sha256' strings")
    file_path = _bundle_file(root, name, what, path)
    if verify:
        actual = sha256_file(file_path)
        if actual != expected:
            raise BundleError(
                f"{what} file {file_path} does not match the manifest (SHA-256 {actual[:12]}..."
                f" instead of {expected[:12]}...): it was swapped or truncated; export the "
                "bundle again"
            )
    return file_path


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


def _dims(value_info: Any) -> list[int | str]:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]


def _tensors(graph: Any) -> Any:
    """Every tensor of a graph and its subgraphs: initializers, sparse ones, attributes."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        for attribute in node.attribute:
            yield from ([attribute.t] if attribute.HasField("t") else [])
            yield from attribute.tensors
            if attribute.HasField("sparse_tensor"):
                yield from (attribute.sparse_tensor.values, attribute.sparse_tensor.indices)
            for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from _tensors(sub)


def _external_data_files(model: Any) -> set[str]:
    """The files an ONNX model's tensors keep their data in (weights over 2 GB, or anyone's)."""
    graphs = [model.graph]
    graphs += [_FunctionAsGraph(f) for f in model.functions]
    return {
        entry.value
        for graph in graphs
        for tensor in _tensors(graph)
        if tensor.data_location == tensor.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    }


class _FunctionAsGraph:
    """A model-local function seen as a graph of nodes (functions have no initializers)."""

    def __init__(self, function: Any) -> None:
        self.node, self.initializer, self.sparse_initializer = function.node, [], []


def _check_external_data(bundle: Bundle, variant: Variant, model: Any) -> None:
    """Every external data file a variant reads is listed in the manifest, and its hash holds.

    ONNX Runtime reads such files beside the model when it opens it: weights the manifest does
    not hash would let a bundle run anything under a verified ``model.onnx``.
    """
    what = "onnx" if variant.precision == "fp32" else f"variants.{variant.precision}"
    hashed = {str(e.get("file")) for e in variant.entry.get("external_data", [])}
    unlisted = sorted(_external_data_files(model) - hashed)
    if unlisted:
        raise BundleError(
            f"{variant.path} keeps weights in {', '.join(unlisted)}, which {MANIFEST_NAME} "
            f"does not hash ({what}.external_data); export the bundle again"
        )


def _check_onnx_graph(bundle: Bundle, variant: Variant) -> None:
    """Cross-check one ONNX variant against the manifest: names, shapes, classes, metadata."""
    try:
        import onnx
    except ImportError:
        # Listed external data was hashed already; unlisted files need the graph to be found.
        _log.warning(
            "onnx is not installed: %s is not cross-checked (shapes, classes, external data)",
            variant.path,
        )
        return
    source = str(variant.path)
    try:
        model = onnx.load(source, load_external_data=False)
    except Exception as err:  # protobuf raises several types for a corrupt file
        raise BundleError(f"{source} is not a readable ONNX model: {err}") from err
    inputs = {v.name: _dims(v) for v in model.graph.input}
    outputs = {v.name: _dims(v) for v in model.graph.output}
    size, count = bundle.spec.input_size, bundle.num_classes
    if inputs.get(bundle.input_name, [None])[1:] != [3, size, size]:
        raise BundleError(
            f"{source}: input {bundle.input_name!r} should be N x 3 x {size} x {size}; the "
            f"model has inputs {inputs}"
        )
    # Every variant keeps float32 inputs and outputs, so backends feed and read them alike.
    float32 = onnx.TensorProto.FLOAT
    wrong = [
        v.name
        for v in (*model.graph.input, *model.graph.output)
        if v.type.tensor_type.elem_type != float32
    ]
    if wrong:
        raise BundleError(f"{source}: {', '.join(wrong)} must be float32 tensors")
    if tuple(outputs) != bundle.output_names:
        raise BundleError(
            f"{source} has outputs {list(outputs)}, the manifest says {list(bundle.output_names)}"
        )
    if outputs["logits"][1:] != [count]:
        raise BundleError(
            f"{source}: class-count mismatch: logits have shape {outputs['logits']}, the "
            f"manifest lists {count} classes"
        )
    if bundle.attention_grid is not None:
        expected = [count, *bundle.attention_grid]
        if outputs["attention"][1:] != expected:
            raise BundleError(
                f"{source}: attention has shape {outputs['attention']}; expected N x "
                f"{' x '.join(map(str, expected))} from the manifest"
            )
    _check_external_data(bundle, variant, model)
    props = {p.key: p.value for p in model.metadata_props}
    meta = check_onnx_metadata(props, source=source)
    if meta["mmsag.model_id"] != bundle.model_id or meta["mmsag.labels"] != bundle.labels.to_dict():
        raise BundleError(
            f"{source} belongs to model {meta['mmsag.model_id']} with classes "
            f"{meta['mmsag.labels'].get('names')}, the manifest describes {bundle.model_id}: the "
            "file was swapped; export the bundle again"
        )
    precision = props.get(PRECISION_METADATA_KEY, "fp32")
    if precision != variant.precision:
        raise BundleError(
            f"{source} holds the {precision} variant, the manifest lists it as "
            f"{variant.precision}: the files were swapped; export the bundle again"
        )


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
        path = _checked_file(root, entry, f"variants.{precision}", where, verify=verify)
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
    onnx_path = _checked_file(root, onnx_section, "onnx", where, verify=verify)
    torch_path = None
    if manifest.get("torch") is not None:
        torch_section = _section(manifest, "torch", where)
        torch_path = _checked_file(root, torch_section, "torch", where, verify=verify)
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
            _hash_external_data(bundle, variant)  # without the onnx package too
            _check_onnx_graph(bundle, variant)
    return bundle


def _hash_external_data(bundle: Bundle, variant: Variant) -> None:
    """Check the files a variant's manifest entry lists as its external data, by hash."""
    where = bundle.root / MANIFEST_NAME
    what = "onnx" if variant.precision == "fp32" else f"variants.{variant.precision}"
    listed = variant.entry.get("external_data", [])
    if not isinstance(listed, list) or not all(isinstance(e, dict) for e in listed):
        raise BundleError(f"{where}: {what}.external_data must be a list of file sections")
    for entry in listed:
        _checked_file(bundle.root, entry, f"{what}.external_data", where, verify=True)
