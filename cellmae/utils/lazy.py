"""Lazy package exports (PEP 562), so that ``cellmae --help`` imports no stage's heavy modules (torch)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_getattr(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``exports[name]`` (a module path) on first access of ``name``."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def lazy_dir(module_globals: dict[str, Any], exports: dict[str, str]) -> Callable[[], list[str]]:
    """A module ``__dir__`` listing the lazy exports too, so ``dir()`` and tab completion show them."""

    def __dir__() -> list[str]:
        return sorted(set(module_globals) | set(exports))

    return __dir__
