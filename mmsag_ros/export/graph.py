"""Exact rewrites of a traced ONNX graph, applied once at export so every variant inherits them.

TF "same" padding (EfficientNet-Lite) traces as ``Pad -> Conv`` with the paddings computed by
a small chain of constant operations. ONNX Runtime leaves such a Pad as its own operator, and
in the int8 variant that operator sits between two quantizations, in float. A convolution
pads by itself, asymmetrically if need be, so :func:`fold_pads_into_convs` evaluates each
Pad's constant paddings and moves them into the Conv that reads it: the same numbers, one
operator fewer, in every precision and in TensorRT.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["constant_value", "fold_pads_into_convs", "prune_unused"]


def constant_value(model: Any, name: str) -> np.ndarray | None:
    """The value of tensor ``name`` when it depends on constants only, else None.

    Evaluates the tensor's ancestors with ONNX's reference evaluator; an ancestor that is a
    graph input (or a node with a subgraph) makes the value unknown.
    """
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    if name in initializers:
        return numpy_helper.to_array(initializers[name])
    producers = {out: node for node in graph.node for out in node.output}
    needed: set[int] = set()
    used_initializers: set[str] = set()
    pending = [name]
    while pending:
        tensor = pending.pop()
        if not tensor:
            continue
        if tensor in initializers:
            used_initializers.add(tensor)
            continue
        node = producers.get(tensor)
        if node is None or any(a.g.node or a.graphs for a in node.attribute):
            return None
        if id(node) not in needed:
            needed.add(id(node))
            pending.extend(node.input)
    nodes = [node for node in graph.node if id(node) in needed]
    subgraph = helper.make_graph(
        nodes,
        "constant",
        [],
        [helper.make_tensor_value_info(name, 0, None)],
        [initializers[n] for n in sorted(used_initializers)],
    )
    evaluator = ReferenceEvaluator(
        helper.make_model(subgraph, opset_imports=list(model.opset_import))
    )
    return np.asarray(evaluator.run(None, {})[0])


def prune_unused(model: Any) -> int:
    """Drop nodes none of whose outputs is used, and initializers nothing reads.

    Returns how many nodes were dropped.
    """
    graph = model.graph
    dropped = 0
    while True:
        used = {o.name for o in graph.output} | {i for n in graph.node for i in n.input}
        kept = [n for n in graph.node if any(out in used for out in n.output)]
        if len(kept) == len(graph.node):
            break
        dropped += len(graph.node) - len(kept)
        del graph.node[:]
        graph.node.extend(kept)
    read = {i for n in graph.node for i in n.input}
    initializers = [t for t in graph.initializer if t.name in read]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    return dropped


def _attribute(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def fold_pads_into_convs(model: Any) -> int:
    """Move each constant zero ``Pad`` of the two spatial axes into the 2-D Conv reading it.

    Applies to a Pad in constant mode with value 0 (or none), without ``axes``, padding
    neither batch nor channels, whose only reader is a Conv without ``auto_pad``. Returns how
    many were folded; the model is changed in place and left without the dead padding chain.
    """
    from onnx import helper

    graph = model.graph
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    folded = 0
    for pad in list(graph.node):
        if pad.op_type != "Pad" or _attribute(pad, "mode", b"constant") not in (
            b"constant",
            "constant",
        ):
            continue
        readers = consumers.get(pad.output[0], [])
        if (
            len(readers) != 1
            or readers[0].op_type != "Conv"
            or readers[0].input[0] != pad.output[0]
        ):
            continue
        conv = readers[0]
        if _attribute(conv, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            continue
        if len(pad.input) > 3 and pad.input[3]:
            continue  # an axes input: keep the general form
        if len(pad.input) > 2 and pad.input[2]:
            value = constant_value(model, pad.input[2])
            if value is None or value.size != 1 or float(value) != 0.0:
                continue
        pads = constant_value(model, pad.input[1])
        if pads is None or pads.shape != (8,) or (pads < 0).any() or pads[[0, 1, 4, 5]].any():
            continue
        conv_pads = _attribute(conv, "pads", [0, 0, 0, 0])
        if len(conv_pads) != 4:
            continue
        begin_h, begin_w, end_h, end_w = (int(v) for v in pads[[2, 3, 6, 7]])
        merged = [
            conv_pads[0] + begin_h,
            conv_pads[1] + begin_w,
            conv_pads[2] + end_h,
            conv_pads[3] + end_w,
        ]
        kept = [a for a in conv.attribute if a.name != "pads"]
        del conv.attribute[:]
        conv.attribute.extend(kept)
        conv.attribute.append(helper.make_attribute("pads", merged))
        conv.input[0] = pad.input[0]
        folded += 1
    if folded:
        prune_unused(model)
    return folded
