"""The PyTorch MatMul-free LM (``hgrn_bit``), built from reusable blocks.

Blocks (each a plain ``nn.Module`` a user may compose differently):

* :class:`RMSNorm` - ``weight [d]``.
* :class:`BitLinear` - a ternary projection with its own RMSNorm; holds either a float master
  ``weight`` (quantized on the fly, as the reference does) or stored int8 trits ``weight`` plus a float32
  ``weight_scale``. Both paths use the same float32 scale and exact integer accumulation.
* :class:`MLGRU` (alias ``HGRNBitAttention``) - the token mixer; recurrent state ``[B, d]``.
* :class:`GLU` (alias ``HGRNBitMLP``) - the channel mixer.
* :class:`HGRNBitBlock`, :class:`HGRNBitModel`, :class:`HGRNBitForCausalLM`.

Semantics: ``docs/model.md``; the arithmetic is ``numerics.py`` beside this file (the torch
twin of ``mmfc.dialects.numerics``). All activations are float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from mmfc.dialects.progress import progress
from mmfc.dialects.seeds import check_seed
from mmfc.frontends.torch import numerics as tn
from mmfc.frontends.torch.config import HGRNBitConfig, preset_config

State = list[torch.Tensor]  # one [B, d] recurrent state per layer


class RMSNorm(nn.Module):
    """RMSNorm over the last axis: ``x / sqrt(mean(x^2) + eps) * weight`` (float32)."""

    def __init__(self, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tn.rmsnorm(x, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.hidden_size}, eps={self.eps}"


class BitLinear(nn.Module):
    """``y = (x_q . W_q^T) / (s_x * s_w)`` with ``x_q = quant_act(RMSNorm(x))``; no bias.

    Storage, by ``quantized``:

    * ``False``: ``weight`` is a float master ``[N, K]`` (an ``nn.Parameter``), quantized per call; the
      quantization is cached until the parameter changes (its version counter moves).
    * ``True``: ``weight`` is an int8 buffer of trits ``[N, K]`` and ``weight_scale`` a float32 scalar
      buffer (= 1/s_w), the pre-quantized checkpoint layout.

    The norm is ``self.norm`` (tensor ``X.norm.weight``), eps 1e-6 as in the reference's fused path.
    """

    def __init__(self, in_features: int, out_features: int, eps: float = 1e-6, quantized: bool = False) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.norm = RMSNorm(in_features, eps=eps)
        self.quantized = quantized
        if quantized:
            self.register_buffer("weight", torch.zeros(out_features, in_features, dtype=torch.int8))
            self.register_buffer("weight_scale", torch.ones((), dtype=torch.float32))
        else:
            self.weight = nn.Parameter(torch.empty(out_features, in_features))
            nn.init.normal_(self.weight, std=0.02)
        self._cache: tuple[Any, tuple[torch.Tensor, torch.Tensor]] | None = None

    @classmethod
    def from_trits(cls, trits: torch.Tensor, weight_scale: torch.Tensor | float, eps: float = 1e-6) -> "BitLinear":
        """A BitLinear over stored trits ``[N, K]`` (int8 in {-1,0,1}) and ``weight_scale`` (= 1/s_w)."""
        n, k = trits.shape
        layer = cls(k, n, eps=eps, quantized=True)
        layer.load_trits(trits, weight_scale)
        return layer

    def load_trits(self, trits: torch.Tensor, weight_scale: torch.Tensor | float) -> None:
        if not self.quantized:
            raise ValueError("load_trits on a float BitLinear; call quantize_() first")
        if tuple(trits.shape) != (self.out_features, self.in_features):
            raise ValueError(f"trits shape {tuple(trits.shape)} != {(self.out_features, self.in_features)}")
        with torch.no_grad():
            self.weight.copy_(trits.to(torch.int8))
            self.weight_scale.copy_(torch.as_tensor(weight_scale, dtype=torch.float32))

    def ternary(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(trits int8 [N, K], weight_scale float32 scalar)``, quantizing a float master if needed."""
        if self.quantized:
            return self.weight, self.weight_scale
        key = (self.weight.data_ptr(), self.weight._version, self.weight.device, self.weight.dtype)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, tn.quant_weight(self.weight))
        return self._cache[1]

    @torch.no_grad()
    def quantize_(self) -> "BitLinear":
        """Turn a float master into stored trits + scale in place (idempotent on a quantized layer)."""
        if self.quantized:
            return self
        if self.weight.is_meta:  # shapes only (checkpoint validation, loading)
            trits = torch.empty(self.weight.shape, dtype=torch.int8, device="meta")
            scale = torch.empty((), dtype=torch.float32, device="meta")
        else:
            trits, scale = tn.quant_weight(self.weight)
        del self.weight
        self.quantized = True
        self.register_buffer("weight", trits)
        self.register_buffer("weight_scale", scale)
        self._cache = None
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        trits, scale = self.ternary()
        return tn.bitlinear(x, self.norm.weight, trits, scale, self.norm.eps)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, quantized={self.quantized}"


class MLGRU(nn.Module):
    """The MatMul-free linear GRU token mixer (reference name ``HGRNBitAttention``).

    ``forward(a [B, T, d], lower_bound [d] | None, attention_mask [B, T] | None, state [B, d] | None)``
    returns ``(out [B, T, d], h_T [B, d])``.
    """

    def __init__(self, hidden_size: int, num_heads: int = 1, eps: float = 1e-6) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.num_heads = num_heads  # the recurrence is elementwise: heads change nothing numerically
        self.i_proj = BitLinear(hidden_size, hidden_size)
        self.f_proj = BitLinear(hidden_size, hidden_size)
        self.g_proj = BitLinear(hidden_size, hidden_size)
        self.g_norm = RMSNorm(hidden_size, eps=eps)
        self.o_proj = BitLinear(hidden_size, hidden_size)

    def gates(
        self, a: torch.Tensor, lower_bound: torch.Tensor | None, attention_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(i', f, g)``: input after the input gate, forget gate, output-gate pre-activation."""
        i = self.i_proj(a)
        f_tilde = self.f_proj(a)
        g = self.g_proj(a)
        lb = lower_bound if lower_bound is not None else torch.zeros((), device=a.device)
        f = tn.forget_gate(f_tilde, lb)
        i_prime = tn.input_gate(i, f, attention_mask)
        return i_prime, f, g

    def forward(
        self,
        a: torch.Tensor,
        lower_bound: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        state: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        i_prime, f, g = self.gates(a, lower_bound, attention_mask)
        h, h_last = tn.scan(i_prime, f, state)
        return self.o_proj(tn.gate_norm(g, h, self.g_norm.weight, self.g_norm.eps)), h_last


class GLU(nn.Module):
    """The gated channel mixer (reference name ``HGRNBitMLP``): ``down(SiLU(gate) * up)`` with
    ``[gate | up] = gate_proj(m)`` (one ``[2I, d]`` weight, one shared scale)."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.gate_proj = BitLinear(hidden_size, 2 * intermediate_size)
        self.down_proj = BitLinear(intermediate_size, hidden_size)

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        y = self.gate_proj(m)
        gate, up = y[..., : self.intermediate_size], y[..., self.intermediate_size :]
        return self.down_proj(tn.silu_mul(gate, up))


HGRNBitAttention = MLGRU
HGRNBitMLP = GLU


class HGRNBitBlock(nn.Module):
    """``r = x + MLGRU(RMSNorm_attn(x)); x' = r + GLU(RMSNorm_mlp(r))``."""

    def __init__(self, config: HGRNBitConfig, layer_idx: int) -> None:
        super().__init__()
        d, eps = config.hidden_size, config.rms_norm_eps
        self.layer_idx = layer_idx
        self.attn_norm = RMSNorm(d, eps=eps)
        self.attn = MLGRU(d, num_heads=config.num_heads, eps=eps)
        self.mlp_norm = RMSNorm(d, eps=eps)
        assert config.intermediate_size is not None
        self.mlp = GLU(d, config.intermediate_size)

    def forward(
        self,
        x: torch.Tensor,
        lower_bound: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        state: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        a, h_last = self.attn(self.attn_norm(x), lower_bound, attention_mask, state)
        m, r = tn.residual_rmsnorm(a, x, self.mlp_norm.weight, self.mlp_norm.eps)
        return r + self.mlp(m), h_last


class HGRNBitModel(nn.Module):
    """Embeddings, L blocks and the final norm; ``forward`` returns ``(hidden [B, T, d], state)``."""

    def __init__(self, config: HGRNBitConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        if config.use_lower_bound:
            self.lower_bounds = nn.Parameter(torch.zeros(config.num_hidden_layers, config.hidden_size))
        self.layers = nn.ModuleList(HGRNBitBlock(config, l) for l in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def layer_lower_bounds(self) -> list[torch.Tensor | None]:
        if not self.config.use_lower_bound:
            return [None] * len(self.layers)
        lb = tn.lower_bounds(self.lower_bounds)
        return [lb[l] for l in range(len(self.layers))]

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        state: State | None = None,
    ) -> tuple[torch.Tensor, State]:
        x = tn.embedding(self.embeddings.weight, input_ids)
        new_state: State = []
        for l, (layer, lb) in enumerate(zip(self.layers, self.layer_lower_bounds())):
            x, h = layer(x, lb, attention_mask, None if state is None else state[l])
            new_state.append(h)
        return self.norm(x), new_state


@dataclass
class CausalLMOutput:
    """``logits [B, T, V]`` (float32) and the recurrent ``state`` after the last position."""

    logits: torch.Tensor
    state: State


_FROM_CONFIG: Any = object()  # sentinel: "the config's eos_token_id"


class HGRNBitForCausalLM(nn.Module):
    """The ``hgrn_bit`` causal LM with a Hugging Face-like API (no ``transformers`` needed).

    ``model(input_ids [B, T], attention_mask=None).logits`` is ``[B, T, V]``; ``generate`` returns
    ``[B, T + new]``. Left padding is supported: padded positions (mask 0) leave the state at zero.
    """

    def __init__(self, config: HGRNBitConfig) -> None:
        super().__init__()
        self.config = config
        self.model = HGRNBitModel(config)
        self.lm_head = BitLinear(config.hidden_size, config.vocab_size)
        self.tokenizer: Any = None  # set by from_pretrained when the directory has one

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: HGRNBitConfig, seed: int = 0, device: str | torch.device = "cpu") -> "HGRNBitForCausalLM":
        """A randomly initialised model (the reference's scheme: normal(0, initializer_range) weights,
        o_proj / down_proj scaled by 1/sqrt(2L), unit norms, zero lower bounds), seeded.

        The modules are built on the meta device and their memory allocated uninitialised:
        ``init_reference_`` sets every tensor, so the default initialisation the modules would run
        first (as long again at 1.3B) is skipped."""
        with torch.device("meta"):
            model = cls(config)
        if torch.device(device).type != "meta":
            model.to_empty(device=device)
            init_reference_(model, seed)
        return model

    @classmethod
    def from_preset(cls, name: str, seed: int = 0, device: str | torch.device = "cpu") -> "HGRNBitForCausalLM":
        return cls.from_config(preset_config(name), seed=seed, device=device)

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: str | torch.device = "cpu") -> "HGRNBitForCausalLM":
        """Load a checkpoint directory (float or pre-quantized; safetensors only, never pickle)."""
        from mmfc.frontends.torch.checkpoint import load_pretrained

        return load_pretrained(cls, directory, device=device)

    def save_pretrained(self, directory: str | Path, quantized: bool = False, max_shard_bytes: int | None = None) -> None:
        """Write ``config.json`` + ``model.safetensors`` (sharded above ``max_shard_bytes``).

        ``quantized=True`` writes the mmfc pre-quantized layout (int8 trits + ``weight_scale``)."""
        from mmfc.frontends.torch.checkpoint import save_pretrained

        save_pretrained(self, directory, quantized=quantized, max_shard_bytes=max_shard_bytes)

    @torch.no_grad()
    def quantize_(self) -> "HGRNBitForCausalLM":
        """Replace every BitLinear's float master by trits + scale (in place)."""
        for module in self.modules():
            if isinstance(module, BitLinear):
                module.quantize_()
        self.config.quantization_config = {"quant_method": "mmfc-ternary", "weights": "int8-trits"}
        return self

    @property
    def device(self) -> torch.device:
        return self.model.embeddings.weight.device

    def num_parameters(self) -> int:
        return sum(t.numel() for n, t in self.state_dict().items() if not n.endswith("weight_scale"))

    # ------------------------------------------------------------------ running
    @torch.no_grad()
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        state: State | None = None,
    ) -> CausalLMOutput:
        input_ids = torch.as_tensor(input_ids, device=self.device)
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [B, T], got shape {tuple(input_ids.shape)}")
        if attention_mask is not None:
            attention_mask = torch.as_tensor(attention_mask, device=self.device)
            if attention_mask.shape != input_ids.shape:
                raise ValueError(
                    f"attention_mask shape {tuple(attention_mask.shape)} != input_ids shape {tuple(input_ids.shape)}"
                )
        hidden, new_state = self.model(input_ids, attention_mask, state)
        return CausalLMOutput(self.lm_head(hidden), new_state)

    def prefill(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, state: State | None = None
    ) -> CausalLMOutput:
        """Run a whole prompt; same as ``forward``."""
        return self(input_ids, attention_mask, state)

    @torch.no_grad()
    def decode_step(self, input_ids: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One token per row: ``input_ids [B]`` -> ``(logits [B, V], state)``."""
        out = self(torch.as_tensor(input_ids, device=self.device).reshape(-1, 1), None, state)
        return out.logits[:, 0], out.state

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int = 20,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        eos_token_id: int | Sequence[int] | None = _FROM_CONFIG,
        pad_token_id: int | None = None,
    ) -> torch.Tensor:
        """Prefill the prompt, then decode step by step with the recurrent state.

        Returns ``[B, T + n]`` token ids (prompt + new), ``n <= max_new_tokens``; generation stops early
        once every row has produced an EOS (rows that finished are padded with ``pad_token_id``, else
        the config's, else EOS), as Hugging Face does. ``eos_token_id=None`` disables stopping.
        Greedy unless ``do_sample``; sampling applies temperature, top-k, then top-p (seeded by ``seed``).
        """
        from mmfc.frontends.torch.generation import generate_loop

        if eos_token_id is _FROM_CONFIG:
            eos_token_id = self.config.eos_token_id
        return generate_loop(
            prefill=lambda ids, mask: self.prefill(ids, mask),
            decode_step=self.decode_step,
            input_ids=torch.as_tensor(input_ids, device=self.device),
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id if pad_token_id is not None else self.config.pad_token_id,
        )


@torch.no_grad()
def init_reference_(model: nn.Module, seed: int, std: float | None = None) -> None:
    """The reference's random initialisation, seeded: normal(0, std) for BitLinear and embedding
    weights, o_proj/down_proj divided by sqrt(2 L), unit norms, zero lower bounds. ``seed`` lies in
    ``[0, 2**64)`` (``ValueError`` otherwise)."""
    gen = torch.Generator(device="cpu").manual_seed(check_seed(seed))
    config = getattr(model, "config", None)
    std = std if std is not None else getattr(config, "initializer_range", 0.02)
    n_layers = getattr(config, "num_hidden_layers", 1)
    randomized = sum(1 for m in model.modules() if isinstance(m, nn.Embedding)
                     or (isinstance(m, BitLinear) and not m.quantized))
    with progress("initialize weights", randomized) as advance:
        for name, module in model.named_modules():
            if isinstance(module, BitLinear) and not module.quantized:
                w = torch.randn(module.weight.shape, generator=gen) * std
                if name.endswith("o_proj") or name.endswith("down_proj"):
                    w /= math.sqrt(2 * n_layers)
                module.weight.copy_(w)
                advance(1)
            elif isinstance(module, nn.Embedding):
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * std)
                advance(1)
            elif isinstance(module, RMSNorm):
                module.weight.fill_(1.0)
    for name, p in model.named_parameters():
        if name.endswith("lower_bounds"):
            p.zero_()


@torch.no_grad()
def init_random_(model: nn.Module, seed: int, std: float = 0.05) -> nn.Module:
    """A discriminative random initialisation for tests: every float tensor random, RMSNorm weights
    around 1 (uniform 0.5..1.5), lower bounds normal(0, 1), BitLinear/embedding weights normal(0, std)."""
    gen = torch.Generator(device="cpu").manual_seed(check_seed(seed))
    for name, module in model.named_modules():
        if isinstance(module, RMSNorm):
            module.weight.copy_(0.5 + torch.rand(module.weight.shape, generator=gen))
        elif isinstance(module, BitLinear) and not module.quantized:
            module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * std)
        elif isinstance(module, nn.Embedding):
            module.weight.copy_(torch.randn(module.weight.shape, generator=gen))
    for name, p in model.named_parameters():
        if name.endswith("lower_bounds"):
            p.copy_(torch.randn(p.shape, generator=gen))
    return model
