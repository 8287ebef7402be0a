"""torchvision MobileNetV3-Large as a backbone (random initialisation or a local file)."""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models

from mmsag_ros.model.backbones.base import Backbone
from mmsag_ros.model.registry import register_backbone

__all__ = ["MobileNetV3Backbone", "mobilenet_v3_large"]


class MobileNetV3Backbone(Backbone):
    """A torchvision MobileNetV3 without its pooling and classifier (output of ``features``)."""

    head_prefixes = ("classifier.",)

    def __init__(self, name: str, network: models.MobileNetV3) -> None:
        out_channels = network.features[-1].out_channels
        network.classifier = nn.Identity()
        network.avgpool = nn.Identity()
        super().__init__(name, network, out_channels)
        self.weights_origin = f"torchvision.models.{name}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map of the last stage, B x 960 x S/32 x S/32."""
        return self.trunk.features(x)

    def stages(self) -> list[nn.Module]:
        """The modules of ``features`` in order: the stem, 15 inverted residuals, the last conv."""
        return list(self.trunk.features)


@register_backbone("mobilenet_v3_large")
def mobilenet_v3_large(pretrained: bool = False) -> MobileNetV3Backbone:
    """MobileNetV3-Large, 960 channels."""
    del pretrained  # no packaged weights; the registry refuses pretrained=True
    return MobileNetV3Backbone("mobilenet_v3_large", models.mobilenet_v3_large(weights=None))
