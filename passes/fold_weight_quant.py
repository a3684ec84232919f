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
from mmfc.dialects import weight_values
from mmfc.dialects import weights as W
from mmfc.dialects.parallel import map_in_order
from mmfc.dialects.progress import progress
from mmfc.dialects.source import OpError

#: the pre-quantized checkpoint naming: ``X.weight`` holds the trits, ``X.weight_scale`` the scale
SCALE_SUFFIX = "_scale"
#: how the new store holds the trits in memory (a quarter of int8; ``pack-weights{format=2bit}``
#: then takes the bytes as they are)
HELD_FORMAT = "2bit"


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
    input (``store.derive()``), bound to the module; the input store is never modified. Masters are
    streamed (read block by block, quantized, their pages released) on the worker threads
    (``dialects.parallel``), and the new store holds the trits packed 4 per byte
    (``MemoryStore.put_packed_trits``): a 2.7B model's trits take 0.65 GB, not 2.6 GB. The driver
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
      holds NaN/Inf (the value rules of ``dialects.weight_values``);
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
        # check and quantize everything before rewriting anything: an error leaves the module as it was
        for name, found in foldable.items():
            _check_master_header(store, name, *found)
        names = list(foldable)
        quantized: dict[str, tuple[np.ndarray, tuple[int, int], np.float32]] = {}
        with progress("quantize weights", len(names)) as advance:
            for name, result in zip(names, map_in_order(lambda n: _quantize(store, n), names)):
                if isinstance(result, str):
                    refs, quants = foldable[name]
                    raise OpError(quants[0] if result == weight_values.ALREADY_TERNARY else refs[0],
                                  _problem(store, name, result))
                quantized[name] = result
                advance(1)
        new = store.derive()
        for name, (packed, shape, scale) in quantized.items():
            new.put_packed_trits(name, packed, shape, HELD_FORMAT)
            new.put(scale_name(name), np.asarray(scale, dtype=np.float32).reshape(()), copy=False)
            refs, quants = foldable[name]
            for quant in quants:
                _replace(quant, name, shape)
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


def _check_master_header(
    store: W.WeightStore, name: str, refs: Sequence[T.WeightOp], quants: Sequence[T.QuantWeightOp]
) -> None:
    """Check from the store's header alone that ``name`` is the float tensor every ref says it is and
    that folding it replaces nothing."""
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


def _quantize(store: W.WeightStore, name: str) -> tuple[np.ndarray, tuple[int, int], np.float32] | str:
    """``numerics.quant_weight`` of the stored master ``name``, streamed: the scale from one pass over
    its blocks, then each block's trits packed (``HELD_FORMAT``) into the result, then the tensor's
    pages released. Returns ``(packed trits, shape, scale)``, or the problem with the values
    (``dialects.weight_values``: not finite, or already ternary-valued)."""
    try:
        n, k = store.info(name).shape
        abs_sum = sum(nm.weight_abs_sum(block) for block in store.blocks(name))
        if not np.isfinite(abs_sum):
            return weight_values.NON_FINITE
        if nm.looks_ternary(store.blocks(name)):
            return weight_values.ALREADY_TERNARY
        scale = nm.weight_scale(abs_sum, n * k)
        packed = np.empty((n, nm.packed_row_bytes(k, HELD_FORMAT)), np.uint8)
        for rows, block in zip(nm.row_blocks((n, k)), store.blocks(name)):
            packed[rows] = nm.ternarize_packed(block, scale, HELD_FORMAT)
        return packed, (n, k), scale
    finally:
        store.release(name)


def _problem(store: W.WeightStore, name: str, problem: str) -> str:
    """The message of a master whose values cannot be quantized."""
    if problem == weight_values.ALREADY_TERNARY:
        return (
            f"@{name} {problem}. Store the trits with their original scale (@{name} int8 + "
            f"@{scale_name(name)} f32, an mmfc pre-quantized checkpoint) and reference them as "
            "!ternary.trits instead of quantizing them again"
        )
    return f"@{name} {problem}; it cannot be quantized"


def _replace(quant: T.QuantWeightOp, name: str, shape: Sequence[int]) -> None:
    """``%t, %s = quant_weight %w`` -> ``%t = weight @name : trits; %s = weight @name_scale``."""
    trits = T.WeightOp(name, T.TritsType(tuple(shape)))
    scale = T.WeightOp(scale_name(name), quant.scale.type)
    # inserted before quant; each new result takes the name of the result it replaces
    PatternRewriter(quant).replace(quant, [trits, scale], [trits.result, scale.result])
