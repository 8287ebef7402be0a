"""Train on stored frozen-stage features: the frozen backbone prefix runs once, not every epoch.

With ``model.freeze_stages=N`` the first N backbone stages never change, yet a normal epoch
still pushes every image through them, and on a CPU they are a large part of a step's cost
(they run at the highest resolution). ``cache_frozen=true`` runs them once over the training
and validation images and keeps their outputs in memory as fp16; the epochs then run only the
remaining stages and the MM-SAG head. The price is augmentation. With ``cache_views=1`` the
stored maps come from the evaluation transform, and the only augmentation left is a horizontal
flip of the maps. With ``cache_views=V`` the training transform draws V views of each image
(crops, flips, turns, lighting, with labels and box masks following each view), and every
epoch draws one of them per image, then flips it or not: caching costs V passes of the prefix,
so it pays when the epochs use each view more than once or twice.
Box masks for the attention loss, when the loader yields them, are stored beside the maps
and flipped with them.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mmsag_ros.model import MMSAG
from mmsag_ros.progress import progress_bar

__all__ = ["CachedFeatures", "ModelTail", "cache_frozen_features"]

_log = logging.getLogger(__name__)
_CACHE_STREAM = 0x5CA1E


class ModelTail(nn.Module):
    """The model from backbone stage ``start`` on: stored prefix features in, model outputs out.

    Holds no weights of its own, so the optimizer, checkpoints and DDP see the full model's.
    """

    def __init__(self, model: MMSAG, start: int) -> None:
        super().__init__()
        self.model = model
        self.start = start

    def forward(self, features: torch.Tensor) -> dict:
        """Same outputs as ``model(images)`` for the images ``features`` were computed from."""
        return self.model.forward_head(self.model.backbone.forward_stages(features, self.start))


class CachedFeatures(Dataset):
    """Stored prefix features with their targets, as ``(features, targets, index)`` samples.

    The rows hold ``views`` views of each image, view-major: row ``v * len(self) + i`` is view
    ``v`` of image ``i``. Each sample draws its view (when there are several) and, with
    ``flip``, mirrors it left to right with probability 1/2, all from the seed, the epoch
    (:meth:`set_epoch`) and the index, so a run is reproducible. With ``masks``
    (rows x C x g x g box masks) samples gain a fourth part, the mask mirrored with the map.
    """

    def __init__(
        self,
        features: torch.Tensor,
        targets: torch.Tensor,
        indices: torch.Tensor,
        *,
        masks: torch.Tensor | None = None,
        views: int = 1,
        flip: bool = False,
        seed: int = 0,
    ) -> None:
        if views < 1 or len(features) % views:
            raise ValueError(f"{len(features)} stored maps do not hold {views} views each")
        self.features, self.targets, self.indices = features, targets, indices
        self.masks = masks
        self.views, self.flip, self.seed, self.epoch = views, flip, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's views and flips."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.features) // self.views

    def __getitem__(self, index: int) -> tuple:
        # A stream of its own: the dataset drew view v of this image from (seed, v, index).
        rng = np.random.default_rng((self.seed, _CACHE_STREAM, self.epoch, index))
        row = index + len(self) * int(rng.integers(self.views)) if self.views > 1 else index
        features = self.features[row].float()
        masks = None if self.masks is None else self.masks[row]
        if self.flip and rng.random() < 0.5:
            features = features.flip(-1)
            masks = None if masks is None else masks.flip(-1)
        sample = (features, self.targets[row], int(self.indices[row]))
        return sample if masks is None else (*sample, masks)

    @property
    def nbytes(self) -> int:
        """Memory the stored maps take."""
        return self.features.numel() * self.features.element_size()


@torch.no_grad()
def cache_frozen_features(
    model: MMSAG,
    loader: DataLoader,
    stages: int,
    *,
    device: torch.device,
    memory_format: torch.memory_format = torch.contiguous_format,
    views: int = 1,
    flip: bool = False,
    seed: int = 0,
    desc: str = "caching",
) -> CachedFeatures:
    """Run backbone stages ``[0, stages)`` over ``views`` passes of ``loader``; keep the outputs.

    ``loader`` yields ``(images, targets, indices[, masks])``; pass ``v`` draws the views of
    its dataset's epoch ``v``, so with several views the dataset must augment (the training
    transform). Each pass is stored in dataset order, as fp16 on the CPU.
    """
    backbone = model.backbone
    was_training = backbone.training
    backbone.eval()
    passes = []
    try:
        for view in range(views):
            if views > 1:
                loader.dataset.set_epoch(view)
            label = f"{desc} (view {view + 1} of {views})" if views > 1 else desc
            passes.append(_one_pass(backbone, loader, stages, device, memory_format, label))
    finally:
        backbone.train(was_training)
    features, targets, indices, masks = (
        None if parts[0] is None else torch.cat(parts) for parts in zip(*passes, strict=True)
    )
    cached = CachedFeatures(
        features, targets, indices, masks=masks, views=views, flip=flip, seed=seed
    )
    _log.info(
        "%s: %d feature maps of shape %s (%.0f MiB, fp16)",
        desc,
        len(cached.features),
        tuple(cached.features.shape[1:]),
        cached.nbytes / 2**20,
    )
    return cached


def _one_pass(
    backbone: nn.Module,
    loader: DataLoader,
    stages: int,
    device: torch.device,
    memory_format: torch.memory_format,
    desc: str,
) -> tuple:
    """One pass of the prefix over ``loader``: maps, targets, indices, masks in index order."""
    features, targets, indices, masks = [], [], [], []
    for images, batch_targets, batch_indices, *batch_masks in progress_bar(
        loader, desc=desc, leave=False
    ):
        images = images.to(device, memory_format=memory_format)
        prefix = backbone.forward_stages(images, stop=stages)
        features.append(prefix.to("cpu", torch.float16).contiguous())
        targets.append(batch_targets)
        indices.append(torch.as_tensor(batch_indices))
        masks += batch_masks
    order = torch.argsort(torch.cat(indices))
    parts = (torch.cat(features), torch.cat(targets), torch.cat(indices))
    parts += (torch.cat(masks) if masks else None,)
    return tuple(None if part is None else part[order] for part in parts)
