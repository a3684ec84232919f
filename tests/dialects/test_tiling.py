"""``mmfc.dialects.ternary.tiling``: the rule of split legality and the grid arithmetic of a launch.

The kernel verifier's messages are pinned by ``tests/filecheck/dialects/kernel_invalid.mlir``, the
solver's (``propagate_splits``) by ``tests/passes/test_fusion.py``; both apply :func:`index_spaces`.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from xdsl.dialects.builtin import DYNAMIC_INDEX as DYN
from xdsl.dialects.builtin import IntegerType, TensorType, f32
from xdsl.ir import Attribute
from xdsl.utils.exceptions import VerifyException
from xdsl.utils.test_value import create_ssa_value

from mmfc.dialects import ternary as T


def f32t(*shape: int) -> TensorType:
    return TensorType(f32, shape)


# --------------------------------------------------------------------------------------------------
# The rule
# --------------------------------------------------------------------------------------------------


def test_index_spaces_of_a_rule() -> None:
    rule = T.TileRule((("m", "k"), ("n", "k")), (("m", "n"), ("m", "one")), frozenset({"k"}))
    spaces = T.index_spaces(rule)
    (m, k), (n, k2) = spaces.operands
    assert k == k2
    assert k == T.IndexSpace("k", T.REDUCES)
    assert m == T.IndexSpace("m") and n == T.IndexSpace("n")
    (m2, n2), (m3, one) = spaces.results
    assert m2 == m3 == m and n2 == n
    assert one == T.IndexSpace("one", T.CREATES)


def test_every_ops_whole_labels_are_whole_spaces() -> None:
    x = create_ssa_value(f32t(2, DYN, 64))
    for op in (T.RMSNormOp(x, create_ssa_value(f32t(64))), T.QuantActOp(x), T.ScanOp(x, x)):
        spaces = T.index_spaces(op.tile_rule())
        dims = [s for value in (*spaces.operands, *spaces.results) for s in value]
        assert {s.label for s in dims if s.whole_because == T.REDUCES} == op.tile_rule().whole


def _quant_act() -> T.QuantActOp:
    return T.QuantActOp(create_ssa_value(f32t(DYN, 64)))


def test_result_splits_follow_the_operands() -> None:
    assert T.result_splits(_quant_act(), [(0, None)]) == ((0, None), (0, None))
    x = create_ssa_value(f32t(DYN, 64))
    assert T.result_splits(T.MulOp(x, x), [(1, 0), (1, 0)]) == ((1, 0),)


def test_result_splits_refuse_a_split_whole_space() -> None:
    with pytest.raises(VerifyException, match=r"ternary.quant_act needs operand 0 dim 1 whole \(it reduces"):
        T.result_splits(_quant_act(), [(None, 0)])
    x = create_ssa_value(f32t(DYN, 64))
    with pytest.raises(VerifyException, match="mixes tiles: operand 0 dim 0 is split by grid axis 0 but"):
        T.result_splits(T.AddOp(x, x), [(0, None), (None, None)])


def test_body_splits_of_a_kernel() -> None:
    x, gamma = create_ssa_value(f32t(DYN, 64)), create_ssa_value(f32t(64))
    q_type = TensorType(IntegerType(8), (DYN, 64))
    kernel = T.KernelOp([4], [x, gamma], [[0, None], [None]], [q_type], [[0, None]])
    a, g = kernel.body.block.args
    norm = T.RMSNormOp(a, g)
    quant = T.QuantActOp(norm.result)
    kernel.body.block.add_ops([norm, quant, T.YieldOp(quant.q)])
    splits = T.body_splits(kernel)
    assert splits[a] == (0, None) and splits[g] == (None,)
    assert splits[norm.result] == splits[quant.q] == splits[quant.scale] == (0, None)


# --------------------------------------------------------------------------------------------------
# The grid arithmetic
# --------------------------------------------------------------------------------------------------


def _kernel(grid: list[int], types: list[Attribute], tiles: list[list[int | None]]) -> T.KernelOp:
    values = [create_ssa_value(t) for t in types]
    return T.KernelOp(grid, values, tiles, [types[0]], [tiles[0]])


def test_grid_extents_from_run_time_shapes() -> None:
    types = [f32t(DYN, DYN, 8), f32t(8), T.TritsType([5, 8]), f32]
    k = _kernel([2, 3], types, [[0, 1, None], [None], [None, None], []])
    assert T.grid_extents(k, [(4, 7, 8), (8,), (5, 8), ()]) == (4, 7)


@pytest.mark.parametrize(
    ("types", "tiles", "shapes", "message"),
    [
        ([f32t(DYN, 8)], [[0, None]], [(3,)], r"operand 0 has shape \(3,\), but its tile map has 2 dims"),
        (
            [f32t(DYN, 8), f32t(DYN, 8)],
            [[0, None], [0, None]],
            [(3, 8), (5, 8)],
            "grid axis 0 splits dims of different sizes at run time: operand 0 dim 0 has 3, operand 1 dim 0",
        ),
        ([f32t(4, 8), f32t(8)], [[None, None], [None]], [(4, 8), (8,)], "grid axis 0 splits no operand"),
        (
            [f32t(4, 8), T.PackedType([4, 8], "2bit")],
            [[None, 0], [None, 0]],
            [(4, 8), (4, 2)],
            "operand 1 is a packed weight split along K",
        ),
    ],
)
def test_grid_extents_refuse_shapes_that_do_not_fit(
    types: list[Attribute], tiles: list[list[int | None]], shapes: list[tuple[int, ...]], message: str
) -> None:
    with pytest.raises(T.GridError, match=message):
        T.grid_extents(_kernel([2], types, tiles), shapes)


def test_program_counts_round_up_and_never_reach_zero() -> None:
    assert T.program_counts((4, 3), (8, 7)) == (2, 3)
    assert T.program_counts((4,), (0,)) == (1,)
    assert T.program_counts((), ()) == ()
    assert list(T.program_points((), ())) == [()]
    assert list(T.program_points((2, 2), (3, 2))) == [(0, 0), (1, 0)]


def test_program_bounds_clip_the_last_block() -> None:
    assert T.program_bounds((0, 2), (4, 3), (10, 7)) == ((0, 4), (6, 7))
    assert T.program_bounds((2,), (4,), (10,)) == ((8, 10),)
    assert T.program_bounds((0,), (4,), (0,)) == ((0, 0),)


def test_tile_index_and_full_shape() -> None:
    bounds = ((4, 8), (2, 3))
    assert T.tile_index((1, None, 0), bounds) == (slice(2, 3), slice(None), slice(4, 8))
    assert T.full_shape((1, None, 0), (1, 5, 4), (10, 3)) == (3, 5, 10)


@given(extents=st.lists(st.integers(0, 11), min_size=1, max_size=3), data=st.data())
def test_programs_own_disjoint_tiles_that_cover_a_value(extents: list[int], data: st.DataObject) -> None:
    """Every element of a value split by every grid axis is owned by exactly one program."""
    grid = [data.draw(st.integers(1, 5)) for _ in extents]
    axes = tuple(data.draw(st.permutations(range(len(extents)))))
    shape = T.full_shape(axes, [0] * len(axes), extents)
    owners = np.zeros(shape, np.int64)
    for point in T.program_points(grid, extents):
        owners[T.tile_index(axes, T.program_bounds(point, grid, extents))] += 1
    assert np.all(owners == 1)
    counts = T.program_counts(grid, extents)
    assert counts == tuple(max(1, -(-e // b)) for e, b in zip(extents, grid))
    assert list(T.program_points(grid, extents)) == list(itertools.product(*(range(c) for c in counts)))
