"""The value rules of stored weights (mmfc.dialects.weight_values): one check for every reader."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmfc.dialects import numerics as nm
from mmfc.dialects import weight_values as V
from mmfc.dialects.weights import MemoryStore

ROWS = 2 * nm.BLOCK_ELEMENTS // 16 + 3  # a tensor of three blocks: the problem may sit in any


def store_with(array: np.ndarray) -> MemoryStore:
    return MemoryStore({"w": array})


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("role", ["float", "master"])
def test_non_finite_values_are_refused_in_any_block(role: str, bad: float) -> None:
    w = np.random.default_rng(0).standard_normal((ROWS, 16)).astype(np.float32)
    V.check_values(store_with(w), "w", role)  # a real float tensor passes
    w[-1, -1] = bad  # in the last, short block
    with pytest.raises(V.WeightValueError, match=r"^holds non-finite values \(NaN or Inf\)$"):
        V.check_values(store_with(w), "w", role)


def test_ternary_valued_masters_are_refused_but_floats_with_few_values_pass() -> None:
    trits = np.random.default_rng(1).integers(-1, 2, (ROWS, 16)).astype(np.float32) * np.float32(0.03)
    with pytest.raises(V.WeightValueError) as info:
        V.check_values(store_with(trits), "w", "master")
    assert str(info.value) == V.ALREADY_TERNARY and "0.69x" in str(info.value)
    V.check_values(store_with(trits), "w", "float")  # a norm weight may hold few values
    trits[-1, -1] = 0.5  # a fourth value, in the last block: not ternary after all
    V.check_values(store_with(trits), "w", "master")


@given(st.lists(st.integers(-128, 127), min_size=1, max_size=40))
def test_trits_outside_the_range_are_named(values: list[int]) -> None:
    array = np.array(values, np.int8).reshape(1, -1)
    outside = sorted({v for v in values if not -1 <= v <= 1})
    if not outside:
        V.check_values(store_with(array), "w", "trits")
        return
    with pytest.raises(V.WeightValueError) as info:
        V.check_values(store_with(array), "w", "trits")
    assert str(info.value) == f"holds trits outside {{-1, 0, +1}}: found {outside[:3]}"


@pytest.mark.parametrize(
    "value, fragment",
    [
        (np.array(0.0, np.float32), "must be a positive scale, got 0.0"),
        (np.array(-0.25, np.float32), "must be a positive scale, got -0.25"),
        (np.array(np.nan, np.float32), "non-finite"),
        (np.array(np.inf, np.float32), "non-finite"),
        (np.array([0.5, 0.5], np.float32), "shape [2]"),
        (np.array(0.5, np.float64), "float32"),
    ],
)
def test_bad_scales_are_refused(value: np.ndarray, fragment: str) -> None:
    with pytest.raises(V.WeightValueError) as info:
        V.check_values(store_with(value), "w", "scale")
    assert fragment in str(info.value)


def test_a_good_scale_passes() -> None:
    V.check_values(store_with(np.array(0.125, np.float32)), "w", "scale")
