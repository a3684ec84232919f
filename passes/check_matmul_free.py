"""``check-matmul-free``: prove that no floating-point matrix product is left in the module."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import AnyFloat, ContainerType, ModuleOp, UnregisteredOp
from xdsl.dialects.linalg.attrs import IteratorType
from xdsl.dialects.linalg.ops import GenericOp
from xdsl.ir import Attribute, BlockArgument, Operation, OpResult, SSAValue
from xdsl.passes import ModulePass

from mmfc.dialects.source import OpError

#: what the diagnostic says a remaining float product breaks
WHY = "the model must be matmul-free after -O2"

#: a short op name (after the dialect) that is a contraction: linalg's named matmul/matvec/vecmat/dot
#: families (batch_, _transpose_a, quantized_, ...), mmt4d, vector.contract, HLO's dot_general,
#: torch's mm/bmm/addmm/baddbmm/linear, einsum, and convolutions (conv_2d_*, conv2d, depthwise_conv*,
#: convolution; not "convert")
_CONTRACTION = re.compile(
    r"(.*(matmul|matvec|vecmat|mmt4d).*|.*dot(_general|_product)?|contract|mm|bmm|addmm|baddbmm|linear|einsum"
    r"|(depthwise_)?conv(\d.*|_.*)?|convolution)",
    re.IGNORECASE,
)

#: short names of float multiplications inside a linalg.generic body (arith.mulf, math.fma, llvm.fmul,
#: llvm.intr.fmuladd, ...); a plain ``mul`` counts when its result is a float (complex.mul)
_FLOAT_MUL = frozenset({"mulf", "fmul", "fma", "fmuladd"})


@dataclass(frozen=True)
class CheckMatmulFree(ModulePass):
    """Fail if any floating-point matrix product remains; change nothing.

    A MatMul-free model computes every matrix product as ``ternary.accum`` (int8 activations added
    and subtracted under trits, exact in int32), which is always fine, as is an integer matrix
    product a backend may lower it to (``linalg.matmul`` on ``i8 x i8 -> i32``). Reported, at the
    first offending op (``FILE:LINE:COL`` from ``mmfc opt``; the message counts the others):

    * a named contraction of any dialect whose factors (a linalg op's ``ins``, else its first two
      operands) have a float element type: ``linalg.matmul`` / ``batch_matmul`` / ``matvec`` /
      ``vecmat`` / ``dot`` and their variants (``*_transpose_a``, ``batch_reduce_matmul``, ``mmt4d``,
      convolutions), ops of other dialects whose name ends in ``matmul`` or ``dot``
      (``tosa.matmul``, ``tt.dot``, ``stablehlo.dot_general``), ``vector.contract``, ``aten.mm``,
      ... Unregistered ops (``--allow-unregistered-dialect``) are judged by their name the same way;
    * a ``linalg.generic`` with a ``reduction`` iterator whose body multiplies two floats derived from
      two *different* inputs (``x[i, k] * w[k, j]`` summed over k). A reduction that multiplies an
      input by itself or by a constant (a sum of squares, a scaled sum) is not a matrix product.

    Not inspected: products written as explicit loops (``scf.for`` around a float multiply-add) and
    products inside functions the module only declares or calls externally.

    Options: none.
    """

    name = "check-matmul-free"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        found = [(inner, what) for inner in op.walk() if (what := float_product(inner)) is not None]
        if found:
            first, what = found[0]
            if op_name(first) != first.name:  # an unregistered op: say what it was called
                what = f"'{op_name(first)}', {what}"
            more = f" ({len(found) - 1} more in the module)" if len(found) > 1 else ""
            raise OpError(first, f"floating-point matrix product ({what}): {WHY}{more}")


def op_name(op: Operation) -> str:
    """The op's full name; for an op of an unregistered dialect, the name written in the source."""
    if isinstance(op, UnregisteredOp):
        return op.op_name.data
    return op.name


def element_type(t: Attribute) -> Attribute:
    """The element type of a tensor, vector or memref type; any other type is its own element."""
    return t.get_element_type() if isinstance(t, ContainerType) else t


def is_float(t: Attribute) -> bool:
    """A float scalar type, or a container of floats."""
    return isinstance(element_type(t), AnyFloat)


def float_product(op: Operation) -> str | None:
    """Why ``op`` is a floating-point matrix product (``"f32 x f32"``, ...), or None when it is not one."""
    if isinstance(op, GenericOp):
        return _generic_product(op)
    short = op_name(op).split(".")[-1]
    if "." not in op_name(op) or not _CONTRACTION.fullmatch(short):
        return None
    factors: Sequence[SSAValue] = getattr(op, "inputs", None) or op.operands[:2]
    if not any(is_float(v.type) for v in factors):
        return None
    return " x ".join(str(element_type(v.type)) for v in factors)


def _generic_product(op: GenericOp) -> str | None:
    """A reduction whose body multiplies floats from two different inputs: ``"f32 x f32 in a reduction"``."""
    if not any(it.data == IteratorType.REDUCTION for it in op.iterator_types.data):
        return None
    block = op.body.block
    n_inputs = len(op.inputs)
    memo: dict[SSAValue, frozenset[int]] = {}

    def inputs_of(v: SSAValue) -> frozenset[int]:
        """Indices of the generic's inputs that ``v`` is computed from (its outputs are left out)."""
        if v in memo:
            return memo[v]
        memo[v] = frozenset()  # a value cannot depend on itself; the guard keeps the walk finite
        if isinstance(v, BlockArgument):
            found = frozenset({v.index}) if v.block is block and v.index < n_inputs else frozenset()
        else:
            assert isinstance(v, OpResult)
            found = frozenset().union(*(inputs_of(o) for o in v.op.operands))
        memo[v] = found
        return found

    for inner in op.body.walk():
        short = op_name(inner).split(".")[-1]
        is_mul = short in _FLOAT_MUL or (short == "mul" and any(is_float(r.type) for r in inner.results))
        if not is_mul or len(inner.operands) < 2 or not any(is_float(r.type) for r in inner.results):
            continue
        a, b = inner.operands[0], inner.operands[1]
        if inputs_of(a) and inputs_of(b) and len(inputs_of(a) | inputs_of(b)) >= 2:
            return f"{element_type(a.type)} x {element_type(b.type)} in a reduction"
    return None
