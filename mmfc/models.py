"""The PyTorch MatMul-free model family, re-exported for users (``from mmfc.models import ...``)."""

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
]
