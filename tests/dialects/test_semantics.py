"""The op -> numerics table of the ternary dialect (``mmfc.dialects.ternary.semantics``).

That the interpreter computes every value through this table, and equals it on every op, is tested in
``tests/backends/interp/test_ops.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.dialects.builtin import DYNAMIC_INDEX as DYN
from xdsl.dialects.builtin import IntegerType, TensorType, f32
from xdsl.utils.test_value import create_ssa_value

from mmfc.dialects import numerics as nm
from mmfc.dialects import ternary as T

NOT_IN_THE_TABLE = {T.WeightOp, T.KernelOp, T.YieldOp}
"""A weight's value is in the weight store; a backend runs kernels (and their yields) per program."""


def test_every_compute_op_has_semantics() -> None:
    ops = set(T.Ternary.operations)
    assert set(T.SEMANTICS) == ops - NOT_IN_THE_TABLE
    assert all(T.has_semantics(op) for op in ops - NOT_IN_THE_TABLE)
    assert not any(T.has_semantics(op) for op in NOT_IN_THE_TABLE)


def test_evaluate_refuses_an_op_without_semantics() -> None:
    op = T.WeightOp("model.norm.weight", TensorType(f32, [4]))
    with pytest.raises(NotImplementedError, match="ternary.weight has no entry in the ternary semantics"):
        T.evaluate(op)


def test_evaluate_reads_the_ops_properties() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4) - 5
    rows = create_ssa_value(TensorType(f32, [3, 4]))
    (y,) = T.evaluate(T.RMSNormalizeOp(rows, 0.25), x)
    np.testing.assert_array_equal(y, nm.rms_normalize(x, 0.25))
    assert [p.shape for p in T.evaluate(T.SplitOp(rows, 4), x)] == [(3, 1)] * 4
    np.testing.assert_array_equal(T.evaluate(T.RowOp(rows, 2), x)[0], x[2])


def test_weight_scales_take_their_types_representation() -> None:
    w = np.array([[0.5, -0.25], [0.0, 1.0]], np.float32)
    master = create_ssa_value(TensorType(f32, [2, 2]))
    _, scalar = T.evaluate(T.QuantWeightOp(master), w)
    _, tensor = T.evaluate(T.QuantWeightOp(master, TensorType(f32, [])), w)
    assert isinstance(scalar, np.float32)
    assert isinstance(tensor, np.ndarray) and tensor.shape == () and tensor.dtype == np.float32
    assert scalar == tensor == nm.quant_weight(w)[1]


def test_packed_k_comes_from_the_types_or_the_activation() -> None:
    trits = np.array([[1, 0, -1, 1, 1], [0, 0, 1, -1, 0]], np.int8)
    packed = nm.pack(trits, "base3")
    x = np.array([[1, 2, 3, 4, 5]], np.int8)
    tile = create_ssa_value(T.PackedType([2, DYN], "base3"))  # a kernel's tile of a packed weight
    accum = T.AccumOp(create_ssa_value(TensorType(IntegerType(8), [1, DYN])), tile)
    np.testing.assert_array_equal(T.evaluate(accum, x, packed)[0], nm.accum(x, trits))
    unpack = T.UnpackOp.create(operands=[tile], result_types=[T.TritsType([2, DYN])])
    with pytest.raises(ValueError, match="cannot unpack a packed weight whose K is dynamic"):
        T.evaluate(unpack, packed)
