"""Exact rewrites of traced graphs: constant paddings folded into their convolutions."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn
from torch.nn import functional

from mmsag_ros.export.graph import constant_value, fold_pads_into_convs, prune_unused
from mmsag_ros.model.backbones import create_backbone
from mmsag_ros.model.backbones.efficientnet import StaticSameConv2d


class _Padded(nn.Module):
    """A strided TF "same" convolution, then a convolution behind a padding it cannot absorb."""

    def __init__(self, value: float, mode: str) -> None:
        super().__init__()
        self.strided = StaticSameConv2d(3, 4, 3, stride=2)
        self.second = nn.Conv2d(4, 4, 3)
        self.value, self.mode = value, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.strided(x)
        if self.mode == "constant":
            return self.second(functional.pad(y, (1, 2, 0, 1), value=self.value))
        return self.second(functional.pad(y, (1, 1, 1, 1), mode=self.mode))


def _export(module: nn.Module, path: Path, size: int) -> onnx.ModelProto:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (torch.randn(1, 3, size, size),),
            str(path),
            input_names=["images"],
            output_names=["out"],
            dynamic_axes={"images": {0: "batch"}, "out": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return onnx.load(str(path))


def _run(model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, {"images": images})[0]


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


@pytest.mark.parametrize("size", [32, 33])
def test_zero_pads_move_into_the_convolutions_with_the_same_numbers(tmp_path, size) -> None:
    torch.manual_seed(0)
    model = _export(_Padded(0.0, "constant"), tmp_path / "padded.onnx", size)
    assert _ops(model).count("Pad") == 2
    images = np.random.default_rng(0).normal(size=(3, 3, size, size)).astype(np.float32)
    before = _run(model, images)

    assert fold_pads_into_convs(model) == 2
    onnx.checker.check_model(model, full_check=True)
    assert "Pad" not in _ops(model)
    assert not {"Shape", "ConstantOfShape"} & set(_ops(model))  # the padding chain is gone
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    pads = [
        list(onnx.helper.get_attribute_value(a))
        for c in convs
        for a in c.attribute
        if a.name == "pads"
    ]
    # TF "same" pads a stride-2 3x3 convolution by 0/1 at even sizes and 1/1 at odd ones.
    assert pads[0] == ([0, 0, 1, 1] if size % 2 == 0 else [1, 1, 1, 1])
    assert pads[1] == [0, 1, 1, 2]  # (top, left, bottom, right) of F.pad's (1, 2, 0, 1)
    np.testing.assert_allclose(_run(model, images), before, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("value", "mode"), [(1.0, "constant"), (0.0, "reflect")])
def test_pads_a_convolution_cannot_express_stay(tmp_path, value, mode) -> None:
    torch.manual_seed(0)
    model = _export(_Padded(value, mode), tmp_path / "padded.onnx", 32)
    images = np.random.default_rng(1).normal(size=(2, 3, 32, 32)).astype(np.float32)
    before = _run(model, images)
    assert fold_pads_into_convs(model) == 1  # only the strided convolution's zero padding
    assert _ops(model).count("Pad") == 1
    np.testing.assert_allclose(_run(model, images), before, rtol=1e-6, atol=1e-6)


def test_an_efficientnet_trunk_exports_without_pad_or_shape_arithmetic(tmp_path) -> None:
    backbone = create_backbone("efficientnet_lite0")
    model = _export(backbone, tmp_path / "lite0.onnx", 224)
    images = np.random.default_rng(2).normal(size=(2, 3, 224, 224)).astype(np.float32)
    before = _run(model, images)
    assert fold_pads_into_convs(model) == 5
    assert not {"Pad", "Shape", "Ceil"} & set(_ops(model))
    with torch.no_grad():
        expected = backbone.eval()(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(_run(model, images), before, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(before, expected, rtol=1e-4, atol=1e-4)


def test_constant_value_needs_constant_ancestors(tmp_path) -> None:
    model = _export(_Padded(0.0, "constant"), tmp_path / "padded.onnx", 32)
    pad = next(n for n in model.graph.node if n.op_type == "Pad")
    assert constant_value(model, pad.input[1]).tolist() == [0, 0, 0, 0, 0, 0, 1, 1]
    assert constant_value(model, "images") is None
    assert constant_value(model, pad.output[0]) is None  # depends on the input images


def test_prune_unused_keeps_what_the_outputs_need(tmp_path) -> None:
    model = _export(_Padded(0.0, "constant"), tmp_path / "padded.onnx", 32)
    nodes = len(model.graph.node)
    assert prune_unused(model) == 0 and len(model.graph.node) == nodes
    dangling = onnx.helper.make_node("Relu", ["images"], ["unused"], name="dangling")
    model.graph.node.append(dangling)
    assert prune_unused(model) == 1
    assert "dangling" not in {n.name for n in model.graph.node}
    onnx.checker.check_model(model)
