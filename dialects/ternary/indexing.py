"""Ops that pick parts of a tensor: ``embedding`` (a gather of table rows), ``split`` (equal parts of
the last axis) and ``row`` (one row of the leading axis)."""

from __future__ import annotations

from typing import ClassVar

from xdsl.dialects.builtin import I64, IntegerAttr, TensorType, f32, i64
from xdsl.ir import Operation, SSAValue
from xdsl.irdl import (
    AnyAttr,
    VarConstraint,
    irdl_op_definition,
    operand_def,
    prop_def,
    result_def,
    traits_def,
    var_result_def,
)
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

from mmfc.dialects.ternary.constraints import (
    F32,
    IDS,
    STORE_FLOAT,
    Expect,
    expect_shape,
    require_rank,
    tensor_of,
)
from mmfc.dialects.ternary.tiling import TiledOp, TileRule, lead_labels
from mmfc.dialects.ternary.types import DYN, dim_str, rank, shape_of


@irdl_op_definition
class EmbeddingOp(TiledOp):
    """Token embedding: a plain gather.

    Syntax::

        %x = ternary.embedding %table[%ids] : tensor<100x64xbf16>, tensor<?x?xi64> -> tensor<?x?x64xf32>

    Semantics: ``numerics.embedding(table, ids)``: ``table[ids]`` in f32; ``table: [V, d]``,
    ``ids: [...]`` (i32 or i64, each in ``[0, V)``; out-of-range ids are a runtime error),
    result ``[..., d]``.
    """

    name = "ternary.embedding"

    table = operand_def(tensor_of("embedding", "table", STORE_FLOAT))
    ids = operand_def(tensor_of("embedding", "ids", IDS))
    result = result_def(tensor_of("embedding", "result", F32))

    traits = traits_def(Pure())
    assembly_format = "$table `[` $ids `]` attr-dict `:` type($table) `,` type($ids) `->` type($result)"

    def __init__(self, table: SSAValue | Operation, ids: SSAValue | Operation):
        _, d = shape_of(SSAValue.get(table).type)
        lead = shape_of(SSAValue.get(ids).type)
        super().__init__(operands=[table, ids], result_types=[TensorType(f32, (*lead, d))])

    def verify_(self) -> None:
        table = shape_of(self.table.type)
        if len(table) != 2:
            raise VerifyException(f"embedding: table must be 2-D [V, d], got {self.table.type}")
        ids = shape_of(self.ids.type)
        result = shape_of(self.result.type)
        expect_shape("embedding", "result", result, (*ids, table[1]), "the ids' shape, then d")

    def tile_rule(self) -> TileRule:
        lead = lead_labels(rank(self.ids))
        # Any token may pick any row of the table: V is never split.
        return TileRule((("v", "c"), lead), ((*lead, "c"),), frozenset({"v"}))


@irdl_op_definition
class SplitOp(TiledOp):
    """Split the last axis into equal consecutive parts (the GLU's gate | up halves).

    Syntax::

        %gate, %up = ternary.split %gu : tensor<?x256xf32> -> tensor<?x128xf32>, tensor<?x128xf32>

    Semantics: with n results and ``x: [..., n*m]``, result i is ``x[..., i*m:(i+1)*m]``; all results
    have one type ``[..., m]`` with x's element type.
    """

    name = "ternary.split"

    E: ClassVar = VarConstraint("E", AnyAttr())
    input = operand_def(Expect(TensorType.constr(element_type=E), "split: input must be a tensor"))
    parts = var_result_def(
        Expect(
            VarConstraint("P", TensorType.constr(element_type=E)),
            "split: all parts must have one tensor type with the input's element type",
        )
    )

    traits = traits_def(Pure())
    assembly_format = "$input attr-dict `:` type($input) `->` type($parts)"

    def __init__(self, input: SSAValue | Operation, num_parts: int = 2):
        t = SSAValue.get(input).type
        assert isinstance(t, TensorType)
        *lead, k = t.get_shape()
        m = DYN if k == DYN else k // num_parts
        part = TensorType(t.get_element_type(), (*lead, m))
        super().__init__(operands=[input], result_types=[[part] * num_parts])

    def verify_(self) -> None:
        *lead, k = require_rank("split", "input", self.input.type, 1)
        n = len(self.parts)
        if n < 2:
            raise VerifyException(f"split: expected at least 2 parts, got {n}")
        if k != DYN and k % n:
            raise VerifyException(f"split: last dim {k} does not split into {n} equal parts")
        m = DYN if k == DYN else k // n
        part = shape_of(self.parts[0].type)  # every part has its type
        expect_shape("split", "part 0", part, (*lead, m), f"1/{n} of the input's last dim")

    def tile_rule(self) -> TileRule:
        lead = lead_labels(rank(self.input) - 1)
        return TileRule(((*lead, "k"),), tuple((*lead, "part") for _ in self.parts), frozenset({"k"}))


@irdl_op_definition
class RowOp(TiledOp):
    """Pick row ``index`` of the leading axis (layer l's lower bound).

    Syntax::

        %lb = ternary.row %lbs[3] : tensor<24x64xf32> -> tensor<64xf32>

    Semantics: ``x[index]``; ``x: [L, ...]``, result ``[...]`` with x's element type;
    ``0 <= index < L``.
    """

    name = "ternary.row"

    E: ClassVar = VarConstraint("E", AnyAttr())
    input = operand_def(Expect(TensorType.constr(element_type=E), "row: input must be a tensor"))
    result = result_def(
        Expect(TensorType.constr(element_type=E), "row: result must be a tensor of the input's element type")
    )
    index = prop_def(IntegerAttr[I64])

    traits = traits_def(Pure())
    assembly_format = "$input `[` $index `]` attr-dict `:` type($input) `->` type($result)"

    def __init__(self, input: SSAValue | Operation, index: int):
        t = SSAValue.get(input).type
        assert isinstance(t, TensorType)
        super().__init__(
            operands=[input],
            result_types=[TensorType(t.get_element_type(), t.get_shape()[1:])],
            properties={"index": IntegerAttr(index, i64)},
        )

    def verify_(self) -> None:
        shape = require_rank("row", "input", self.input.type, 1)
        i = self.index.value.data
        if i < 0 or (shape[0] != DYN and i >= shape[0]):
            raise VerifyException(f"row: index {i} is out of range for {dim_str(shape[0])} rows")
        result = shape_of(self.result.type)
        expect_shape("row", "result", result, shape[1:], "the input without its first dim")

    def tile_rule(self) -> TileRule:
        rest = lead_labels(rank(self.input) - 1)
        return TileRule((("l", *rest),), (rest,), frozenset({"l"}))


__all__ = ["EmbeddingOp", "RowOp", "SplitOp"]
