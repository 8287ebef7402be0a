"""Name -> builder registries for backbones and for named MM-SAG configurations.

Two private dicts, filled at import time by decorated functions in ``backbones/`` and
``factory.py``. Registering a name twice is a programming error and raises ``ValueError``
(as torchvision does) instead of silently replacing the first entry. Looking up an unknown
name raises :class:`~mmsag_ros.errors.ModelNotFoundError` with the closest known names.
This module imports nothing else from the model package, so every family can import it.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from mmsag_ros.errors import ModelNotFoundError

__all__ = [
    "BackboneEntry",
    "get_backbone_entry",
    "get_model_builder",
    "list_backbones",
    "list_models",
    "register_backbone",
    "register_model",
]

_F = TypeVar("_F", bound=Callable[..., object])


@dataclass(frozen=True)
class BackboneEntry:
    """One registered backbone.

    Attributes:
        name: Registry name (``resnet50``).
        builder: Function ``builder(pretrained: bool) -> Backbone``.
        has_pretrained: Whether a packaged (offline) ImageNet weights file exists for it.
        normalization: Name of the input normalisation its ImageNet weights (packaged, or the
            library's own for a weights file) were trained with, a key of
            :data:`~mmsag_ros.bundle.preprocess.NORMALIZATIONS`.
    """

    name: str
    builder: Callable[..., object]
    has_pretrained: bool
    normalization: str = "imagenet"


_BACKBONES: dict[str, BackboneEntry] = {}
_MODELS: dict[str, Callable[..., object]] = {}


def _check_new(name: str, table: dict[str, object], kind: str) -> None:
    if name in table:
        raise ValueError(f"{kind} {name!r} is already registered")


def _lookup_error(name: str, known: list[str], kind: str) -> ModelNotFoundError:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ModelNotFoundError(
        f"unknown {kind} {name!r}{hint} Known {kind}s: {', '.join(sorted(known))}"
    )


def register_backbone(
    name: str, *, has_pretrained: bool = False, normalization: str = "imagenet"
) -> Callable[[_F], _F]:
    """Decorator registering ``builder(pretrained: bool) -> Backbone`` under ``name``.

    ``normalization`` names the input normalisation its weights expect (see
    :class:`BackboneEntry`), the way torchvision's ``Weights.transforms`` records it.

    Raises:
        ValueError: ``name`` is already registered.
    """

    def decorate(builder: _F) -> _F:
        _check_new(name, _BACKBONES, "backbone")
        _BACKBONES[name] = BackboneEntry(name, builder, has_pretrained, normalization)
        return builder

    return decorate


def register_model(builder: _F) -> _F:
    """Decorator registering a named configuration under its function name.

    Raises:
        ValueError: A configuration of that name is already registered.
    """
    name = builder.__name__
    _check_new(name, _MODELS, "model")
    _MODELS[name] = builder
    return builder


def list_backbones(pattern: str = "*") -> list[str]:
    """Sorted registered backbone names matching a shell-style ``pattern`` (``resnet*``)."""
    return sorted(n for n in _BACKBONES if fnmatch.fnmatchcase(n, pattern))


def list_models(pattern: str = "*") -> list[str]:
    """Sorted registered configuration names matching a shell-style ``pattern``."""
    return sorted(n for n in _MODELS if fnmatch.fnmatchcase(n, pattern))


def get_backbone_entry(name: str) -> BackboneEntry:
    """The registry entry for ``name``; ModelNotFoundError with close matches if unknown."""
    try:
        return _BACKBONES[name]
    except KeyError:
        raise _lookup_error(name, list(_BACKBONES), "backbone") from None


def get_model_builder(name: str) -> Callable[..., object]:
    """The builder of configuration ``name``; ModelNotFoundError with close matches."""
    try:
        return _MODELS[name]
    except KeyError:
        raise _lookup_error(name, list(_MODELS), "model") from None
