"""One emitter per body op: the Triton source of each ``ternary`` op, in one table (:data:`EMITTERS`).

An emitter reads its operands for the current tile through the kernel :class:`~.kernelgen.Emitter`
(``e.value(v)``: a variable, loaded on first use; ``e.shaped(...)`` broadcasts it: a value of one row
is ``[BLOCK_ROWS, BLOCK_F]``, a per-row scalar ``[BLOCK_ROWS]``, a constant vector ``[BLOCK_F]``),
writes source lines where the op lives (``e.emit``), and defines its results. The arithmetic is that
of ``dialects/numerics.py``, operation for operation, in float32: correctly rounded
``tl.div_rn``/``tl.sqrt_rn`` wherever a division or a square root feeds a rounding decision (the
default ``/`` and ``tl.rsqrt`` are approximate on the GPU), reductions masked to the row's real
length, rounding half away from zero with ``round_half_away`` (``tl`` has no round). Kernels launch
with floating-point contraction off, so ``f * h + x`` rounds twice as numpy does. A new op is one
entry here; an op without one is a compile error.
"""

from __future__ import annotations

from collections.abc import Callable

from xdsl.ir import Operation, SSAValue

from mmfc.dialects import ternary as T
from mmfc.dialects.diagnostics import UserError
from mmfc.dialects.numerics import ACT_QMAX, ACT_SCALE_FLOOR, PACK_FORMATS, packed_row_bytes
from mmfc.backends.triton.analysis import Space, next_pow2
from mmfc.backends.triton.kernelgen import CONST, INDENT, ROWS, Emitter

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
def bit_or(a, b):
    return a | b


@triton.jit
def dp4a(a, b, c, ASM: tl.constexpr):
    """c + the dot product of the four signed bytes of a and b, lane by lane (int32 tiles of one
    shape): one ``dp4a`` instruction when compiled for a GPU, the same sum written out otherwise."""
    if ASM:
        r = tl.inline_asm_elementwise("dp4a.s32.s32 $0, $1, $2, $3;", "=r,r,r,r", [a, b, c], dtype=tl.int32,
                                      is_pure=True, pack=1)
    else:
        r = c
        for i in tl.static_range(4):
            r += ((a << (24 - 8 * i)) >> 24) * ((b << (24 - 8 * i)) >> 24)
    return r


@triton.jit
def add_sub(trits, x):
    """x where the trit is +1, -x where it is -1, 0 where it is 0: int32, exact."""
    return tl.where(trits > 0, x, tl.where(trits < 0, -x, 0))
'''

Emit = Callable[[Emitter, Operation], None]


def _out_shape(e: Emitter, op: Operation) -> str:
    return e.shape_of(op.results[0])


def _reduce(e: Emitter, x: SSAValue) -> tuple[int, str]:
    """The axis a row reduction of ``x`` runs over, and how its per-row result broadcasts back."""
    return (1, "[:, None]") if e.shape_of(x) == "2d" else (0, "")


def _rstd(e: Emitter, where: str, x: SSAValue, var: str, eps: float) -> str:
    """The rows' ``1 / sqrt(mean(x^2) + eps)``, as numerics.rms_normalize computes it."""
    space = e.feature(x)
    assert space is not None
    axis, _ = _reduce(e, x)
    ss, mean, rstd = e.fresh("ss"), e.fresh("var"), e.fresh("rstd")
    e.emit(where, f"{ss} = tl.sum(tl.where({e.mask_of(x)}, {var} * {var}, 0.0), axis={axis})")
    e.emit(where, f"{mean} = tl.div_rn({ss}, {e.fsize(space)})")
    e.emit(where, f"{rstd} = tl.div_rn(1.0, tl.sqrt_rn({mean} + {eps!r}))")
    return rstd


def _elementwise(expr: str) -> Emit:
    """An op whose result is ``expr`` of its operands ``{0}``, ``{1}``, ... (broadcast to the result)."""

    def emit(e: Emitter, op: Operation) -> None:
        where, shape = e.op_where(op), _out_shape(e, op)
        args = [e.shaped(v, e.value(v), shape) for v in op.operands]
        out = e.fresh("v")
        e.emit(where, f"{out} = " + expr.format(*args))
        e.define(op.results[0], out)

    return emit


def emit_rmsnorm(e: Emitter, op: T.RMSNormOp) -> None:
    where, shape = e.op_where(op), _out_shape(e, op)
    x = e.value(op.x)
    g = e.shaped(op.gamma, e.value(op.gamma), shape)
    rstd = _rstd(e, where, op.x, x, op.eps.value.data)
    out = e.fresh("y")
    e.emit(where, f"{out} = {x} * {rstd}{_reduce(e, op.x)[1]} * {g}")
    e.define(op.result, out)


def emit_rms_normalize(e: Emitter, op: T.RMSNormalizeOp) -> None:
    where = e.op_where(op)
    x = e.value(op.x)
    rstd = _rstd(e, where, op.x, x, op.eps.value.data)
    out = e.fresh("y")
    e.emit(where, f"{out} = {x} * {rstd}{_reduce(e, op.x)[1]}")
    e.define(op.result, out)


def emit_residual_rmsnorm(e: Emitter, op: T.ResidualRMSNormOp) -> None:
    where, shape = e.op_where(op), _out_shape(e, op)
    x, r = e.value(op.x), e.value(op.residual)
    g = e.shaped(op.gamma, e.value(op.gamma), shape)
    total = e.fresh("sum")
    e.emit(where, f"{total} = {x} + {r}")
    rstd = _rstd(e, where, op.x, total, op.eps.value.data)
    out = e.fresh("y")
    e.emit(where, f"{out} = {total} * {rstd}{_reduce(e, op.x)[1]} * {g}")
    e.define(op.normed, out)
    e.define(op.sum, total)


def emit_quant_act(e: Emitter, op: T.QuantActOp) -> None:
    where = e.op_where(op)
    x = e.value(op.x)
    axis, back = _reduce(e, op.x)
    amax, s, q = e.fresh("amax"), e.fresh("sx"), e.fresh("q")
    e.emit(where, f"{amax} = tl.max(tl.where({e.mask_of(op.x)}, tl.abs({x}), 0.0), axis={axis})")
    e.emit(where, f"{s} = tl.div_rn({ACT_QMAX!r}, tl.maximum({amax}, {ACT_SCALE_FLOOR!r}))")
    e.emit(where, f"{q} = tl.minimum(tl.maximum(round_half_away({x} * {s}{back}), -128.0), 127.0).to(tl.int8)")
    e.define(op.q, q)
    e.define(op.scale, s)


def _trit(fmt: str, j: int) -> str:
    """Source of the trits of digit ``j`` of every byte in ``wb`` (int32)."""
    if fmt == "2bit":  # on the device, code (byte >> 2j) & 3 is the trit + 1 (see :data:`DEVICE_2BIT`)
        return f"((wb >> {2 * j}) & 3) - 1"
    if fmt == "base3":  # digit j of the byte in base 3, minus 1
        return f"(wb // {3**j}) % 3 - 1"
    return "wb"  # int8 trits, one per byte


def emit_accum(e: Emitter, op: T.AccumOp) -> None:
    """acc[r, n] = sum_k q[r, k] * trit[n, k], exactly in int32, over K in chunks of ``CHUNK`` weight
    bytes: the bytes are loaded once per chunk for every row of the block (contiguous, one load per
    weight row) and unpacked in registers, digit by digit; each digit's trits meet the activations
    of their columns (``k = byte * per + digit``) either as additions and subtractions of the int8
    activations they select (``add_sub``: decode, small blocks of rows; summed elementwise over the
    chunks and reduced across lanes once at the end) or, with ``USE_DOT``, as an int8 x int8 -> int32
    tensor-core dot (blocks of 16 rows and more: prefill). Both are exact.

    The activations come from a scratch tile when the kernel computed them (a register tile cannot
    be sliced), or straight from memory when they are a kernel operand."""
    where = e.op_where(op)
    if where != ROWS:
        raise UserError(f"the triton target cannot generate {op.name} in kernel {e.label}: it has no rows")
    k_space, n_space = e.feature(op.x), e.feature(op.acc)
    assert k_space is not None and n_space is not None
    w = e.held[op.weight]
    if w.kind != "weight":
        raise UserError(
            f"the triton target cannot generate {op.name} in kernel {e.label}: its weight must be a kernel operand"
        )
    k = k_space.static
    if k is None:
        raise UserError(f"the triton target cannot generate {op.name} in kernel {e.label}: K must be static")
    e.accum_k.append(k)
    per = PACK_FORMATS.get(w.format, 1)
    row_bytes = packed_row_bytes(k, w.format) if w.format in PACK_FORMATS else k
    xq = e.held[op.x]
    acc = e.fresh("acc")
    n = e.offs(n_space)
    gemv = _gemv_words(k_space, n_space, w.format, row_bytes, xq.kind)
    slot = e.scratch_slot(k_space) if xq.kind == "reg" else ""
    if gemv:
        _emit_gemv(e, op, acc, k_space, n_space, w.operand, gemv, slot)
        e.emit(where, "else:")
        e.indent += 1
    if xq.kind == "reg":
        bk = k_space.pow2_block
        # K is whole in every program (the accumulation reduces over it): its offsets are the lanes
        e.emit(where, f"tl.store({slot} + tl.arange(0, BLOCK_ROWS)[:, None] * {bk} + {e.offs(k_space)}[None, :], "
                      f"{xq.var}.to(tl.float32), mask={e.mask_of(op.x)})")
        e.emit(where, "tl.debug_barrier()")
        q_at = f"{slot} + tl.arange(0, BLOCK_ROWS)[:, None] * {bk} + kk[None, :]"
    elif xq.kind == "mem":
        q_at = f"{e.ptr(xq.operand)} + {e.address(op.x, 'kk', xq.base)}"
    else:
        raise UserError(f"the triton target cannot generate {op.name} in kernel {e.label}: unsupported activations")
    e.emit(where, f"{acc} = tl.zeros([BLOCK_ROWS, {n_space.pow2_block}], dtype=tl.int32)")
    e.emit(where, "if not USE_DOT:  # additions are summed elementwise, reduced across the chunk once at the end")
    e.emit(where, f"{INDENT}part = tl.zeros([BLOCK_ROWS, {n_space.pow2_block}, CHUNK], dtype=tl.int32)")
    e.emit(where, f"for c0 in range(0, {row_bytes}, CHUNK):")
    loop = [
        "cb = c0 + tl.arange(0, CHUNK)",
        f"mcb = cb < {row_bytes}",
        f"wb = tl.load({e.ptr(w.operand)} + {n}[:, None] * {row_bytes} + cb[None, :], "
        f"mask={e.mask(n_space)}[:, None] & mcb[None, :], other=0).to(tl.int32)",
    ]
    for j in range(per):  # unrolled: the trits of digit j sit in columns k = byte * per + j
        loop += [
            f"kk = cb * {per} + {j}" if per > 1 else "kk = cb",
            f"mk = mcb & (kk < {k})",
            f"tr = tl.where(mk[None, :], {_trit(w.format, j)}, 0)",
            f"xq = tl.load({q_at}, mask=mask_rows[:, None] & mk[None, :], other=0).to(tl.int32)",
            "if USE_DOT:",
            f"{INDENT}{acc} += tl.dot(xq.to(tl.int8), tl.trans(tr.to(tl.int8)), out_dtype=tl.int32)",
            "else:",
            f"{INDENT}part += add_sub(tr[None, :, :], xq[:, None, :])",
        ]
    for line in loop:
        e.emit(where, INDENT + line)
    e.emit(where, "if not USE_DOT:")
    e.emit(where, f"{INDENT}{acc} += tl.sum(part, axis=2)")
    if xq.kind == "reg":
        e.emit(where, "tl.debug_barrier()")  # the next block of rows overwrites the scratch tile
    if gemv:
        e.indent -= 1
    e.define(op.acc, acc)


#: the most words (4 packed bytes) of weights one program of a GEMV schedule holds in registers
GEMV_MAX_WORDS = 16384


def _gemv_words(k_space: Space, n_space: Space, fmt: str, row_bytes: int, activations: str) -> int:
    """The words per weight row of the GEMV schedule (:func:`_emit_gemv`), 0 where it does not apply:
    ``2bit`` weights whose rows are whole 32-bit words, activations computed in the kernel over the
    whole of K (a power-of-two block of 16 trits per word), a tile that fits in registers."""
    if fmt != "2bit" or row_bytes % 4 or activations != "reg" or k_space.axis is not None:
        return 0
    words = row_bytes // 4
    wp = next_pow2(words)
    if wp * 16 != k_space.pow2_block or n_space.pow2_block * wp > GEMV_MAX_WORDS:
        return 0
    return words


def _emit_gemv(e: Emitter, op: T.AccumOp, acc: str, k_space: Space, n_space: Space, operand: int, words: int, slot: str) -> None:
    """The decode schedule of an accumulation (``GEMV``: one row per block, a few rows in all).

    The program's weight tile ``[block_n, words]`` (32-bit words of 16 trits) is loaded once, before
    anything else (its loads are in flight while the activations are normalized and quantized), and
    stays in registers for every row. The row's int8 activations ``q`` are regrouped to match the
    words, through the program's scratch tile: byte ``q[16w + 4b + d]`` goes to byte ``b`` of word
    ``w`` of group ``d``, so that ``Q_d[w]`` (one 32-bit load) holds the activations of digit ``d``
    of the four bytes of word ``w``. The device holds a ``2bit`` code as the trit + 1 (0, 1, 2), so
    ``(word >> 2d) & 0x03030303`` is four codes in four bytes, and one ``dp4a`` adds their four
    products with ``Q_d``: sum(q * trit) = sum(q * code) - sum(q), exactly, in int32."""
    bn, wp = n_space.pow2_block, next_pow2(words)
    tile = e.fresh("wt")
    lanes = f"tl.arange(0, {wp})"
    mask = f"{e.mask(n_space)}[:, None]" + (f" & ({lanes} < {words})[None, :]" if wp != words else "")
    e.emit(CONST, "if GEMV:  # the weight tile, read once, in flight from the start")
    e.emit(CONST, f"{INDENT}{tile} = tl.load({e.ptr(operand)}.to(tl.pointer_type(tl.int32)) + "
                  f"{e.offs(n_space)}[:, None] * {words} + {lanes}[None, :], mask={mask}, other=0)")
    q = e.held[op.x].var
    k = e.offs(k_space)
    qm, wacc = e.fresh("qm"), e.fresh("wacc")
    lines = [
        "if GEMV:",
        f"{INDENT}{qm} = tl.where({e.mask(k_space)}[None, :], {q}, 0)",
        f"{INDENT}tl.store(({slot}).to(tl.pointer_type(tl.int8)) + "
        f"(({k} % 4) * {4 * wp} + ({k} // 16) * 4 + ({k} // 4) % 4)[None, :], {qm})",
        f"{INDENT}tl.debug_barrier()",
        f"{INDENT}{wacc} = tl.zeros([{bn}, {wp}], dtype=tl.int32)",
    ]
    for d in range(4):
        lines += [
            f"{INDENT}packed_q = tl.load(({slot}).to(tl.pointer_type(tl.int32)) + {d * wp} + {lanes})",
            f"{INDENT}{wacc} = dp4a(({tile} >> {2 * d}) & 0x03030303, tl.broadcast_to(packed_q[None, :], [{bn}, {wp}]), "
            f"{wacc}, DP4A)",
        ]
    lines += [
        f"{INDENT}{acc} = tl.sum({wacc}, axis=1)[None, :] - tl.sum({qm}.to(tl.int32), axis=1)[:, None]",
        f"{INDENT}tl.debug_barrier()  # the next row overwrites the scratch tile",
    ]
    for line in lines:
        e.emit(ROWS, line)
    e.gemv = True


def emit_dequant(e: Emitter, op: T.DequantOp) -> None:
    where, shape = e.op_where(op), _out_shape(e, op)
    acc = e.value(op.acc)
    s = e.shaped(op.x_scale, e.value(op.x_scale), shape)
    ws = e.value(op.weight_scale)
    out = e.fresh("y")
    e.emit(where, f"{out} = tl.div_rn({acc}.to(tl.float32), {s} * tl.div_rn(1.0, {ws}))")
    e.define(op.result, out)


def emit_gate_norm(e: Emitter, op: T.GateNormOp) -> None:
    where, shape = e.op_where(op), _out_shape(e, op)
    g, h = e.value(op.g), e.value(op.h)
    gamma = e.shaped(op.gamma, e.value(op.gamma), shape)
    rstd = _rstd(e, where, op.g, g, op.eps.value.data)
    out = e.fresh("o")
    e.emit(where, f"{out} = {g} * {rstd}{_reduce(e, op.g)[1]} * {gamma} * {h} * sigmoid({h})")
    e.define(op.result, out)


def emit_scan(e: Emitter, op: T.ScanOp) -> None:
    """h_t = f_t * h_{t-1} + x_t, in order over time inside the program. A block of time steps
    computes its gates as tiles; they go through scratch tiles to a loop over the block's steps,
    which carries the state (a register vector over the program's channels) from step to step and
    from block to block; the state starts from h0 (or zeros) before the first block and is the last
    state after the last one."""
    space = e.feature(op.x)
    assert space is not None
    if e.where(op.h_last) == ROWS or not e.nested:
        raise UserError(f"the triton target cannot generate {op.name} in kernel {e.label}: its state must be per batch row")
    state = e.fresh("state")
    if op.h0 is not None:
        e.emit(e.where(op.h0), f"{state} = {e.value(op.h0)}")
    else:
        e.emit(e.where(op.h_last), f"{state} = tl.zeros([{space.pow2_block}], dtype=tl.float32)")
    x, f = e.value(op.x), e.value(op.f)
    bc, m = space.pow2_block, e.mask(space)
    c = f"tl.arange(0, {bc})"  # lanes of the scratch tile (the channels may be a block of a split axis)
    slots = [e.scratch_slot(space) for _ in range(3)]
    tile = f"tl.arange(0, BLOCK_ROWS)[:, None] * {bc} + {c}[None, :]"
    steps = e.ks.rows[-1]
    h = e.fresh("h")
    for line in (
        f"tl.store({slots[0]} + {tile}, {x}, mask={e.mask_of(op.x)})",
        f"tl.store({slots[1]} + {tile}, {f}, mask={e.mask_of(op.x)})",
        "tl.debug_barrier()",
        f"for step in range(0, tl.minimum(BLOCK_ROWS, {e.size(steps)} - t0)):",
        f"{INDENT}x_t = tl.load({slots[0]} + step * {bc} + {c}, mask={m}, other=0.0)",
        f"{INDENT}f_t = tl.load({slots[1]} + step * {bc} + {c}, mask={m}, other=0.0)",
        f"{INDENT}{state} = f_t * {state} + x_t",
        f"{INDENT}tl.store({slots[2]} + step * {bc} + {c}, {state}, mask={m})",
        "tl.debug_barrier()",
        f"{h} = tl.load({slots[2]} + {tile}, mask={e.mask_of(op.x)}, other=0.0)",
        "tl.debug_barrier()",
    ):
        e.emit(ROWS, line)
    e.define(op.h, h)
    e.define(op.h_last, state, after=True)


def emit_embedding(e: Emitter, op: T.EmbeddingOp) -> None:
    where = e.op_where(op)
    table = e.held[op.table]
    ids = e.value(op.ids)
    space = e.feature(op.result)
    assert space is not None and table.kind == "mem"
    d = e.size(space)
    out = e.fresh("emb")
    row = f"{ids}[:, None]" if e.shape_of(op.result) == "2d" else ids
    offs = f"{e.offs(space)}[None, :]" if e.shape_of(op.result) == "2d" else e.offs(space)
    e.emit(where, f"{out} = tl.load({e.ptr(table.operand)} + {row} * {d} + {offs}, mask={e.mask_of(op.result)}, other=0)"
                  ".to(tl.float32)")
    e.define(op.result, out)


def emit_split(e: Emitter, op: T.SplitOp) -> None:
    part = e.feature(op.parts[0])
    assert part is not None
    for i, r in enumerate(op.parts):
        e.view(r, op.input, "0" if i == 0 else f"{i} * {e.size(part)}")


def emit_unpack(e: Emitter, op: T.UnpackOp) -> None:
    e.held[op.trits] = e.held[op.packed]  # accum reads the packed bytes and unpacks them in registers


EMITTERS: dict[type[Operation], Emit] = {
    T.RMSNormOp: emit_rmsnorm,  # type: ignore[dict-item]
    T.RMSNormalizeOp: emit_rms_normalize,  # type: ignore[dict-item]
    T.ScaleOp: _elementwise("{0} * {1}"),
    T.ResidualRMSNormOp: emit_residual_rmsnorm,  # type: ignore[dict-item]
    T.QuantActOp: emit_quant_act,  # type: ignore[dict-item]
    T.AccumOp: emit_accum,  # type: ignore[dict-item]
    T.DequantOp: emit_dequant,  # type: ignore[dict-item]
    T.SigmoidOp: _elementwise("sigmoid({0})"),
    T.SiluOp: _elementwise("{0} * sigmoid({0})"),
    T.OneMinusOp: _elementwise("1.0 - {0}"),
    T.SiluMulOp: _elementwise("tl.div_rn({0} * {1}, 1.0 + tl.exp(-{0}))"),
    T.MulOp: _elementwise("{0} * {1}"),
    T.AddOp: _elementwise("{0} + {1}"),
    T.SubOp: _elementwise("{0} - {1}"),
    T.ScanStepOp: _elementwise("{1} * {2} + {0}"),  # f * h + x
    T.LowerBoundOp: _elementwise("{1} + (1.0 - {1}) * {0}"),  # lb + (1 - lb) * x
    T.GateNormOp: emit_gate_norm,  # type: ignore[dict-item]
    T.MaskOp: _elementwise("{0} * {1}.to(tl.float32)"),
    T.ScanOp: emit_scan,  # type: ignore[dict-item]
    T.EmbeddingOp: emit_embedding,  # type: ignore[dict-item]
    T.SplitOp: emit_split,  # type: ignore[dict-item]
    T.UnpackOp: emit_unpack,  # type: ignore[dict-item]
}
"""op type -> emitter. Not here, by design: ``weight`` (kernel operands), ``quant_weight``,
``lower_bounds`` and ``row`` (weight-only: folded when the model is built, see :mod:`.legalize`)."""


__all__ = ["EMITTERS", "PRELUDE", "Space"]
