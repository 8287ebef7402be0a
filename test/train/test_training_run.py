"""Real training on a small synthetic conveyor set: learning, checkpoints, resume.

The 3-epoch run (``trained``, shared per session from conftest.py) lowers the loss, beats the
frequency baseline and leaves checkpoints that carry what export needs and resume exactly;
a time budget stops a run cleanly, loader workers follow each epoch's augmentations, and
loading a checkpoint never runs code.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from train.training_helpers import training_config

from mmsag_ros.bundle.preprocess import NORMALIZATIONS, PreprocessSpec, preprocess
from mmsag_ros.errors import ConfigError, ModelNotFoundError
from mmsag_ros.export.write_bundle import export_bundle
from mmsag_ros.model.checkpoint import load_checkpoint
from mmsag_ros.runtime.classifier import Classifier
from mmsag_ros.train.config import load_config
from mmsag_ros.train.dataset_splits import load_train_val
from mmsag_ros.train.distributed import DistributedContext
from mmsag_ros.train.run import prepare_training, run_training

pytestmark = pytest.mark.slow


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


def test_resume_restores_optimizer_schedule_and_epoch(trained, synth_root, tmp_path):
    last = trained.out_dir / "last.pt"
    saved = torch.load(last, weights_only=True)
    config = training_config(synth_root, tmp_path / "resumed", "epochs=4", f"resume={last}")
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
    config = training_config(synth_root, tmp_path, "epochs=4", f"resume={last}", change)
    with pytest.raises(ConfigError, match=f"resuming.*{said}"):
        prepare_training(config, device=torch.device("cpu"), context=DistributedContext())


def test_time_budget_stops_training_cleanly(synth_root, tmp_path):
    summary = run_training(
        training_config(synth_root, tmp_path, "epochs=5", "time_budget_min=0.0001")
    )
    assert len(summary.epochs) == 1 and summary.epochs[0].stopped_early
    assert summary.best_checkpoint.is_file()


def test_loader_workers_draw_each_epochs_augmentations(synth_root, tmp_path):
    # With worker processes the loader must still follow set_epoch, as the trainer calls it.
    config = training_config(synth_root, tmp_path, "data.workers=1", "augment.rot90=true")
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
