"""Stored frozen-stage features: views and flips drawn per epoch, reproducibly."""

from __future__ import annotations

import pytest
import torch

from mmsag_ros.train.feature_cache import CachedFeatures


def test_cached_feature_flips_are_drawn_per_epoch_and_reproducible():
    features = torch.arange(2 * 40 * 3 * 4, dtype=torch.float16).reshape(40, 2, 3, 4)
    cached = CachedFeatures(features, torch.zeros(40, 2), torch.arange(40), flip=True, seed=3)

    def flipped(epoch):
        cached.set_epoch(epoch)
        return [not torch.equal(cached[i][0], features[i].float()) for i in range(40)]

    first = flipped(0)
    assert 5 < sum(first) < 35
    assert flipped(0) == first and flipped(1) != first
    mirrored = next(i for i, f in enumerate(first) if f)
    cached.set_epoch(0)
    assert torch.equal(cached[mirrored][0], features[mirrored].float().flip(-1))


def test_each_epoch_draws_one_stored_view_per_image():
    # Two views of 30 images, view-major; view v of image i is filled with 100 * v + i.
    images, views = 30, 2
    rows = torch.arange(views * images)
    values = (100 * (rows // images) + rows % images).to(torch.float16)
    features = values[:, None, None, None].expand(-1, 1, 2, 2).clone()
    targets = (rows // images).float()[:, None]  # labels follow the view (a crop's labels)
    cached = CachedFeatures(features, targets, rows % images, views=views, seed=5)
    assert len(cached) == images

    def drawn(epoch):
        cached.set_epoch(epoch)
        samples = [cached[i] for i in range(images)]
        for i, (maps, target, index) in enumerate(samples):
            view = int(maps[0, 0, 0]) // 100
            assert index == i and int(maps[0, 0, 0]) == 100 * view + i
            assert target.item() == view  # the view's own labels come with its maps
        return [int(maps[0, 0, 0]) // 100 for maps, _, _ in samples]

    first = drawn(0)
    assert 5 < sum(first) < 25  # both views are drawn
    assert drawn(0) == first and drawn(1) != first


def test_stored_maps_must_hold_whole_views():
    with pytest.raises(ValueError, match="do not hold 2 views"):
        CachedFeatures(torch.zeros(5, 1, 2, 2), torch.zeros(5, 1), torch.arange(5), views=2)
