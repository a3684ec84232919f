"""``sort-weight-refs``: hoist every ``ternary.weight`` to the top of its function, once per tensor.

Before (the frontend emits each weight reference where it is first used)::

    func.func @f(%x: tensor<?x8xf32>) -> tensor<?x4xf32> {
      %g = ternary.weight @b.norm.weight : tensor<8xf32>
      %n = ternary.rmsnorm %x, %g : tensor<?x8xf32>, tensor<8xf32>
      ...
      %w = ternary.weight @a.weight : !ternary.trits<4x8>
      ...

After: all the function's weight references first, sorted by symbol (``order=symbol``, the default)
or in order of first use (``order=first-use``), one per (symbol, type) -- a later reference to the
same tensor with the same type is replaced by the first one. Then the rest of the body, unchanged.

Why: a backend or a reader sees at once which tensors a function streams, in a deterministic order,
and duplicate references (which would read a weight twice) are gone.

Semantics: unchanged. A ``ternary.weight`` has no operands and is ``Pure``: its value is the stored
tensor, wherever the op sits, so moving it up to the function's entry keeps every use dominated and
every value the same; two refs of one symbol and type are the same value. Only ops directly in a
``func.func``'s entry block move (a weight ref inside another region stays where it is).

``check-store=true`` also opens the module's weight store (``mmfc.dialects.weights.resolve_store``) and
reports the first reference whose tensor the store does not hold, at that op (an ``OpError``: the
driver prints ``FILE:LINE:COL: pass 'sort-weight-refs': ...`` and exits with code 2).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from mmfc.dialects import weights as W
from mmfc.dialects.source import OpError
from mmfc.dialects.ternary import WeightOp

ORDERS = ("symbol", "first-use")


@dataclass(frozen=True)
class SortWeightRefs(ModulePass):
    """Hoist each function's ternary.weight refs to its top, sorted, one per tensor (no value changes)."""

    name = "sort-weight-refs"

    #: ``symbol`` (sorted by symbol name, then type) or ``first-use`` (the order they appear in)
    order: str = "symbol"
    #: also check that every referenced tensor is in the module's weight store
    check_store: bool = False

    def __post_init__(self) -> None:
        # a bad option value is the user's mistake: parse_pipeline turns a ValueError into one line
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {self.order!r}")

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        store = W.resolve_store(op) if self.check_store else None
        for func_op in op.walk():
            if not isinstance(func_op, func.FuncOp) or not func_op.body.blocks:
                continue
            block = func_op.body.blocks.first
            assert block is not None
            refs = [inner for inner in block.ops if isinstance(inner, WeightOp)]
            if not refs:
                continue
            kept: dict[tuple[str, str], WeightOp] = {}
            for ref in refs:
                key = (ref.sym.string_value(), str(ref.result.type))
                if store is not None and key[0] not in store:
                    raise OpError(ref, f"no tensor {key[0]} in the weight store {store.describe()}")
                first = kept.setdefault(key, ref)
                if first is not ref:  # the same tensor read again: use the first read
                    ref.result.replace_all_uses_with(first.result)
                    block.erase_op(ref)
            ordered = list(kept.values())
            if self.order == "symbol":
                ordered.sort(key=lambda ref: (ref.sym.string_value(), str(ref.result.type)))
            for ref in ordered:
                ref.detach()
            # the entry block still holds at least its terminator, so there is an op to insert before
            first_other = block.first_op
            assert first_other is not None
            block.insert_ops_before(ordered, first_other)
