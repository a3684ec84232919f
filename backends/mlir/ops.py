"""One lowering rule per ``ternary`` op: the op on whole tensors as upstream ``linalg.generic`` (plus
``tensor`` views and an ``scf.for`` for the scan), computing what :mod:`mmfc.dialects.numerics` says.

:data:`RULES` maps an op class to ``rule(e, op, operands) -> results``: ``e`` emits at the point
the op is lowered to, ``operands`` are the upstream values of the op's operands, the results are the
upstream values of its results. Shapes come from the upstream operands (a kernel body's tile types
are not used: the body runs on the kernel's whole operands, which computes the same values because
no program needs another's). The arithmetic follows numerics.py operation by operation, in f32:

* RMSNorm: ``rstd = 1 / sqrt(sum(x*x)/n + eps)`` per row, then ``x * rstd``, then ``* gamma``;
* activation quantization: ``s = 127 / max(max|x|, 1e-5)``, ``q = clamp(round_half_away(x*s))``
  with ``t = trunc(v); r = t + sign(v) * (|v - t| >= 0.5)``, never ``floor(v + 0.5)``;
* dequantization: ``acc / (s * (1 / weight_scale))``;
* sigmoid ``1 / (1 + exp(-x))``, ``silu_mul`` ``x * y / (1 + exp(-x))``, the gates and the scan.

Only the summation order of reductions, ``exp`` (a polynomial in MLIR) and the multiply-adds IREE
fuses differ from numpy, by a few ulps: integers (``quant_act``'s q, ``accum``) are exact given the
same float inputs. The ternary accumulation is :mod:`.accum`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from xdsl.dialects.builtin import IntegerType, f32, i8
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.ir.affine import AffineMap

from mmfc.dialects import ternary as T
from mmfc.dialects.diagnostics import UserError
from mmfc.backends.mlir.accum import QuantizedFrom, lower_accum, lower_unpack
from mmfc.backends.mlir.emit import PARALLEL, REDUCTION, Emitter, affine, identity, shape, tensor_type
from mmfc.backends.mlir.scalar import quantize, sigmoid

Rule = Callable[[Emitter, Operation, Sequence[SSAValue]], list[SSAValue]]

FULL, FEATURE, ROW, SCALAR = "full", "feature", "row", "scalar"
"""How an operand of a row-wise op is indexed: like the result, by the last axis ([K] vectors such as
gamma), by the rows ([..., rows] values such as per-row scales and masks), or not at all (0-d)."""


def _map(kind: str, rank: int) -> AffineMap:
    if kind == FULL:
        return identity(rank)
    if kind == FEATURE:
        return affine(rank, [rank - 1])
    if kind == ROW:
        return affine(rank, list(range(rank - 1)))
    return affine(rank, [])


def elementwise(
    e: Emitter,
    like: SSAValue,
    operands: Sequence[tuple[SSAValue, str]],
    body: Callable[..., SSAValue],
    out_element: Attribute = f32,
) -> SSAValue:
    """A parallel ``linalg.generic`` with the shape of ``like``: ``body(e, *scalars)`` per element,
    each operand indexed as its kind says (float operands arrive as f32)."""
    sizes = e.sizes(like)
    rank = len(sizes)
    out = e.empty(sizes, out_element)

    def inner(b: Emitter, args: Sequence[SSAValue]) -> list[SSAValue]:
        scalars = [b.to_f32(a) if not isinstance(a.type, IntegerType) else a for a in args[: len(operands)]]
        return [body(b, *scalars)]

    inputs = [(v, _map(kind, rank)) for v, kind in operands]
    return e.generic(rank, inputs, [(out, identity(rank))], [PARALLEL] * rank, inner)[0]


def reduce_rows(e: Emitter, x: SSAValue, init: float, combine: Callable[[Emitter, SSAValue, SSAValue], SSAValue]) -> SSAValue:
    """Reduce the last axis of ``x [..., K]`` to ``[...]`` in f32: ``acc = combine(b, acc, x_k)`` from
    ``init``, over k in the order IREE's vectorized loops choose (lanes, then across them)."""
    sizes = e.sizes(x)
    rank = len(sizes)
    out = e.filled(sizes[:-1], f32, e.f32(init))

    def inner(b: Emitter, args: Sequence[SSAValue]) -> list[SSAValue]:
        return [combine(b, args[1], b.to_f32(args[0]))]

    iterators = [PARALLEL] * (rank - 1) + [REDUCTION]
    return e.generic(rank, [(x, identity(rank))], [(out, affine(rank, list(range(rank - 1))))], iterators, inner)[0]


def per_row(e: Emitter, rows: SSAValue, body: Callable[..., SSAValue]) -> SSAValue:
    """A parallel generic over a per-row value ``rows [...]``."""
    return elementwise(e, rows, [(rows, FULL)], body)


# ------------------------------------------------------------------------------------ the arithmetic


def rstd_of(e: Emitter, x: SSAValue, eps: float) -> SSAValue:
    """``1 / sqrt(sum(x*x) / n + eps)`` per row of ``x [..., n]``, as ``[...]``."""
    n = shape(x)[-1]
    squares = reduce_rows(e, x, 0.0, lambda b, acc, v: b.addf(acc, b.mulf(v, v)))
    return per_row(e, squares, lambda b, s: b.divf(b.f32(1.0), b.sqrt(b.addf(b.divf(s, b.f32(float(n))), b.f32(eps)))))


def _eps(op: Operation) -> float:
    return float(op.eps.value.data)  # type: ignore[attr-defined]


def rmsnorm(e: Emitter, x: SSAValue, gamma: SSAValue, eps: float) -> SSAValue:
    """``(x * rstd) * gamma``."""
    rstd = rstd_of(e, x, eps)
    return elementwise(e, x, [(x, FULL), (rstd, ROW), (gamma, FEATURE)], lambda b, v, r, g: b.mulf(b.mulf(v, r), g))


# ------------------------------------------------------------------------------------ rules


def _rmsnorm(e: Emitter, op: Operation, args: Sequence[SSAValue]) -> list[SSAValue]:
    return [rmsnorm(e, args[0], args[1], _eps(op))]


def _rms_normalize(e: Emitter, op: Operation, args: Sequence[SSAValue]) -> list[SSAValue]:
    x = args[0]
    rstd = rstd_of(e, x, _eps(op))
    return [elementwise(e, x, [(x, FULL), (rstd, ROW)], lambda b, v, r: b.mulf(v, r))]


def _scale(e: Emitter, op: Operation, args: Sequence[SSAValue]) -> list[SSAValue]:
    x, gamma = args
    return [elementwise(e, x, [(x, FULL), (gamma, FEATURE)], lambda b, v, g: b.mulf(v, g))]


def _residual_rmsnorm(e: Emitter, op: Operation, args: Sequence[SSAValue]) -> list[SSAValue]:
    x, r, gamma = args
    total = elementwise(e, x, [(x, FULL), (r, FULL)], lambda b, u, v: b.addf(u, v))
    return [rmsnorm(e, total, gamma, _eps(op)), total]


def _quant_act(e: Emitter, op: Operation, args: Sequence[SSAValue]) -> list[SSAValue]:
    x = args[0]
    amax = reduce_rows(e, x, 0.0, lambda b, acc, v: b.maximumf(acc, b.absf(v)))
    s = per_row(e, amax, lambda b, m: b.divf(b.f32(127.0), b.maximumf(m, b.f32(1e-5))))

    q = elementwise(e, x, [(x, FULL), (s, ROW)], quantize, out_element=i8)
    e.facts[q] = QuantizedFrom(x, s)  # accum may quantize inline where it reads q (accum.planes)
    return [q, e.expand_last(s)]


def _dequant(e: Emitter, op: Operation, args: Sequence[SSAValue]) -> list[SSAValue]:
    acc, sx, ws = args
    rows = e.collapse_last(sx)

    def body(b: Emitter, a: SSAValue, s: SSAValue, w: SSAValue) -> SSAValue:
        s_w = b.divf(b.f32(1.0), w)
        return b.divf(b.sitofp(a), b.mulf(s, s_w))

    return [elementwise(e, acc, [(acc, FULL), (rows, ROW), (ws, SCALAR)], body)]


def _unary(fn: Callable[[Emitter, SSAValue], SSAValue]) -> Rule:
    return lambda e, op, args: [elementwise(e, args[0], [(args[0], FULL)], fn)]


def _binary(fn: Callable[[Emitter, SSAValue, SSAValue], SSAValue]) -> Rule:
    return lambda e, op, args: [elementwise(e, args[0], [(args[0], FULL), (args[1], FULL)], fn)]


def _silu_mul(b: Emitter, x: SSAValue, y: SSAValue) -> SSAValue:
    """``x * y / (1 + exp(-x))`` (numerics.silu_mul's order)."""
    one = b.f32(1.0)
    return b.divf(b.mulf(x, y), b.addf(one, b.exp(b.negf(x))))


def _lower_bound(e: Emitter, op: Operation, args: Sequence[SSAValue]) -> list[SSAValue]:
    x, lb = args
    return [elementwise(e, x, [(x, FULL), (lb, FEATURE)], lambda b, v, l: b.addf(l, b.mulf(b.subf(b.f32(1.0), l), v)))]


def _mask(e: Emitter, op: Operation, args: Sequence[SSAValue]) -> list[SSAValue]:
    x, m = args

    def body(b: Emitter, v: SSAValue, keep: SSAValue) -> SSAValue:
        return b.mulf(v, b.sitofp(keep) if isinstance(keep.type, IntegerType) else keep)

    return [elementwise(e, x, [(x, FULL), (m, ROW)], body)]


def _scan_step(e: Emitter, op: Operation, args: Sequence[SSAValue]) -> list[SSAValue]:
    x, f, h = args
    return [elementwise(e, x, [(x, FULL), (f, FULL), (h, FULL)], lambda b, xv, fv, hv: b.addf(b.mulf(fv, hv), xv))]


def _gate_norm(e: Emitter, op: Operation, args: Sequence[SSAValue]) -> list[SSAValue]:
    g, h, gamma = args
    y = rmsnorm(e, g, gamma, _eps(op))
    return [elementwise(e, y, [(y, FULL), (h, FULL)], lambda b, yv, hv: b.mulf(b.mulf(yv, hv), sigmoid(b, hv)))]


def _scan(e: Emitter, op: Operation, args: Sequence[SSAValue]) -> list[SSAValue]:
    """``h_t = f_t * h_{t-1} + x_t`` over time: an ``scf.for`` over t, one step (a generic) each."""
    x, f = args[0], args[1]
    b_size, t_size, d_size = e.sizes(x)
    h0 = args[2] if len(args) > 2 else e.filled([b_size, d_size], f32, e.f32(0.0))
    out = e.empty([b_size, t_size, d_size], f32)
    upper = t_size if not isinstance(t_size, int) else e.index(t_size)

    def step(b: Emitter, t: SSAValue, carried: Sequence[SSAValue]) -> list[SSAValue]:
        h, seq = carried
        xt = b.slice(x, [0, t, 0], [b_size, 1, d_size], drop=[1])
        ft = b.slice(f, [0, t, 0], [b_size, 1, d_size], drop=[1])
        h_next = elementwise(b, xt, [(xt, FULL), (ft, FULL), (h, FULL)], lambda s, xv, fv, hv: s.addf(s.mulf(fv, hv), xv))
        return [h_next, b.insert_slice(h_next, seq, [0, t, 0], [b_size, 1, d_size])]

    h_start = e.cast(h0, tensor_type([b_size, d_size], f32))
    h_last, seq = e.for_loop(e.index(0), upper, [h_start, out], step)
    return [seq, h_last]


def _embedding(e: Emitter, op: Operation, args: Sequence[SSAValue]) -> list[SSAValue]:
    table, ids = args
    id_sizes = e.sizes(ids)
    d = shape(table)[1]
    rank = len(id_sizes) + 1
    out = e.empty([*id_sizes, d], f32)

    def body(b: Emitter, scalars: Sequence[SSAValue]) -> list[SSAValue]:
        row = b.index_cast(scalars[0])
        return [b.to_f32(b.extract(table, [row, b.loop_index(rank - 1)]))]

    return e.generic(rank, [(ids, affine(rank, list(range(rank - 1))))], [(out, identity(rank))], [PARALLEL] * rank, body)


def _split(e: Emitter, op: Operation, args: Sequence[SSAValue]) -> list[SSAValue]:
    x = args[0]
    sizes = e.sizes(x)
    parts = len(op.results)
    width = shape(x)[-1] // parts
    return [e.slice(x, [0] * (len(sizes) - 1) + [i * width], [*sizes[:-1], width]) for i in range(parts)]


def _row(e: Emitter, op: Operation, args: Sequence[SSAValue]) -> list[SSAValue]:
    x = args[0]
    sizes = e.sizes(x)
    index = op.index.value.data  # type: ignore[attr-defined]
    return [e.slice(x, [index] + [0] * (len(sizes) - 1), [1, *sizes[1:]], drop=[0])]


def _lower_bounds(e: Emitter, op: Operation, args: Sequence[SSAValue]) -> list[SSAValue]:
    """softmax over the layer axis, then ``cumsum - s[0]`` (the cumulative sum as a reduction over
    l' <= l, added in order)."""
    p = args[0]
    n_layers, d = shape(p)
    col_max = _reduce_axis0(e, p, float("-inf"), lambda b, acc, v: b.maximumf(acc, v))
    ex = elementwise(e, p, [(p, FULL), (col_max, FEATURE)], lambda b, v, m: b.exp(b.subf(v, m)))
    total = _reduce_axis0(e, ex, 0.0, lambda b, acc, v: b.addf(acc, v))
    s = elementwise(e, ex, [(ex, FULL), (total, FEATURE)], lambda b, v, t: b.divf(v, t))
    out = e.filled([n_layers, d], f32, e.f32(0.0))

    def cum(b: Emitter, args: Sequence[SSAValue]) -> list[SSAValue]:
        keep = b.cmpi("ule", b.loop_index(2), b.loop_index(0))
        return [b.select(keep, b.addf(args[1], args[0]), args[1])]

    maps = [affine(3, [2, 1]), affine(3, [0, 1])]
    cumsum = e.generic(3, [(s, maps[0])], [(out, maps[1])], [PARALLEL, PARALLEL, REDUCTION], cum)[0]
    first = e.slice(s, [0, 0], [1, d], drop=[0])
    return [elementwise(e, cumsum, [(cumsum, FULL), (first, FEATURE)], lambda b, c, f0: b.subf(c, f0))]


def _reduce_axis0(e: Emitter, x: SSAValue, init: float, combine: Callable[[Emitter, SSAValue, SSAValue], SSAValue]) -> SSAValue:
    d = shape(x)[1]
    out = e.filled([d], f32, e.f32(init))
    return e.generic(
        2, [(x, identity(2))], [(out, affine(2, [1]))], [REDUCTION, PARALLEL],
        lambda b, args: [combine(b, args[1], b.to_f32(args[0]))],
    )[0]


def _quant_weight(e: Emitter, op: Operation, args: Sequence[SSAValue]) -> list[SSAValue]:
    raise UserError(
        "the iree-cpu target quantizes weights only when they are stored: quant_weight of a value that is "
        "not a weight cannot run (its float64 mean has no exact f32 equivalent)"
    )


RULES: dict[type[Operation], Rule] = {
    T.RMSNormOp: _rmsnorm,
    T.RMSNormalizeOp: _rms_normalize,
    T.ScaleOp: _scale,
    T.ResidualRMSNormOp: _residual_rmsnorm,
    T.QuantActOp: _quant_act,
    T.AccumOp: lambda e, op, args: [lower_accum(e, op, args[0], args[1])],
    T.UnpackOp: lambda e, op, args: [lower_unpack(e, op, args[0])],
    T.DequantOp: _dequant,
    T.SigmoidOp: _unary(sigmoid),
    T.SiluOp: _unary(lambda b, x: b.mulf(x, sigmoid(b, x))),
    T.OneMinusOp: _unary(lambda b, x: b.subf(b.f32(1.0), x)),
    T.SiluMulOp: _binary(_silu_mul),
    T.MulOp: _binary(lambda b, x, y: b.mulf(x, y)),
    T.AddOp: _binary(lambda b, x, y: b.addf(x, y)),
    T.SubOp: _binary(lambda b, x, y: b.subf(x, y)),
    T.LowerBoundOp: _lower_bound,
    T.MaskOp: _mask,
    T.ScanStepOp: _scan_step,
    T.GateNormOp: _gate_norm,
    T.ScanOp: _scan,
    T.EmbeddingOp: _embedding,
    T.SplitOp: _split,
    T.RowOp: _row,
    T.LowerBoundsOp: _lower_bounds,
    T.QuantWeightOp: _quant_weight,
}
"""Every ternary op but ``weight``, ``kernel`` and ``yield`` (which the module lowering handles)."""


def lower_op(e: Emitter, op: Operation, operands: Sequence[SSAValue]) -> list[SSAValue]:
    """The upstream values of ``op``'s results (see the module docstring)."""
    rule = RULES.get(type(op))
    if rule is None:
        raise UserError(f"the iree-cpu target cannot lower {op.name}")
    return rule(e, op, operands)


__all__ = ["RULES", "Rule", "elementwise", "lower_op", "reduce_rows", "rmsnorm"]
