"""Image encoders: torchvision ResNets and MobileNetV3, timm EfficientNet-Lite0.

Importing this package registers every family. :func:`create_backbone` is the one way to
build a backbone with its weights.
"""

from __future__ import annotations

from pathlib import Path

from mmsag_ros.errors import ConfigError
from mmsag_ros.model.backbones import efficientnet, mobilenet, resnet
from mmsag_ros.model.backbones.base import Backbone, load_state_dict_file
from mmsag_ros.model.registry import get_backbone_entry, list_backbones

__all__ = [
    "Backbone",
    "create_backbone",
    "efficientnet",
    "list_backbones",
    "load_state_dict_file",
    "mobilenet",
    "resnet",
]


def create_backbone(
    name: str, *, pretrained: bool = False, weights: Path | None = None
) -> Backbone:
    """Build a registered backbone.

    Args:
        name: Registry name (see :func:`list_backbones`).
        pretrained: Load the packaged ImageNet weights (only where a package ships them).
        weights: A local state-dict file in the library's own layout (torchvision or timm);
            its classifier tensors are ignored.

    Raises:
        ModelNotFoundError: Unknown name, or ``weights`` is not a file.
        ConfigError: ``pretrained`` without packaged weights, both options at once, or a
            weights file that does not fit.
    """
    entry = get_backbone_entry(name)
    if pretrained and weights is not None:
        raise ConfigError(
            f"pass either pretrained=True or weights={weights}, not both, for backbone {name!r}"
        )
    if pretrained and not entry.has_pretrained:
        with_weights = [n for n in list_backbones() if get_backbone_entry(n).has_pretrained]
        raise ConfigError(
            f"backbone {name!r} has no packaged ImageNet weights (only {', '.join(with_weights)} "
            "has); use pretrained=False, or weights=PATH to a local state-dict file"
        )
    backbone = entry.builder(pretrained)
    if weights is not None:
        backbone.load_weights(load_state_dict_file(weights), source=str(weights))
    return backbone
