from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from mmsag_ros.bundle.labels import MLKW_LABELS
from mmsag_ros.bundle.schema import Bundle
from mmsag_ros.errors import BundleError, ConfigError
from mmsag_ros.export.onnx import (
    export_onnx,
    graph_sha256,
    parity_error,
    read_onnx_metadata,
)
from mmsag_ros.export.write_bundle import parity_frames
from mmsag_ros.model.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def model_and_spec(tiny_checkpoint: Path) -> tuple[torch.nn.Module, object]:
    checkpoint = load_checkpoint(tiny_checkpoint)
    return checkpoint.build_model(), checkpoint.spec


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _torch_reference(model: torch.nn.Module, frames: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = model.eval()(torch.from_numpy(frames))
    return {"logits": out["logits"].numpy(), "attention": out["attention"].numpy()}


def test_parity_on_synthetic_frames_at_batch_1_and_3(
    model_and_spec: tuple[torch.nn.Module, object], tiny_bundle: Bundle, tmp_path: Path
) -> None:
    model, spec = model_and_spec
    frames = parity_frames(spec, count=3)
    model.train()  # export must not leave the caller's model in another mode
    result = export_onnx(
        model, tmp_path / "m.onnx", example=torch.from_numpy(frames), labels=MLKW_LABELS
    )
    assert model.training
    assert result.batch_sizes == (3, 1)
    assert set(result.max_errors) == {"logits", "attention"}
    assert max(result.max_errors.values()) <= 1e-4

    # Check independently of the function's own measurement, including an unseen batch size.
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    for batch in (frames[:1], frames, parity_frames(spec, count=5, seed=7)):
        reference = _torch_reference(model, batch)
        logits, attention = session.run(["logits", "attention"], {"images": batch})
        scale = max(1.0, float(np.abs(reference["logits"]).max()))
        assert np.abs(logits - reference["logits"]).max() / scale <= 1e-4
        assert np.abs(attention - reference["attention"]).max() <= 1e-4
        assert np.allclose(attention.sum(axis=(2, 3)), 1.0, atol=1e-5)

    proto = onnx.load(str(result.path))
    assert [(o.domain, o.version) for o in proto.opset_import if o.domain == ""] == [("", 17)]
    assert _dims(proto.graph.input[0]) == ["batch", 3, 96, 96]
    assert [o.name for o in proto.graph.output] == ["logits", "attention"]
    assert _dims(proto.graph.output[0]) == ["batch", 8]
    assert _dims(proto.graph.output[1]) == ["batch", 8, 3, 3]
    assert result.attention_grid == (3, 3)
    assert result.model_id == f"tiny_r18_96@{graph_sha256(proto)[:12]}"
    # Same weights exported from other frames and another batch: the same content id.
    assert result.model_id == tiny_bundle.model_id

    meta = read_onnx_metadata(result.path)
    assert meta["mmsag.labels"] == MLKW_LABELS.to_dict()
    assert meta["mmsag.preprocess"]["input_size"] == 96
    assert meta["mmsag.preprocess"]["mean"] == list(spec.mean)
    assert meta["mmsag.model_id"] == result.model_id


def test_weights_are_constants_of_the_graph(tiny_bundle: Bundle) -> None:
    # No weight is sliced, split or transposed at run time: the fusion block's packed
    # attention projection once was, which also hid it from the int8 quantizer.
    graph = onnx.load(str(tiny_bundle.onnx_path)).graph
    weights = {t.name for t in graph.initializer if len(t.dims) >= 2}
    reshaping = [
        n.name
        for n in graph.node
        if n.op_type in ("Slice", "Split", "Transpose", "Gather") and set(n.input) & weights
    ]
    assert not reshaping, f"weights reshaped at run time by {reshaping}"
    projections = [
        n for n in graph.node if n.name.startswith("/model/fusion/") and n.op_type == "MatMul"
    ]
    # query, key, value, the two feed-forward layers and the output projection
    assert sum(1 for n in projections if n.input[1] in weights) >= 5


def test_no_attention_export_has_logits_only(
    model_and_spec: tuple[torch.nn.Module, object], tmp_path: Path
) -> None:
    model, spec = model_and_spec
    frames = parity_frames(spec, count=2)
    result = export_onnx(
        model,
        tmp_path / "m.onnx",
        example=torch.from_numpy(frames),
        labels=MLKW_LABELS,
        attention=False,
    )
    assert result.output_names == ("logits",)
    assert result.attention_grid is None
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits"]
    (logits,) = session.run(None, {"images": frames})
    reference = _torch_reference(model, frames)["logits"]
    assert np.abs(logits - reference).max() / max(1.0, np.abs(reference).max()) <= 1e-4


def test_parity_failure_is_reported_with_the_errors(
    model_and_spec: tuple[torch.nn.Module, object], tmp_path: Path
) -> None:
    model, spec = model_and_spec
    frames = torch.from_numpy(parity_frames(spec, count=2))
    # fp32 reorderings always leave some rounding difference: a tolerance of 1e-12 must fail.
    with pytest.raises(BundleError, match=r"disagrees with torch on 'logits'.*> rtol 1e-12"):
        export_onnx(model, tmp_path / "m.onnx", example=frames, labels=MLKW_LABELS, rtol=1e-12)
    assert not (tmp_path / "m.onnx").exists()


def test_bad_examples_are_rejected(
    model_and_spec: tuple[torch.nn.Module, object], tmp_path: Path
) -> None:
    model, spec = model_and_spec
    frames = torch.from_numpy(parity_frames(spec, count=2))
    path = tmp_path / "m.onnx"
    with pytest.raises(ConfigError, match=r"at least 2 images"):
        export_onnx(model, path, example=frames[:1], labels=MLKW_LABELS)
    with pytest.raises(ConfigError, match=r"float32"):
        export_onnx(model, path, example=frames.double(), labels=MLKW_LABELS)
    with pytest.raises(ConfigError, match=r"the model expects 96 px"):
        export_onnx(model, path, example=torch.zeros(2, 3, 64, 64), labels=MLKW_LABELS)
    with pytest.raises(ConfigError, match=r"opset must be at least 17"):
        export_onnx(model, path, example=frames, labels=MLKW_LABELS, opset=13)
    fewer = MLKW_LABELS.from_names(MLKW_LABELS.names[:5])
    with pytest.raises(ConfigError, match=r"5 classes were given"):
        export_onnx(model, path, example=frames, labels=fewer)
    assert not path.exists()


def test_attention_requested_from_a_linear_model(tmp_path: Path) -> None:
    from export.conftest import write_tiny_checkpoint

    checkpoint = load_checkpoint(
        write_tiny_checkpoint(
            tmp_path / "linear.pt",
            semantic_attention=False,
            fusion=False,
            static_graph=False,
            dynamic_graph=False,
        )
    )
    frames = torch.from_numpy(parity_frames(checkpoint.spec, count=2))
    with pytest.raises(ConfigError, match=r"no attention maps.*--no-attention"):
        export_onnx(
            checkpoint.build_model(), tmp_path / "m.onnx", example=frames, labels=MLKW_LABELS
        )


def test_missing_metadata_fails_loudly(tiny_bundle: Bundle, tmp_path: Path) -> None:
    proto = onnx.load(str(tiny_bundle.onnx_path))
    kept = [p for p in proto.metadata_props if p.key != "mmsag.preprocess"]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    onnx.save(proto, str(tmp_path / "stripped.onnx"))
    with pytest.raises(BundleError, match=r"lacks the metadata mmsag\.preprocess"):
        read_onnx_metadata(tmp_path / "stripped.onnx")


def test_parity_error_is_relative_to_the_logit_scale() -> None:
    reference = np.array([[10.0, -2.0]], np.float32)
    assert parity_error(reference + np.float32(0.01), reference) == pytest.approx(1e-3, rel=1e-3)
    small = np.array([[0.5, 0.25]], np.float32)
    assert parity_error(small + np.float32(0.01), small) == pytest.approx(1e-2, rel=1e-3)
    with pytest.raises(BundleError, match=r"shape"):
        parity_error(np.zeros((2, 3)), np.zeros((2, 4)))
