"""mmfc: a compiler stack for MatMul-free (ternary-weight) language models.

``import mmfc`` stays light (no torch, triton or iree): heavy parts load on first use through the
module-level ``__getattr__`` below, so that plain ``xdsl-opt`` can import the dialects cheaply.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (the console script's first instant)

if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

_LAZY_SUBMODULES = {"models", "cli"}


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"mmfc.{name}")
    if name in ("compile", "load", "CompiledModel"):
        return getattr(importlib.import_module("mmfc.api"), name)
    raise AttributeError(f"module 'mmfc' has no attribute {name!r}")


__all__ = ["__version__", "models", "compile", "load", "CompiledModel"]
