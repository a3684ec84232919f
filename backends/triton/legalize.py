"""Make every computation of a module a kernel: fold what depends on weights alone, wrap the rest.

After fusion most of a model's work sits in ``ternary.kernel`` ops, but some ops stay at function
level: ``lower_bounds`` and ``row`` of a stored parameter, ``quant_weight`` of a float master (at
``-O0``), the token ``embedding``, and, in unfused IR, everything. The Triton target launches only
kernels and does no model arithmetic in PyTorch, so:

* an op whose operands are all weights (or folded values) is **folded** when the model is built:
  its value is computed once with the shared op semantics (``dialects.ternary.semantics``) and
  becomes a constant the runtime uploads like a weight;
* any other function-level op is **wrapped** in a kernel of its own, over a grid that splits its
  outermost dim (one batch row per program) and its last dim (blocks of 256) where the op's tiling
  rule lets it; the kernel verifier (the shared split rule) checks it, and an op it refuses runs as
  a single program.

The module is changed in place: work on a clone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.ir import Block, Operation, SSAValue
from xdsl.rewriter import Rewriter
from xdsl.utils.exceptions import VerifyException

from mmfc.dialects import ternary as T
from mmfc.dialects.weights import WeightStore

#: block size of a wrapped op's last dim
FEATURE_BLOCK = 256


@dataclass
class Legalized:
    """What :func:`legalize` left: ``constants`` (name -> host array in the representation of
    ``dialects/values.py``) and ``folded`` (each folded value -> its constant's name); ``wrapped``:
    the kernels made from single function-level ops -> the op's name."""

    constants: dict[str, Any] = field(default_factory=dict)
    folded: dict[SSAValue, str] = field(default_factory=dict)
    wrapped: dict[T.KernelOp, str] = field(default_factory=dict)


def read_weight(store: WeightStore, op: T.WeightOp) -> Any:
    """A stored weight as the host value of its IR type (float tensors as float32)."""
    from mmfc.dialects.values import value_dtype

    raw = store.get(op.sym.string_value())
    t = op.result.type
    if T.is_scale_type(t):
        return np.float32(raw) if not hasattr(t, "get_shape") else np.asarray(raw, dtype=np.float32)
    return np.ascontiguousarray(np.asarray(raw).astype(value_dtype(t), copy=False))


def legalize(module: ModuleOp, store: WeightStore) -> Legalized:
    """Fold and wrap the function-level ops of every function of ``module`` (module docstring)."""
    from mmfc.dialects.ternary.semantics import evaluate

    out = Legalized()
    for fn in [op for op in module.ops if isinstance(op, func.FuncOp)]:
        values: dict[SSAValue, Any] = {}  # host values of weights and folded ops
        for op in list(fn.body.block.ops):
            if isinstance(op, T.WeightOp):
                values[op.result] = read_weight(store, op)
                continue
            if isinstance(op, T.KernelOp | func.ReturnOp):
                continue
            if op.operands and all(v in values for v in op.operands):
                for r, value in zip(op.results, evaluate(op, *(values[v] for v in op.operands))):
                    values[r] = value
                    name = f"folded{len(out.constants)}"
                    out.constants[name] = value
                    out.folded[r] = name
                continue
            kernel = wrap(op)
            out.wrapped[kernel] = op.name
    return out


def wrap(op: Operation) -> T.KernelOp:
    """Replace function-level ``op`` by a kernel running it alone (module docstring); returns it."""
    if not isinstance(op, T.TiledOp):
        from mmfc.dialects.diagnostics import UserError

        raise UserError(f"the triton target cannot run {op.name} outside a kernel (it has no tiling rule)")
    rule = op.tile_rule()
    first = rule.results[0] if rule.results else ()
    operand_labels = {label for labels in rule.operands for label in labels}
    # the outermost dim (one batch row per program: the others are looped over in blocks) and the
    # feature dim, where the op lets a grid axis split them
    candidates = dict.fromkeys([*first[:1], *first[-1:]])
    axes = [label for label in candidates if label not in rule.whole and label in operand_labels]
    for candidate in (axes, []):
        kernel = _kernel_for(op, candidate, rule)
        try:
            kernel.verify()
        except VerifyException:
            kernel.erase(safe_erase=False)
            continue
        Rewriter.replace_op(op, kernel)
        return kernel
    raise AssertionError(f"{op.name}: not even a single-program kernel verifies")


def _kernel_for(op: Operation, axes: list[str], rule: Any) -> T.KernelOp:
    last = rule.results[0][-1] if rule.results and rule.results[0] else None
    grid = [FEATURE_BLOCK if label == last and len(rule.results[0]) > 1 else 1 for label in axes]

    def tile(labels: tuple[str, ...]) -> list[int | None]:
        return [axes.index(label) if label in axes else None for label in labels]

    in_tiles = [tile(labels) for labels in rule.operands]
    out_tiles = [tile(labels) for labels in rule.results]
    kernel = T.KernelOp(grid, list(op.operands), in_tiles, [r.type for r in op.results], out_tiles)
    block: Block = kernel.body.block
    inner = type(op).create(
        operands=list(block.args),
        result_types=[T.tile_type(r.type, T.TileMapAttr(t)) for r, t in zip(op.results, out_tiles)],
        properties=dict(op.properties),
        attributes=dict(op.attributes),
    )
    block.add_op(inner)
    block.add_op(T.YieldOp(*inner.results))
    kernel.attributes["label"] = StringAttr(op.name.removeprefix("ternary."))
    return kernel


__all__ = ["FEATURE_BLOCK", "Legalized", "legalize", "read_weight", "wrap"]
