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


def quant_weight(w: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """Per-tensor absmean ternary quantization of a float master weight ``w[N, K]``.

    Returns ``(trits int8 [N, K] in {-1, 0, 1}, weight_scale float32 scalar)`` where
    ``weight_scale = max(mean|W|, 1e-5)`` (mean summed in float64, stored as float32; it is 1/s_w)
    and ``trits = clamp(round_half_even(W * s_w), -1, 1)`` with ``s_w = 1 / weight_scale`` in float32.

    Not idempotent: quantizing trits again shrinks the scale by the fraction of non-zeros. Keep the
    returned scale with the trits; never call this on ternary data.
    """
    w32 = np.asarray(w, dtype=F32)
    mean_abs = np.abs(w32.astype(np.float64)).mean() if w32.size else 0.0
    weight_scale = F32(max(mean_abs, WEIGHT_SCALE_FLOOR))
    s_w = weight_inv_scale(weight_scale)
    trits = np.clip(round_half_even(w32 * s_w), -1, 1).astype(np.int8)
    return trits, weight_scale


#: how many leading values :func:`looks_ternary` checks before it looks at the whole tensor
_TERNARY_SAMPLE = 4096


def looks_ternary(master: np.ndarray) -> bool:
    """True when a float tensor holds at most three distinct values: already-ternary weights, which
    :func:`quant_weight` must not quantize again (its scale would shrink). A leading sample is checked
    first, so a real float master is told apart without sorting all of it."""
    flat = np.asarray(master).reshape(-1)
    if flat.size == 0:
        return False
    if np.unique(flat[:_TERNARY_SAMPLE]).size > 3:
        return False
    return bool(np.unique(flat).size <= 3)


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


def apply_mask(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Zero the rows of padded positions: ``x * float32(mask)[..., None]`` (``mask`` 0 at padding)."""
    return np.asarray(x, dtype=F32) * np.asarray(mask, dtype=F32)[..., None]


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
    return t.astype(np.int8)


def _padded(trits: np.ndarray, per: int) -> np.ndarray:
    n, k = trits.shape
    kp = -(-k // per) * per
    out = np.zeros((n, kp), np.int8)
    out[:, :k] = trits
    return out.reshape(n, kp // per, per)


def pack_2bit(trits: np.ndarray) -> np.ndarray:
    """Pack trits ``[N, K]`` into ``uint8 [N, ceil(K/4)]``: trit k in bits 2(k%4)..2(k%4)+1 of byte k//4,
    codes 0 -> 0b00, +1 -> 0b01, -1 -> 0b10."""
    t = _padded(_check_trits(trits), 4)
    codes = np.where(t < 0, 2, t).astype(np.uint8)  # -1 -> 2, 0 -> 0, 1 -> 1
    shifts = np.array([0, 2, 4, 6], np.uint8)
    return np.bitwise_or.reduce(codes << shifts, axis=-1).astype(np.uint8)


def unpack_2bit(packed: np.ndarray, k: int) -> np.ndarray:
    """Inverse of :func:`pack_2bit`; raises ``ValueError`` on the never-written code 0b11."""
    p = np.asarray(packed, dtype=np.uint8)
    if p.ndim != 2 or p.shape[1] != packed_row_bytes(k, "2bit"):
        raise ValueError(f"unpack 2bit: expected [N, {packed_row_bytes(k, '2bit')}] bytes for K={k}, got {p.shape}")
    codes = (p[..., None] >> np.array([0, 2, 4, 6], np.uint8)) & np.uint8(3)
    if np.any(codes == 3):
        raise ValueError("unpack 2bit: invalid code 0b11 in packed weights")
    # int8 before the select: numpy >= 2.5 refuses a Python -1 next to a uint8 array (NEP 50)
    codes = codes.astype(np.int8)
    trits = np.where(codes == 2, np.int8(-1), codes)
    return trits.reshape(p.shape[0], -1)[:, :k]


_POW3 = np.array([1, 3, 9, 27, 81], np.int32)


def pack_base3(trits: np.ndarray) -> np.ndarray:
    """Pack trits ``[N, K]`` into ``uint8 [N, ceil(K/5)]``: byte j = sum_i (t_{5j+i} + 1) * 3^i."""
    t = _padded(_check_trits(trits), 5).astype(np.int32) + 1
    return (t * _POW3).sum(axis=-1).astype(np.uint8)


def unpack_base3(packed: np.ndarray, k: int) -> np.ndarray:
    """Inverse of :func:`pack_base3`; raises ``ValueError`` on bytes 243..255."""
    p = np.asarray(packed, dtype=np.uint8)
    if p.ndim != 2 or p.shape[1] != packed_row_bytes(k, "base3"):
        raise ValueError(f"unpack base3: expected [N, {packed_row_bytes(k, 'base3')}] bytes for K={k}, got {p.shape}")
    if p.size and p.max() > 242:
        raise ValueError("unpack base3: invalid byte value > 242 in packed weights")
    digits = (p.astype(np.int32)[..., None] // _POW3) % 3
    return (digits - 1).astype(np.int8).reshape(p.shape[0], -1)[:, :k]


def pack(trits: np.ndarray, fmt: str) -> np.ndarray:
    """Pack by format name (``2bit`` or ``base3``)."""
    _trits_per_byte(fmt)
    return pack_2bit(trits) if fmt == "2bit" else pack_base3(trits)


def unpack(packed: np.ndarray, k: int, fmt: str) -> np.ndarray:
    """Unpack by format name (``2bit`` or ``base3``) to int8 trits ``[N, K]``."""
    _trits_per_byte(fmt)
    return unpack_2bit(packed, k) if fmt == "2bit" else unpack_base3(packed, k)
