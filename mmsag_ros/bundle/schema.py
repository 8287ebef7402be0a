"""What a bundle is: its format constants, :class:`Bundle` and :class:`Variant`, the ONNX metadata.

A bundle is a directory with ``manifest.json``, ``model.onnx`` (the fp32 graph), optional
reduced-precision copies of it (``model.fp16.onnx``, ``model.int8.onnx``: precision is a
property of the ONNX, so the same file serves ONNX Runtime and strongly typed TensorRT), an
optional ``model.pt`` (slim torch checkpoint) and optionally ``engines/`` (TensorRT engines
built on the target). Every exported ONNX file carries the model's identity in its
``metadata_props`` (:func:`onnx_metadata`), so a swapped file is caught.

The model id is ``<name>@<first 12 hex digits of the SHA-256 of the fp32 ONNX graph>``: the
graph (structure and weights) rather than the whole file, because the file itself carries the
id in its metadata. Re-exporting the same checkpoint gives the same id. A run on a reduced
precision variant reports ``<model id>/<precision>`` (:meth:`Bundle.run_id`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmsag_ros.bundle.labels import LabelSet
from mmsag_ros.errors import BundleError

if TYPE_CHECKING:
    # Only named in annotations: reading a bundle's records must not load OpenCV.
    from mmsag_ros.bundle.drift_reference import Reference
    from mmsag_ros.bundle.preprocess import PreprocessSpec

__all__ = [
    "INPUT_FORMAT",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "ONNX_METADATA_KEYS",
    "PRECISIONS",
    "PRECISION_METADATA_KEY",
    "PREPROCESS_FIELDS",
    "READABLE_FORMATS",
    "Bundle",
    "Variant",
    "check_onnx_metadata",
    "onnx_metadata",
    "preprocess_manifest",
]

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
#: What this version writes and reads for the model input.
INPUT_FORMAT = {"color_order": "rgb", "layout": "NCHW", "dtype": "float32"}


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


def preprocess_manifest(spec: PreprocessSpec) -> dict[str, Any]:
    """The manifest's ``preprocess`` section for ``spec`` (RGB, NCHW, float32 input)."""
    return {**spec.to_dict(), **INPUT_FORMAT}


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
