"""The torch twin of ``mmfc.dialects.numerics`` (same names, same semantics, same operation order).

The PyTorch model is built from these functions; ``tests/frontends/test_numerics_equal.py`` holds them
equal to the numpy definitions (integers bit-exact, floats within a stated tolerance). Everything is
float32 regardless of the input dtype; integer results are int8 / int32 as in numpy.
"""

from __future__ import annotations

import torch

from mmfc.dialects.numerics import (
    ACT_QMAX,
    ACT_SCALE_FLOOR,
    PACK_FORMATS,
    RMS_EPS,
    WEIGHT_SCALE_FLOOR,
    packed_row_bytes,
)

F32 = torch.float32


def round_half_away(x: torch.Tensor) -> torch.Tensor:
    """Round half away from zero: ``t = trunc(x); t + sign(x) * (|x - t| >= 0.5)``."""
    t = torch.trunc(x)
    return t + torch.sign(x) * (torch.abs(x - t) >= 0.5).to(x.dtype)


def round_half_even(x: torch.Tensor) -> torch.Tensor:
    """Round half to even (``torch.round``)."""
    return torch.round(x)


def rmsnorm(x: torch.Tensor, gamma: torch.Tensor, eps: float = RMS_EPS) -> torch.Tensor:
    """``(x * (1 / sqrt(mean(x^2) + eps))) * gamma`` over the last axis, float32."""
    x = x.to(F32)
    var = torch.sum(x * x, dim=-1, keepdim=True) / x.shape[-1]
    rstd = 1.0 / torch.sqrt(var + eps)
    return (x * rstd) * gamma.to(F32)


def residual_rmsnorm(
    x: torch.Tensor, residual: torch.Tensor, gamma: torch.Tensor, eps: float = RMS_EPS
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rmsnorm(x + residual), x + residual)``."""
    r = x.to(F32) + residual.to(F32)
    return rmsnorm(r, gamma, eps), r


def quant_act(x_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token absmax int8 quantization: ``(x_q int8 [..., K], s_x float32 [..., 1])``."""
    x_hat = x_hat.to(F32)
    amax = torch.amax(torch.abs(x_hat), dim=-1, keepdim=True)
    # tensor / tensor: a Python scalar over a tensor would compute reciprocal(x) * 127 (two roundings)
    s_x = torch.full_like(amax, ACT_QMAX) / torch.clamp(amax, min=ACT_SCALE_FLOOR)
    x_q = torch.clamp(round_half_away(x_hat * s_x), -128, 127).to(torch.int8)
    return x_q, s_x


def quant_weight(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tensor absmean ternary quantization: ``(trits int8 [N, K], weight_scale float32 scalar)``.

    ``weight_scale = max(mean|W|, 1e-5)`` summed in float64, stored as float32 (it is 1/s_w);
    ``trits = clamp(round_half_even(W * s_w), -1, 1)``. Not idempotent: never apply to trits.
    """
    w32 = w.detach().to(F32)
    mean_abs = float(torch.abs(w32.to(torch.float64)).mean()) if w32.numel() else 0.0
    weight_scale = torch.tensor(max(mean_abs, WEIGHT_SCALE_FLOOR), dtype=F32, device=w.device)
    s_w = weight_inv_scale(weight_scale)
    trits = torch.clamp(round_half_even(w32 * s_w), -1, 1).to(torch.int8)
    return trits, weight_scale


def weight_inv_scale(weight_scale: torch.Tensor) -> torch.Tensor:
    """s_w = 1 / weight_scale in float32."""
    return 1.0 / weight_scale.to(F32)


def accum(x_q: torch.Tensor, trits: torch.Tensor) -> torch.Tensor:
    """Exact ternary accumulation ``x_q @ trits.T`` as int32.

    Computed as a product of integer-valued floats, exact while |acc| < 2^24 (127 * K for K < 132104)
    in float32; TF32 would break that, so on CUDA with TF32 enabled the product is done in float64.
    """
    if x_q.shape[-1] != trits.shape[-1]:
        raise ValueError(f"accum: activation K={x_q.shape[-1]} does not match weight K={trits.shape[-1]}")
    k = x_q.shape[-1]
    use_f64 = k * 128 >= 2**24 or (x_q.is_cuda and torch.backends.cuda.matmul.allow_tf32)
    dt = torch.float64 if use_f64 else F32
    acc = torch.matmul(x_q.to(dt), trits.to(dt).t())
    return acc.to(torch.int32)


def dequant(acc: torch.Tensor, s_x: torch.Tensor, weight_scale: torch.Tensor) -> torch.Tensor:
    """``acc / (s_x * s_w)`` in float32."""
    return acc.to(F32) / (s_x.to(F32) * weight_inv_scale(weight_scale))


def bitlinear(
    x: torch.Tensor, gamma: torch.Tensor, trits: torch.Tensor, weight_scale: torch.Tensor, eps: float = RMS_EPS
) -> torch.Tensor:
    """RMSNorm, int8 activation quantization, ternary accumulation, dequantization."""
    x_q, s_x = quant_act(rmsnorm(x, gamma, eps))
    return dequant(accum(x_q, trits), s_x, weight_scale)


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    """``1 / (1 + exp(-x))``."""
    x = x.to(F32)
    return 1.0 / (1.0 + torch.exp(-x))


def silu(x: torch.Tensor) -> torch.Tensor:
    """``x * sigmoid(x)``."""
    x = x.to(F32)
    return x * sigmoid(x)


def silu_mul(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``x * y / (1 + exp(-x))`` (SiLU(x) * y)."""
    x = x.to(F32)
    return x * y.to(F32) / (1.0 + torch.exp(-x))


def lower_bounds(lb_param: torch.Tensor) -> torch.Tensor:
    """``s = softmax(lb_param, dim=0); cumsum(s, 0) - s[0]``."""
    p = lb_param.to(F32)
    e = torch.exp(p - p.amax(dim=0, keepdim=True))
    s = e / e.sum(dim=0, keepdim=True)
    return torch.cumsum(s, dim=0) - s[0:1]


def forget_gate(f_tilde: torch.Tensor, lb: torch.Tensor) -> torch.Tensor:
    """``lb + (1 - lb) * sigmoid(f_tilde)``."""
    lb = lb.to(F32)
    return lb + (1.0 - lb) * sigmoid(f_tilde)


def check_mask(mask: torch.Tensor) -> torch.Tensor:
    """``mask`` if it holds only 0 (padding) and 1; else the ``ValueError`` of ``numerics.check_mask``."""
    if mask.numel() and not bool(((mask == 0) | (mask == 1)).all()):
        bad = mask[(mask != 0) & (mask != 1)].reshape(-1)[0]
        raise ValueError(f"attention mask values must be 0 (padding) or 1, found {bad.item()!r}")
    return mask


def input_gate(i: torch.Tensor, f: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``SiLU(i) * (1 - f)``, zeroed where ``mask == 0`` (a mask of 0s and 1s: :func:`check_mask`)."""
    out = silu_mul(i, 1.0 - f.to(F32))
    if mask is not None:
        out = out * check_mask(mask).to(F32)[..., None]
    return out


def scan(x: torch.Tensor, f: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``h_t = f_t * h_{t-1} + x_t`` over ``[B, T, d]``; returns ``(h [B, T, d], h_T [B, d])``."""
    x = x.to(F32)
    f = f.to(F32)
    h = torch.zeros_like(x[:, 0]) if h0 is None else h0.to(F32)
    outs = []
    for step in range(x.shape[1]):
        h = f[:, step] * h + x[:, step]
        outs.append(h)
    out = torch.stack(outs, dim=1) if outs else x.new_zeros(x.shape)
    return out, h


def scan_step(x: torch.Tensor, f: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """``f * h + x``."""
    return f.to(F32) * h.to(F32) + x.to(F32)


def gate_norm(g: torch.Tensor, h: torch.Tensor, gamma: torch.Tensor, eps: float = RMS_EPS) -> torch.Tensor:
    """``RMSNorm_gamma(g) * SiLU(h)``."""
    y = rmsnorm(g, gamma, eps)
    h = h.to(F32)
    return y * h * sigmoid(h)


def embedding(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``table[ids]`` in float32."""
    v = table.shape[0]
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= v):
        raise ValueError(f"embedding: token id out of range [0, {v})")
    return table[ids].to(F32)


# ---------------------------------------------------------------------------------------------- packing

_SHIFTS = (0, 2, 4, 6)
_POW3 = (1, 3, 9, 27, 81)


def _padded(trits: torch.Tensor, per: int) -> torch.Tensor:
    if trits.dim() != 2:
        raise ValueError(f"pack: trits must be 2-D [N, K], got shape {tuple(trits.shape)}")
    if trits.numel() and (int(trits.min()) < -1 or int(trits.max()) > 1):
        raise ValueError("pack: trits must lie in {-1, 0, +1}")
    n, k = trits.shape
    kp = -(-k // per) * per
    out = torch.zeros((n, kp), dtype=torch.int32, device=trits.device)
    out[:, :k] = trits.to(torch.int32)
    return out.reshape(n, kp // per, per)


def pack_2bit(trits: torch.Tensor) -> torch.Tensor:
    """Pack trits ``[N, K]`` into ``uint8 [N, ceil(K/4)]`` (codes 0->00, +1->01, -1->10)."""
    t = _padded(trits, 4)
    codes = torch.where(t < 0, torch.full_like(t, 2), t)
    packed = sum(codes[..., j] << s for j, s in enumerate(_SHIFTS))
    return packed.to(torch.uint8)


def unpack_2bit(packed: torch.Tensor, k: int) -> torch.Tensor:
    """Inverse of :func:`pack_2bit`; rejects code 0b11."""
    if packed.dim() != 2 or packed.shape[1] != packed_row_bytes(k, "2bit"):
        raise ValueError(f"unpack 2bit: expected [N, {packed_row_bytes(k, '2bit')}] bytes for K={k}")
    p = packed.to(torch.int32)
    codes = torch.stack([(p >> s) & 3 for s in _SHIFTS], dim=-1)
    if bool((codes == 3).any()):
        raise ValueError("unpack 2bit: invalid code 0b11 in packed weights")
    trits = torch.where(codes == 2, torch.full_like(codes, -1), codes)
    return trits.reshape(p.shape[0], -1)[:, :k].to(torch.int8)


def pack_base3(trits: torch.Tensor) -> torch.Tensor:
    """Pack trits ``[N, K]`` into ``uint8 [N, ceil(K/5)]``: byte j = sum_i (t_{5j+i} + 1) 3^i."""
    t = _padded(trits, 5) + 1
    packed = sum(t[..., j] * w for j, w in enumerate(_POW3))
    return packed.to(torch.uint8)


def unpack_base3(packed: torch.Tensor, k: int) -> torch.Tensor:
    """Inverse of :func:`pack_base3`; rejects bytes above 242."""
    if packed.dim() != 2 or packed.shape[1] != packed_row_bytes(k, "base3"):
        raise ValueError(f"unpack base3: expected [N, {packed_row_bytes(k, 'base3')}] bytes for K={k}")
    p = packed.to(torch.int32)
    if p.numel() and int(p.max()) > 242:
        raise ValueError("unpack base3: invalid byte value > 242 in packed weights")
    digits = torch.stack([(p // w) % 3 for w in _POW3], dim=-1)
    return (digits - 1).reshape(p.shape[0], -1)[:, :k].to(torch.int8)


def pack(trits: torch.Tensor, fmt: str) -> torch.Tensor:
    """Pack by format name."""
    if fmt not in PACK_FORMATS:
        raise ValueError(f"unknown packing format {fmt!r}; expected one of {sorted(PACK_FORMATS)}")
    return pack_2bit(trits) if fmt == "2bit" else pack_base3(trits)


def unpack(packed: torch.Tensor, k: int, fmt: str) -> torch.Tensor:
    """Unpack by format name."""
    if fmt not in PACK_FORMATS:
        raise ValueError(f"unknown packing format {fmt!r}; expected one of {sorted(PACK_FORMATS)}")
    return unpack_2bit(packed, k) if fmt == "2bit" else unpack_base3(packed, k)
