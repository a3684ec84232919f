"""The canonical numerics of the MatMul-free LM, in numpy (no torch).

Every later stage calls these functions: the IR interpreter, the simulator, and the tests of the
Triton and MLIR backends. The PyTorch model has a torch twin of each (``mmfc.frontends.torch.numerics``)
and tests hold the two equal. Semantics are those of ``docs/model.md``:

* all float arithmetic in float32;
* activation quantization rounds half **away from zero**, weight quantization half **to even**;
* a weight's scale is ``weight_scale = max(mean|W|, 1e-5)`` (= 1/s_w), the mean summed in float64,
  stored as float32 and never derived again from ternary data;
* the ternary accumulation is exact in int32.

Shapes: activations are ``[..., K]`` (any leading batch/time dims), weights ``[N, K]``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

F32 = np.float32
RMS_EPS = 1e-6
ACT_QMAX = 127.0
ACT_SCALE_FLOOR = 1e-5
WEIGHT_SCALE_FLOOR = 1e-5

__all__ = [
    "round_half_away",
    "round_half_even",
    "rms_normalize",
    "scale",
    "rmsnorm",
    "residual_rmsnorm",
    "quant_act",
    "quant_weight",
    "row_blocks",
    "weight_abs_sum",
    "weight_scale",
    "ternarize",
    "ternarize_packed",
    "weight_inv_scale",
    "looks_ternary",
    "accum",
    "dequant",
    "bitlinear",
    "sigmoid",
    "silu",
    "silu_mul",
    "mul",
    "add",
    "sub",
    "lower_bounds",
    "one_minus",
    "lower_bound",
    "apply_mask",
    "check_mask",
    "forget_gate",
    "input_gate",
    "scan",
    "scan_step",
    "gate_norm",
    "embedding",
    "pack_2bit",
    "unpack_2bit",
    "pack_base3",
    "unpack_base3",
    "pack",
    "unpack",
    "packed_row_bytes",
    "PACK_FORMATS",
]


# --------------------------------------------------------------------------------------------------
# Rounding
# --------------------------------------------------------------------------------------------------


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round half away from zero, exactly (no ``floor(x + 0.5)``, which is wrong at 0.49999997).

    ``t = trunc(x); r = t + sign(x) * (|x - t| >= 0.5)``; the result keeps x's float dtype.
    """
    x = np.asarray(x)
    t = np.trunc(x)
    bump = (np.abs(x - t) >= 0.5).astype(x.dtype)
    return t + np.sign(x) * bump


def round_half_even(x: np.ndarray) -> np.ndarray:
    """Round half to even (``torch.round``), keeping x's float dtype."""
    return np.rint(np.asarray(x))


# --------------------------------------------------------------------------------------------------
# Normalization
# --------------------------------------------------------------------------------------------------


def rms_normalize(x: np.ndarray, eps: float = RMS_EPS) -> np.ndarray:
    """The gamma-free half of RMSNorm over the last axis, in float32: ``x * (1 / sqrt(mean(x^2) + eps))``.

    The one copy of the row statistics: :func:`rmsnorm` is ``scale(rms_normalize(x, eps), gamma)``,
    so projections that read one input can share the statistics and each apply its own gamma,
    bit-identically. Order as in the reference kernel: rstd first, then ``x * rstd``.
    """
    x = np.asarray(x, dtype=F32)
    n = x.shape[-1]
    var = np.sum(x * x, axis=-1, keepdims=True, dtype=F32) / F32(n)
    rstd = F32(1.0) / np.sqrt(var + F32(eps))
    return x * rstd


def scale(x: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """``x * gamma`` in float32, ``gamma: [K]`` broadcast over the rows of ``x: [..., K]``."""
    return np.asarray(x, dtype=F32) * np.asarray(gamma, dtype=F32)


def rmsnorm(x: np.ndarray, gamma: np.ndarray, eps: float = RMS_EPS) -> np.ndarray:
    """RMSNorm over the last axis in float32: ``(x * (1 / sqrt(mean(x^2) + eps))) * gamma``.

    The operation order is the reference kernel's (rstd first, then x*rstd, then *gamma):
    ``scale(rms_normalize(x, eps), gamma)``.
    """
    return scale(rms_normalize(x, eps), gamma)


def residual_rmsnorm(
    x: np.ndarray, residual: np.ndarray, gamma: np.ndarray, eps: float = RMS_EPS
) -> tuple[np.ndarray, np.ndarray]:
    """Fused residual add + RMSNorm: returns ``(rmsnorm(x + residual), x + residual)``."""
    r = np.asarray(x, dtype=F32) + np.asarray(residual, dtype=F32)
    return rmsnorm(r, gamma, eps), r


# --------------------------------------------------------------------------------------------------
# Quantization
# --------------------------------------------------------------------------------------------------


def quant_act(x_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-token absmax int8 quantization of ``x_hat[..., K]``.

    Returns ``(x_q int8 [..., K], s_x float32 [..., 1])`` with ``s_x = 127 / max(max|x|, 1e-5)`` and
    ``x_q = clamp(round_half_away(x * s_x), -128, 127)``.
    """
    x_hat = np.asarray(x_hat, dtype=F32)
    amax = np.max(np.abs(x_hat), axis=-1, keepdims=True)
    s_x = F32(ACT_QMAX) / np.maximum(amax, F32(ACT_SCALE_FLOOR))
    x_q = np.clip(round_half_away(x_hat * s_x), -128, 127).astype(np.int8)
    return x_q, s_x.astype(F32)


#: elements per block of :func:`row_blocks`: a block's temporaries stay in the CPU caches
BLOCK_ELEMENTS = 1 << 18


def row_blocks(shape: tuple[int, ...]) -> list[slice]:
    """The blocks of leading-axis rows in which a tensor of ``shape`` is quantized, packed, checked
    and streamed: about :data:`BLOCK_ELEMENTS` elements each (at least one row). A 0-d or 1-d
    tensor is one block. The blocks are part of the semantics of :func:`weight_scale` (its float64
    sum adds one partial sum per block, in order), so a reader streaming a tensor uses these."""
    if len(shape) < 2:
        return [slice(None)]
    rows = shape[0]
    row_size = max(1, int(np.prod(shape[1:], dtype=np.int64)))
    step = max(1, BLOCK_ELEMENTS // row_size)
    return [slice(start, min(start + step, rows)) for start in range(0, rows, step)] or [slice(0, 0)]


def weight_abs_sum(block: np.ndarray) -> float:
    """``sum |w|`` of one block of a float master, in float64 (exact per element; the partial sum of
    :func:`weight_scale`). Non-finite when the block holds NaN or Inf."""
    return float(np.abs(np.asarray(block, dtype=F32)).sum(dtype=np.float64))


def weight_scale(abs_sum: float, count: int) -> np.float32:
    """``weight_scale = max(mean|W|, 1e-5)`` (= 1/s_w) from ``sum |w|`` (the float64 sum of the
    blocks' :func:`weight_abs_sum`, in :func:`row_blocks` order) over ``count`` elements, stored as
    float32."""
    mean_abs = abs_sum / count if count else 0.0
    return F32(max(mean_abs, WEIGHT_SCALE_FLOOR))


def ternarize(w: np.ndarray, weight_scale: np.floating | float) -> np.ndarray:
    """Trits of (a block of) a float master: ``clamp(round_half_even(w * s_w), -1, 1)`` as int8, with
    ``s_w = 1 / weight_scale`` in float32. Computed as ``(x > 0.5) - (x < -0.5)`` on ``x = w * s_w``,
    which equals the clamped half-to-even rounding for every value but NaN (never quantized)."""
    x = np.asarray(w, dtype=F32) * weight_inv_scale(weight_scale)
    return (x > F32(0.5)).view(np.int8) - (x < F32(-0.5)).view(np.int8)


def quant_weight(w: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """Per-tensor absmean ternary quantization of a float master weight ``w[N, K]``.

    Returns ``(trits int8 [N, K] in {-1, 0, 1}, weight_scale float32 scalar)`` where
    ``weight_scale = max(mean|W|, 1e-5)`` (mean summed in float64, one partial sum per block of
    :func:`row_blocks`; stored as float32; it is 1/s_w) and
    ``trits = clamp(round_half_even(W * s_w), -1, 1)`` with ``s_w = 1 / weight_scale`` in float32
    (:func:`ternarize`).

    Not idempotent: quantizing trits again shrinks the scale by the fraction of non-zeros. Keep the
    returned scale with the trits; never call this on ternary data.
    """
    w32 = np.asarray(w, dtype=F32)
    blocks = row_blocks(w32.shape)
    scale = weight_scale(sum(weight_abs_sum(w32[b]) for b in blocks), w32.size)
    trits = np.empty(w32.shape, np.int8)
    for b in blocks:
        trits[b] = ternarize(w32[b], scale)
    return trits, scale


#: how many leading values :func:`looks_ternary` checks before it looks at the whole tensor
_TERNARY_SAMPLE = 4096


def looks_ternary(master: np.ndarray | Iterable[np.ndarray]) -> bool:
    """True when a float tensor holds at most three distinct values: already-ternary weights, which
    :func:`quant_weight` must not quantize again (its scale would shrink). ``master`` is the tensor,
    or its blocks in order (a streamed tensor). A leading sample is checked first, so a real float
    master is told apart without sorting all of it."""
    blocks = [np.asarray(master)] if isinstance(master, np.ndarray) else master
    seen: set[float] = set()
    first = True
    for block in blocks:
        flat = np.asarray(block).reshape(-1)
        if first and flat.size:
            if np.unique(flat[:_TERNARY_SAMPLE]).size > 3:
                return False
            first = False
        seen.update(np.unique(flat).tolist())
        if len(seen) > 3:
            return False
    return not first


def weight_inv_scale(weight_scale: np.floating | float) -> np.float32:
    """s_w = 1 / weight_scale, in float32 (the factor trits were quantized and are dequantized by)."""
    return F32(F32(1.0) / F32(weight_scale))


def accum(x_q: np.ndarray, trits: np.ndarray) -> np.ndarray:
    """Ternary accumulation: ``acc[..., n] = sum_k x_q[..., k] * trits[n, k]`` exactly, as int32.

    Semantically only additions and subtractions (trits are -1, 0, +1). Computed through a float64
    product, which is exact here (|acc| <= 128 * K << 2^53), then checked back into int32.
    """
    x_q = np.asarray(x_q)
    trits = np.asarray(trits)
    if x_q.shape[-1] != trits.shape[-1]:
        raise ValueError(f"accum: activation K={x_q.shape[-1]} does not match weight K={trits.shape[-1]}")
    acc = np.matmul(x_q.astype(np.float64), trits.astype(np.float64).T)
    return acc.astype(np.int32)


def dequant(acc: np.ndarray, s_x: np.ndarray, weight_scale: np.floating | float) -> np.ndarray:
    """``y = acc / (s_x * s_w)`` in float32, with ``s_w = 1 / weight_scale`` (float32)."""
    s_w = weight_inv_scale(weight_scale)
    return np.asarray(acc).astype(F32) / (np.asarray(s_x, dtype=F32) * s_w)


def bitlinear(
    x: np.ndarray,
    gamma: np.ndarray,
    trits: np.ndarray,
    weight_scale: np.floating | float,
    eps: float = RMS_EPS,
) -> np.ndarray:
    """One BitLinear: RMSNorm, int8 activation quantization, ternary accumulation, dequantization."""
    x_q, s_x = quant_act(rmsnorm(x, gamma, eps))
    return dequant(accum(x_q, trits), s_x, weight_scale)


# --------------------------------------------------------------------------------------------------
# Elementwise ops and the MLGRU recurrence
# --------------------------------------------------------------------------------------------------


def sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` in float32."""
    x = np.asarray(x, dtype=F32)
    with np.errstate(over="ignore"):
        return F32(1.0) / (F32(1.0) + np.exp(-x))


def silu(x: np.ndarray) -> np.ndarray:
    """SiLU / swish: ``x * sigmoid(x)`` in float32."""
    x = np.asarray(x, dtype=F32)
    return x * sigmoid(x)


def silu_mul(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``SiLU(x) * y`` (the reference's swiglu: ``x * y / (1 + exp(-x))``) in float32."""
    x = np.asarray(x, dtype=F32)
    y = np.asarray(y, dtype=F32)
    with np.errstate(over="ignore"):
        return x * y / (F32(1.0) + np.exp(-x))


def mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a * b`` in float32 (same shapes)."""
    return np.multiply(a, b, dtype=F32)


def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a + b`` in float32 (same shapes; the residual adds)."""
    return np.add(a, b, dtype=F32)


def sub(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a - b`` in float32 (same shapes)."""
    return np.subtract(a, b, dtype=F32)


def lower_bounds(lb_param: np.ndarray) -> np.ndarray:
    """Per-layer forget-gate lower bounds from ``model.lower_bounds[L, d]``.

    ``s = softmax(lb_param, axis=0); lb = cumsum(s, axis=0) - s[0]`` (so lb[0] == 0), float32.
    """
    p = np.asarray(lb_param, dtype=F32)
    e = np.exp(p - p.max(axis=0, keepdims=True))
    s = e / e.sum(axis=0, keepdims=True, dtype=F32)
    return (np.cumsum(s, axis=0, dtype=F32) - s[0:1]).astype(F32)


def one_minus(x: np.ndarray) -> np.ndarray:
    """``1 - x`` in float32 (the input gate's ``1 - f``)."""
    return F32(1.0) - np.asarray(x, dtype=F32)


def lower_bound(x: np.ndarray, lb: np.ndarray) -> np.ndarray:
    """Apply a forget-gate lower bound to ``x = sigmoid(f_tilde)``: ``lb + (1 - lb) * x``, float32
    (``lb [d]`` broadcast over the rows of ``x [..., d]``)."""
    lb = np.asarray(lb, dtype=F32)
    return lb + (F32(1.0) - lb) * np.asarray(x, dtype=F32)


def check_mask(mask: np.ndarray) -> np.ndarray:
    """``mask`` if it holds only 0 (padding) and 1 (a token); else a ``ValueError`` naming a value
    found (a mask is not a weighting: other values would scale the activations)."""
    m = np.asarray(mask)
    if m.size and not np.isin(m, (0, 1)).all():
        bad = m[~np.isin(m, (0, 1))].reshape(-1)[0]
        raise ValueError(f"attention mask values must be 0 (padding) or 1, found {bad.item()!r}")
    return m


def apply_mask(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Zero the rows of padded positions: ``x * float32(mask)[..., None]`` (``mask`` 0 at padding, 1
    elsewhere; any other value is a ``ValueError``, :func:`check_mask`)."""
    return np.asarray(x, dtype=F32) * np.asarray(check_mask(mask), dtype=F32)[..., None]


def forget_gate(f_tilde: np.ndarray, lb: np.ndarray) -> np.ndarray:
    """``f = lb + (1 - lb) * sigmoid(f_tilde)``, float32."""
    return lower_bound(sigmoid(f_tilde), lb)


def input_gate(i: np.ndarray, f: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``i' = SiLU(i) * (1 - f)``, zeroed where ``mask[..., t] == 0`` (left padding)."""
    out = silu_mul(i, one_minus(f))
    if mask is not None:
        out = apply_mask(out, mask)
    return out


def scan(x: np.ndarray, f: np.ndarray, h0: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The diagonal linear recurrence over time: ``h_t = f_t * h_{t-1} + x_t``.

    ``x, f: [B, T, d]``, ``h0: [B, d]`` (zeros if None). Returns ``(h [B, T, d], h_T [B, d])``, float32.
    """
    x = np.asarray(x, dtype=F32)
    f = np.asarray(f, dtype=F32)
    b, t, d = x.shape
    h = np.zeros((b, d), F32) if h0 is None else np.asarray(h0, dtype=F32).copy()
    out = np.empty_like(x)
    for step in range(t):
        h = f[:, step] * h + x[:, step]
        out[:, step] = h
    return out, h


def scan_step(x: np.ndarray, f: np.ndarray, h: np.ndarray) -> np.ndarray:
    """One decode step of the recurrence: ``f * h + x`` (all ``[B, d]``), float32."""
    return np.asarray(f, dtype=F32) * np.asarray(h, dtype=F32) + np.asarray(x, dtype=F32)


def gate_norm(g: np.ndarray, h: np.ndarray, gamma: np.ndarray, eps: float = RMS_EPS) -> np.ndarray:
    """The MLGRU output gate: ``o' = RMSNorm_gamma(g) * SiLU(h)`` (norm on g, SiLU on h)."""
    y = rmsnorm(g, gamma, eps)
    h = np.asarray(h, dtype=F32)
    return y * h * sigmoid(h)


def embedding(table: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Plain gather ``table[ids]`` in float32; ids must lie in ``[0, V)``."""
    ids = np.asarray(ids)
    v = table.shape[0]
    if ids.size and (ids.min() < 0 or ids.max() >= v):
        raise ValueError(f"embedding: token id out of range [0, {v})")
    return np.asarray(table, dtype=F32)[ids]


# --------------------------------------------------------------------------------------------------
# Packing (mmfc's own layouts; see docs/model.md "Packed weights")
# --------------------------------------------------------------------------------------------------

PACK_FORMATS = {"2bit": 4, "base3": 5}  # trits per byte


def packed_row_bytes(k: int, fmt: str) -> int:
    """Bytes of one packed row of K trits: ceil(K/4) for ``2bit``, ceil(K/5) for ``base3``."""
    per = _trits_per_byte(fmt)
    return -(-k // per)


def _trits_per_byte(fmt: str) -> int:
    try:
        return PACK_FORMATS[fmt]
    except KeyError:
        raise ValueError(f"unknown packing format {fmt!r}; expected one of {sorted(PACK_FORMATS)}") from None


def _check_trits(trits: np.ndarray) -> np.ndarray:
    t = np.asarray(trits)
    if t.ndim != 2:
        raise ValueError(f"pack: trits must be 2-D [N, K], got shape {t.shape}")
    if t.size and (t.min() < -1 or t.max() > 1):
        raise ValueError("pack: trits must lie in {-1, 0, +1}")
    return t if t.dtype == np.int8 else t.astype(np.int8)


def _codes_padded(codes: np.ndarray, per: int) -> np.ndarray:
    """``codes [n, k]`` (uint8, one per trit; 0 encodes the trit 0 in both formats' digit sense below)
    padded with ``pad`` columns to whole bytes and grouped ``[n, ceil(k/per), per]``."""
    n, k = codes.shape
    kp = -(-k // per) * per
    if kp != k:
        codes = np.concatenate([codes, np.zeros((n, kp - k), codes.dtype)], axis=1)
    return codes.reshape(n, kp // per, per)


def _bytes_of_2bit_codes(codes: np.ndarray) -> np.ndarray:
    """``uint8 [n, ceil(k/4)]`` from 2-bit codes ``uint8 [n, k]`` (each 0..2): four codes per byte,
    the first in the lowest bits; a row's padding is code 0."""
    n, k = codes.shape
    if k % 4 == 0 and codes.flags.c_contiguous:
        # four codes are the four bytes of a little-endian uint32: gather their low 2 bits
        words = codes.view("<u4")
        out = words & np.uint32(0x3)
        out |= (words >> np.uint32(6)) & np.uint32(0xC)
        out |= (words >> np.uint32(12)) & np.uint32(0x30)
        out |= (words >> np.uint32(18)) & np.uint32(0xC0)
        return out.astype(np.uint8).reshape(n, k // 4)
    c = _codes_padded(codes, 4)
    byte = c[..., 0] | (c[..., 1] << np.uint8(2))
    byte |= c[..., 2] << np.uint8(4)
    byte |= c[..., 3] << np.uint8(6)
    return byte


def ternarize_packed(w: np.ndarray, weight_scale: np.floating | float, fmt: str) -> np.ndarray:
    """``pack(ternarize(w, weight_scale), fmt)`` for a block ``w [n, K]`` of a float master, without
    the int8 trits in between for ``2bit`` (its codes come straight from the two comparisons)."""
    if fmt != "2bit":
        return pack(ternarize(w, weight_scale), fmt)
    x = np.asarray(w, dtype=F32) * weight_inv_scale(weight_scale)
    codes = (x > F32(0.5)).view(np.uint8) | ((x < F32(-0.5)).view(np.uint8) << np.uint8(1))
    return _bytes_of_2bit_codes(codes.reshape(x.shape[0], -1) if x.ndim != 2 else codes)


def _pack_rows(trits: np.ndarray, fmt: str) -> np.ndarray:
    """Pack checked int8 trits ``[N, K]`` block by block of :func:`row_blocks` (temporaries stay small)."""
    n, k = trits.shape
    out = np.empty((n, packed_row_bytes(k, fmt)), np.uint8)
    for rows in row_blocks(trits.shape):
        t = trits[rows]
        if fmt == "2bit":
            # codes: 0 -> 0b00, +1 -> 0b01, -1 -> 0b10
            byte = _bytes_of_2bit_codes((t == 1).view(np.uint8) | ((t == -1).view(np.uint8) << np.uint8(1)))
        else:
            # digits t + 1 in 0..2; the pad is the trit 0 (digit 1), as unpacking drops it anyway
            d = (t + np.int8(1)).view(np.uint8)
            n_rows, k_rows = d.shape
            kp = -(-k_rows // 5) * 5
            if kp != k_rows:
                d = np.concatenate([d, np.ones((n_rows, kp - k_rows), np.uint8)], axis=1)
            d = d.reshape(n_rows, kp // 5, 5)
            byte = d[..., 0] + np.uint8(3) * d[..., 1]
            byte += np.uint8(9) * d[..., 2]
            byte += np.uint8(27) * d[..., 3]
            byte += np.uint8(81) * d[..., 4]
        out[rows] = byte
    return out


def pack_2bit(trits: np.ndarray) -> np.ndarray:
    """Pack trits ``[N, K]`` into ``uint8 [N, ceil(K/4)]``: trit k in bits 2(k%4)..2(k%4)+1 of byte k//4,
    codes 0 -> 0b00, +1 -> 0b01, -1 -> 0b10 (a row's padding is code 0)."""
    return _pack_rows(_check_trits(trits), "2bit")


def _unpack_table(fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """``(trits int8 [256, per], valid bool [256])``: the trits each byte value holds, and whether a
    packer can write that byte (2bit: no code 0b11; base3: at most 242)."""
    values = np.arange(256, dtype=np.int32)
    if fmt == "2bit":
        codes = (values[:, None] >> np.array([0, 2, 4, 6])) & 3
        trits = np.where(codes == 2, -1, codes)
        valid = ~(codes == 3).any(axis=1)
    else:
        digits = (values[:, None] // np.array([1, 3, 9, 27, 81])) % 3
        trits = digits - 1
        valid = values <= 242
    return np.where(valid[:, None], trits, 0).astype(np.int8), valid


_UNPACK = {fmt: _unpack_table(fmt) for fmt in ("2bit", "base3")}


def _unpack_rows(packed: np.ndarray, k: int, fmt: str) -> np.ndarray:
    p = np.asarray(packed, dtype=np.uint8)
    want = packed_row_bytes(k, fmt)
    if p.ndim != 2 or p.shape[1] != want:
        raise ValueError(f"unpack {fmt}: expected [N, {want}] bytes for K={k}, got {p.shape}")
    table, valid = _UNPACK[fmt]
    if p.size and not valid[p].all():
        what = "invalid code 0b11" if fmt == "2bit" else "invalid byte value > 242"
        raise ValueError(f"unpack {fmt}: {what} in packed weights")
    return table[p].reshape(p.shape[0], -1)[:, :k]


def unpack_2bit(packed: np.ndarray, k: int) -> np.ndarray:
    """Inverse of :func:`pack_2bit`; raises ``ValueError`` on the never-written code 0b11."""
    return _unpack_rows(packed, k, "2bit")


def pack_base3(trits: np.ndarray) -> np.ndarray:
    """Pack trits ``[N, K]`` into ``uint8 [N, ceil(K/5)]``: byte j = sum_i (t_{5j+i} + 1) * 3^i (a row's
    padding is the trit 0)."""
    return _pack_rows(_check_trits(trits), "base3")


def unpack_base3(packed: np.ndarray, k: int) -> np.ndarray:
    """Inverse of :func:`pack_base3`; raises ``ValueError`` on bytes 243..255."""
    return _unpack_rows(packed, k, "base3")


def pack(trits: np.ndarray, fmt: str) -> np.ndarray:
    """Pack by format name (``2bit`` or ``base3``)."""
    _trits_per_byte(fmt)
    return pack_2bit(trits) if fmt == "2bit" else pack_base3(trits)


def unpack(packed: np.ndarray, k: int, fmt: str) -> np.ndarray:
    """Unpack by format name (``2bit`` or ``base3``) to int8 trits ``[N, K]``."""
    _trits_per_byte(fmt)
    return unpack_2bit(packed, k) if fmt == "2bit" else unpack_base3(packed, k)
