"""The canonical numpy numerics: hand-computed examples, rounding edge cases, packing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mmfc.dialects import numerics as nm

F32 = np.float32


# ------------------------------------------------------------------------------------------ rounding


@pytest.mark.parametrize(
    "x, away, even",
    [
        (0.5, 1.0, 0.0),
        (-0.5, -1.0, -0.0),
        (1.5, 2.0, 2.0),
        (-1.5, -2.0, -2.0),
        (2.5, 3.0, 2.0),
        (-2.5, -3.0, -2.0),
        (0.49999997, 0.0, 0.0),
        (-0.49999997, -0.0, -0.0),
        (1.4999999, 1.0, 1.0),
        (0.0, 0.0, 0.0),
        (126.5, 127.0, 126.0),
    ],
)
def test_rounding_ties(x: float, away: float, even: float) -> None:
    v = np.array([x], F32)
    assert nm.round_half_away(v)[0] == away
    assert nm.round_half_even(v)[0] == even


def test_floor_plus_half_would_be_wrong() -> None:
    # the pitfall the spec warns about: floor(0.49999997 + 0.5) == 1 in float32
    v = F32(0.49999997)
    assert np.floor(v + F32(0.5)) == 1.0
    assert nm.round_half_away(np.array([v]))[0] == 0.0


@given(hnp.arrays(F32, st.integers(1, 64), elements=st.floats(-300, 300, width=32)))
def test_round_half_away_matches_decimal_definition(x: np.ndarray) -> None:
    expected = np.sign(x.astype(np.float64)) * np.floor(np.abs(x.astype(np.float64)) + 0.5)
    np.testing.assert_array_equal(nm.round_half_away(x), expected.astype(F32))


# ------------------------------------------------------------------------------------------ quantizers


def test_quant_act_hand_example() -> None:
    x = np.array([[0.5, -1.0, 0.25, 0.0]], F32)
    x_q, s_x = nm.quant_act(x)
    assert s_x.shape == (1, 1) and s_x[0, 0] == F32(127.0)
    # 0.5*127 = 63.5 -> 64 (half away from zero); -127; 31.75 -> 32; 0
    np.testing.assert_array_equal(x_q, np.array([[64, -127, 32, 0]], np.int8))
    assert x_q.dtype == np.int8


def test_quant_act_negative_tie_and_floor() -> None:
    x = np.array([[-0.5, 1.0], [0.0, 0.0]], F32)
    x_q, s_x = nm.quant_act(x)
    np.testing.assert_array_equal(x_q[0], [-64, 127])  # -63.5 -> -64
    # an all-zero row uses the 1e-5 floor: s_x = 127 / 1e-5
    assert s_x[1, 0] == F32(127.0) / F32(1e-5)
    np.testing.assert_array_equal(x_q[1], [0, 0])


def test_quant_weight_hand_example() -> None:
    w = np.array([[0.3, -0.6], [0.0, 1.5]], F32)
    trits, scale = nm.quant_weight(w)
    # mean|W| = 2.4/4 = 0.6 -> s_w = 1/0.6; W*s_w = [0.5, -1, 0, 2.5] -> half-even [0, -1, 0, 2] -> clamp
    assert scale == F32(0.6)
    np.testing.assert_array_equal(trits, [[0, -1], [0, 1]])
    assert trits.dtype == np.int8


def test_quant_weight_is_not_idempotent() -> None:
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.02, (64, 64)).astype(F32)
    trits, scale = nm.quant_weight(w)
    nonzero = np.count_nonzero(trits) / trits.size
    # quantizing the ternary values again keeps the signs but the scale becomes the non-zero fraction
    trits2, scale2 = nm.quant_weight(trits.astype(F32))
    np.testing.assert_array_equal(trits2, trits)
    assert scale2 == pytest.approx(nonzero, rel=1e-6)
    assert scale2 != pytest.approx(1.0)
    # and applied to the dequantized weights it shrinks the scale by that same fraction
    _, scale3 = nm.quant_weight(trits.astype(F32) * scale)
    assert scale3 / scale == pytest.approx(nonzero, rel=1e-5)


def test_shared_gate_proj_scale() -> None:
    """gate and up are one [2I, d] tensor: one scale over both halves, not one per half."""
    rng = np.random.default_rng(1)
    gate = rng.normal(0, 0.01, (8, 16)).astype(F32)
    up = rng.normal(0, 0.05, (8, 16)).astype(F32)
    trits, scale = nm.quant_weight(np.concatenate([gate, up]))
    expected = F32(np.abs(np.concatenate([gate, up]).astype(np.float64)).mean())
    assert scale == expected
    _, gate_scale = nm.quant_weight(gate)
    _, up_scale = nm.quant_weight(up)
    assert gate_scale != scale and up_scale != scale
    # the shared scale zeroes more of the small-magnitude gate half than a per-half scale would
    g_shared = trits[:8]
    g_own, _ = nm.quant_weight(gate)
    assert np.count_nonzero(g_shared) < np.count_nonzero(g_own)


def test_weight_scale_mean_in_float64() -> None:
    # an input whose float32 mean (numpy's pairwise sum) differs by an ulp from the float64 mean:
    # the scale must be the float64 one, rounded once to float32
    w = np.random.default_rng(1).normal(0, 0.02, (64, 257)).astype(F32)
    mean64 = F32(np.abs(w.astype(np.float64)).mean())
    assert mean64 != np.abs(w).mean(dtype=F32)  # the input does discriminate
    _, scale = nm.quant_weight(w)
    assert scale == mean64


def test_accum_exact_and_dequant() -> None:
    rng = np.random.default_rng(2)
    x_q = rng.integers(-128, 128, (3, 5, 300)).astype(np.int8)
    trits = rng.integers(-1, 2, (7, 300)).astype(np.int8)
    acc = nm.accum(x_q, trits)
    ref = np.einsum("btk,nk->btn", x_q.astype(np.int64), trits.astype(np.int64))
    np.testing.assert_array_equal(acc, ref)
    assert acc.dtype == np.int32
    s_x = np.full((3, 5, 1), 2.0, F32)
    y = nm.dequant(acc, s_x, F32(0.5))
    np.testing.assert_array_equal(y, acc.astype(F32) / F32(4.0))


def test_accum_rejects_mismatched_k() -> None:
    with pytest.raises(ValueError, match="K=3"):
        nm.accum(np.zeros((2, 3), np.int8), np.zeros((4, 5), np.int8))


def test_rmsnorm_hand_example() -> None:
    x = np.array([[3.0, 4.0]], F32)
    y = nm.rmsnorm(x, np.array([1.0, 2.0], F32), eps=0.0)
    # rms = sqrt((9+16)/2) = sqrt(12.5)
    np.testing.assert_allclose(y, [[3 / np.sqrt(12.5), 8 / np.sqrt(12.5)]], rtol=1e-6)


def test_lower_bounds() -> None:
    p = np.array([[0.0, 1.0], [0.0, 2.0], [0.0, 3.0]], F32)
    lb = nm.lower_bounds(p)
    assert np.all(lb[0] == 0)
    s = np.exp(p) / np.exp(p).sum(0)
    np.testing.assert_allclose(lb, np.cumsum(s, 0) - s[0], rtol=1e-6, atol=1e-7)
    assert np.all(np.diff(lb, axis=0) >= 0)


@given(
    a=hnp.arrays(F32, (3, 4), elements=st.floats(width=32, allow_nan=False, allow_infinity=False)),
    b=hnp.arrays(F32, (3, 4), elements=st.floats(width=32, allow_nan=False, allow_infinity=False)),
)
def test_add_sub_mul_are_one_f32_operation(a: np.ndarray, b: np.ndarray) -> None:
    """One correctly rounded f32 operation each: the exact float64 result rounded once to f32."""
    with np.errstate(over="ignore"):
        for fn, exact in ((nm.add, np.add), (nm.sub, np.subtract), (nm.mul, np.multiply)):
            y = fn(a, b)
            assert y.dtype == F32 and y.shape == (3, 4)
            np.testing.assert_array_equal(y, exact(a.astype(np.float64), b.astype(np.float64)).astype(F32))


def test_scan_matches_steps() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 6, 4)).astype(F32)
    f = rng.uniform(size=(2, 6, 4)).astype(F32)
    h0 = rng.normal(size=(2, 4)).astype(F32)
    out, last = nm.scan(x, f, h0)
    h = h0
    for t in range(6):
        h = nm.scan_step(x[:, t], f[:, t], h)
        np.testing.assert_array_equal(out[:, t], h)
    np.testing.assert_array_equal(last, h)


# ------------------------------------------------------------------------------------------ packing


@pytest.mark.parametrize("fmt", ["2bit", "base3"])
@given(data=st.data())
def test_pack_roundtrip(fmt: str, data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 6))
    k = data.draw(st.integers(1, 23))
    trits = data.draw(hnp.arrays(np.int8, (n, k), elements=st.integers(-1, 1)))
    packed = nm.pack(trits, fmt)
    assert packed.dtype == np.uint8
    assert packed.shape == (n, nm.packed_row_bytes(k, fmt))
    np.testing.assert_array_equal(nm.unpack(packed, k, fmt), trits)


def test_pack_2bit_layout() -> None:
    # trits k=0..3 = [+1, -1, 0, +1] -> codes 01, 10, 00, 01 at bits 0,2,4,6
    packed = nm.pack_2bit(np.array([[1, -1, 0, 1, -1]], np.int8))
    assert packed.tolist() == [[0b01_00_10_01, 0b10]]


def test_pack_base3_layout() -> None:
    trits = np.array([[1, 0, -1, 1, 1, -1]], np.int8)
    # byte 0 = (2)*1 + (1)*3 + (0)*9 + (2)*27 + (2)*81 = 2+3+0+54+162 = 221; byte 1 = 0 (+1 offsets: pads are 0 -> 1)
    packed = nm.pack_base3(trits)
    assert packed[0, 0] == 221
    assert packed[0, 1] == 0 + 1 * 3 + 1 * 9 + 1 * 27 + 1 * 81  # trit -1 then four zero pads


def test_unpack_rejects_invalid_codes() -> None:
    with pytest.raises(ValueError, match="0b11"):
        nm.unpack_2bit(np.array([[0b11]], np.uint8), 4)
    with pytest.raises(ValueError, match="0b11"):
        nm.unpack_2bit(np.array([[0b1100_0000]], np.uint8), 4)
    for bad in (243, 255):
        with pytest.raises(ValueError, match="242"):
            nm.unpack_base3(np.array([[bad]], np.uint8), 5)
    nm.unpack_base3(np.array([[242]], np.uint8), 5)  # the largest valid byte


def test_pack_rejects_non_trits_and_bad_format() -> None:
    with pytest.raises(ValueError, match="-1, 0"):
        nm.pack_2bit(np.array([[2]], np.int8))
    with pytest.raises(ValueError, match="unknown packing format"):
        nm.pack(np.zeros((1, 1), np.int8), "3bit")
    with pytest.raises(ValueError, match="expected"):
        nm.unpack_2bit(np.zeros((1, 3), np.uint8), 4)


def test_looks_ternary() -> None:
    assert nm.looks_ternary(np.array([[0.5, -0.5], [0.0, 0.5]], F32))
    assert nm.looks_ternary(np.full((3, 3), 0.25, F32))  # one or two distinct values count too
    assert not nm.looks_ternary(np.array([0.5, -0.5, 0.0, 0.25], F32))
    assert not nm.looks_ternary(np.zeros((0, 4), F32))
    # a fourth value after the leading sample is still seen
    late = np.tile(np.array([-1.0, 0.0, 1.0], F32), 2000)
    late[-1] = 0.5
    assert not nm.looks_ternary(late)
    late[-1] = 1.0
    assert nm.looks_ternary(late)
