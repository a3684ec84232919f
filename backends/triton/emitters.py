"""One emitter per body op: the Triton source of each ``ternary`` op, in one table (:data:`EMITTERS`).

An emitter reads its operands for the current row through the kernel :class:`~.kernelgen.Emitter`
(``e.value(v)``: a variable, loaded on first use), writes source lines at the op's loop level, and
defines its results. The arithmetic is that of ``dialects/numerics.py``, operation for operation, in
float32: correctly rounded ``tl.div_rn``/``tl.sqrt_rn`` wherever a division or a square root feeds a
rounding decision (the default ``/`` and ``tl.rsqrt`` are approximate on the GPU), reductions masked
to the row's real length, rounding half away from zero with :func:`round_half_away` (``tl`` has no
round). Kernels launch with floating-point contraction off, so ``f * h + x`` rounds twice as numpy
does. A new op is one entry here; an op without one is a compile error.
"""

from __future__ import annotations

from collections.abc import Callable

from xdsl.ir import Operation

from mmfc.dialects import ternary as T
from mmfc.dialects.numerics import ACT_QMAX, ACT_SCALE_FLOOR
from mmfc.backends.triton.kernelgen import Emitter

#: Source shared by every generated module (after ``import triton`` / ``import triton.language as tl``).
PRELUDE = '''
@triton.jit
def round_half_away(x):
    """Round half away from zero, exactly: t = trunc(x); t + sign(x) * (|x - t| >= 0.5)."""
    t = tl.where(x >= 0, tl.floor(x), tl.ceil(x))
    bump = (tl.abs(x - t) >= 0.5).to(tl.float32)
    sign = tl.where(x > 0, 1.0, tl.where(x < 0, -1.0, 0.0))
    return t + sign * bump


@triton.jit
def sigmoid(x):
    """1 / (1 + exp(-x)) in float32 (numerics.sigmoid)."""
    return tl.div_rn(1.0, 1.0 + tl.exp(-x))


@triton.jit
def trits_2bit(byte, k):
    """The trit of column k in its 2bit byte: code (byte >> 2 (k mod 4)) & 3; 1 -> +1, 2 -> -1."""
    code = (byte >> ((k % 4) * 2)) & 3
    return (code == 1).to(tl.int32) - (code == 2).to(tl.int32)


@triton.jit
def trits_base3(byte, k):
    """The trit of column k in its base3 byte: digit k mod 5 of the byte in base 3, minus 1."""
    p = k % 5
    power = tl.where(p == 0, 1, tl.where(p == 1, 3, tl.where(p == 2, 9, tl.where(p == 3, 27, 81))))
    return (byte // power) % 3 - 1
'''

Emit = Callable[[Emitter, Operation], None]


def _rstd(e: Emitter, level: int, x: str, space: object, eps: float) -> str:
    """The row's 1 / sqrt(mean(x^2) + eps), as numerics.rms_normalize computes it."""
    ss, var, rstd = e.fresh("ss"), e.fresh("var"), e.fresh("rstd")
    e.emit(level, f"{ss} = tl.sum(tl.where({e.mask(space)}, {x} * {x}, 0.0), axis=0)")  # type: ignore[arg-type]
    e.emit(level, f"{var} = tl.div_rn({ss}, {e.fsize(space)})")  # type: ignore[arg-type]
    e.emit(level, f"{rstd} = tl.div_rn(1.0, tl.sqrt_rn({var} + {eps!r}))")
    return rstd


def _unary(expr: str) -> Emit:
    def emit(e: Emitter, op: Operation) -> None:
        level = e.op_level(op)
        out = e.fresh("v")
        e.emit(level, f"{out} = " + expr.format(x=e.value(op.operands[0])))
        e.define(op.results[0], out)

    return emit


def _binary(expr: str) -> Emit:
    def emit(e: Emitter, op: Operation) -> None:
        level = e.op_level(op)
        a, b = e.value(op.operands[0]), e.value(op.operands[1])
        out = e.fresh("v")
        e.emit(level, f"{out} = " + expr.format(a=a, b=b))
        e.define(op.results[0], out)

    return emit


def emit_rmsnorm(e: Emitter, op: T.RMSNormOp) -> None:
    level = e.op_level(op)
    x, g = e.value(op.x), e.value(op.gamma)
    rstd = _rstd(e, level, x, e.feature(op.x), op.eps.value.data)
    out = e.fresh("y")
    e.emit(level, f"{out} = {x} * {rstd} * {g}")
    e.define(op.result, out)


def emit_rms_normalize(e: Emitter, op: T.RMSNormalizeOp) -> None:
    level = e.op_level(op)
    x = e.value(op.x)
    rstd = _rstd(e, level, x, e.feature(op.x), op.eps.value.data)
    out = e.fresh("y")
    e.emit(level, f"{out} = {x} * {rstd}")
    e.define(op.result, out)


def emit_residual_rmsnorm(e: Emitter, op: T.ResidualRMSNormOp) -> None:
    level = e.op_level(op)
    x, r, g = e.value(op.x), e.value(op.residual), e.value(op.gamma)
    total = e.fresh("sum")
    e.emit(level, f"{total} = {x} + {r}")
    rstd = _rstd(e, level, total, e.feature(op.x), op.eps.value.data)
    out = e.fresh("y")
    e.emit(level, f"{out} = {total} * {rstd} * {g}")
    e.define(op.normed, out)
    e.define(op.sum, total)


def emit_quant_act(e: Emitter, op: T.QuantActOp) -> None:
    level = e.op_level(op)
    x = e.value(op.x)
    space = e.feature(op.x)
    assert space is not None
    amax, s, q = e.fresh("amax"), e.fresh("sx"), e.fresh("q")
    e.emit(level, f"{amax} = tl.max(tl.where({e.mask(space)}, tl.abs({x}), 0.0), axis=0)")
    e.emit(level, f"{s} = tl.div_rn({ACT_QMAX!r}, tl.maximum({amax}, {ACT_SCALE_FLOOR!r}))")
    e.emit(level, f"{q} = tl.minimum(tl.maximum(round_half_away({x} * {s}), -128.0), 127.0).to(tl.int8)")
    e.define(op.q, q)
    e.define(op.scale, s)


def emit_accum(e: Emitter, op: T.AccumOp) -> None:
    """acc[n] = sum_k q[k] * trit[n, k], exactly in int32, as additions and subtractions of int8
    activations selected by the trits (unpacked from their bytes in registers), over K in chunks.

    The activations come from a scratch row when the kernel computed them (a register block cannot be
    sliced), or straight from memory when they are a kernel operand."""
    level = e.op_level(op)
    k_space = e.feature(op.x)
    n_space = e.feature(op.acc)
    assert k_space is not None and n_space is not None
    w = e.held[op.weight]
    if w.kind != "weight":
        raise_unsupported(e, op, "its weight must be a kernel operand (packed or trits)")
    k = e.size(k_space)
    chunk = min(64, k_space.pow2_block)
    xq = e.held[op.x]
    acc = e.fresh("acc")
    if xq.kind == "reg":
        base = e.new_scratch(k_space)
        e.emit(level, f"tl.store({base} + {e.offs(k_space)}, {xq.var}, mask={e.mask(k_space)})")
        e.emit(level, "tl.debug_barrier()")
        q_at = f"{base} + kk"
    else:
        q_at = f"{e.ptr(xq.operand)} + {e.row_offset(op.x, 'kk')}"
    if w.format == "trits":
        row_bytes, byte_at, decode = k, "kk", "{byte}"
    else:
        per = 4 if w.format == "2bit" else 5
        row_bytes, byte_at = f"(({k} + {per - 1}) // {per})", f"kk // {per}"
        decode = f"trits_{w.format}({{byte}}, kk[None, :])"
    rows = e.offs(n_space)
    e.emit(level, f"{acc} = tl.zeros([{n_space.pow2_block}], dtype=tl.int32)")
    e.emit(level, f"for k0 in range(0, {k}, {chunk}):")
    body = [
        f"kk = k0 + tl.arange(0, {chunk})",
        f"mk = kk < {k}",
        f"qc = tl.load({q_at}, mask=mk, other=0).to(tl.int32)",
        f"wb = tl.load({e.ptr(w.operand)} + {rows}[:, None] * {row_bytes} + ({byte_at})[None, :], "
        f"mask={e.mask(n_space)}[:, None] & mk[None, :], other=0).to(tl.int32)",
        f"tr = {decode.format(byte='wb')}",
        "qb = tl.broadcast_to(qc[None, :], tr.shape)",
        f"{acc} += tl.sum(tl.where(tr > 0, qb, tl.where(tr < 0, -qb, 0)), axis=1)",
    ]
    for line in body:
        e.emit(level, "    " + line)
    if xq.kind == "reg":
        e.emit(level, "tl.debug_barrier()")  # the next row may overwrite the scratch row
    e.define(op.acc, acc)


def emit_dequant(e: Emitter, op: T.DequantOp) -> None:
    level = e.op_level(op)
    acc, s, ws = e.value(op.acc), e.value(op.x_scale), e.value(op.weight_scale)
    out = e.fresh("y")
    e.emit(level, f"{out} = tl.div_rn({acc}.to(tl.float32), {s} * tl.div_rn(1.0, {ws}))")
    e.define(op.result, out)


def emit_gate_norm(e: Emitter, op: T.GateNormOp) -> None:
    level = e.op_level(op)
    g, h, gamma = e.value(op.g), e.value(op.h), e.value(op.gamma)
    rstd = _rstd(e, level, g, e.feature(op.g), op.eps.value.data)
    out = e.fresh("o")
    e.emit(level, f"{out} = {g} * {rstd} * {gamma} * {h} * sigmoid({h})")
    e.define(op.result, out)


def emit_mask(e: Emitter, op: T.MaskOp) -> None:
    level = e.op_level(op)
    x, m = e.value(op.x), e.value(op.mask)
    out = e.fresh("v")
    e.emit(level, f"{out} = {x} * {m}.to(tl.float32)")
    e.define(op.result, out)


def emit_scan(e: Emitter, op: T.ScanOp) -> None:
    """h_t = f_t * h_{t-1} + x_t, in order over time inside the program: the state is a register
    block carried by the time loop, started from h0 (or zeros) before it, left after it."""
    inner = e.op_level(op)
    outer = e.level(op.h_last)
    space = e.feature(op.x)
    assert space is not None
    state = e.fresh("state")
    if op.h0 is not None:
        e.emit(outer, f"{state} = {e.value(op.h0)}")
    else:
        e.emit(outer, f"{state} = tl.zeros([{space.pow2_block}], dtype=tl.float32)")
    x, f = e.value(op.x), e.value(op.f)
    e.emit(inner, f"{state} = {f} * {state} + {x}")
    h = e.fresh("h")
    e.emit(inner, f"{h} = {state}")
    e.define(op.h, h)
    e.define(op.h_last, state, post=True, level=outer)


def emit_scan_step(e: Emitter, op: T.ScanStepOp) -> None:
    level = e.op_level(op)
    x, f, h = e.value(op.x), e.value(op.f), e.value(op.h)
    out = e.fresh("h")
    e.emit(level, f"{out} = {f} * {h} + {x}")
    e.define(op.result, out)


def emit_embedding(e: Emitter, op: T.EmbeddingOp) -> None:
    level = e.op_level(op)
    table = e.held[op.table]
    ids = e.value(op.ids)
    space = e.feature(op.result)
    assert space is not None and table.kind == "mem"
    d = e.size(space)
    out = e.fresh("emb")
    e.emit(
        level,
        f"{out} = tl.load({e.ptr(table.operand)} + {ids} * {d} + {e.offs(space)}, mask={e.mask(space)}, other=0)"
        ".to(tl.float32)",
    )
    e.define(op.result, out)


def emit_split(e: Emitter, op: T.SplitOp) -> None:
    part = e.feature(op.parts[0])
    assert part is not None
    for i, r in enumerate(op.parts):
        e.view(r, op.input, "0" if i == 0 else f"{i} * {e.size(part)}")


def emit_unpack(e: Emitter, op: T.UnpackOp) -> None:
    e.held[op.trits] = e.held[op.packed]  # accum reads the packed bytes and unpacks them in registers


def raise_unsupported(e: Emitter, op: Operation, why: str) -> None:
    from mmfc.dialects.diagnostics import UserError

    raise UserError(f"the triton target cannot generate {op.name} in kernel {e.label}: {why}")


EMITTERS: dict[type[Operation], Emit] = {
    T.RMSNormOp: emit_rmsnorm,  # type: ignore[dict-item]
    T.RMSNormalizeOp: emit_rms_normalize,  # type: ignore[dict-item]
    T.ScaleOp: _binary("{a} * {b}"),
    T.ResidualRMSNormOp: emit_residual_rmsnorm,  # type: ignore[dict-item]
    T.QuantActOp: emit_quant_act,  # type: ignore[dict-item]
    T.AccumOp: emit_accum,  # type: ignore[dict-item]
    T.DequantOp: emit_dequant,  # type: ignore[dict-item]
    T.SigmoidOp: _unary("sigmoid({x})"),
    T.SiluOp: _unary("{x} * sigmoid({x})"),
    T.OneMinusOp: _unary("1.0 - {x}"),
    T.SiluMulOp: _binary("tl.div_rn({a} * {b}, 1.0 + tl.exp(-{a}))"),
    T.MulOp: _binary("{a} * {b}"),
    T.AddOp: _binary("{a} + {b}"),
    T.SubOp: _binary("{a} - {b}"),
    T.ScanStepOp: emit_scan_step,  # type: ignore[dict-item]
    T.LowerBoundOp: _binary("{b} + (1.0 - {b}) * {a}"),
    T.GateNormOp: emit_gate_norm,  # type: ignore[dict-item]
    T.MaskOp: emit_mask,  # type: ignore[dict-item]
    T.ScanOp: emit_scan,  # type: ignore[dict-item]
    T.EmbeddingOp: emit_embedding,  # type: ignore[dict-item]
    T.SplitOp: emit_split,  # type: ignore[dict-item]
    T.UnpackOp: emit_unpack,  # type: ignore[dict-item]
}
"""op type -> emitter. Not here, by design: ``weight`` (kernel operands), ``quant_weight``,
``lower_bounds`` and ``row`` (weight-only: folded when the model is built, see :mod:`.legalize`)."""


__all__ = ["EMITTERS", "PRELUDE"]
