"""The op -> numerics table: what every ``ternary`` compute op means, in numpy.

``SEMANTICS[type(op)](op, *args)`` computes ``op``'s results from its operands' values by calling the
function of :mod:`mmfc.dialects.numerics` the op's docstring names, reading the op's properties and
types where the meaning depends on them (``eps``, the row index, the number of split parts, a packed
weight's format and K, a weight scale's type). Values are held as :mod:`mmfc.dialects.values`
describes (f32 / int8 / int32 / int64 arrays, uint8 packed bytes, ``np.float32`` for an ``f32`` weight
scale, a 0-d array for ``tensor<f32>``); every entry returns the tuple of results.

Not in the table: ``weight`` (its value is in the weight store), ``kernel`` and ``yield`` (a backend
runs a kernel's body per program, see :mod:`.tiling`). The table holds the meaning only: a backend
adds its own run-time checks (dims that agree, ids in range, ...) around :func:`evaluate`. A
``ValueError`` from an entry is a problem of the inputs (bytes that are no packed trits, a K that
cannot be known).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from xdsl.dialects.builtin import TensorType
from xdsl.ir import Attribute, Operation

from mmfc.dialects import numerics as nm
from mmfc.dialects.ternary.bitlinear import (
    AccumOp,
    DequantOp,
    QuantActOp,
    QuantWeightOp,
    ResidualRMSNormOp,
    RMSNormalizeOp,
    RMSNormOp,
    ScaleOp,
    UnpackOp,
)
from mmfc.dialects.ternary.elementwise import AddOp, MulOp, OneMinusOp, SigmoidOp, SiluMulOp, SiluOp, SubOp
from mmfc.dialects.ternary.indexing import EmbeddingOp, RowOp, SplitOp
from mmfc.dialects.ternary.mlgru import GateNormOp, LowerBoundOp, LowerBoundsOp, MaskOp, ScanOp, ScanStepOp
from mmfc.dialects.ternary.types import DYN, PackedType, shape_of

Semantics = Callable[..., tuple[Any, ...]]
"""``(op, *operand values) -> result values``."""


def weight_scale_value(scale: Any, t: Attribute) -> Any:
    """A weight scale as a value of type ``t``: ``f32`` -> ``np.float32``, ``tensor<f32>`` -> 0-d array."""
    return np.asarray(scale, dtype=np.float32) if isinstance(t, TensorType) else np.float32(scale)


def _quant_weight(op: QuantWeightOp, master: np.ndarray) -> tuple[Any, ...]:
    trits, scale = nm.quant_weight(master)
    return trits, weight_scale_value(scale, op.scale.type)


def _unpack(op: UnpackOp, packed: np.ndarray) -> tuple[Any, ...]:
    assert isinstance(op.packed.type, PackedType)
    for t in (op.trits.type, op.packed.type):
        if (k := shape_of(t)[1]) != DYN:
            return (nm.unpack(packed, k, op.packed.type.format.data),)
    raise ValueError("cannot unpack a packed weight whose K is dynamic")


def _accum(op: AccumOp, x: np.ndarray, w: np.ndarray) -> tuple[Any, ...]:
    wt = op.weight.type
    if isinstance(wt, PackedType):  # accum(q, unpack(w)); a tile's dynamic K is the activation's
        k = shape_of(wt)[1]
        w = nm.unpack(w, x.shape[-1] if k == DYN else k, wt.format.data)
    return (nm.accum(x, w),)


def _scan(op: ScanOp, x: np.ndarray, f: np.ndarray, h0: np.ndarray | None = None) -> tuple[Any, ...]:
    return nm.scan(x, f, h0)


def _split(op: SplitOp, x: np.ndarray) -> tuple[Any, ...]:
    # equal consecutive parts of the last axis (indexing: no numerics function)
    return tuple(np.split(x, len(op.parts), axis=-1))


def _row(op: RowOp, x: np.ndarray) -> tuple[Any, ...]:
    return (x[op.index.value.data],)


SEMANTICS: dict[type[Operation], Semantics] = {
    QuantWeightOp: _quant_weight,
    UnpackOp: _unpack,
    RMSNormOp: lambda op, x, gamma: (nm.rmsnorm(x, gamma, op.eps.value.data),),
    RMSNormalizeOp: lambda op, x: (nm.rms_normalize(x, op.eps.value.data),),
    ScaleOp: lambda op, x, gamma: (nm.scale(x, gamma),),
    ResidualRMSNormOp: lambda op, x, r, gamma: nm.residual_rmsnorm(x, r, gamma, op.eps.value.data),
    QuantActOp: lambda op, x: nm.quant_act(x),
    AccumOp: _accum,
    DequantOp: lambda op, acc, s, ws: (nm.dequant(acc, s, ws),),
    SigmoidOp: lambda op, x: (nm.sigmoid(x),),
    SiluOp: lambda op, x: (nm.silu(x),),
    OneMinusOp: lambda op, x: (nm.one_minus(x),),
    SiluMulOp: lambda op, gate, up: (nm.silu_mul(gate, up),),
    MulOp: lambda op, a, b: (nm.mul(a, b),),
    AddOp: lambda op, a, b: (nm.add(a, b),),
    SubOp: lambda op, a, b: (nm.sub(a, b),),
    ScanStepOp: lambda op, x, f, h: (nm.scan_step(x, f, h),),
    LowerBoundOp: lambda op, x, lb: (nm.lower_bound(x, lb),),
    GateNormOp: lambda op, g, h, gamma: (nm.gate_norm(g, h, gamma, op.eps.value.data),),
    MaskOp: lambda op, x, mask: (nm.apply_mask(x, mask),),
    ScanOp: _scan,
    EmbeddingOp: lambda op, table, ids: (nm.embedding(table, ids),),
    LowerBoundsOp: lambda op, p: (nm.lower_bounds(p),),
    SplitOp: _split,
    RowOp: _row,
}
"""The meaning of every ternary op but ``weight``, ``kernel`` and ``yield``."""


def has_semantics(op_type: type[Operation]) -> bool:
    """Whether :data:`SEMANTICS` has an entry for ``op_type``."""
    return op_type in SEMANTICS


def evaluate(op: Operation, *args: Any) -> tuple[Any, ...]:
    """``op``'s results for operand values ``args`` (see the module docstring for the values).

    Raises ``NotImplementedError`` for an op without an entry (``ternary.weight``, ``kernel``,
    ``yield``, ops of other dialects) and ``ValueError`` for inputs the op cannot compute on.
    """
    semantics = SEMANTICS.get(type(op))
    if semantics is None:
        raise NotImplementedError(
            f"{op.name} has no entry in the ternary semantics table (weights are read from the weight "
            "store; a backend runs kernels and yields)"
        )
    return tuple(semantics(op, *args))


__all__ = ["SEMANTICS", "Semantics", "evaluate", "has_semantics", "weight_scale_value"]
