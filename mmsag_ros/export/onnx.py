"""ONNX export of an MM-SAG model with an ONNX Runtime parity check.

The graph has one input ``images`` (N x 3 x S x S float32, normalised as the manifest says) and
the outputs ``logits`` (N x C) and, unless exported without them, ``attention`` (N x C x h x w,
softmax over h*w per class). The batch axis is dynamic. Label embeddings and the static graph
are buffers of the model, so they are folded into the graph as constants: no text model runs
on the robot.

Constant paddings are folded into the convolutions that read them
(:func:`~mmsag_ros.export.graph.fold_pads_into_convs`), before the parity check.

Parity: ONNX Runtime (CPU) and torch run the same realistic inputs, at the example's batch size
and at batch 1. For every output the error is ``max|onnx - torch| / max(1, max|torch|)``: a
relative error on the logit scale for logits (absolute below 1), and an absolute error for the
attention maps, whose values lie in [0, 1].

``onnx``, ``onnxruntime`` and torch are imported inside the functions.
"""

from __future__ import annotations

import hashlib
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmsag_ros import __version__
from mmsag_ros.bundle.labels import LabelSet
from mmsag_ros.bundle.preprocess import PreprocessSpec
from mmsag_ros.bundle.schema import check_onnx_metadata, onnx_metadata
from mmsag_ros.errors import BackendUnavailableError, BundleError, ConfigError
from mmsag_ros.export.graph import fold_pads_into_convs

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_OPSET",
    "INPUT_NAME",
    "OnnxExportResult",
    "export_onnx",
    "graph_sha256",
    "parity_error",
    "read_onnx_metadata",
]

_log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
INPUT_NAME = "images"
_MIN_OPSET = 17


@dataclass(frozen=True)
class OnnxExportResult:
    """What :func:`export_onnx` wrote and measured.

    Attributes:
        path: The ONNX file.
        model_id: ``name@<12 hex digits of graph_sha256>``.
        graph_sha256: SHA-256 of the serialised graph (structure and weights, no metadata).
        opset: ONNX opset of the default domain.
        input_name: The image input.
        output_names: ``("logits",)`` or ``("logits", "attention")``.
        attention_grid: (h, w) of the attention maps, or None.
        num_classes: C.
        max_errors: Output name -> worst parity error over the checked batches.
        batch_sizes: The batch sizes checked against ONNX Runtime.
        rtol: The tolerance the errors were held to.
        export_s: Seconds spent tracing and writing.
        parity_s: Seconds spent on the parity check.
        metadata: The ``metadata_props`` embedded in the file.
    """

    path: Path
    model_id: str
    graph_sha256: str
    opset: int
    input_name: str
    output_names: tuple[str, ...]
    attention_grid: tuple[int, int] | None
    num_classes: int
    max_errors: dict[str, float]
    batch_sizes: tuple[int, ...]
    rtol: float
    export_s: float
    parity_s: float
    metadata: dict[str, str] = field(default_factory=dict)


def _import_onnx() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError as err:
        raise BackendUnavailableError(
            f"ONNX export needs the onnx and onnxruntime packages ({err}); install them with "
            "`pip install onnx onnxruntime`"
        ) from err
    return onnx, onnxruntime


def _wrapper(model: torch.nn.Module, attention: bool) -> torch.nn.Module:
    import torch

    class _ExportWrapper(torch.nn.Module):
        """Tuple outputs in a fixed order instead of the model's dict."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, images: torch.Tensor) -> Any:
            out = self.model(images)
            if isinstance(out, torch.Tensor):
                out = {"logits": out}
            if attention and "attention" not in out:
                raise ConfigError(
                    "the model has no attention maps (semantic attention is off); export it "
                    "with attention=False (--no-attention)"
                )
            return (out["logits"], out["attention"]) if attention else out["logits"]

    return _ExportWrapper()


def parity_error(actual: np.ndarray, reference: np.ndarray) -> float:
    """``max|actual - reference| / max(1, max|reference|)`` (0 for empty arrays)."""
    if actual.shape != reference.shape:
        raise BundleError(f"output shape {actual.shape} differs from torch's {reference.shape}")
    if reference.size == 0:
        return 0.0
    scale = max(1.0, float(np.abs(reference).max()))
    return float(np.abs(actual.astype(np.float64) - reference).max() / scale)


def graph_sha256(model_proto: Any) -> str:
    """SHA-256 of an ONNX model's graph (deterministic serialisation; metadata not included)."""
    return hashlib.sha256(model_proto.graph.SerializeToString(deterministic=True)).hexdigest()


def read_onnx_metadata(path: Path) -> dict[str, Any]:
    """Read the mmsag metadata of an ONNX file; BundleError when any key is missing."""
    onnx, _ = _import_onnx()
    model = onnx.load(str(path), load_external_data=False)
    return check_onnx_metadata({p.key: p.value for p in model.metadata_props}, source=str(path))


def _fix_output_dims(model_proto: Any, shapes: dict[str, tuple[int, ...]]) -> None:
    # The TorchScript exporter leaves symbolic names on reshaped outputs; every axis but the
    # batch is fixed, so say so (TensorRT and shape checks then know C, h and w).
    for output in model_proto.graph.output:
        dims = output.type.tensor_type.shape.dim
        for axis, size in enumerate(shapes[output.name]):
            if axis > 0 and axis < len(dims):
                dims[axis].dim_value = size


def _torch_outputs(wrapper: torch.nn.Module, images: torch.Tensor) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        out = wrapper(images)
    outs = out if isinstance(out, tuple) else (out,)
    return [o.detach().float().cpu().numpy() for o in outs]


def _check_example(example: torch.Tensor, size: int | None) -> None:
    import torch

    if not isinstance(example, torch.Tensor) or example.dtype != torch.float32:
        raise ConfigError("example must be a float32 torch tensor of preprocessed images")
    if example.ndim != 4 or example.shape[1] != 3 or example.shape[2] != example.shape[3]:
        raise ConfigError(f"example must be N x 3 x S x S, got {tuple(example.shape)}")
    if size is not None and example.shape[2] != size:
        raise ConfigError(f"example is {example.shape[2]} px, the model expects {size} px")
    if example.shape[0] < 2:
        raise ConfigError(
            f"example has batch {example.shape[0]}; give at least 2 images so the exporter "
            "cannot freeze the batch size at 1"
        )


def _trace(
    wrapper: torch.nn.Module, example: torch.Tensor, path: Path, names: list[str], opset: int
) -> None:
    import torch

    dynamic_axes = {name: {0: "batch"} for name in names}
    with warnings.catch_warnings():
        # Shape checks in traced code become constants of the trace; the parity check at a
        # second batch size is what proves the graph generalises.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch.onnx")
        # The TorchScript exporter writes exactly the requested opset (the dynamo exporter
        # writes 18 and fails to convert this graph down to 17) and is several times faster.
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            input_names=[names[0]],
            output_names=names[1:],
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )


def _parity(
    path: Path, inputs: list[np.ndarray], references: list[list[np.ndarray]], names: list[str]
) -> dict[str, float]:
    _, ort = _import_onnx()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    worst = dict.fromkeys(names[1:], 0.0)
    for images, reference in zip(inputs, references, strict=True):
        outputs = session.run(names[1:], {names[0]: images})
        for name, actual, expected in zip(names[1:], outputs, reference, strict=True):
            worst[name] = max(worst[name], parity_error(actual, expected))
    return worst


def _finish_graph(
    proto: Any, shapes: dict[str, Any], *, name: str, labels: LabelSet, spec: PreprocessSpec
) -> tuple[str, str, dict[str, str]]:
    """Fold pads, fix output dims, stamp the metadata and check the traced graph in place.

    Returns the graph's digest, the model id made from it and the metadata written.
    """
    onnx, _ = _import_onnx()
    folded = fold_pads_into_convs(proto)
    _log.debug("folded %d constant Pad nodes into their convolutions", folded)
    _fix_output_dims(proto, shapes)
    digest = graph_sha256(proto)
    model_id = f"{name}@{digest[:12]}"
    metadata = onnx_metadata(
        name=name, model_id=model_id, labels=labels, spec=spec, version=__version__
    )
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name, proto.producer_version = "mmsag_ros", __version__
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as err:
        raise BundleError(f"the exported graph fails onnx.checker: {err}") from err
    return digest, model_id, metadata


def export_onnx(
    model: torch.nn.Module,
    path: Path,
    *,
    example: torch.Tensor,
    labels: LabelSet,
    spec: PreprocessSpec | None = None,
    name: str | None = None,
    opset: int = DEFAULT_OPSET,
    attention: bool = True,
    rtol: float = 1e-4,
) -> OnnxExportResult:
    """Export ``model`` to ONNX and check it against torch with ONNX Runtime.

    Args:
        model: An MM-SAG model (returning a dict with ``logits`` and ``attention``) or any
            module returning logits. Exported in eval mode; its training mode is restored.
        path: Where to write the ``.onnx`` file.
        example: Realistic preprocessed images, N x 3 x S x S float32 with N >= 2 (e.g.
            synthetic conveyor frames through :func:`~mmsag_ros.bundle.preprocess.preprocess`).
            Parity is checked on all N and on the first image alone.
        labels: Class names, embedded in the file's metadata.
        spec: Preprocessing to embed (default: ``model.spec``).
        name: Model configuration name (default: ``model.config.name``).
        opset: ONNX opset, at least 17.
        attention: Export the attention maps as a second output.
        rtol: Largest accepted parity error (see the module docstring).

    Returns:
        Paths, ids, the measured parity errors and timings.

    Raises:
        ConfigError: Bad example, opset or options (attention requested from a model that
            has no attention maps).
        BundleError: The ONNX file fails the checker, disagrees with torch beyond ``rtol``,
            or lost its metadata.
        BackendUnavailableError: onnx or onnxruntime is not installed.
    """
    onnx, _ = _import_onnx()
    path = Path(path)
    spec = spec if spec is not None else model.spec
    name = name if name is not None else model.config.name
    if opset < _MIN_OPSET:
        raise ConfigError(f"opset must be at least {_MIN_OPSET}, got {opset}")
    if not rtol > 0:
        raise ConfigError(f"rtol must be positive, got {rtol}")
    _check_example(example, spec.input_size)
    device = next(model.parameters()).device
    example = example.to(device)
    was_training = model.training
    wrapper = _wrapper(model, attention).eval()
    try:
        references = [_torch_outputs(wrapper, x) for x in (example, example[:1])]
        if len(references[0][0].shape) != 2 or references[0][0].shape[1] != len(labels):
            raise ConfigError(
                f"the model outputs logits of shape {references[0][0].shape} but {len(labels)} "
                "classes were given"
            )
        names = [INPUT_NAME, "logits", *(["attention"] if attention else [])]
        path.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        _trace(wrapper, example, path, names, opset)
    finally:
        model.train(was_training)
    proto = onnx.load(str(path))
    shapes = dict(zip(names[1:], (r.shape for r in references[0]), strict=True))
    digest, model_id, metadata = _finish_graph(proto, shapes, name=name, labels=labels, spec=spec)
    onnx.save(proto, str(path))
    export_s = time.perf_counter() - start
    read_onnx_metadata(path)  # fails loudly if anything did not survive the round trip
    start = time.perf_counter()
    inputs = [x.detach().cpu().numpy() for x in (example, example[:1])]
    errors = _parity(path, inputs, references, names)
    parity_s = time.perf_counter() - start
    batches = (int(example.shape[0]), 1)
    for output, error in errors.items():
        if error > rtol:
            path.unlink(missing_ok=True)  # never leave a graph that failed its check
            raise BundleError(
                f"ONNX Runtime disagrees with torch on {output!r}: max relative error "
                f"{error:.3g} > rtol {rtol:.3g} (batches {batches}; errors "
                + ", ".join(f"{k} {v:.3g}" for k, v in errors.items())
                + "); the graph does not reproduce the model, so it was not accepted"
            )
    _log.debug("ONNX parity on batches %s: %s", batches, errors)
    grid = tuple(int(v) for v in references[0][1].shape[2:]) if attention else None
    return OnnxExportResult(
        path=path,
        model_id=model_id,
        graph_sha256=digest,
        opset=opset,
        input_name=INPUT_NAME,
        output_names=tuple(names[1:]),
        attention_grid=grid,  # type: ignore[arg-type]
        num_classes=len(labels),
        max_errors=errors,
        batch_sizes=batches,
        rtol=rtol,
        export_s=export_s,
        parity_s=parity_s,
        metadata=metadata,
    )
