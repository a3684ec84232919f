"""The PyTorch side of mmfc: the ``hgrn_bit`` model family (the frontend's source language).

Users reach it as ``mmfc.models``. Importing this package imports torch.
"""

from mmfc.frontends.torch.config import PRESETS, HGRNBitConfig, derive_intermediate_size, preset_config
from mmfc.frontends.torch.modeling import (
    GLU,
    MLGRU,
    BitLinear,
    CausalLMOutput,
    HGRNBitAttention,
    HGRNBitBlock,
    HGRNBitForCausalLM,
    HGRNBitMLP,
    HGRNBitModel,
    RMSNorm,
)

__all__ = [
    "PRESETS",
    "HGRNBitConfig",
    "derive_intermediate_size",
    "preset_config",
    "BitLinear",
    "CausalLMOutput",
    "GLU",
    "HGRNBitAttention",
    "HGRNBitBlock",
    "HGRNBitForCausalLM",
    "HGRNBitMLP",
    "HGRNBitModel",
    "MLGRU",
    "RMSNorm",
]
