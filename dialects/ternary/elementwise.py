"""Elementwise f32 ops: ``sigmoid``, ``silu``, ``one_minus``, ``silu_mul``, ``mul``, ``add``, ``sub``.

Every operand and the result of one op have one tensor type (a ``VarConstraint``): numpy never
broadcasts between them. Each op means the function of :mod:`mmfc.dialects.numerics` its docstring
names.
"""

from __future__ import annotations

from abc import ABC
from typing import ClassVar

from xdsl.ir import Operation, SSAValue
from xdsl.irdl import VarConstraint, irdl_op_definition, operand_def, result_def, traits_def
from xdsl.traits import Commutative, Pure

from mmfc.dialects.ternary.constraints import F32, tensor_of
from mmfc.dialects.ternary.tiling import TiledOp, TileRule, lead_labels
from mmfc.dialects.ternary.types import rank


def same_f32_tensors(op: str) -> VarConstraint:
    """Every operand and result of elementwise op ``op``: one f32 tensor type."""
    return VarConstraint("T", tensor_of(op, "operand", F32))


class ElementwiseOp(TiledOp, ABC):
    """An elementwise f32 op: its dims are independent, so a kernel may split any of them."""

    def tile_rule(self) -> TileRule:
        labels = lead_labels(rank(self.operands[0]))
        return TileRule(tuple(labels for _ in self.operands), tuple(labels for _ in self.results))


class UnaryOp(ElementwiseOp, ABC):
    """``ternary.<op> %x : tensor<...xf32>``."""

    traits = traits_def(Pure())
    assembly_format = "$x attr-dict `:` type($x)"

    def __init__(self, x: SSAValue | Operation):
        super().__init__(operands=[x], result_types=[SSAValue.get(x).type])


class BinaryOp(ElementwiseOp, ABC):
    """``ternary.<op> %lhs, %rhs : tensor<...xf32>``."""

    traits = traits_def(Pure())
    assembly_format = "$lhs `,` $rhs attr-dict `:` type($result)"

    def __init__(self, lhs: SSAValue | Operation, rhs: SSAValue | Operation):
        super().__init__(operands=[lhs, rhs], result_types=[SSAValue.get(lhs).type])


@irdl_op_definition
class SigmoidOp(UnaryOp):
    """``ternary.sigmoid %x : tensor<?x64xf32>``: ``numerics.sigmoid``, ``1 / (1 + exp(-x))`` in f32."""

    name = "ternary.sigmoid"

    T: ClassVar = same_f32_tensors("sigmoid")
    x = operand_def(T)
    result = result_def(T)


@irdl_op_definition
class SiluOp(UnaryOp):
    """``ternary.silu %x : tensor<?x64xf32>``: ``numerics.silu``, ``x * sigmoid(x)`` in f32."""

    name = "ternary.silu"

    T: ClassVar = same_f32_tensors("silu")
    x = operand_def(T)
    result = result_def(T)


@irdl_op_definition
class OneMinusOp(UnaryOp):
    """``ternary.one_minus %f : tensor<?x64xf32>``: ``numerics.one_minus``, ``1 - x`` in f32 (the input
    gate's ``1 - f``)."""

    name = "ternary.one_minus"

    T: ClassVar = same_f32_tensors("one_minus")
    x = operand_def(T)
    result = result_def(T)


@irdl_op_definition
class SiluMulOp(BinaryOp):
    """``ternary.silu_mul %gate, %up : tensor<?x128xf32>``: ``numerics.silu_mul``,
    ``SiLU(gate) * up`` computed as ``gate * up / (1 + exp(-gate))`` in f32 (the GLU's p, and the
    MLGRU's ``i' = SiLU(i) * (1 - f)``). Not commutative."""

    name = "ternary.silu_mul"

    T: ClassVar = same_f32_tensors("silu_mul")
    lhs = operand_def(T)
    rhs = operand_def(T)
    result = result_def(T)


@irdl_op_definition
class MulOp(BinaryOp):
    """``ternary.mul %a, %b : tensor<?x64xf32>``: ``numerics.mul``, ``a * b`` in f32."""

    name = "ternary.mul"
    traits = traits_def(Pure(), Commutative())

    T: ClassVar = same_f32_tensors("mul")
    lhs = operand_def(T)
    rhs = operand_def(T)
    result = result_def(T)


@irdl_op_definition
class AddOp(BinaryOp):
    """``ternary.add %a, %b : tensor<?x64xf32>``: ``numerics.add``, ``a + b`` in f32 (the residual adds)."""

    name = "ternary.add"
    traits = traits_def(Pure(), Commutative())

    T: ClassVar = same_f32_tensors("add")
    lhs = operand_def(T)
    rhs = operand_def(T)
    result = result_def(T)


@irdl_op_definition
class SubOp(BinaryOp):
    """``ternary.sub %a, %b : tensor<?x64xf32>``: ``numerics.sub``, ``a - b`` in f32."""

    name = "ternary.sub"

    T: ClassVar = same_f32_tensors("sub")
    lhs = operand_def(T)
    rhs = operand_def(T)
    result = result_def(T)


__all__ = ["AddOp", "MulOp", "OneMinusOp", "SigmoidOp", "SiluMulOp", "SiluOp", "SubOp"]
