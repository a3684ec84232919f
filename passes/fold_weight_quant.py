"""``fold-weight-quant``: quantize float master weights offline into stored trits and scales."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter
from xdsl.rewriter import Rewriter

from mmfc.dialects import dtypes
from mmfc.dialects import numerics as nm
from mmfc.dialects import ternary as T
from mmfc.dialects import weights as W
from mmfc.dialects.source import OpError

#: the pre-quantized checkpoint naming: ``X.weight`` holds the trits, ``X.weight_scale`` the scale
SCALE_SUFFIX = "_scale"


def scale_name(weight_name: str) -> str:
    """Store name of the scale of the trits stored as ``weight_name``: ``X.weight`` -> ``X.weight_scale``."""
    return weight_name + SCALE_SUFFIX


@dataclass(frozen=True)
class FoldWeightQuant(ModulePass):
    """Quantize float master weights offline: ``quant_weight`` of a weight ref becomes stored trits + scale.

    Rewrites every::

        %w = ternary.weight @X.weight : tensor<NxKx{bf16,f16,f32,f64}>
        %t, %s = ternary.quant_weight %w : tensor<NxKxbf16> -> !ternary.trits<NxK>, f32

    into::

        %t = ternary.weight @X.weight : !ternary.trits<NxK>
        %s = ternary.weight @X.weight_scale : f32            (or tensor<f32>, as the quant_weight had it)

    the naming of mmfc's pre-quantized checkpoints. The trits and the scale are
    ``numerics.quant_weight`` of the float master read from the module's weight store: the scale is
    computed once, in float64, stored as float32 -- exactly what the interpreter computes for the
    unfolded op, so results are bit-identical. They go into a new in-memory store layered over the
    input (``store.derive()``), bound to the module; the input store is never modified. The driver
    writes the new store next to ``-o`` (see ``docs/weights.md``). A symbol referenced from several
    functions (``prefill`` and ``decode_step``) is quantized once; a fused ``[2I, d]`` ``gate_proj`` is
    one tensor, so gate and up share its one scale.

    Left alone:

    * a ``quant_weight`` whose operand is not a ``ternary.weight`` (a function argument, a value
      computed in the IR, a kernel block argument);
    * every ``quant_weight`` of a symbol whose float master has any other user anywhere in the module
      (an embedding reading a tied table, a kernel operand, a return): the trits take the master's
      name in the store, so the float master would no longer be readable by that user.

    Float refs of a folded symbol are removed (their only users were the folded ``quant_weight`` ops;
    a float read of a name that now holds trits would be wrong).

    Errors (an ``OpError`` at the op, ``FILE:LINE:COL`` from ``mmfc opt``):

    * the master is already ternary-valued (at most three distinct values): absmean quantization is
      not idempotent, so quantizing trits again would keep the signs but shrink the scale by the
      fraction of non-zeros (about 0.69x). Such weights belong in a pre-quantized store
      (``X.weight`` int8 trits + ``X.weight_scale``), referenced as ``!ternary.trits``;
    * the stored tensor is missing, is not a float tensor, has another shape than the IR says, or
      holds NaN/Inf;
    * the store already holds ``X.weight_scale`` (folding would silently replace it).

    Options: none.
    """

    name = "fold-weight-quant"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        by_symbol = _quant_weights_by_symbol(op)
        if not by_symbol:
            return  # nothing to fold: the store is never opened
        foldable = {
            name: found
            for name, found in by_symbol.items()
            if all(_only_quant_weight_users(ref) for ref in found[0])
        }
        if not foldable:
            return
        store = W.resolve_store(op)
        # quantize everything before rewriting anything: an error leaves the module as it was
        quantized = {name: _quantize(store, name, *found) for name, found in foldable.items()}
        new = store.derive()
        for name, (trits, scale) in quantized.items():
            new.put(name, trits, copy=False)
            new.put(scale_name(name), np.asarray(scale, dtype=np.float32).reshape(()), copy=False)
            refs, quants = foldable[name]
            for quant in quants:
                _replace(quant, name, trits.shape)
            for ref in refs:
                Rewriter.erase_op(ref)
        W.bind(op, new)


def _is_float_ref(op: object) -> bool:
    return isinstance(op, T.WeightOp) and isinstance(op.result.type, TensorType)


def _quant_weights_by_symbol(module: ModuleOp) -> dict[str, tuple[list[T.WeightOp], list[T.QuantWeightOp]]]:
    """Per symbol (in first-seen order): every float ``ternary.weight`` ref of it in the module, and the
    ``quant_weight`` ops that read one of them. Symbols no ``quant_weight`` reads are left out."""
    refs: dict[str, list[T.WeightOp]] = {}
    quants: dict[str, list[T.QuantWeightOp]] = {}
    for inner in module.walk():
        if _is_float_ref(inner):
            assert isinstance(inner, T.WeightOp)
            refs.setdefault(inner.sym.string_value(), []).append(inner)
        elif isinstance(inner, T.QuantWeightOp) and _is_float_ref(inner.master.owner):
            master = inner.master.owner
            assert isinstance(master, T.WeightOp)
            quants.setdefault(master.sym.string_value(), []).append(inner)
    return {name: (refs[name], qs) for name, qs in quants.items()}


def _only_quant_weight_users(ref: T.WeightOp) -> bool:
    return all(isinstance(use.operation, T.QuantWeightOp) for use in ref.result.uses)


def _quantize(
    store: W.WeightStore, name: str, refs: Sequence[T.WeightOp], quants: Sequence[T.QuantWeightOp]
) -> tuple[np.ndarray, np.float32]:
    """``numerics.quant_weight`` of the stored master ``name``, after checking that it is the float
    tensor every ref says it is and that it may be quantized."""
    try:
        info = store.info(name)
    except W.WeightStoreError as exc:
        raise OpError(refs[0], str(exc)) from None
    stored = dtypes.by_code(info.stored)
    if stored is None or not stored.is_float:
        raise OpError(
            refs[0],
            f"@{name} is stored as {info.stored} in the weight store {store.describe()}, not as a float "
            f"master; stored trits are referenced as !ternary.trits (with @{scale_name(name)} as the scale)",
        )
    for ref in refs:
        t = ref.result.type
        assert isinstance(t, TensorType)
        want = dtypes.of_element_type(t.get_element_type())
        if tuple(info.shape) != t.get_shape() or want is None or info.stored != want.code:
            dims = "x".join(str(d) for d in info.shape) or "scalar"
            raise OpError(
                ref,
                f"@{name} is stored as {info.stored} of shape [{dims}] in the weight store "
                f"{store.describe()}, but the IR reads it as {t}",
            )
    if scale_name(name) in store:
        raise OpError(
            quants[0],
            f"the weight store {store.describe()} already holds @{scale_name(name)}; folding @{name} "
            "would replace it (is this store pre-quantized? then reference @"
            f"{name} as !ternary.trits)",
        )
    master = store.get(name)
    if not np.isfinite(master).all():
        raise OpError(refs[0], f"@{name} holds non-finite values (NaN or Inf); it cannot be quantized")
    if nm.looks_ternary(master):
        raise OpError(
            quants[0],
            f"@{name} is already ternary-valued (at most 3 distinct values): absmean weight quantization "
            "is not idempotent, so re-quantizing ternary weights keeps the signs but shrinks the scale by "
            "the fraction of non-zeros (about 0.69x), silently changing every output. Store the trits with "
            f"their original scale (@{name} int8 + @{scale_name(name)} f32, an mmfc pre-quantized "
            "checkpoint) and reference them as !ternary.trits instead of quantizing them again",
        )
    return nm.quant_weight(master)


def _replace(quant: T.QuantWeightOp, name: str, shape: Sequence[int]) -> None:
    """``%t, %s = quant_weight %w`` -> ``%t = weight @name : trits; %s = weight @name_scale``."""
    trits = T.WeightOp(name, T.TritsType(tuple(shape)))
    scale = T.WeightOp(scale_name(name), quant.scale.type)
    # inserted before quant; each new result takes the name of the result it replaces
    PatternRewriter(quant).replace(quant, [trits, scale], [trits.result, scale.result])
