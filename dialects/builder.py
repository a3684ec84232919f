"""The block-level IR builder: Python functions that emit the unfused ternary IR of one BitLinear,
MLGRU, GLU, block, or a whole model, from a config and weight symbols.

The frontend builds on it (one call per mapped PyTorch block) and tests use it to make models without
tracing PyTorch. Every function takes a :class:`FuncBuilder` (an insertion point plus a cache of weight
references) and SSA values, and returns SSA values; nothing here touches the weight store.

Weights are referenced by symbol (the checkpoint tensor name). How a BitLinear's weight is held is a
:class:`WeightForm`:

* ``FLOAT``: a float master ``@X.weight : tensor<NxKx{dtype}>`` followed by ``ternary.quant_weight``
  (the fold-weight-quant pass turns it into stored trits + scale);
* ``TRITS``: ``@X.weight : !ternary.trits<NxK>`` and ``@X.weight_scale : f32`` (a pre-quantized
  checkpoint or an already-folded store).

Entry functions of a whole model (``build_model``): ``prefill(ids [B,T], mask [B,T], h_0..h_{L-1}
[B,d]) -> (logits [B,T,V], h'_0..h'_{L-1})`` and ``decode_step(ids [B], h_0..) -> (logits [B,V],
h'_0..)``, B and T dynamic. Without an embedding/head, the same over hidden states (``build_stack``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from xdsl.builder import Builder
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, StringAttr, TensorType, f32, i64
from xdsl.ir import Attribute, Block, Region, SSAValue
from xdsl.rewriter import InsertPoint

from mmfc.dialects import ternary as T
from mmfc.dialects.dtypes import by_name
from mmfc.dialects.numerics import RMS_EPS

DYN = T.DYN


class WeightForm(enum.Enum):
    """How a BitLinear weight is referenced (see module docstring)."""

    FLOAT = "float"
    TRITS = "trits"


def element_type(name: str) -> Attribute:
    """The xDSL float element type of a stored float dtype, by any name ``dtypes.by_name`` knows
    (``f32``, ``bf16``, ``F16`` (safetensors), ``float64``, ...)."""
    try:
        found = by_name(name)
    except ValueError:
        found = None
    if found is None or not found.is_float:
        raise ValueError(f"unsupported weight dtype {name!r}")
    assert found.element_type is not None
    return found.element_type


class ModelConfig(Protocol):
    """The config fields the builder reads (``HGRNBitConfig`` satisfies it)."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    intermediate_size: int | None
    rms_norm_eps: float
    use_lower_bound: bool


@dataclass
class FuncBuilder:
    """An insertion point in one function plus a cache of ``ternary.weight`` references.

    ``dtypes`` maps a weight symbol to its stored float dtype name (default ``f32``); ``form`` says how
    BitLinear weights are held (a mapping from the BitLinear prefix overrides it per layer).
    """

    builder: Builder
    form: WeightForm = WeightForm.FLOAT
    dtypes: Mapping[str, str] = field(default_factory=dict)
    forms: Mapping[str, WeightForm] = field(default_factory=dict)
    _weights: dict[tuple[str, Attribute], SSAValue] = field(default_factory=dict)

    def insert(self, op: Any) -> Any:
        return self.builder.insert(op)

    def weight(self, sym: str, type_: Attribute) -> SSAValue:
        """A (cached) ``ternary.weight @sym : type_``."""
        key = (sym, type_)
        if key not in self._weights:
            self._weights[key] = self.insert(T.WeightOp(sym, type_)).result
        return self._weights[key]

    def float_weight(self, sym: str, shape: Sequence[int]) -> SSAValue:
        return self.weight(sym, TensorType(element_type(self.dtypes.get(sym, "f32")), shape))

    def form_of(self, prefix: str) -> WeightForm:
        return self.forms.get(prefix, self.form)


# ------------------------------------------------------------------------------------------ blocks


def ternary_weight(fb: FuncBuilder, prefix: str, out_features: int, in_features: int) -> tuple[SSAValue, SSAValue]:
    """``(trits [N, K], weight_scale)`` of the BitLinear ``prefix`` in the builder's weight form."""
    if fb.form_of(prefix) is WeightForm.TRITS:
        trits = fb.weight(f"{prefix}.weight", T.TritsType((out_features, in_features)))
        scale = fb.weight(f"{prefix}.weight_scale", f32)
        return trits, scale
    master = fb.float_weight(f"{prefix}.weight", (out_features, in_features))
    op = fb.insert(T.QuantWeightOp(master))
    return op.trits, op.scale


def build_bitlinear(fb: FuncBuilder, x: SSAValue, prefix: str, out_features: int, eps: float = RMS_EPS) -> SSAValue:
    """BitLinear ``prefix`` on ``x [..., K]``: rmsnorm (own gamma) -> quant_act -> accum -> dequant."""
    k = T.shape_of(x.type)[-1]
    gamma = fb.float_weight(f"{prefix}.norm.weight", (k,))
    trits, scale = ternary_weight(fb, prefix, out_features, k)
    normed = fb.insert(T.RMSNormOp(x, gamma, eps)).result
    quant = fb.insert(T.QuantActOp(normed))
    acc = fb.insert(T.AccumOp(quant.q, trits)).acc
    return fb.insert(T.DequantOp(acc, quant.scale, scale)).result


def build_rmsnorm(fb: FuncBuilder, x: SSAValue, sym: str, eps: float) -> SSAValue:
    gamma = fb.float_weight(sym, (T.shape_of(x.type)[-1],))
    return fb.insert(T.RMSNormOp(x, gamma, eps)).result


def build_mlgru(
    fb: FuncBuilder,
    a: SSAValue,
    prefix: str,
    lower_bound: SSAValue | None,
    mask: SSAValue | None,
    h0: SSAValue | None,
    eps: float = RMS_EPS,
) -> tuple[SSAValue, SSAValue]:
    """The MLGRU token mixer ``prefix`` (e.g. ``model.layers.0.attn``) on ``a``.

    ``a`` is ``[B, T, d]`` (prefill: a scan over time; ``mask [B, T]`` zeroes i' at padded positions)
    or ``[B, d]`` (decode: one scan step; ``h0`` required). Returns ``(out, h_last [B, d])``.
    """
    d = T.shape_of(a.type)[-1]
    i = build_bitlinear(fb, a, f"{prefix}.i_proj", d)
    f_tilde = build_bitlinear(fb, a, f"{prefix}.f_proj", d)
    g = build_bitlinear(fb, a, f"{prefix}.g_proj", d)
    f = fb.insert(T.SigmoidOp(f_tilde)).result
    if lower_bound is not None:
        f = fb.insert(T.LowerBoundOp(f, lower_bound)).result
    one_minus_f = fb.insert(T.OneMinusOp(f)).result
    i_prime = fb.insert(T.SiluMulOp(i, one_minus_f)).result
    if mask is not None:
        i_prime = fb.insert(T.MaskOp(i_prime, mask)).result
    if len(T.shape_of(a.type)) == 3:
        scan = fb.insert(T.ScanOp(i_prime, f, h0))
        h, h_last = scan.h, scan.h_last
    else:
        if h0 is None:
            raise ValueError("build_mlgru: a decode step [B, d] needs the previous state h0")
        h = h_last = fb.insert(T.ScanStepOp(i_prime, f, h0)).result
    gamma = fb.float_weight(f"{prefix}.g_norm.weight", (d,))
    o_prime = fb.insert(T.GateNormOp(g, h, gamma, eps)).result
    return build_bitlinear(fb, o_prime, f"{prefix}.o_proj", d), h_last


def build_glu(fb: FuncBuilder, m: SSAValue, prefix: str, intermediate_size: int) -> SSAValue:
    """The GLU channel mixer ``prefix`` (e.g. ``model.layers.0.mlp``): ``down(SiLU(gate) * up)``."""
    d = T.shape_of(m.type)[-1]
    gate_up = build_bitlinear(fb, m, f"{prefix}.gate_proj", 2 * intermediate_size)
    split = fb.insert(T.SplitOp(gate_up, 2))
    gate, up = split.parts
    p = fb.insert(T.SiluMulOp(gate, up)).result
    return build_bitlinear(fb, p, f"{prefix}.down_proj", d)


def build_block(
    fb: FuncBuilder,
    x: SSAValue,
    prefix: str,
    intermediate_size: int,
    lower_bound: SSAValue | None,
    mask: SSAValue | None,
    h0: SSAValue | None,
    eps: float,
) -> tuple[SSAValue, SSAValue]:
    """One ``HGRNBitBlock`` (``prefix`` e.g. ``model.layers.3``): returns ``(x_next, h_last)``."""
    a = build_rmsnorm(fb, x, f"{prefix}.attn_norm.weight", eps)
    a, h_last = build_mlgru(fb, a, f"{prefix}.attn", lower_bound, mask, h0, eps)
    gamma = fb.float_weight(f"{prefix}.mlp_norm.weight", (T.shape_of(x.type)[-1],))
    res = fb.insert(T.ResidualRMSNormOp(a, x, gamma, eps))
    out = build_glu(fb, res.normed, f"{prefix}.mlp", intermediate_size)
    return fb.insert(T.AddOp(res.sum, out)).result, h_last


def layer_lower_bounds(
    fb: FuncBuilder, config: ModelConfig, sym: str = "model.lower_bounds"
) -> list[SSAValue | None]:
    """``lower_bounds(model.lower_bounds)`` once, then one ``ternary.row`` per layer."""
    n, d = config.num_hidden_layers, config.hidden_size
    if not config.use_lower_bound:
        return [None] * n
    param = fb.float_weight(sym, (n, d))
    lbs = fb.insert(T.LowerBoundsOp(param)).result
    return [fb.insert(T.RowOp(lbs, layer)).result for layer in range(n)]


# ------------------------------------------------------------------------------------------ functions


def _state_type(d: int) -> TensorType:
    return TensorType(f32, (DYN, d))


def build_function(
    name: str,
    input_types: Sequence[Attribute],
    body: Callable[[FuncBuilder, Sequence[SSAValue]], Sequence[SSAValue]],
    form: WeightForm = WeightForm.FLOAT,
    dtypes: Mapping[str, str] | None = None,
    forms: Mapping[str, WeightForm] | None = None,
    arg_names: Sequence[str] | None = None,
) -> func.FuncOp:
    """A ``func.func @name`` whose body ``body(fb, args)`` emits ops and returns the results."""
    block = Block(arg_types=input_types)
    if arg_names:
        for arg, arg_name in zip(block.args, arg_names):
            arg.name_hint = arg_name
    fb = FuncBuilder(Builder(InsertPoint.at_end(block)), form, dtypes or {}, forms or {})
    results = list(body(fb, block.args))
    fb.insert(func.ReturnOp(*results))
    return func.FuncOp(name, (list(input_types), [r.type for r in results]), Region(block))


def build_model(
    config: ModelConfig,
    form: WeightForm = WeightForm.FLOAT,
    dtypes: Mapping[str, str] | None = None,
    entries: Sequence[str] = ("prefill", "decode_step"),
    store: str | None = None,
    head: bool = True,
    prefix: str = "model.",
) -> ModuleOp:
    """The whole causal LM: ``prefill`` and ``decode_step`` (see module docstring).

    ``store`` sets the module's weight-store attribute (``mmfc.weights``) when given. ``head=False``
    builds the backbone alone (``HGRNBitModel``: the entries return the final-normed hidden states);
    ``prefix`` is the backbone's tensor-name prefix (``"model."`` in a causal LM, ``""`` for a bare
    ``HGRNBitModel``'s state dict).
    """
    n, d, v = config.num_hidden_layers, config.hidden_size, config.vocab_size
    inter = int(config.intermediate_size or 0)
    eps = float(config.rms_norm_eps)
    state_types = [_state_type(d)] * n
    state_names = [f"h{layer}" for layer in range(n)]

    def body(fb: FuncBuilder, ids: SSAValue, mask: SSAValue | None, states: Sequence[SSAValue]) -> list[SSAValue]:
        table = fb.float_weight(f"{prefix}embeddings.weight", (v, d))
        x = fb.insert(T.EmbeddingOp(table, ids)).result
        lbs = layer_lower_bounds(fb, config, f"{prefix}lower_bounds")
        new_states = []
        for layer in range(n):
            x, h = build_block(fb, x, f"{prefix}layers.{layer}", inter, lbs[layer], mask, states[layer], eps)
            new_states.append(h)
        x = build_rmsnorm(fb, x, f"{prefix}norm.weight", eps)
        return [build_bitlinear(fb, x, "lm_head", v) if head else x, *new_states]

    funcs = []
    if "prefill" in entries:
        funcs.append(
            build_function(
                "prefill",
                [TensorType(i64, (DYN, DYN)), TensorType(i64, (DYN, DYN)), *state_types],
                lambda fb, args: body(fb, args[0], args[1], args[2:]),
                form,
                dtypes,
                arg_names=["input_ids", "attention_mask", *state_names],
            )
        )
    if "decode_step" in entries:
        funcs.append(
            build_function(
                "decode_step",
                [TensorType(i64, (DYN,)), *state_types],
                lambda fb, args: body(fb, args[0], None, args[1:]),
                form,
                dtypes,
                arg_names=["input_ids", *state_names],
            )
        )
    unknown = set(entries) - {"prefill", "decode_step"}
    if unknown:
        raise ValueError(f"unknown entry points {sorted(unknown)}; expected prefill and/or decode_step")
    module = ModuleOp(funcs)
    if store is not None:
        module.attributes["mmfc.weights"] = StringAttr(store)
    return module


def hidden_type(d: int, step: bool) -> TensorType:
    """``[B, d]`` (decode) or ``[B, T, d]`` (prefill), B and T dynamic."""
    return TensorType(f32, (DYN, d) if step else (DYN, DYN, d))


__all__ = [
    "FuncBuilder",
    "ModelConfig",
    "WeightForm",
    "build_bitlinear",
    "build_block",
    "build_function",
    "build_glu",
    "build_mlgru",
    "build_model",
    "build_rmsnorm",
    "element_type",
    "hidden_type",
    "layer_lower_bounds",
    "ternary_weight",
]
