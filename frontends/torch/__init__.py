"""The PyTorch side of mmfc: the ``hgrn_bit`` model family (the frontend's source language).

Users reach it as ``mmfc.models``. ``config`` needs no torch; the model classes load torch on first
access (module-level ``__getattr__``), so reading a config.json stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from mmfc.frontends.torch.config import PRESETS, HGRNBitConfig, derive_intermediate_size, preset_config

_FROM_MODELING = {
    "GLU",
    "MLGRU",
    "BitLinear",
    "CausalLMOutput",
    "HGRNBitAttention",
    "HGRNBitBlock",
    "HGRNBitForCausalLM",
    "HGRNBitMLP",
    "HGRNBitModel",
    "RMSNorm",
}


def __getattr__(name: str) -> Any:
    if name in _FROM_MODELING:
        return getattr(importlib.import_module("mmfc.frontends.torch.modeling"), name)
    raise AttributeError(f"module 'mmfc.frontends.torch' has no attribute {name!r}")


__all__ = ["PRESETS", "HGRNBitConfig", "derive_intermediate_size", "preset_config", *sorted(_FROM_MODELING)]
