"""Cross-checking a bundle's ONNX files against its manifest.

Names, shapes and dtypes of the inputs and outputs, the class count, the embedded identity
(:func:`~mmsag_ros.bundle.schema.check_onnx_metadata`) and the external data files: every file
an ONNX model reads beside it must be listed in the manifest, and is checked by hash.
``onnx`` is imported only here, and only when a bundle is verified.
"""

from __future__ import annotations

import logging
from typing import Any

from mmsag_ros.bundle.files import checked_file
from mmsag_ros.bundle.schema import (
    MANIFEST_NAME,
    PRECISION_METADATA_KEY,
    Bundle,
    Variant,
    check_onnx_metadata,
)
from mmsag_ros.errors import BundleError

__all__ = ["check_onnx_graph", "hash_external_data"]

_log = logging.getLogger(__name__)


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


def check_onnx_graph(bundle: Bundle, variant: Variant) -> None:
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


def hash_external_data(bundle: Bundle, variant: Variant) -> None:
    """Check the files a variant's manifest entry lists as its external data, by hash."""
    where = bundle.root / MANIFEST_NAME
    what = "onnx" if variant.precision == "fp32" else f"variants.{variant.precision}"
    listed = variant.entry.get("external_data", [])
    if not isinstance(listed, list) or not all(isinstance(e, dict) for e in listed):
        raise BundleError(f"{where}: {what}.external_data must be a list of file sections")
    for entry in listed:
        checked_file(bundle.root, entry, f"{what}.external_data", where, verify=True)
