"""torchvision ResNets as backbones (random initialisation or a local weights file)."""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models

from mmsag_ros.model.backbones.base import Backbone
from mmsag_ros.model.registry import register_backbone

__all__ = ["ResNetBackbone", "resnet18", "resnet34", "resnet50", "resnet101"]


class ResNetBackbone(Backbone):
    """A torchvision ResNet without its pooling and classifier (output of ``layer4``)."""

    head_prefixes = ("fc.",)

    def __init__(self, name: str, network: models.ResNet) -> None:
        out_channels = network.fc.in_features
        # Identity modules own no tensors, so the trunk's keys stay torchvision's minus fc.*.
        network.fc = nn.Identity()
        network.avgpool = nn.Identity()
        super().__init__(name, network, out_channels)
        self.weights_origin = f"torchvision.models.{name}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map of ``layer4``, B x Cf x S/32 x S/32."""
        t = self.trunk
        x = t.maxpool(t.relu(t.bn1(t.conv1(x))))
        return t.layer4(t.layer3(t.layer2(t.layer1(x))))

    def stages(self) -> list[nn.Module]:
        """Stem (conv1, bn1, ReLU, max-pool), then layer1 to layer4: five stages."""
        t = self.trunk
        stem = nn.Sequential(t.conv1, t.bn1, t.relu, t.maxpool)
        return [stem, t.layer1, t.layer2, t.layer3, t.layer4]


def _create_resnet(arch: str, pretrained: bool) -> ResNetBackbone:
    del pretrained  # no packaged ResNet weights exist; the registry refuses pretrained=True
    return ResNetBackbone(arch, getattr(models, arch)(weights=None))


@register_backbone("resnet18")
def resnet18(pretrained: bool = False) -> ResNetBackbone:
    """ResNet-18, 512 channels."""
    return _create_resnet("resnet18", pretrained)


@register_backbone("resnet34")
def resnet34(pretrained: bool = False) -> ResNetBackbone:
    """ResNet-34, 512 channels."""
    return _create_resnet("resnet34", pretrained)


@register_backbone("resnet50")
def resnet50(pretrained: bool = False) -> ResNetBackbone:
    """ResNet-50, 2048 channels."""
    return _create_resnet("resnet50", pretrained)


@register_backbone("resnet101")
def resnet101(pretrained: bool = False) -> ResNetBackbone:
    """ResNet-101 (the paper's backbone), 2048 channels."""
    return _create_resnet("resnet101", pretrained)
