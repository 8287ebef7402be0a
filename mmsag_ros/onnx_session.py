"""ONNX Runtime sessions over a bundle's ONNX variants, opened one way everywhere.

Export scores each precision variant against fp32 and the runtime serves the same files; both
open them here, so the accuracy the exporter records is the accuracy of the session the node
runs.

The int8 variant is written for TensorRT: explicit Q/DQ with symmetric int8 activations (zero
point 0), the only activation quantization TensorRT accepts. ONNX Runtime's x86 kernels are
fast for uint8 activations times int8 weights (the u8s8 VNNI path) and several times slower
for int8 activations on the development CPU. ``uint8 = int8 + 128`` with zero point 128 is
the same quantization (every value, scale and rounding maps one to one), so on the CPU the
activation zero points are rewritten in memory from int8 0 to uint8 128 before the session is
built. Likewise its convolution biases stay float32 in the file (TensorRT's parser takes only
int8/fp8 into DequantizeLinear), while ONNX Runtime fuses a Q/DQ convolution into its int8
kernel only with an int32 bias at scale ``input scale x weight scale``: on the CPU each such
bias is quantized that way in memory too (the rounding is half a unit of that product scale,
as ONNX Runtime's own quantizer would do). And a ReLU or ReLU6 between two quantizations
(``x -> Q -> DQ -> Relu -> Q``) becomes one quantization to uint8 with zero point 0, whose
saturations at 0 and 255 are the activation's clamps (:func:`fold_relu_quantize`), so ONNX
Runtime keeps the block in int8 instead of leaving to float for the activation. That one is
not bit-identical to the file: one rounding instead of two, on a grid twice as fine (half a
step of difference at most; TensorRT fuses the same pattern its own way). Last, the weights
get 7 bits (:func:`seven_bit_weights`), because without VNNI the x86 int8 kernels add pairs
of products into a saturating int16, which full 8-bit weights overflow.
Export scores the variant through this function twice: as the CPU session runs it and as
written (``as_written=True``, the Q/DQ arithmetic TensorRT runs); the file on disk stays the
TensorRT form, and both scores must pass the bar.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmsag_ros.errors import BackendUnavailableError, BundleError, ConfigError

__all__ = [
    "CPU_PROVIDER",
    "SEVEN_BIT_LIMIT",
    "fold_relu_quantize",
    "import_onnxruntime",
    "int32_conv_biases",
    "open_session",
    "seven_bit_weights",
    "uint8_activations",
]

CPU_PROVIDER = "CPUExecutionProvider"


def import_onnxruntime() -> Any:
    """Import ``onnxruntime``; BackendUnavailableError (one line) when it is missing."""
    try:
        import onnxruntime
    except ImportError as err:
        raise BackendUnavailableError(
            f"ONNX Runtime is not installed ({err}); pip install onnxruntime "
            "(or onnxruntime-gpu for CUDA)"
        ) from err
    return onnxruntime


def uint8_activations(model: Any) -> int:
    """Rewrite the activation Q/DQ zero points of ``model`` (onnx ModelProto) to uint8 128.

    Only zero points named by a ``QuantizeLinear`` are touched (activations); weight
    ``DequantizeLinear`` zero points stay int8. Returns how many were rewritten.

    Raises:
        BundleError: An activation zero point that is not a symmetric int8 initializer (the
            file was not written by ``mmsag export``, or was edited).
    """
    from onnx import numpy_helper

    initializers = {t.name: t for t in model.graph.initializer}
    names = {
        node.input[2]
        for node in model.graph.node
        if node.op_type == "QuantizeLinear" and len(node.input) > 2
    }
    for name in sorted(names):
        tensor = initializers.get(name)
        values = None if tensor is None else numpy_helper.to_array(tensor)
        if values is None or values.dtype != np.int8 or values.any():
            raise BundleError(
                f"activation zero point {name!r} is not a symmetric int8 initializer; the int8 "
                "variant must be exported by `mmsag export --precision ...,int8`"
            )
        shifted = (values.astype(np.int16) + 128).astype(np.uint8)
        tensor.CopyFrom(numpy_helper.from_array(shifted, name))
    return len(names)


def _constant(model: Any, name: str, initializers: dict[str, Any]) -> np.ndarray | None:
    from onnx import numpy_helper

    if name in initializers:
        return numpy_helper.to_array(initializers[name])
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def _activation_ceiling(model: Any, node: Any, initializers: dict[str, Any]) -> float | None:
    """The upper clamp of a ReLU-like node (``inf`` for Relu), None if it is not one."""
    if node.op_type == "Relu":
        return math.inf
    if node.op_type != "Clip" or len(node.input) < 2 or not node.input[1]:
        return None
    low = _constant(model, node.input[1], initializers)
    high = _constant(model, node.input[2], initializers) if len(node.input) > 2 else None
    if low is None or low.size != 1 or float(low) != 0.0:
        return None
    if len(node.input) > 2 and node.input[2] and high is None:
        return None
    return math.inf if high is None else float(high)


def fold_relu_quantize(model: Any) -> int:
    """Turn ``[Q -> DQ ->] Relu/Clip(0, c) -> Q'`` into one quantization ``Q'`` to uint8.

    The new ``Q'`` has zero point 0, whose saturation at 0 is the lower clamp, and a scale of
    ``min(c, 127 s') / 255`` (``s'`` the old scale), whose saturation at 255 is the upper one
    (the old int8 saturation at ``127 s'``, or ReLU6's 6): the same clamps as before, in half
    as large steps and one rounding instead of two. ``Q'`` and the DequantizeLinear nodes
    reading it get the new scale and zero point. Applies where every link has a single
    consumer and ``Q'`` is read only by DequantizeLinear nodes, after
    :func:`uint8_activations`. Returns how many activations were folded; the model is changed
    in place.
    """
    from onnx import numpy_helper

    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def only(name: str, op_type: str) -> Any:
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op_type else None

    dropped: set[int] = set()
    folded = 0
    for activation in graph.node:
        ceiling = _activation_ceiling(model, activation, initializers)
        requantize = only(activation.output[0], "QuantizeLinear")
        if ceiling is None or requantize is None or len(requantize.input) < 3:
            continue
        readers = consumers.get(requantize.output[0], [])
        scale = _constant(model, requantize.input[1], initializers)
        if (
            scale is None
            or scale.size != 1
            or not readers
            or any(r.op_type != "DequantizeLinear" or len(r.input) < 3 for r in readers)
            or any(r.input[1:3] != requantize.input[1:3] for r in readers)
            or not min(ceiling, float(scale)) > 0
        ):
            continue
        source = activation.input[0]
        dequantize = producers.get(source)
        quantize = producers.get(dequantize.input[0]) if dequantize is not None else None
        if (
            dequantize is not None
            and dequantize.op_type == "DequantizeLinear"
            and quantize is not None
            and quantize.op_type == "QuantizeLinear"
            and only(quantize.output[0], "DequantizeLinear") is dequantize
            and only(dequantize.output[0], activation.op_type) is activation
            and len(consumers.get(quantize.input[0], [])) == 1
        ):
            source = quantize.input[0]
            dropped |= {id(quantize), id(dequantize)}
        top = min(ceiling, 127.0 * float(scale))
        name = f"{requantize.output[0]}_uint8"
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.array(top / 255.0, np.float32), f"{name}_scale"),
                numpy_helper.from_array(np.zeros((), np.uint8), f"{name}_zero_point"),
            ]
        )
        for node in (requantize, *readers):
            node.input[1], node.input[2] = f"{name}_scale", f"{name}_zero_point"
        requantize.input[0] = source
        dropped.add(id(activation))
        folded += 1
    kept = [node for node in graph.node if id(node) not in dropped]
    del graph.node[:]
    graph.node.extend(kept)
    return folded


#: The largest weight magnitude of the CPU form: two products of a uint8 activation and a
#: weight then sum to at most 2 x 255 x 63 = 32130, inside the int16 that x86's AVX2
#: ``vpmaddubsw`` saturates at.
SEVEN_BIT_LIMIT = 63


def seven_bit_weights(model: Any) -> int:
    """Requantize each constant int8 weight of ``model`` to 7 bits (``|w| <= 63``), in place.

    Without VNNI, ONNX Runtime's x86 int8 kernels multiply uint8 activations by int8 weights
    with ``vpmaddubsw``, which adds pairs of products into a saturating int16: ``2 x 255 x
    127`` overflows it, silently (the demo's model lost 2.9 mAP points to it). Weights of at
    most :data:`SEVEN_BIT_LIMIT` cannot overflow, so the CPU form gives the same numbers on
    every x86 CPU, VNNI or not, which is what makes the accuracy export records hold on the
    robot's computer. Each weight ``w`` at scale ``s`` becomes ``round(63 w / 127)`` at scale
    ``127 s / 63`` (the largest weight of a channel keeps its value exactly). Returns how many
    weights were requantized.
    """
    from onnx import numpy_helper

    initializers = {t.name: t for t in model.graph.initializer}
    done: set[str] = set()
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or done & set(node.input[:2]):
            continue
        weight, scale = (initializers.get(name) for name in node.input[:2])
        if weight is None or scale is None:
            continue
        values = numpy_helper.to_array(weight)
        if values.dtype != np.int8 or values.ndim < 2:
            continue
        ratio = SEVEN_BIT_LIMIT / 127.0
        requantized = np.clip(np.rint(values * ratio), -SEVEN_BIT_LIMIT, SEVEN_BIT_LIMIT)
        widened = numpy_helper.to_array(scale).astype(np.float64) / ratio
        weight.CopyFrom(numpy_helper.from_array(requantized.astype(np.int8), weight.name))
        scale.CopyFrom(numpy_helper.from_array(widened.astype(np.float32), scale.name))
        done |= {weight.name, scale.name}
    return len(done) // 2


def int32_conv_biases(model: Any) -> int:
    """Give each Q/DQ convolution of ``model`` with a float bias an int32 DequantizeLinear bias.

    A convolution qualifies when its input and its weight come from DequantizeLinear nodes
    with scale initializers and its bias is a float initializer. Returns how many were
    rewritten; the model is changed in place.
    """
    from onnx import helper, numpy_helper

    initializers = {t.name: t for t in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    rewritten = 0
    added = []
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 3 or node.input[2] not in initializers:
            continue
        source, weight = producers.get(node.input[0]), producers.get(node.input[1])
        if source is None or weight is None:
            continue
        if source.op_type != "DequantizeLinear" or weight.op_type != "DequantizeLinear":
            continue
        if source.input[1] not in initializers or weight.input[1] not in initializers:
            continue
        bias = numpy_helper.to_array(initializers[node.input[2]])
        if bias.dtype != np.float32:
            continue
        input_scale = numpy_helper.to_array(initializers[source.input[1]]).astype(np.float64)
        weight_scale = numpy_helper.to_array(initializers[weight.input[1]]).astype(np.float64)
        scale = np.broadcast_to(input_scale * weight_scale, bias.shape).astype(np.float32)
        if not (scale > 0).all():
            continue
        exact = np.rint(bias.astype(np.float64) / scale)  # float64 holds the int32 limits
        quantized = np.clip(exact, -(2**31), 2**31 - 1).astype(np.int32)
        name = f"{node.input[2]}_int32_for_{node.name or rewritten}"
        model.graph.initializer.extend(
            [
                numpy_helper.from_array(quantized, f"{name}_quantized"),
                numpy_helper.from_array(scale, f"{name}_scale"),
                numpy_helper.from_array(np.zeros(bias.shape, np.int32), f"{name}_zero_point"),
            ]
        )
        added.append(
            helper.make_node(
                "DequantizeLinear",
                [f"{name}_quantized", f"{name}_scale", f"{name}_zero_point"],
                [name],
                name=f"{name}_DequantizeLinear",
                axis=0,
            )
        )
        node.input[2] = name
        rewritten += 1
    # Constant inputs first keeps the graph topologically sorted.
    nodes = added + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return rewritten


def open_session(
    path: Path,
    *,
    precision: str = "fp32",
    providers: Sequence[Any] = (CPU_PROVIDER,),
    intra_op_threads: int | None = None,
    as_written: bool = False,
) -> Any:
    """An ``onnxruntime.InferenceSession`` over a variant file, set up as the node runs it.

    Args:
        path: The variant's ONNX file.
        precision: Its precision; ``int8`` on the CPU provider alone gets the CPU rewrites
            (uint8 activations, folded ReLUs, int32 biases).
        providers: ONNX Runtime providers, in order (names or ``(name, options)`` pairs).
        intra_op_threads: Threads for one operator; None keeps ONNX Runtime's default.
        as_written: Run the file node by node, without the CPU rewrites or ONNX Runtime's
            graph optimisations: an int8 file's Q/DQ computed literally, the arithmetic
            TensorRT runs (slow; export scores the int8 variant this way too).

    Raises:
        BackendUnavailableError: ONNX Runtime is missing or cannot load the file.
        ConfigError: ``intra_op_threads`` below 1.
    """
    ort = import_onnxruntime()
    if intra_op_threads is not None and intra_op_threads < 1:
        raise ConfigError(f"intra_op_threads must be at least 1, got {intra_op_threads}")
    options = ort.SessionOptions()
    # Written literally means node by node: ONNX Runtime's own Q/DQ fusions round differently.
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if as_written
        else ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    )
    if intra_op_threads is not None:
        options.intra_op_num_threads = intra_op_threads
    options.log_severity_level = 3  # provider fallbacks are reported by the caller, once
    source: Any = str(path)
    cpu_only = [p if isinstance(p, str) else p[0] for p in providers] == [CPU_PROVIDER]
    try:
        if precision == "int8" and cpu_only and not as_written:
            import onnx

            model = onnx.load(str(path))
            uint8_activations(model)
            fold_relu_quantize(model)
            seven_bit_weights(model)
            int32_conv_biases(model)  # at the 7-bit weight scales
            source = model.SerializeToString()
        return ort.InferenceSession(source, sess_options=options, providers=list(providers))
    except BundleError:
        raise
    except Exception as err:  # onnx and onnxruntime raise their own untyped exceptions
        raise BackendUnavailableError(f"ONNX Runtime cannot load {path}: {err}") from err
