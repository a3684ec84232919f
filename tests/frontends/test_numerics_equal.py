"""The torch numerics beside the model equal the canonical numpy ones (``mmfc.dialects.numerics``).

Integers (x_q, trits, accumulators, packed bytes) bit-exact; floats within FLOAT_RTOL/ATOL: numpy and
torch use different exp/sum kernels, so elementwise transcendental results may differ by a few ulp.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mmfc.dialects import numerics as nm
from mmfc.frontends.torch import numerics as tn

F32 = np.float32
FLOAT_RTOL = 2e-6
FLOAT_ATOL = 1e-6


def shapes(min_dims: int = 1, max_dims: int = 3) -> st.SearchStrategy[tuple[int, ...]]:
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=9)


def f32_arrays(shape: st.SearchStrategy | tuple, lo: float = -8, hi: float = 8) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(F32, shape, elements=st.floats(lo, hi, width=32, allow_subnormal=False))


def t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))


def close(a: torch.Tensor, b: np.ndarray) -> None:
    np.testing.assert_allclose(a.numpy(), b, rtol=FLOAT_RTOL, atol=FLOAT_ATOL)


@given(f32_arrays(shapes(), -400, 400))
def test_rounding(x: np.ndarray) -> None:
    np.testing.assert_array_equal(tn.round_half_away(t(x)).numpy(), nm.round_half_away(x))
    np.testing.assert_array_equal(tn.round_half_even(t(x)).numpy(), nm.round_half_even(x))


@pytest.mark.parametrize("v", [0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.49999997, -0.49999997])
def test_rounding_ties(v: float) -> None:
    x = np.array([v], F32)
    assert tn.round_half_away(t(x)).item() == nm.round_half_away(x)[0]
    assert tn.round_half_even(t(x)).item() == nm.round_half_even(x)[0]


@given(data=st.data())
def test_rmsnorm_and_quant_act(data: st.DataObject) -> None:
    shape = data.draw(shapes(1, 3))
    x = data.draw(f32_arrays(shape))
    gamma = data.draw(f32_arrays((shape[-1],), -2, 2))
    y_t, y_n = tn.rmsnorm(t(x), t(gamma)), nm.rmsnorm(x, gamma)
    close(y_t, y_n)
    # quantization is checked exactly on identical float inputs
    q_t, s_t = tn.quant_act(t(y_n))
    q_n, s_n = nm.quant_act(y_n)
    np.testing.assert_array_equal(q_t.numpy(), q_n)
    np.testing.assert_array_equal(s_t.numpy(), s_n)
    r_t, res_t = tn.residual_rmsnorm(t(x), t(x[::-1].copy()), t(gamma))
    r_n, res_n = nm.residual_rmsnorm(x, x[::-1].copy(), gamma)
    np.testing.assert_array_equal(res_t.numpy(), res_n)
    close(r_t, r_n)


@given(data=st.data())
def test_quant_weight(data: st.DataObject) -> None:
    n, k = data.draw(st.integers(1, 12)), data.draw(st.integers(1, 12))
    w = data.draw(f32_arrays((n, k), -0.125, 0.125))
    tr_t, sc_t = tn.quant_weight(t(w))
    tr_n, sc_n = nm.quant_weight(w)
    np.testing.assert_array_equal(tr_t.numpy(), tr_n)
    assert sc_t.dtype == torch.float32 and sc_t.item() == sc_n
    assert tn.weight_inv_scale(sc_t).item() == nm.weight_inv_scale(sc_n)


@given(data=st.data())
def test_accum_dequant_bitlinear(data: st.DataObject) -> None:
    b, k, n = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 40)), data.draw(st.integers(1, 9))
    x_q = data.draw(hnp.arrays(np.int8, (b, k), elements=st.integers(-128, 127)))
    trits = data.draw(hnp.arrays(np.int8, (n, k), elements=st.integers(-1, 1)))
    acc_t, acc_n = tn.accum(t(x_q), t(trits)), nm.accum(x_q, trits)
    np.testing.assert_array_equal(acc_t.numpy(), acc_n)
    assert acc_t.dtype == torch.int32
    s_x = data.draw(f32_arrays((b, 1), 0.5, 200))
    scale = F32(data.draw(st.floats(0.0009765625, 1.0, width=32)))
    np.testing.assert_array_equal(
        tn.dequant(acc_t, t(s_x), torch.tensor(scale)).numpy(), nm.dequant(acc_n, s_x, scale)
    )
    x = data.draw(f32_arrays((b, k)))
    gamma = data.draw(f32_arrays((k,), 0.5, 1.5))
    # bitlinear: the integer path is compared exactly on the same normalized inputs (rmsnorm's float
    # sums may differ by an ulp between numpy and torch, which could flip a rounding tie)
    yn = nm.rmsnorm(x, gamma)
    qn, sn = nm.quant_act(yn)
    qt, st_ = tn.quant_act(t(yn))
    np.testing.assert_array_equal(qt.numpy(), qn)
    np.testing.assert_array_equal(
        tn.dequant(tn.accum(qt, t(trits)), st_, torch.tensor(scale)).numpy(),
        nm.dequant(nm.accum(qn, trits), sn, scale),
    )


@given(data=st.data())
def test_elementwise_and_gates(data: st.DataObject) -> None:
    shape = data.draw(shapes(1, 3))
    x = data.draw(f32_arrays(shape, -30, 30))
    y = data.draw(f32_arrays(shape, -3, 3))
    lb = data.draw(f32_arrays((shape[-1],), 0, 1))
    close(tn.sigmoid(t(x)), nm.sigmoid(x))
    close(tn.silu(t(x)), nm.silu(x))
    close(tn.silu_mul(t(x), t(y)), nm.silu_mul(x, y))
    f = nm.forget_gate(x, lb)
    close(tn.forget_gate(t(x), t(lb)), f)
    close(tn.input_gate(t(y), t(f)), nm.input_gate(y, f))
    close(tn.gate_norm(t(x), t(y), t(lb)), nm.gate_norm(x, y, lb))


@given(data=st.data())
def test_scan_and_mask(data: st.DataObject) -> None:
    b, n, d = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 7)), data.draw(st.integers(1, 5))
    x = data.draw(f32_arrays((b, n, d)))
    f = data.draw(f32_arrays((b, n, d), 0, 1))
    h0 = data.draw(f32_arrays((b, d)))
    mask = data.draw(hnp.arrays(np.int64, (b, n), elements=st.integers(0, 1)))
    o_t, h_t = tn.scan(t(x), t(f), t(h0))
    o_n, h_n = nm.scan(x, f, h0)
    np.testing.assert_array_equal(o_t.numpy(), o_n)  # same op order: bit-exact
    np.testing.assert_array_equal(h_t.numpy(), h_n)
    np.testing.assert_array_equal(
        tn.scan_step(t(x[:, 0]), t(f[:, 0]), t(h0)).numpy(), nm.scan_step(x[:, 0], f[:, 0], h0)
    )
    close(tn.input_gate(t(x), t(f), t(mask)), nm.input_gate(x, f, mask))
    assert np.all(nm.input_gate(x, f, mask)[mask == 0] == 0)


@given(f32_arrays(st.tuples(st.integers(1, 6), st.integers(1, 5)), -4, 4))
def test_lower_bounds(p: np.ndarray) -> None:
    close(tn.lower_bounds(t(p)), nm.lower_bounds(p))


@given(data=st.data())
def test_embedding(data: st.DataObject) -> None:
    v, d = data.draw(st.integers(1, 10)), data.draw(st.integers(1, 4))
    table = data.draw(f32_arrays((v, d)))
    ids = data.draw(hnp.arrays(np.int64, (2, 3), elements=st.integers(0, v - 1)))
    np.testing.assert_array_equal(tn.embedding(t(table), t(ids)).numpy(), nm.embedding(table, ids))


@pytest.mark.parametrize("fmt", ["2bit", "base3"])
@given(data=st.data())
def test_pack_equal(fmt: str, data: st.DataObject) -> None:
    n, k = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 21))
    trits = data.draw(hnp.arrays(np.int8, (n, k), elements=st.integers(-1, 1)))
    p_t, p_n = tn.pack(t(trits), fmt), nm.pack(trits, fmt)
    np.testing.assert_array_equal(p_t.numpy(), p_n)
    np.testing.assert_array_equal(tn.unpack(p_t, k, fmt).numpy(), trits)


def test_torch_unpack_rejects_invalid_codes() -> None:
    with pytest.raises(ValueError, match="0b11"):
        tn.unpack_2bit(torch.tensor([[0b0011_0000]], dtype=torch.uint8), 4)
    with pytest.raises(ValueError, match="242"):
        tn.unpack_base3(torch.tensor([[250]], dtype=torch.uint8), 5)
