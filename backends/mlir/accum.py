"""The ternary accumulation ``acc[..., n] = sum_k q[..., k] * w[n, k]`` as upstream MLIR: integer
adds and subtracts of int8 activations selected by trits, exact in int32.

This is where decoding spends its time (every weight is read once per token), so the loops are
shaped for the vectorizer, which wants unit-stride loads along the innermost (reduction) loop:

* The packed bytes of one weight row are the innermost loop. Byte ``j`` of a ``2bit`` row holds
  trits ``4j .. 4j+3`` (``base3``: ``5j .. 5j+4``), so the activations are first rearranged into
  *planes*: plane ``i`` holds ``q[..., P*j + i]`` at position ``j`` (``P`` trits per byte; zero past
  K, where the packed row's padding trits are zero too). Every plane is then read with unit stride
  alongside the bytes (:func:`planes`; when ``q`` comes from ``quant_act``, the quantization happens
  in the same gather).
* Each byte is unpacked with integer ops in a ``linalg.generic`` body (``2bit``: bit ``2i`` of the
  byte selects ``+q`` for trit i, bit ``2i+1`` selects ``-q``; ``base3``: the byte's base-3 digits,
  digit 2 is +1 and digit 0 is -1), each product an i16 (``-(-128)`` fits).
* Rows are cut into blocks of :data:`BLOCK_BYTES` bytes; one generic over ``(..., n, block, byte)``
  adds a block's products in i16, one sum per group of trit positions small enough never to
  overflow (``BLOCK_BYTES * len(group) * 128 < 2**15``), and a second generic adds the block sums in
  i32 (:func:`_gemv`). The bytes after the last whole block take the plain form, every byte's sum
  widened and added to an i32 accumulator (:func:`_gemv_plain`).

Unpacked trits (``!ternary.trits``, unfused IR) take the same path with one trit per "byte": i16
products of the i8 activations and trits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from xdsl.dialects.builtin import i8, i16, i32
from xdsl.ir import Operation, SSAValue

from mmfc.dialects import ternary as T
from mmfc.dialects.numerics import PACK_FORMATS
from mmfc.backends.mlir.emit import PARALLEL, REDUCTION, Emitter, affine, identity, shape
from mmfc.backends.mlir.scalar import quantize

#: bytes of a weight row whose products are added in 16 bits before the i32 accumulator
BLOCK_BYTES = 64

UnpackByte = Callable[[Emitter, SSAValue, Sequence[SSAValue]], list[SSAValue]]
"""``(emitter, byte, activations as i16) -> the i16 products of the byte's trits``."""


@dataclass(frozen=True)
class QuantizedFrom:
    """A fact about an int8 activation the lowering made: it is ``quantize(x, s)`` of the f32 ``x
    [..., K]`` and the per-row scales ``s [...]`` (``quant_act``), so :func:`planes` can quantize where
    it gathers instead of reading the int8 tensor (one launch less per BitLinear; the same values)."""

    x: SSAValue
    s: SSAValue


def planes(e: Emitter, q: SSAValue, per_byte: int, width: int) -> list[SSAValue]:
    """The ``per_byte`` planes of ``q [..., K]``: plane i is ``[..., width]`` with
    ``plane_i[..., j] = q[..., per_byte*j + i]`` (0 where that index is past K)."""
    sizes = e.sizes(q)
    k = shape(q)[-1]
    rank = len(sizes)
    outs = [(e.empty([*sizes[:-1], width], i8), identity(rank)) for _ in range(per_byte)]
    origin = e.facts.get(q)
    inputs = [(origin.s, affine(rank, list(range(rank - 1))))] if isinstance(origin, QuantizedFrom) else []

    def body(b: Emitter, args: Sequence[SSAValue]) -> list[SSAValue]:
        lead = [b.loop_index(d) for d in range(rank - 1)]
        j = b.loop_index(rank - 1)
        base = b.muli(j, b.index(per_byte))
        values = []
        for i in range(per_byte):
            pos = b.addi(base, b.index(i))
            inside = b.cmpi("ult", pos, b.index(k))
            safe = b.select(inside, pos, b.index(0))
            if isinstance(origin, QuantizedFrom):
                value = quantize(b, b.extract(origin.x, [*lead, safe]), args[0])
            else:
                value = b.extract(q, [*lead, safe])
            values.append(b.select(inside, value, b.int(0, i8)))
        return values

    return e.generic(rank, inputs, outs, [PARALLEL] * rank, body)


def _select_product(b: Emitter, x16: SSAValue, plus: SSAValue, minus: SSAValue, zero: SSAValue) -> SSAValue:
    """``+x`` where ``plus``, ``-x`` where ``minus``, else 0 (i16)."""
    return b.select(plus, x16, b.select(minus, b.subi(zero, x16), zero))


def _sum(b: Emitter, values: Sequence[SSAValue]) -> SSAValue:
    total = values[0]
    for v in values[1:]:
        total = b.addi(total, v)
    return total


def _gemv_plain(e: Emitter, xs: Sequence[SSAValue], w: SSAValue, unpack_byte: UnpackByte) -> SSAValue:
    """``acc[..., n] = sum_j sum_i trit_i(w[n, j]) * xs[i][..., j]`` in one generic over ``(..., n, j)``,
    each byte's i16 products widened and added to the i32 accumulator."""
    lead = e.sizes(xs[0])[:-1]
    n = shape(w)[0]
    rank = len(lead) + 2  # (..., n, j)
    acc = e.filled([*lead, n], i32, e.int(0, i32))
    x_map = affine(rank, [*range(rank - 2), rank - 1])
    w_map = affine(rank, [rank - 2, rank - 1])
    out_map = affine(rank, list(range(rank - 1)))

    def body(b: Emitter, args: Sequence[SSAValue]) -> list[SSAValue]:
        *x8, byte, total = args
        products = unpack_byte(b, byte, [b.extsi(x, i16) for x in x8])
        return [b.addi(total, b.extsi(_sum(b, products), i32))]

    inputs = [(x, x_map) for x in xs] + [(w, w_map)]
    return e.generic(rank, inputs, [(acc, out_map)], [PARALLEL] * (rank - 1) + [REDUCTION], body)[0]


def _gemv_blocked(
    e: Emitter, xs: Sequence[SSAValue], w: SSAValue, unpack_byte: UnpackByte, groups: Sequence[Sequence[int]]
) -> list[SSAValue]:
    """The blocked form over the first ``nb * BLOCK_BYTES`` bytes of every row: one generic over
    ``(..., n, jo, ji)`` adds each block's products in i16, one sum per group of trit positions
    (``BLOCK_BYTES * len(group) * 128 <= 32767``, so no i16 sum can overflow), and returns those
    partial sums ``[..., N, nb]`` (i16). Keeping the accumulation in 16 bits inside a block saves the
    widening of every byte's sum to i32 (measured 27 -> 35 G trits/s on one core, cache-resident)."""
    lead = e.sizes(xs[0])[:-1]
    n = shape(w)[0]
    nb = shape(xs[0])[-1] // BLOCK_BYTES
    blocked_x = [e.split_last(x, nb, BLOCK_BYTES) for x in xs]
    blocked_w = e.split_last(w, nb, BLOCK_BYTES)
    rank = len(lead) + 3  # (..., n, jo, ji)
    outs = [(e.filled([*lead, n, nb], i16, e.int(0, i16)), affine(rank, list(range(rank - 1)))) for _ in groups]
    x_map = affine(rank, [*range(rank - 3), rank - 2, rank - 1])
    w_map = affine(rank, [rank - 3, rank - 2, rank - 1])

    def body(b: Emitter, args: Sequence[SSAValue]) -> list[SSAValue]:
        x8, byte, partials = args[: len(xs)], args[len(xs)], args[len(xs) + 1 :]
        products = unpack_byte(b, byte, [b.extsi(x, i16) for x in x8])
        return [b.addi(p, _sum(b, [products[i] for i in group])) for p, group in zip(partials, groups)]

    inputs = [(x, x_map) for x in blocked_x] + [(blocked_w, w_map)]
    return e.generic(rank, inputs, outs, [PARALLEL] * (rank - 1) + [REDUCTION], body)


def _gemv(e: Emitter, xs: Sequence[SSAValue], w: SSAValue, unpack_byte: UnpackByte, groups: Sequence[Sequence[int]]) -> SSAValue:
    """``acc[..., n] = sum_j sum_i trit_i(w[n, j]) * xs[i][..., j]``, int32 ``[..., N]``:
    ``unpack_byte(b, byte, xs16) -> [i16 products]`` reads one byte. Whole blocks of ``BLOCK_BYTES``
    take the blocked form (:func:`_gemv_blocked`), the bytes after the last whole block the plain one,
    and a last generic adds the block partials and the rest in i32."""
    sizes = e.sizes(xs[0])
    lead, width = sizes[:-1], shape(xs[0])[-1]
    whole = width - width % BLOCK_BYTES
    if whole == 0:
        return _gemv_plain(e, xs, w, unpack_byte)
    n = shape(w)[0]
    main_x = [e.slice(x, [0] * len(sizes), [*lead, whole]) for x in xs] if whole < width else list(xs)
    main_w = e.slice(w, [0, 0], [n, whole]) if whole < width else w
    partials = _gemv_blocked(e, main_x, main_w, unpack_byte, groups)
    rest = None
    if whole < width:
        rest_x = [e.slice(x, [0] * len(lead) + [whole], [*lead, width - whole]) for x in xs]
        rest = _gemv_plain(e, rest_x, e.slice(w, [0, whole], [n, width - whole]), unpack_byte)
    rank = len(lead) + 2  # (..., n, jo)
    out_map = affine(rank, list(range(rank - 1)))
    inputs = [(p, identity(rank)) for p in partials] + ([(rest, out_map)] if rest is not None else [])
    acc = e.filled([*lead, n], i32, e.int(0, i32))

    def body(b: Emitter, args: Sequence[SSAValue]) -> list[SSAValue]:
        *parts, total = args
        block_sum = _sum(b, [b.extsi(p, i32) for p in parts[: len(partials)]])
        if rest is not None:  # added once per row: at the first block
            first = b.cmpi("eq", b.loop_index(rank - 1), b.index(0))
            block_sum = b.addi(block_sum, b.select(first, parts[-1], b.int(0, i32)))
        return [b.addi(total, block_sum)]

    return e.generic(rank, inputs, [(acc, out_map)], [PARALLEL] * (rank - 1) + [REDUCTION], body)[0]


def _unpack_2bit(b: Emitter, byte: SSAValue, x16: Sequence[SSAValue]) -> list[SSAValue]:
    zero = b.int(0, i16)
    return [_select_product(b, x, b.bit(byte, 2 * i), b.bit(byte, 2 * i + 1), zero) for i, x in enumerate(x16)]


def _base3_digits(b: Emitter, byte: SSAValue, count: int) -> list[SSAValue]:
    """The ``count`` base-3 digits of a byte (0..242), least significant first, as i16."""
    v = b.extui(byte, i16)
    three = b.int(3, i16)
    digits = []
    for _ in range(count):
        digits.append(b.remui(v, three))
        v = b.divui(v, three)
    return digits


def _unpack_base3(b: Emitter, byte: SSAValue, x16: Sequence[SSAValue]) -> list[SSAValue]:
    zero = b.int(0, i16)
    two = b.int(2, i16)
    digits = _base3_digits(b, byte, len(x16))
    return [_select_product(b, x, b.cmpi("eq", d, two), b.cmpi("eq", d, zero), zero) for x, d in zip(x16, digits)]


def lower_accum(e: Emitter, op: Operation, q: SSAValue, w: SSAValue) -> SSAValue:
    """``ternary.accum`` of int8 ``q [..., K]`` and a weight (trits ``[N, K]`` or packed bytes
    ``[N, B]``, as :mod:`.arguments` passes them): the int32 ``[..., N]`` (module docstring)."""
    wt = op.weight.type  # type: ignore[attr-defined]
    if isinstance(wt, T.PackedType):
        fmt = wt.format.data
        per_byte = PACK_FORMATS[fmt]
        xs = planes(e, q, per_byte, shape(w)[1])
        if fmt == "2bit":
            return _gemv(e, xs, w, _unpack_2bit, ((0, 1), (2, 3)))
        return _gemv(e, xs, w, _unpack_base3, ((0, 1), (2, 3, 4)))
    return _gemv(e, [q], w, lambda b, t, x16: [b.muli(x16[0], b.extsi(t, i16))], ((0,),))


def lower_unpack(e: Emitter, op: Operation, packed: SSAValue) -> SSAValue:
    """``ternary.unpack``: packed bytes ``[N, B]`` -> int8 trits ``[N, K]`` (one trit per element)."""
    pt = op.packed.type  # type: ignore[attr-defined]
    assert isinstance(pt, T.PackedType)
    fmt = pt.format.data
    per_byte = PACK_FORMATS[fmt]
    n, k = T.shape_of(op.trits.type)  # type: ignore[attr-defined]
    out = e.empty([n, k], i8)

    def body(b: Emitter, args: Sequence[SSAValue]) -> list[SSAValue]:
        row, col = b.loop_index(0), b.loop_index(1)
        byte = b.extui(b.extract(packed, [row, b.divui(col, b.index(per_byte))]), i16)
        position = b.index_cast(b.remui(col, b.index(per_byte)), i16)
        return [b.trunci(_trit_at(b, byte, position, fmt), i8)]

    return e.generic(2, [], [(out, identity(2))], [PARALLEL, PARALLEL], body)[0]


def _trit_at(b: Emitter, byte: SSAValue, position: SSAValue, fmt: str) -> SSAValue:
    """Trit number ``position`` of a packed byte (both i16), as an i16 in {-1, 0, 1}."""
    one, zero = b.int(1, i16), b.int(0, i16)
    if fmt == "2bit":
        code = b.andi(b.shrui(byte, b.muli(position, b.int(2, i16))), b.int(3, i16))
        return b.select(b.cmpi("eq", code, one), one, b.select(b.cmpi("eq", code, b.int(2, i16)), b.int(-1, i16), zero))
    three = b.int(3, i16)
    power = one
    for p in range(1, 5):  # 3^position by selects (position < 5)
        power = b.select(b.cmpi("uge", position, b.int(p, i16)), b.int(3**p, i16), power)
    return b.subi(b.remui(b.divui(byte, power), three), one)


__all__ = ["BLOCK_BYTES", "QuantizedFrom", "lower_accum", "lower_unpack", "planes"]
