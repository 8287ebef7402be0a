"""Real training on a small synthetic conveyor set: learning, checkpoints, resume, evaluation."""

from __future__ import annotations

import json
import pickle
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch

from mmsag_ros.bundle.labels import LabelSet
from mmsag_ros.bundle.preprocess import NORMALIZATIONS, PreprocessSpec, preprocess
from mmsag_ros.cli import main
from mmsag_ros.data.dataset import MultiLabelImageDataset
from mmsag_ros.data.synth import generate_dataset
from mmsag_ros.data.transforms import EvalTransform
from mmsag_ros.errors import ConfigError, ModelNotFoundError
from mmsag_ros.export.write_bundle import export_bundle
from mmsag_ros.model import create_backbone
from mmsag_ros.model.checkpoint import load_checkpoint
from mmsag_ros.runtime.classifier import Classifier
from mmsag_ros.train.config import load_config
from mmsag_ros.train.dataset_splits import load_train_val
from mmsag_ros.train.distributed import DistributedContext
from mmsag_ros.train.feature_cache import CachedFeatures
from mmsag_ros.train.run import prepare_training, run_training

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "conveyor"
    generate_dataset(root, num_trainval=120, num_test=40, image_size=(160, 120), seed=11)
    return root


def _config(synth_root, out_dir, *extra):
    # The whole trunk training, without the belt's augmentations or a warm-up: the recipe
    # these tests' thresholds were measured with (the CPU recipe's defaults train less).
    return load_config(
        None,
        [
            "model.name=mmsag_effl0_224",
            f"data.path={synth_root}",
            "data.workers=0",
            "batch_size=16",
            "model.freeze_stages=0",
            "augment.vflip=false",
            "augment.rot90=false",
            "augment.lighting=0",
            "optim.lr=0.05",
            "optim.schedule=cosine",
            "optim.warmup_epochs=0",
            f"out_dir={out_dir}",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def trained(synth_root, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("run")
    summary = run_training(_config(synth_root, out_dir, "epochs=3"))
    return summary


def test_training_lowers_loss_and_beats_the_frequency_baseline(trained, synth_root):
    losses = [r.train_loss for r in trained.epochs]
    assert len(losses) == 3
    assert losses[-1] < losses[0]
    log = [
        json.loads(line) for line in (trained.out_dir / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert trained.best_val_map == pytest.approx(max(r["val_map"] for r in log))

    # Validation is carved from trainval (20 % of 120); the test split is never read.
    config = load_config(None, [f"data.path={synth_root}"])
    _, val = load_train_val(config.data, seed=config.seed)
    assert len(val) == 24 == load_checkpoint(trained.best_checkpoint).metrics["val"]["num_samples"]
    # Scoring every image with a constant gives AP = prevalence: the frequency baseline.
    targets = val.targets()
    prevalence = [(t[t >= 0] == 1).mean() for t in targets.T if (t == 1).any()]
    baseline = float(np.mean(prevalence))
    assert trained.best_val_map > baseline + 0.25, (trained.best_val_map, baseline)


def test_checkpoint_carries_what_export_needs(trained):
    checkpoint = load_checkpoint(trained.best_checkpoint)
    assert checkpoint.labels.names[6:] == ("lile", "galss")
    assert checkpoint.spec.input_size == 224
    assert len(checkpoint.thresholds) == 8
    assert checkpoint.train_config["data"]["path"]
    model = checkpoint.build_model()
    state = model.state_dict()
    assert any("embedding" in k for k in state)  # MiniLM label embeddings travel in the weights
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 224, 224))
    assert out["logits"].shape == (2, 8)
    assert out["attention"].shape == (2, 8, 7, 7)


def test_the_trunks_normalisation_goes_through_checkpoint_bundle_and_classifier(trained, tmp_path):
    # The pretrained EfficientNet-Lite0 trunk wants (x - 127.5) / 127.5, not ImageNet's.
    inception = NORMALIZATIONS["inception"]
    checkpoint = load_checkpoint(trained.best_checkpoint)
    assert (checkpoint.spec.mean, checkpoint.spec.std) == inception
    bundle = export_bundle(trained.best_checkpoint, tmp_path / "bundle", progress=False)
    assert (bundle.spec.mean, bundle.spec.std) == inception
    classifier = Classifier(tmp_path / "bundle", backend="onnxruntime")
    assert classifier.spec == checkpoint.spec
    # What the classifier scores is the model fed that normalisation, and not the other.
    image = np.random.default_rng(5).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    scores = classifier.classify([image])[0].scores
    model = checkpoint.build_model()

    def model_scores(normalization: str) -> np.ndarray:
        mean, std = NORMALIZATIONS[normalization]
        spec = PreprocessSpec(input_size=224, mean=mean, std=std)
        with torch.no_grad():
            logits = model(torch.from_numpy(preprocess(image, spec))[None])["logits"]
        return torch.sigmoid(logits)[0].numpy()

    np.testing.assert_allclose(scores, model_scores("inception"), atol=1e-4)
    assert np.abs(scores - model_scores("imagenet")).max() > 1e-3


def test_eval_command_reports_test_split(trained, synth_root, tmp_path, capsys):
    out_dir = tmp_path / "eval"
    code = main(
        [
            "eval",
            "--checkpoint", str(trained.best_checkpoint),
            "--data", str(synth_root),
            "--split", "test",
            "--workers", "0",
            "--out", str(out_dir),
        ]
    )  # fmt: skip
    assert code == 0
    report = json.loads((out_dir / "report.json").read_text())
    assert report["split"] == "test"
    assert report["metrics"]["num_samples"] == 40
    assert (out_dir / "pr_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = capsys.readouterr().out
    assert "tetra pak carton" in table and "mAP" in table
    # The table's mAP is the mean of the per-class APs in the JSON.
    aps = [a for a in report["metrics"]["ap"] if a is not None]
    assert report["metrics"]["map"] == pytest.approx(np.mean(aps))
    # The synthetic scenes have boxes: every present class of every image had its peak scored.
    pointing = report["pointing"]
    annotations = synth_root / "VOCdevkit" / "VOC2007" / "Annotations"
    present = dict.fromkeys(report["classes"], 0)
    for image_id in (annotations.parent / "ImageSets" / "Main" / "test.txt").read_text().split():
        objects = ET.parse(annotations / f"{image_id}.xml").getroot().iter("object")
        for name in {o.findtext("name") for o in objects if o.findtext("difficult") == "0"}:
            present[name] += 1
    assert pointing["present"] == list(present.values()) and pointing["images"] == 40
    assert all(0 <= h <= p for h, p in zip(pointing["hits"], pointing["present"], strict=True))
    # The report rounds to six decimals.
    expected = sum(pointing["hits"]) / sum(present.values())
    assert pointing["accuracy"] == pytest.approx(expected, abs=1e-6)
    assert "pointing accuracy" in table and "instances: recall" in table
    assert (out_dir / "pointing_examples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out_dir / "pointing.json").read_text()) == pointing


def test_eval_rejects_a_dataset_with_other_classes(trained, tmp_path, capsys):
    other = tmp_path / "other"
    two_classes = LabelSet.from_names(["metal", "shoe"])
    generate_dataset(other, num_trainval=4, num_test=4, image_size=(64, 48), labels=two_classes)
    code = main(
        [
            "eval",
            "--checkpoint",
            str(trained.best_checkpoint),
            "--data",
            str(other),
            "--workers",
            "0",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    # One readable line naming the checkpoint's first class the data lacks.
    assert err.count("\n") == 1 and "mmsag eval: error:" in err and "'waste_bag'" in err


def test_a_malformed_box_costs_the_pointing_scores_not_the_report(trained, tmp_path, capsys):
    data = tmp_path / "data"
    generate_dataset(data, num_trainval=2, num_test=6, image_size=(96, 72), seed=4)
    annotations = data / "VOCdevkit" / "VOC2007" / "Annotations"
    xml = annotations / "test_000000.xml"
    xml.write_text(xml.read_text().replace("<width>96</width>", ""))
    out_dir = tmp_path / "eval"
    args = ["eval", "--checkpoint", str(trained.best_checkpoint), "--data", str(data)]
    assert main([*args, "--workers", "0", "--out", str(out_dir)]) == 0
    assert "pointing scores skipped:" in capsys.readouterr().err
    report = json.loads((out_dir / "report.json").read_text())
    assert report["metrics"]["num_samples"] == 6 and "pointing" not in report
    assert not (out_dir / "pointing_examples.png").exists()


def test_resume_restores_optimizer_schedule_and_epoch(trained, synth_root, tmp_path):
    last = trained.out_dir / "last.pt"
    saved = torch.load(last, weights_only=True)
    config = _config(synth_root, tmp_path / "resumed", "epochs=4", f"resume={last}")
    trainer = prepare_training(config, device=torch.device("cpu"), context=DistributedContext())
    assert trainer.start_epoch == 3
    assert trainer.best_map == pytest.approx(saved["best_map"])
    state = trainer.optimizer.state_dict()
    assert state["param_groups"][0]["lr"] == pytest.approx(
        saved["optimizer"]["param_groups"][0]["lr"]
    )
    momentum = {k: v["momentum_buffer"] for k, v in state["state"].items()}
    expected = {k: v["momentum_buffer"] for k, v in saved["optimizer"]["state"].items()}
    assert momentum.keys() == expected.keys() and len(momentum) > 10
    for key in expected:
        torch.testing.assert_close(momentum[key], expected[key])
    assert trainer.scheduler.last_epoch == saved["scheduler"]["last_epoch"]
    results = trainer.fit()
    assert [r.epoch for r in results] == [3]


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ("optim.optimizer=adamw", "optim.optimizer=sgd"),
        ("model.freeze_stages=4", "model.freeze_stages=0"),
    ],
)
def test_resume_refuses_another_optimizer_or_other_frozen_stages(
    trained, synth_root, tmp_path, change, said
):
    # The saved optimiser state fits only the optimiser and parameter groups it came from.
    last = trained.out_dir / "last.pt"
    config = _config(synth_root, tmp_path, "epochs=4", f"resume={last}", change)
    with pytest.raises(ConfigError, match=f"resuming.*{said}"):
        prepare_training(config, device=torch.device("cpu"), context=DistributedContext())


def test_time_budget_stops_training_cleanly(synth_root, tmp_path):
    summary = run_training(_config(synth_root, tmp_path, "epochs=5", "time_budget_min=0.0001"))
    assert len(summary.epochs) == 1 and summary.epochs[0].stopped_early
    assert summary.best_checkpoint.is_file()


def test_frozen_stages_end_training_at_their_pretrained_weights(synth_root, tmp_path):
    config = _config(
        synth_root, tmp_path, "epochs=1", "max_batches_per_epoch=2", "model.freeze_stages=4"
    )
    trained = load_checkpoint(run_training(config).best_checkpoint).model_state
    packaged = create_backbone("efficientnet_lite0", pretrained=True).trunk.state_dict()
    moved = {
        key
        for key, value in packaged.items()
        if not key.endswith("num_batches_tracked")
        and not torch.equal(trained[f"backbone.trunk.{key}"], value)
    }
    # The stem and the first three block stages are exactly ImageNet's (BatchNorm statistics
    # included); the stages after them trained.
    assert not {
        k
        for k in moved
        if k.startswith(("conv_stem.", "bn1.", "blocks.0.", "blocks.1.", "blocks.2."))
    }
    assert any(k.startswith("blocks.3.") for k in moved)
    assert any(k.startswith("conv_head.") for k in moved)


def test_cached_frozen_features_train_the_tail_and_score_like_the_image_path(synth_root, tmp_path):
    config = _config(synth_root, tmp_path, "epochs=2", "model.freeze_stages=6", "cache_frozen=true")
    trainer = prepare_training(config, device=torch.device("cpu"), context=DistributedContext())
    results = trainer.fit()
    assert isinstance(trainer.train_loader.dataset, CachedFeatures)
    assert len(trainer.train_loader.dataset) == 96 and len(trainer.val_loader.dataset) == 24
    assert results[-1].train_loss < results[0].train_loss
    checkpoint = load_checkpoint(tmp_path / "last.pt")
    packaged = create_backbone("efficientnet_lite0", pretrained=True).trunk.state_dict()
    state = checkpoint.model_state
    # Stem and block stages 0-4 stayed ImageNet's; block 5 onward trained.
    for key, value in packaged.items():
        if key.startswith(("conv_stem.", "bn1.", *(f"blocks.{i}." for i in range(5)))):
            assert torch.equal(state[f"backbone.trunk.{key}"], value), key
    assert not torch.equal(state["backbone.trunk.conv_head.weight"], packaged["conv_head.weight"])
    # The stored features stand in for the images: scoring the saved model on the
    # validation images gives the scores the trainer validated on (fp16 storage aside).
    cached_scores = trainer.predict(trainer.val_loader).scores
    model = trainer.model.eval()
    _, val_split = load_train_val(config.data, seed=config.seed)
    images = MultiLabelImageDataset(val_split, EvalTransform(model.spec), seed=config.seed)
    with torch.no_grad():
        batch = torch.stack([torch.as_tensor(images[i][0]) for i in range(len(images))])
        image_scores = torch.sigmoid(model(batch)["logits"]).numpy()
    np.testing.assert_allclose(cached_scores, image_scores, atol=5e-3)
    assert checkpoint.metrics["val"]["map"] == pytest.approx(results[-1].val_map)


def _attention_mass_on_boxes(model, split) -> float:
    """Mean share of each present class's attention that lies on its objects' cells."""
    grid = model.config.input_size // model.backbone.stride
    dataset = MultiLabelImageDataset(split, EvalTransform(model.spec), box_grid=grid)
    masses = []
    with torch.no_grad():
        for image, target, _, masks in dataset:
            maps = model.eval()(torch.from_numpy(image)[None])["attention"][0].numpy()
            present = (target == 1) & (masks.reshape(len(target), -1).sum(-1) > 0)
            masses += list((maps * masks).reshape(len(target), -1).sum(-1)[present])
    return float(np.mean(masses))


def test_the_box_attention_loss_puts_class_attention_on_the_objects(synth_root, tmp_path):
    masses = {}
    for weight in (0.0, 5.0):
        config = _config(
            synth_root,
            tmp_path / str(weight),
            "epochs=4",
            "model.freeze_stages=6",
            f"optim.attention_weight={weight}",
        )
        trainer = prepare_training(config, device=torch.device("cpu"), context=DistributedContext())
        trainer.fit()
        _, val_split = load_train_val(config.data, seed=config.seed)
        masses[weight] = _attention_mass_on_boxes(trainer.model, val_split)
    # Measured: about 0.07 (barely above uniform) without the loss, 0.34 with it.
    assert masses[5.0] > masses[0.0] + 0.15, masses


def test_the_box_attention_loss_needs_a_weight_and_attention_maps(synth_root, tmp_path, caplog):
    config = _config(synth_root, tmp_path, "optim.attention_weight=-1")
    with pytest.raises(ConfigError, match="must be 0 or more"):
        prepare_training(config, device=torch.device("cpu"), context=DistributedContext())
    # The linear baseline has no maps to teach: the default weight is said to be unused.
    flags = "{semantic_attention: false, fusion: false, static_graph: false, dynamic_graph: false}"
    config = _config(synth_root, tmp_path, f"model.overrides={flags}")
    assert config.optim.attention_weight == 1.0
    trainer = prepare_training(config, device=torch.device("cpu"), context=DistributedContext())
    assert trainer.train_loader.dataset.box_grid is None
    assert "attention_weight=1 is not used" in caplog.text


def test_cached_features_keep_box_masks_for_the_attention_loss(synth_root, tmp_path):
    options = ("model.freeze_stages=6", "cache_frozen=true", "optim.attention_weight=5")
    config = _config(synth_root, tmp_path, "epochs=1", *options)
    trainer = prepare_training(config, device=torch.device("cpu"), context=DistributedContext())
    trainer.fit()
    cached = trainer.train_loader.dataset
    assert cached.masks is not None and cached.masks.shape == (96, 8, 7, 7)
    # Every positive label of the synthetic frames has a box, so a mask (no crop: whole).
    positive = cached.targets == 1
    assert bool((cached.masks.flatten(2).sum(-1)[positive] > 0).all())
    mirrored = next(
        i for i in range(len(cached)) if not torch.equal(cached[i][0], cached.features[i].float())
    )
    assert torch.equal(cached[mirrored][3], cached.masks[mirrored].flip(-1))


def test_cached_views_are_the_training_transforms_with_their_labels_and_boxes(synth_root, tmp_path):
    options = ("model.freeze_stages=6", "cache_frozen=true", "cache_views=2")
    config = _config(synth_root, tmp_path, "epochs=1", "augment.rot90=true", *options)
    trainer = prepare_training(config, device=torch.device("cpu"), context=DistributedContext())
    images = trainer.train_loader.dataset  # the augmenting dataset, before caching
    results = trainer.fit()
    cached = trainer.train_loader.dataset
    assert cached.views == 2 and len(cached) == 96 and cached.features.shape[0] == 192
    assert np.isfinite(results[0].train_loss)
    model = trainer.model.eval()
    for index in (0, 50):
        for view in (0, 1):
            # Row view * 96 + index holds what the training transform drew in epoch `view`.
            images.set_epoch(view)
            image, target, _, masks = images[index]
            with torch.no_grad():
                prefix = model.backbone.forward_stages(torch.from_numpy(image)[None], stop=6)
            row = view * 96 + index
            torch.testing.assert_close(
                cached.features[row].float(), prefix[0], atol=2e-2, rtol=1e-2
            )
            assert torch.equal(cached.targets[row], torch.as_tensor(target))
            assert torch.equal(cached.masks[row], torch.as_tensor(masks))
        assert not torch.equal(cached.features[index], cached.features[96 + index])
    with pytest.raises(ConfigError, match="set cache_frozen=true"):
        prepare_training(
            _config(synth_root, tmp_path, "cache_views=2"),
            device=torch.device("cpu"),
            context=DistributedContext(),
        )
    with pytest.raises(ConfigError, match="cache_views must be 1 or more"):
        prepare_training(
            _config(
                synth_root, tmp_path, "model.freeze_stages=6", "cache_frozen=true", "cache_views=0"
            ),
            device=torch.device("cpu"),
            context=DistributedContext(),
        )


def test_cached_features_need_frozen_stages(synth_root, tmp_path):
    config = _config(synth_root, tmp_path, "cache_frozen=true")
    with pytest.raises(ConfigError, match=r"set model\.freeze_stages"):
        prepare_training(config, device=torch.device("cpu"), context=DistributedContext())


def test_loader_workers_draw_each_epochs_augmentations(synth_root, tmp_path):
    # With worker processes the loader must still follow set_epoch, as the trainer calls it.
    config = _config(synth_root, tmp_path, "data.workers=1", "augment.rot90=true")
    trainer = prepare_training(config, device=torch.device("cpu"), context=DistributedContext())
    loader, dataset = trainer.train_loader, trainer.train_loader.dataset
    for epoch in (0, 1, 2):
        dataset.set_epoch(epoch)
        images, _, indices = next(iter(loader))[:3]
        in_process = np.stack([dataset[int(i)][0] for i in indices])
        np.testing.assert_array_equal(images.numpy(), in_process)
    # ... and the epochs' views do differ, so the check above can tell them apart.
    views = []
    for epoch in (1, 2):
        dataset.set_epoch(epoch)
        views.append(dataset[0][0])
    assert not np.array_equal(*views)


def test_frozen_stages_refuse_a_backbone_without_pretrained_weights(synth_root, tmp_path):
    options = ("model.name=mmsag_r18_224", "model.freeze_stages=2")
    config = _config(synth_root, tmp_path, *options, "model.pretrained=false")
    with pytest.raises(ConfigError, match="starts from random initialisation"):
        prepare_training(config, device=torch.device("cpu"), context=DistributedContext())
    # Asking for ImageNet weights a backbone does not ship is refused, frozen or not.
    config = _config(synth_root, tmp_path, "model.name=mmsag_r101_448")
    with pytest.raises(ConfigError, match="resnet101 has no packaged ImageNet weights"):
        prepare_training(config, device=torch.device("cpu"), context=DistributedContext())


class _Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_checkpoints_never_run_code(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    evil = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "epoch": _Payload()}, evil)
    with pytest.raises(ConfigError, match="cannot load checkpoint"):
        load_checkpoint(evil)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ConfigError, match="not an mmsag_ros checkpoint"):
        load_checkpoint(foreign)
    future = tmp_path / "future.pt"
    torch.save({"format_version": 99}, future)
    with pytest.raises(ConfigError, match="upgrade mmsag_ros"):
        load_checkpoint(future)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(pickle.dumps({"format_version": 1})[:5])
    with pytest.raises(ConfigError, match="cannot load checkpoint"):
        load_checkpoint(truncated)
