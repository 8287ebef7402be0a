"""Training with frozen trunk stages, and with their features cached once instead of recomputed.

Frozen stages end at their pretrained weights; the cached features (masks and augmented views
included) stand in for the images the trainer would otherwise run through those stages.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from train.training_helpers import training_config

from mmsag_ros.data.dataset import MultiLabelImageDataset
from mmsag_ros.data.transforms import EvalTransform
from mmsag_ros.errors import ConfigError
from mmsag_ros.model import create_backbone
from mmsag_ros.model.checkpoint import load_checkpoint
from mmsag_ros.train.dataset_splits import load_train_val
from mmsag_ros.train.distributed import DistributedContext
from mmsag_ros.train.feature_cache import CachedFeatures
from mmsag_ros.train.run import prepare_training, run_training

pytestmark = pytest.mark.slow


def test_frozen_stages_end_training_at_their_pretrained_weights(synth_root, tmp_path):
    config = training_config(
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
    config = training_config(
        synth_root, tmp_path, "epochs=2", "model.freeze_stages=6", "cache_frozen=true"
    )
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


def test_cached_features_keep_box_masks_for_the_attention_loss(synth_root, tmp_path):
    options = ("model.freeze_stages=6", "cache_frozen=true", "optim.attention_weight=5")
    config = training_config(synth_root, tmp_path, "epochs=1", *options)
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
    config = training_config(synth_root, tmp_path, "epochs=1", "augment.rot90=true", *options)
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
            training_config(synth_root, tmp_path, "cache_views=2"),
            device=torch.device("cpu"),
            context=DistributedContext(),
        )
    with pytest.raises(ConfigError, match="cache_views must be 1 or more"):
        prepare_training(
            training_config(
                synth_root, tmp_path, "model.freeze_stages=6", "cache_frozen=true", "cache_views=0"
            ),
            device=torch.device("cpu"),
            context=DistributedContext(),
        )


def test_cached_features_need_frozen_stages(synth_root, tmp_path):
    config = training_config(synth_root, tmp_path, "cache_frozen=true")
    with pytest.raises(ConfigError, match=r"set model\.freeze_stages"):
        prepare_training(config, device=torch.device("cpu"), context=DistributedContext())


def test_frozen_stages_refuse_a_backbone_without_pretrained_weights(synth_root, tmp_path):
    options = ("model.name=mmsag_r18_224", "model.freeze_stages=2")
    config = training_config(synth_root, tmp_path, *options, "model.pretrained=false")
    with pytest.raises(ConfigError, match="starts from random initialisation"):
        prepare_training(config, device=torch.device("cpu"), context=DistributedContext())
    # Asking for ImageNet weights a backbone does not ship is refused, frozen or not.
    config = training_config(synth_root, tmp_path, "model.name=mmsag_r101_448")
    with pytest.raises(ConfigError, match="resnet101 has no packaged ImageNet weights"):
        prepare_training(config, device=torch.device("cpu"), context=DistributedContext())
