"""Lazy re-exports for package ``__init__`` modules (PEP 562).

A package lists ``name -> submodule`` and gets module-level ``__getattr__``/``__dir__`` that
import a submodule only when one of its names is first used, so importing the package stays
cheap (no torch, OpenCV or ONNX Runtime until needed).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``(__getattr__, __dir__)`` for ``package`` resolving ``exports`` on first use."""

    def module_getattr(name: str) -> Any:
        module_name = exports.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module_name}"), name)
        setattr(sys.modules[package], name, value)  # later look-ups skip __getattr__
        return value

    def module_dir() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return module_getattr, module_dir
