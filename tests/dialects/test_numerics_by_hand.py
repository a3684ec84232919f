"""Hand-worked examples of every gate formula, held against BOTH implementations of the arithmetic.

The numpy definitions (``mmfc.dialects.numerics``) and their torch twin (``mmfc.frontends.torch.numerics``)
are tested equal to each other elsewhere; a mistake made in both (the output gate's inputs swapped, the
lower bound dropped) passes that test. Here each function meets small inputs whose results were worked
out by hand from the model's definition (``docs/model.md``); the derivation is in the comment beside
each example, and the expected values are written as the closed forms it ends with (e, sqrt(2), ...),
never computed by the code under test. Floats are compared at float32 precision (rtol 1e-6); integers
exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mmfc.dialects import numerics as nm
from mmfc.frontends.torch import numerics as tn

F32 = np.float32
E = math.e
SQRT2 = math.sqrt(2.0)


def sig(x: float) -> float:
    """The logistic function, written out for the derivations: 1 / (1 + e^-x)."""
    return 1.0 / (1.0 + math.exp(-x))


def _numpy(name: str) -> Callable[..., Any]:
    return getattr(nm, name)


def _torch(name: str) -> Callable[..., Any]:
    """The torch twin, called with numpy arrays (converted to tensors) and returning numpy arrays."""
    fn = getattr(tn, name)

    def call(*args: Any, **kwargs: Any) -> Any:
        conv = [torch.from_numpy(np.array(a)) if isinstance(a, np.ndarray) else a for a in args]
        out = fn(*conv, **kwargs)
        if isinstance(out, tuple):
            return tuple(o.numpy() for o in out)
        return out.numpy()

    return call


@pytest.fixture(params=[_numpy, _torch], ids=["numpy", "torch"])
def impl(request: pytest.FixtureRequest) -> Callable[[str], Callable[..., Any]]:
    """``impl("gate_norm")`` is that function of one of the two implementations."""
    return request.param


def f32(*rows: Any) -> np.ndarray:
    return np.array(rows if len(rows) > 1 else rows[0], dtype=F32)


def close(got: Any, want: Any) -> None:
    got = np.asarray(got)
    assert got.dtype == F32, got.dtype
    np.testing.assert_allclose(got, np.asarray(want, dtype=np.float64), rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------------------ rmsnorm


def test_rmsnorm(impl: Callable) -> None:
    # row [3, 4]: mean(x^2) = (9 + 16) / 2 = 12.5, 1/sqrt(12.5) = sqrt(2)/5 (eps 1e-6 moves it by 4e-8,
    # relatively), so x * rstd = [3 sqrt2/5, 4 sqrt2/5]; gamma [1, -2] then gives [3 sqrt2/5, -8 sqrt2/5].
    # row [0, 0.002]: mean(x^2) = 2e-6, plus eps 1e-6 = 3e-6 (eps matters here): 0.002 / sqrt(3e-6)
    # = 2 / sqrt(3) = 1.1547; gamma -> [0, -4/sqrt(3)]. (Without eps it would be sqrt(2) * -2.)
    x = f32([3.0, 4.0], [0.0, 0.002])
    gamma = f32([1.0, -2.0])
    close(impl("rmsnorm")(x, gamma), [[3 * SQRT2 / 5, -8 * SQRT2 / 5], [0.0, -4 / math.sqrt(3.0)]])


# ------------------------------------------------------------------------------------------ MLGRU gates


def test_gate_norm_is_norm_on_g_and_silu_on_h(impl: Callable) -> None:
    # o' = RMSNorm_gamma(g) * SiLU(h), SiLU(h) = h * sigmoid(h).
    # g = [3, 4]: RMSNorm (gamma 1) = [3 sqrt2/5, 4 sqrt2/5] (see test_rmsnorm).
    # h = [-1, 2]: SiLU(-1) = -1 / (1 + e), SiLU(2) = 2 / (1 + e^-2).
    # o' = [3 sqrt2/5 * -1/(1+e), 4 sqrt2/5 * 2/(1+e^-2)] = [-0.22820, 1.99301].
    # (The other order, RMSNorm(h) * SiLU(g) = [-1/sqrt(2.5) * 3 sig(3), 2/sqrt(2.5) * 4 sig(4)] =
    # [-1.80, 4.97], is the paper's / flash-linear-attention's, not the released checkpoints'.)
    g, h, gamma = f32([3.0, 4.0]), f32([-1.0, 2.0]), f32([1.0, 1.0])
    close(impl("gate_norm")(g, h, gamma), [3 * SQRT2 / 5 * (-1 / (1 + E)), 4 * SQRT2 / 5 * 2 * sig(2.0)])


def test_gate_norm_gamma_scales_the_normed_g(impl: Callable) -> None:
    # gamma multiplies RMSNorm(g), so scaling gamma by [2, -1] scales o' by [2, -1]; h = [1, 1] gives
    # SiLU(1) = sig(1) = e / (1 + e) on both; g = [1, 1] normalizes to [1, 1].
    g, h, gamma = f32([1.0, 1.0]), f32([1.0, 1.0]), f32([2.0, -1.0])
    close(impl("gate_norm")(g, h, gamma), [2 * E / (1 + E), -E / (1 + E)])


def test_forget_gate_with_lower_bound(impl: Callable) -> None:
    # f = lb + (1 - lb) * sigmoid(f~). sigmoid(0) = 1/2, sigmoid(ln 3) = 3/4, sigmoid(-ln 3) = 1/4.
    # lb = [0, 1/2, 1/4, 1/2]:
    #   [0 + 1 * 1/2, 1/2 + 1/2 * 1/2, 1/4 + 3/4 * 3/4, 1/2 + 1/2 * 1/4] = [1/2, 3/4, 13/16, 5/8]
    # (without the bound: [1/2, 1/2, 3/4, 1/4]).
    f_tilde = f32([0.0, 0.0, math.log(3.0), -math.log(3.0)])
    lb = f32([0.0, 0.5, 0.25, 0.5])
    close(impl("forget_gate")(f_tilde, lb), [0.5, 0.75, 13 / 16, 5 / 8])


def test_input_gate_with_mask(impl: Callable) -> None:
    # i' = SiLU(i) * (1 - f), zeroed at masked (padded) positions.
    # i = [2, -1, 0], f = [1/2, 3/4, 1/5] at both time steps: SiLU = [2 sig(2), -1/(1+e), 0],
    # 1 - f = [1/2, 1/4, 4/5] -> [sig(2), -1/(4 (1+e)), 0] = [0.88080, -0.06724, 0].
    # mask [[0, 1]]: time step 0 is padding -> zeros; step 1 keeps the values.
    # (Without the 1 - f: [1.76, -0.27, 0]; SiLU(1 - f) * i: [0.62, -0.14, 0].)
    i = f32([[[2.0, -1.0, 0.0], [2.0, -1.0, 0.0]]])
    f = f32([[[0.5, 0.75, 0.2], [0.5, 0.75, 0.2]]])
    mask = np.array([[0, 1]], np.int64)
    want_step = [sig(2.0), -1 / (4 * (1 + E)), 0.0]
    close(impl("input_gate")(i, f, mask), [[[0.0, 0.0, 0.0], want_step]])
    close(impl("input_gate")(i, f), [[want_step, want_step]])


def test_scan_step(impl: Callable) -> None:
    # h' = f * h + x: f = [1/2, 1/4], h = [2, -4], x = [1, 3] -> [1 + 1, -1 + 3] = [2, 2]
    # (x * h + f would be [2.5, -11.75]).
    x, f, h = f32([[1.0, 3.0]]), f32([[0.5, 0.25]]), f32([[2.0, -4.0]])
    close(impl("scan_step")(x, f, h), [[2.0, 2.0]])


def test_scan(impl: Callable) -> None:
    # h_t = f_t * h_{t-1} + x_t from h_0 = 4, f = 1/2, x = [1, 2, 3]:
    # h_1 = 2 + 1 = 3, h_2 = 1.5 + 2 = 3.5, h_3 = 1.75 + 3 = 4.75; the last state is h_3.
    x = f32([[[1.0], [2.0], [3.0]]])
    f = f32([[[0.5], [0.5], [0.5]]])
    h, h_last = impl("scan")(x, f, f32([[4.0]]))
    close(h, [[[3.0], [3.5], [4.75]]])
    close(h_last, [[4.75]])
    # from the zero state: h = [1, 2.5, 4.25]
    close(impl("scan")(x, f)[0], [[[1.0], [2.5], [4.25]]])


# ------------------------------------------------------------------------------------------ GLU, lower bounds


def test_silu_mul(impl: Callable) -> None:
    # SiLU(gate) * up: gate = [2, -1, 0], up = [3, 2, 5] -> [6 sig(2), -2/(1+e), 0] = [5.28478, -0.53788, 0]
    # (SiLU(up) * gate would be [5.71, -1.76, 0]).
    close(impl("silu_mul")(f32([2.0, -1.0, 0.0]), f32([3.0, 2.0, 5.0])), [6 * sig(2.0), -2 / (1 + E), 0.0])


def test_lower_bounds(impl: Callable) -> None:
    # s = softmax over the layer axis (L = 3), lb = cumsum(s) - s[0].
    # column 0: params [0, 0, 0] -> s = [1/3, 1/3, 1/3], cumsum [1/3, 2/3, 1] -> lb = [0, 1/3, 2/3].
    # column 1: params [0, ln 2, ln 5] -> e^p = [1, 2, 5], s = [1/8, 2/8, 5/8], cumsum [1/8, 3/8, 1]
    #   -> lb = [0, 1/4, 7/8]. (An exclusive cumsum would give [0, 1/8, 3/8]; a softmax over the
    #   channel axis something else again.)
    p = f32([0.0, 0.0], [0.0, math.log(2.0)], [0.0, math.log(5.0)])
    close(impl("lower_bounds")(p), [[0.0, 0.0], [1 / 3, 1 / 4], [2 / 3, 7 / 8]])


# ------------------------------------------------------------------------------------------ quantization


@pytest.mark.parametrize(
    ("x", "want"),
    [
        (0.5, 1.0),
        (-0.5, -1.0),
        (1.5, 2.0),
        (-1.5, -2.0),
        (2.5, 3.0),
        (-2.5, -3.0),
        (0.49999997, 0.0),  # the float32 just below 1/2: floor(x + 0.5) would round it up to 1
        (-0.49999997, 0.0),
        (2.4999998, 2.0),
        (126.5, 127.0),
    ],
)
def test_round_half_away(impl: Callable, x: float, want: float) -> None:
    assert impl("round_half_away")(f32([x]))[0] == want


def test_quant_act_rounds_half_away_from_zero(impl: Callable) -> None:
    # s_x = 127 / max|x| = 127 / 127 = 1, so x_q = round_half_away(x) clamped to [-128, 127]:
    # ties go away from zero (+-0.5 -> +-1, +-1.5 -> +-2, +-2.5 -> +-3), 0.49999997 -> 0.
    x = f32([[127.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.49999997, -126.6]])
    x_q, s_x = impl("quant_act")(x)
    assert x_q.dtype == np.int8 and x_q.tolist() == [[127, 1, -1, 2, -2, 3, -3, 0, -127]]
    assert s_x.dtype == F32 and s_x.tolist() == [[1.0]]


def test_quant_act_scale_floor(impl: Callable) -> None:
    # max|x| = 2e-6 is under the floor 1e-5: s_x = 127 / 1e-5 = 1.27e7 (not 127 / 2e-6 = 6.35e7),
    # x * s_x = [12.7, -25.4] -> [13, -25]. A row of zeros: s_x = 1.27e7, x_q = 0.
    x = f32([1e-6, -2e-6], [0.0, 0.0])
    x_q, s_x = impl("quant_act")(x)
    assert x_q.tolist() == [[13, -25], [0, 0]]
    close(s_x, [[1.27e7], [1.27e7]])


def test_quant_weight_rounds_half_to_even(impl: Callable) -> None:
    # weight_scale = mean|W| = (0.5 + 1.5 + 0.5 + 1.5) / 4 = 1, s_w = 1: W * s_w = [0.5, 1.5, -0.5, -1.5]
    # rounds half to EVEN -> [0, 2, 0, -2], clamped to [-1, 1] -> [0, 1, 0, -1]
    # (half away from zero would give [1, 1, -1, -1]).
    trits, scale = impl("quant_weight")(f32([[0.5, 1.5, -0.5, -1.5]]))
    assert trits.dtype == np.int8 and trits.tolist() == [[0, 1, 0, -1]]
    assert float(scale) == 1.0


def test_accum_and_dequant(impl: Callable) -> None:
    # acc = x_q . trits^T: [1, 2, 3, 4] . [1, 0, -1, 1] = 1 - 3 + 4 = 2; . [-1, -1, 0, 0] = -3.
    x_q = np.array([[1, 2, 3, 4]], np.int8)
    trits = np.array([[1, 0, -1, 1], [-1, -1, 0, 0]], np.int8)
    acc = impl("accum")(x_q, trits)
    assert acc.dtype == np.int32 and acc.tolist() == [[2, -3]]
    # y = acc / (s_x * s_w) with s_w = 1 / weight_scale: s_x = 63.5, weight_scale = 1/2 -> s_w = 2,
    # s_x * s_w = 127: [254, -127, 0] / 127 = [2, -1, 0] (acc / (s_x * weight_scale) would be [8, -4, 0]).
    y = impl("dequant")(np.array([[254, -127, 0]], np.int32), f32([[63.5]]), np.array(0.5, F32))
    close(y, [[2.0, -1.0, 0.0]])


# ------------------------------------------------------------------------------------------ issue 12: blocks


def _pack_2bit_by_definition(trits: np.ndarray) -> np.ndarray:
    """Four trits per byte, the first in the lowest bits: 0 -> 00, +1 -> 01, -1 -> 10 (padded with 0)."""
    n, k = trits.shape
    out = np.zeros((n, -(-k // 4)), np.uint8)
    for i in range(n):
        for j in range(k):
            out[i, j // 4] |= {0: 0, 1: 1, -1: 2}[int(trits[i, j])] << (2 * (j % 4))
    return out


def _pack_base3_by_definition(trits: np.ndarray) -> np.ndarray:
    """Five trits per byte: byte = sum (t_i + 1) * 3^i (padded with the trit 0)."""
    n, k = trits.shape
    out = np.zeros((n, -(-k // 5)), np.int64)
    for i in range(n):
        for j in range(-(-k // 5) * 5):
            t = int(trits[i, j]) if j < k else 0
            out[i, j // 5] += (t + 1) * 3 ** (j % 5)
    return out.astype(np.uint8)


@given(st.integers(1, 6), st.integers(0, 23), st.integers(0, 2**32 - 1))
def test_packing_follows_the_definition(n: int, k: int, seed: int) -> None:
    trits = np.random.default_rng(seed).integers(-1, 2, (n, k)).astype(np.int8)
    for fmt, by_definition in (("2bit", _pack_2bit_by_definition), ("base3", _pack_base3_by_definition)):
        packed = nm.pack(trits, fmt)
        assert np.array_equal(packed, by_definition(trits)), fmt
        assert np.array_equal(nm.unpack(packed, k, fmt), trits), fmt


@given(st.integers(1, 5), st.integers(1, 19), st.integers(0, 2**32 - 1), st.floats(1e-3, 1.0))
def test_ternarize_is_the_clamped_half_even_rounding(n: int, k: int, seed: int, scale: float) -> None:
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((n, k)) * scale).astype(np.float32)
    s = np.float32(scale)
    w.reshape(-1)[: min(3, w.size)] = [0.5 * s, -0.5 * s, 1.5 * s][: min(3, w.size)]  # the ties
    x = w * nm.weight_inv_scale(s)
    by_definition = np.clip(np.rint(x), -1, 1).astype(np.int8)
    assert np.array_equal(nm.ternarize(w, s), by_definition)
    for fmt in ("2bit", "base3"):
        assert np.array_equal(nm.ternarize_packed(w, s, fmt), nm.pack(by_definition, fmt))


def test_weight_scale_sums_one_float64_partial_per_block() -> None:
    rows = 2 * nm.BLOCK_ELEMENTS // 64 + 7
    w = np.random.default_rng(3).standard_normal((rows, 64)).astype(np.float32)
    partials = [np.abs(w[b].astype(np.float64)).sum() for b in nm.row_blocks(w.shape)]
    assert len(partials) == 3
    want = np.float32(max(sum(partials) / w.size, nm.WEIGHT_SCALE_FLOOR))
    trits, scale = nm.quant_weight(w)
    assert scale == want and np.array_equal(trits, nm.ternarize(w, want))
    small = w[:5]  # one block: the plain float64 mean
    assert nm.quant_weight(small)[1] == np.float32(np.abs(small.astype(np.float64)).mean())


def test_masks_hold_zeros_and_ones_only() -> None:
    x = np.ones((1, 3, 2), np.float32)
    assert np.array_equal(nm.apply_mask(x, np.array([[0, 1, 1]])), [[[0, 0], [1, 1], [1, 1]]])
    with pytest.raises(ValueError, match="0 \\(padding\\) or 1, found 2"):
        nm.apply_mask(x, np.array([[0, 2, 1]]))
    with pytest.raises(ValueError, match="found -1"):
        nm.input_gate(x, x, np.array([[1, 1, -1]]))
    t = torch.ones(1, 3, 2)
    with pytest.raises(ValueError, match="0 \\(padding\\) or 1, found 3"):  # the torch twin says the same
        tn.input_gate(t, t, torch.tensor([[1, 3, 1]]))
