"""The backbone interface and weight-file loading shared by every family.

A backbone wraps a torchvision or timm network as ``trunk``, kept with its original module
names so that a state dict saved from that library loads directly (its classifier keys are
dropped). ``forward`` returns the last feature map, B x ``out_channels`` x S/32 x S/32.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from mmsag_ros.errors import ConfigError, ModelNotFoundError

__all__ = ["Backbone", "load_state_dict_file"]

_log = logging.getLogger(__name__)

# Containers some training scripts wrap a state dict in (timm, Lightning, ours).
_WRAPPER_KEYS = ("state_dict", "model", "model_state")
# How many offending keys an error message shows per kind.
_SHOWN_KEYS = 5


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict saved with ``torch.save``, never executing pickled code.

    Accepts a bare state dict or one wrapped under ``state_dict``, ``model`` or
    ``model_state``; strips the ``module.`` prefix DataParallel/DDP adds.

    Raises:
        ModelNotFoundError: ``path`` is not a file.
        ConfigError: The file cannot be read safely or holds no tensor mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(
            f"weights file {path} does not exist; pass the path of a local state-dict file"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        raise ConfigError(
            f"cannot read weights file {path} as a plain state dict ({err}); save it with "
            "torch.save(model.state_dict(), path)"
        ) from err
    for key in _WRAPPER_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise ConfigError(
            f"weights file {path} does not hold a mapping of names to tensors; save it with "
            "torch.save(model.state_dict(), path)"
        )
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _show(keys: list[str]) -> str:
    more = f", ... ({len(keys)} in all)" if len(keys) > _SHOWN_KEYS else ""
    return ", ".join(keys[:_SHOWN_KEYS]) + more


class Backbone(nn.Module):
    """Image encoder: B x 3 x S x S -> B x ``out_channels`` x S/32 x S/32.

    Subclasses set ``trunk`` (the wrapped library network) and ``out_channels``, implement
    :meth:`forward`, and may override :meth:`convert_state_dict` to accept foreign key names.

    Attributes:
        name: Registry name.
        out_channels: Channels Cf of the feature map.
        stride: Input pixels per feature-map cell.
        trunk: The wrapped network, with the library's own module names.
    """

    #: Key prefixes of the library's classifier, dropped when loading a full state dict.
    head_prefixes: tuple[str, ...] = ()
    #: Library and architecture a compatible weights file comes from, for error messages.
    weights_origin: str = ""

    def __init__(self, name: str, trunk: nn.Module, out_channels: int) -> None:
        super().__init__()
        self.name = name
        self.trunk = trunk
        self.out_channels = out_channels
        self.stride = 32

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Feature map of a normalised image batch."""
        raise NotImplementedError

    def stages(self) -> list[nn.Module]:  # pragma: no cover - abstract
        """The trunk's parts in the order the image passes them, the stem first.

        Each part is a runnable module: passing a batch through all of them in turn is
        :meth:`forward` (see :meth:`forward_stages`).
        """
        raise NotImplementedError

    def forward_stages(
        self, x: torch.Tensor, start: int = 0, stop: int | None = None
    ) -> torch.Tensor:
        """Run ``stages()[start:stop]`` on ``x``, the input of stage ``start``.

        ``forward_stages(x)`` equals ``forward(x)``; splitting at a frozen stage lets training
        store the frozen part's output once and run only the rest.
        """
        for stage in self.stages()[start:stop]:
            x = stage(x)
        return x

    def freeze_stages(self, count: int) -> None:
        """Keep the first ``count`` of :meth:`stages` at their current weights while training.

        Their parameters get no gradient and their BatchNorm layers keep their running
        statistics (they stay in eval mode through :meth:`train`), as mmdetection's
        ``frozen_stages`` does. The early stages run at the highest resolution, so leaving
        them out of the backward pass is most of a training step's cost on a CPU.

        Raises:
            ConfigError: ``count`` is negative or more than the trunk has stages.
        """
        stages = self.stages()
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= len(stages):
            raise ConfigError(
                f"{self.name} has {len(stages)} stages (the stem first); cannot freeze {count!r}"
            )
        self._frozen = stages[:count]
        for stage in self._frozen:
            for param in stage.parameters():
                param.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> Backbone:
        """Switch train/eval mode; frozen stages stay in eval mode."""
        super().train(mode)
        for stage in getattr(self, "_frozen", ()):
            stage.eval()
        return self

    def convert_state_dict(self, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Translate a foreign key layout to the trunk's; identity by default."""
        return dict(state_dict)

    def load_weights(self, state_dict: Mapping[str, torch.Tensor], *, source: str) -> None:
        """Load a library state dict into the trunk, checking every key and shape.

        Classifier keys (``head_prefixes``) are ignored. Keys of an MM-SAG checkpoint
        (``backbone.trunk.``) are accepted too, so a trained trunk can seed a new model.

        Raises:
            ConfigError: Missing, unexpected or mis-shaped tensors; the message lists the
                first few of each.
        """
        if any(k.startswith("backbone.trunk.") for k in state_dict):
            state_dict = {
                k.removeprefix("backbone.trunk."): v
                for k, v in state_dict.items()
                if k.startswith("backbone.trunk.")
            }
        converted = self.convert_state_dict(state_dict)
        converted = {k: v for k, v in converted.items() if not k.startswith(self.head_prefixes)}
        target = self.trunk.state_dict()
        # BatchNorm fills a missing counter itself; old torchvision files lack it.
        missing = [
            k for k in target if k not in converted and not k.endswith("num_batches_tracked")
        ]
        unexpected = [k for k in converted if k not in target]
        mismatched = [
            f"{k} (file {tuple(converted[k].shape)}, model {tuple(target[k].shape)})"
            for k in target
            if k in converted and converted[k].shape != target[k].shape
        ]
        if missing or unexpected or mismatched:
            problems = []
            if missing:
                problems.append(f"missing: {_show(missing)}")
            if unexpected:
                problems.append(f"unexpected: {_show(unexpected)}")
            if mismatched:
                problems.append(f"shape mismatch: {_show(mismatched)}")
            raise ConfigError(
                f"weights {source} do not fit backbone {self.name!r}: {'; '.join(problems)}. "
                f"Pass a state dict of {self.weights_origin or self.name}."
            )
        self.trunk.load_state_dict(converted, strict=False)
        _log.info("loaded %d backbone tensors from %s", len(converted), source)
