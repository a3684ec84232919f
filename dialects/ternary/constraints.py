"""Operand and result rules the ops share: declarative constraints with one-line messages, the
shape checks of the verifiers, and :class:`PerFeatureOp`, the rule of ``x[..., K]`` with ``v[K]``.

Element types are checked declaratively (xDSL's ``VarConstraint``, ``TensorType.constr``,
``EqAttrConstraint``, ``AnyOf``), each wrapped in :class:`Expect` so that a failure reads as one line
naming the op and what it wants, e.g. ``quant_act: q must be a tensor of i8, got tensor<?x64xi32>``
(parsing reports that line as it is; ``op.verify()`` in Python puts xDSL's ``result 'q' at position 0
does not verify:`` before it). Relations between dims (a γ of the rows' K, one scale per row, ...)
are checked in the ops' ``verify_`` with :func:`expect_shape`.

The package re-exports :class:`Expect`, :class:`Elements` and :class:`PerFeatureOp`; the element kinds
(:data:`F32`, :data:`I8`, ...) and the helpers are the op modules' vocabulary, imported from here.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, TypeVar

from xdsl.dialects.builtin import (
    FloatAttr,
    IntegerType,
    TensorType,
    bf16,
    f16,
    f32,
    f64,
    i32,
    i64,
)
from xdsl.ir import Attribute
from xdsl.irdl import (
    AnyOf,
    AttrConstraint,
    EqAttrConstraint,
    IntConstraint,
    MessageConstraint,
    base,
)
from xdsl.irdl.constraints import VerificationContext
from xdsl.utils.exceptions import VerifyException

from mmfc.dialects.ternary.tiling import TiledOp, TileRule, lead_labels
from mmfc.dialects.ternary.types import PackedType, TritsType, rank, shape_of, shape_str, shapes_agree

_A = TypeVar("_A", bound=Attribute, covariant=True)


class Expect(MessageConstraint[_A]):
    """``constr``, failing with one line: ``{message}, got {attr}``.

    xDSL's ``MessageConstraint`` appends the underlying failure on further lines; an mmfc verifier
    message is one line that names the op and says what it wants.
    """

    def verify(self, attr: Attribute, constraint_context: VerificationContext) -> None:
        try:
            self.constr.verify(attr, constraint_context)
        except VerifyException:
            raise VerifyException(f"{self.message}, got {attr}") from None

    def mapping_type_vars(
        self, type_var_mapping: Mapping[TypeVar, AttrConstraint | IntConstraint]
    ) -> Expect[_A]:
        return Expect(self.constr.mapping_type_vars(type_var_mapping), self.message)


@dataclass(frozen=True)
class Elements:
    """The element types an operand accepts, and how a message names them."""

    constr: AttrConstraint
    spelling: str


F32 = Elements(EqAttrConstraint(f32), "f32")
STORE_FLOAT = Elements(
    AnyOf.get(*(EqAttrConstraint(t) for t in (bf16, f16, f32, f64))), "a float (bf16, f16, f32, f64)"
)
I8 = Elements(EqAttrConstraint(IntegerType(8)), "i8")
I32 = Elements(EqAttrConstraint(i32), "i32")
IDS = Elements(AnyOf.get(EqAttrConstraint(i32), EqAttrConstraint(i64)), "i32 or i64")
MASK = Elements(AnyOf.get(base(IntegerType), EqAttrConstraint(f32)), "an integer type or f32")


def tensor_of(op: str, what: str, elements: Elements) -> AttrConstraint[TensorType]:
    """A ranked tensor of ``elements``; fails with ``{op}: {what} must be a tensor of {elements}``."""
    message = f"{op}: {what} must be a tensor of {elements.spelling}"
    return Expect(TensorType.constr(element_type=elements.constr), message)


def scale_of(op: str, what: str) -> AttrConstraint:
    """A weight scale: ``f32`` or ``tensor<f32>``."""
    return Expect(
        AnyOf.get(EqAttrConstraint(f32), EqAttrConstraint(TensorType(f32, []))),
        f"{op}: {what} must be an f32 scale (f32 or tensor<f32>)",
    )


def ternary_weight_of(op: str, what: str) -> AttrConstraint:
    """A ternary weight: ``!ternary.trits`` or ``!ternary.packed``."""
    return Expect(
        base(TritsType) | base(PackedType), f"{op}: {what} must be !ternary.trits or !ternary.packed"
    )


def trits_of(op: str, what: str) -> AttrConstraint[TritsType]:
    """A ``!ternary.trits`` weight."""
    return Expect(base(TritsType), f"{op}: {what} must be !ternary.trits")


def packed_of(op: str, what: str) -> AttrConstraint[PackedType]:
    """A ``!ternary.packed`` weight."""
    return Expect(base(PackedType), f"{op}: {what} must be !ternary.packed")


# --------------------------------------------------------------------------------------------------
# Shape checks of the verifiers
# --------------------------------------------------------------------------------------------------


def require_rank(op: str, what: str, t: Attribute, min_rank: int) -> tuple[int, ...]:
    """The shape of ``t``, which must have at least ``min_rank`` dims."""
    shape = shape_of(t)
    if len(shape) < min_rank:
        raise VerifyException(f"{op}: {what} must have at least {min_rank} dims, got {t}")
    return shape


def expect_shape(op: str, what: str, got: Sequence[int], want: Sequence[int], why: str = "") -> None:
    """``got`` must agree with ``want`` (:func:`~mmfc.dialects.ternary.types.shapes_agree`)."""
    if not shapes_agree(got, want):
        because = f" ({why})" if why else ""
        raise VerifyException(f"{op}: {what} has shape {shape_str(got)}, expected {shape_str(want)}{because}")


def expect_one_per_row(op: str, what: str, got: Sequence[int], rows_of: Sequence[int], why: str) -> None:
    """``got`` must be ``[..., 1]``: one scale per row of a value of shape ``rows_of``."""
    want = (*rows_of[:-1], 1)
    if len(got) != len(rows_of) or got[-1] != 1:
        raise VerifyException(
            f"{op}: {what} has shape {shape_str(got)}, expected {shape_str(want)} "
            "(one scale per row, last dim 1)"
        )
    expect_shape(op, what, got, want, why)


def check_eps(op: str, eps: FloatAttr) -> None:
    """A norm's epsilon must be >= 0."""
    if not eps.value.data >= 0.0:
        raise VerifyException(f"{op}: eps must be >= 0, got {eps.value.data}")


def eps_attr(eps: float | FloatAttr) -> FloatAttr:
    """The ``eps`` property of a norm (an f32 float attribute)."""
    return eps if isinstance(eps, FloatAttr) else FloatAttr(eps, f32)


# --------------------------------------------------------------------------------------------------
# Rows with a per-feature vector
# --------------------------------------------------------------------------------------------------


class PerFeatureOp(TiledOp, ABC):
    """An op on rows ``x[..., K]`` with a per-feature vector ``v[K]`` broadcast over the rows (a norm's
    γ, a forget gate's lower bound): ``rmsnorm``, ``scale``, ``residual_rmsnorm``, ``gate_norm``,
    ``lower_bound``.

    The rule, stated once: operand 0 holds the rows (every other operand but the last, and every
    result, has their type: each subclass ties them with a ``VarConstraint``), the last operand is
    ``v``, and ``v`` is ``[K]`` with K the rows' last dim. In a kernel, ``v``'s K is the rows' K:
    split the same way as theirs, and whole when the op normalizes over it (:attr:`NORMALIZES`).
    """

    ROWS: ClassVar[str] = "x"
    """How messages name the rows (operand 0)."""

    VECTOR: ClassVar[str] = "gamma"
    """How messages name the per-feature vector (the last operand)."""

    NORMALIZES: ClassVar[bool] = True
    """Whether the op computes row statistics over K (so K must be whole in a kernel)."""

    def verify_(self) -> None:
        op = self.name.removeprefix("ternary.")
        rows = require_rank(op, self.ROWS, self.operands[0].type, 1)
        vector = shape_of(self.operands[-1].type)
        expect_shape(op, self.VECTOR, vector, (rows[-1],), f"the last dim of {self.ROWS}")

    def tile_rule(self) -> TileRule:
        row = (*lead_labels(rank(self.operands[0]) - 1), "k")
        return TileRule(
            (*(row for _ in self.operands[:-1]), ("k",)),
            tuple(row for _ in self.results),
            frozenset({"k"}) if self.NORMALIZES else frozenset(),
        )


__all__ = ["Elements", "Expect", "PerFeatureOp"]
