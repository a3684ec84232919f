"""The ``ternary`` dialect: the MatMul-free LM as IR, unfused and fused.

Every computation of ``shared/docs/model-spec.md`` is expressed at two levels:

* **unfused**: one op per step of the model (``rmsnorm``, ``quant_act``, ``accum``, ``dequant``,
  ``scan``, elementwise gates, ...), each with the meaning of one function of
  :mod:`mmfc.dialects.numerics` (named in its docstring). Weights are symbols into a weight store
  (``ternary.weight @name``), never inline constants.
* **fused**: ``ternary.kernel`` runs a body of unfused ops over an explicit grid of programs; its
  verifier rejects a body that would need a value produced by another program of the same launch
  (see :class:`KernelOp` for the rule, and ``docs/dialect.md``).

Types: ``!ternary.trits<NxK>`` (int8 trits in {-1, 0, +1}), ``!ternary.packed<NxK, "2bit">`` /
``"base3"`` (trits packed as in model-spec.md; the shape is the logical [N, K] in trits), and builtin
types for the rest: activations ``tensor<...xf32>``, int8 activations ``tensor<...xi8>`` with
``tensor<...x1xf32>`` scales, int32 accumulators ``tensor<...xi32>``, weight scales ``f32`` or
``tensor<f32>``. Batch and sequence dims may be dynamic (``?``); verifiers check static dims only.

All float activations are f32. Tensors read from the weight store (float masters, norm weights,
the embedding table, ``model.lower_bounds``) may be any of bf16, f16, f32 or f64: ops that consume
them compute in f32, like numerics.py.

Verifiers check types and shapes only: they never open the weight store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    I64,
    ArrayAttr,
    BFloat16Type,
    DenseArrayBase,
    Float16Type,
    Float32Type,
    Float64Type,
    FlatSymbolRefAttrConstr,
    FloatAttr,
    IntAttr,
    IntegerAttr,
    IntegerType,
    ShapedType,
    StringAttr,
    SymbolRefAttr,
    TensorType,
    f32,
    i64,
)
from xdsl.ir import (
    Attribute,
    Block,
    Dialect,
    Operation,
    ParametrizedAttribute,
    Region,
    SSAValue,
    TypeAttribute,
)
from xdsl.irdl import (
    IRDLOperation,
    VarConstraint,
    base,
    irdl_attr_definition,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.parser import AttrParser, Parser, UnresolvedOperand
from xdsl.pattern_rewriter import PatternRewriter, RewritePattern, op_type_rewrite_pattern
from xdsl.printer import Printer
from xdsl.traits import (
    Commutative,
    HasCanonicalizationPatternsTrait,
    HasParent,
    IsolatedFromAbove,
    IsTerminator,
    Pure,
    RecursiveMemoryEffect,
    RecursivelySpeculatable,
    ReturnLike,
)
from xdsl.utils.exceptions import VerifyException

from mmfc.dialects.numerics import PACK_FORMATS, RMS_EPS, packed_row_bytes

DYN = DYNAMIC_INDEX
"""A dynamic dim (``?``), as builtin tensor types store it."""

WHOLE = -1
"""In a tile map: this dim is not split; every program sees all of it (printed ``*``)."""

STORE_FLOATS = (BFloat16Type, Float16Type, Float32Type, Float64Type)
"""Element types a tensor read from the weight store may have (computed in f32 once read)."""


# --------------------------------------------------------------------------------------------------
# Shape helpers (shared by the verifiers)
# --------------------------------------------------------------------------------------------------


def _dim_str(d: int) -> str:
    return "?" if d == DYN else str(d)


def _shape_str(shape: Sequence[int]) -> str:
    return "[" + ", ".join(_dim_str(d) for d in shape) + "]"


def _dims_agree(a: int, b: int) -> bool:
    """Two dims agree unless both are static and differ."""
    return a == DYN or b == DYN or a == b


def _shapes_agree(a: Sequence[int], b: Sequence[int]) -> bool:
    return len(a) == len(b) and all(_dims_agree(x, y) for x, y in zip(a, b))


def shape_of(t: Attribute) -> tuple[int, ...]:
    """Dims of a tensor, trits or packed type (``DYN`` for ``?``); ``()`` for a scalar type."""
    if isinstance(t, ShapedType):
        return t.get_shape()
    return ()


def _int_of_width(*widths: int) -> Callable[[Attribute], bool]:
    return lambda e: isinstance(e, IntegerType) and e.width.data in widths


_ELEMENT_KINDS: dict[str, tuple[Callable[[Attribute], bool], str]] = {
    # kind: (accepts the element type, how a message names it)
    "f32": (lambda e: isinstance(e, Float32Type), "f32"),
    "float": (lambda e: isinstance(e, STORE_FLOATS), "a float (bf16, f16, f32, f64)"),
    "i8": (_int_of_width(8), "i8"),
    "i32": (_int_of_width(32), "i32"),
    "ids": (_int_of_width(32, 64), "i32 or i64"),
    "mask": (lambda e: isinstance(e, IntegerType | Float32Type), "an integer type or f32"),
}


def _tensor(op: str, what: str, t: Attribute, elem: str, min_rank: int = 0) -> tuple[int, ...]:
    """Check that ``t`` is a ranked tensor whose element type is of kind ``elem`` (a key of
    ``_ELEMENT_KINDS``) with at least ``min_rank`` dims; return its shape."""
    accepts, expected = _ELEMENT_KINDS[elem]
    if not isinstance(t, TensorType) or not accepts(t.get_element_type()):
        raise VerifyException(f"{op}: {what} must be a tensor of {expected}, got {t}")
    shape = t.get_shape()
    if len(shape) < min_rank:
        raise VerifyException(f"{op}: {what} must have at least {min_rank} dims, got {t}")
    return shape


def _expect_shape(op: str, what: str, got: Sequence[int], want: Sequence[int], why: str = "") -> None:
    if not _shapes_agree(got, want):
        because = f" ({why})" if why else ""
        raise VerifyException(
            f"{op}: {what} has shape {_shape_str(got)}, expected {_shape_str(want)}{because}"
        )


def is_scale_type(t: Attribute) -> bool:
    """A weight scale: ``f32`` or ``tensor<f32>``."""
    return isinstance(t, Float32Type) or (
        isinstance(t, TensorType) and t.get_shape() == () and isinstance(t.get_element_type(), Float32Type)
    )


def _scale(op: str, what: str, t: Attribute) -> None:
    if not is_scale_type(t):
        raise VerifyException(f"{op}: {what} must be an f32 scale (f32 or tensor<f32>), got {t}")


def _weight_nk(op: str, what: str, t: Attribute) -> tuple[int, int]:
    """[N, K] of a trits or packed weight."""
    if not isinstance(t, TritsType | PackedType):
        raise VerifyException(f"{op}: {what} must be !ternary.trits or !ternary.packed, got {t}")
    n, k = t.get_shape()
    return n, k


# --------------------------------------------------------------------------------------------------
# Types and attributes
# --------------------------------------------------------------------------------------------------


def _parse_nk(parser: AttrParser) -> ArrayAttr[IntAttr]:
    dims = parser.parse_dimension_list()
    return ArrayAttr(IntAttr(d) for d in dims)


def _check_nk(name: str, shape: tuple[int, ...]) -> None:
    if len(shape) != 2:
        raise VerifyException(f"{name}: expected a 2-D weight shape NxK, got {_shape_str(shape)}")
    if any(d < 0 and d != DYN for d in shape):
        raise VerifyException(f"{name}: dims must be >= 0 or ?, got {_shape_str(shape)}")


@irdl_attr_definition
class TritsType(ParametrizedAttribute, TypeAttribute, ShapedType):
    """``!ternary.trits<NxK>``: a ternary weight [N, K], int8 values in {-1, 0, +1}.

    The output-feature axis N comes first, as in a PyTorch ``Linear`` weight. Dims may be ``?``
    (a tile of a weight inside a kernel).
    """

    name = "ternary.trits"

    shape: ArrayAttr[IntAttr]

    def __init__(self, shape: Sequence[int | IntAttr]):
        super().__init__(ArrayAttr(IntAttr(d) if isinstance(d, int) else d for d in shape))

    def get_num_dims(self) -> int:
        return len(self.shape.data)

    def get_shape(self) -> tuple[int, ...]:
        return tuple(d.data for d in self.shape.data)

    def verify(self) -> None:
        _check_nk("trits", self.get_shape())

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        with parser.in_angle_brackets():
            shape = _parse_nk(parser)
        return (shape,)

    def print_parameters(self, printer: Printer) -> None:
        with printer.in_angle_brackets():
            printer.print_dimension_list(self.get_shape())


@irdl_attr_definition
class PackedType(ParametrizedAttribute, TypeAttribute, ShapedType):
    """``!ternary.packed<NxK, "2bit">`` or ``"base3"``: a ternary weight [N, K] packed row by row.

    The shape is the logical one, in trits. Each row of K trits is stored in
    ``packed_row_bytes(K, format)`` bytes (ceil(K/4) for ``2bit``, ceil(K/5) for ``base3``),
    laid out as ``numerics.pack_2bit`` / ``numerics.pack_base3`` define.
    """

    name = "ternary.packed"

    shape: ArrayAttr[IntAttr]
    format: StringAttr

    def __init__(self, shape: Sequence[int | IntAttr], format: str | StringAttr):
        super().__init__(
            ArrayAttr(IntAttr(d) if isinstance(d, int) else d for d in shape),
            StringAttr(format) if isinstance(format, str) else format,
        )

    def get_num_dims(self) -> int:
        return len(self.shape.data)

    def get_shape(self) -> tuple[int, ...]:
        return tuple(d.data for d in self.shape.data)

    def row_bytes(self) -> int | None:
        """Bytes of one packed row, or None when K is dynamic."""
        k = self.get_shape()[1]
        return None if k == DYN else packed_row_bytes(k, self.format.data)

    def verify(self) -> None:
        _check_nk("packed", self.get_shape())
        if self.format.data not in PACK_FORMATS:
            raise VerifyException(
                f'packed: unknown format "{self.format.data}"; expected one of '
                + ", ".join(f'"{f}"' for f in sorted(PACK_FORMATS))
            )

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        with parser.in_angle_brackets():
            shape = _parse_nk(parser)
            parser.parse_punctuation(",")
            fmt = parser.parse_str_literal()
        return (shape, StringAttr(fmt))

    def print_parameters(self, printer: Printer) -> None:
        with printer.in_angle_brackets():
            printer.print_dimension_list(self.get_shape())
            printer.print_string(", ")
            printer.print_string_literal(self.format.data)


@irdl_attr_definition
class TileMapAttr(ParametrizedAttribute):
    """``#ternary.tile<[0, *, 1]>``: how a kernel operand or result is split across programs.

    One entry per dim: ``g`` (an int) means grid axis g splits this dim into blocks, one block per
    program along g; ``*`` (:data:`WHOLE`) means every program sees the whole dim.
    """

    name = "ternary.tile"

    dims: ArrayAttr[IntAttr]

    def __init__(self, dims: Sequence[int | None]):
        super().__init__(ArrayAttr(IntAttr(WHOLE if d is None else d) for d in dims))

    def axes(self) -> tuple[int | None, ...]:
        """Per dim: the grid axis that splits it, or None for a whole dim."""
        return tuple(None if d.data == WHOLE else d.data for d in self.dims.data)

    def is_whole(self) -> bool:
        return all(a is None for a in self.axes())

    def verify(self) -> None:
        axes = [a for a in self.axes() if a is not None]
        if any(a < 0 for a in axes):
            raise VerifyException(f"tile: grid axes must be >= 0 or *, got {self.spelling()}")
        if len(set(axes)) != len(axes):
            raise VerifyException(f"tile: a grid axis may split at most one dim, got {self.spelling()}")

    def spelling(self) -> str:
        return "[" + ", ".join("*" if a is None else str(a) for a in self.axes()) + "]"

    @classmethod
    def parse_list(cls, parser: AttrParser) -> TileMapAttr:
        """Parse ``[0, *, 1]``."""

        def one() -> int | None:
            if parser.parse_optional_punctuation("*") is not None:
                return None
            return parser.parse_integer(allow_negative=False, allow_boolean=False)

        return TileMapAttr(parser.parse_comma_separated_list(parser.Delimiter.SQUARE, one))

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> Sequence[Attribute]:
        with parser.in_angle_brackets():
            tile = cls.parse_list(parser)
        return tile.parameters

    def print_parameters(self, printer: Printer) -> None:
        with printer.in_angle_brackets():
            printer.print_string(self.spelling())


# --------------------------------------------------------------------------------------------------
# Tiling rules: what a kernel body op needs whole
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TileRule:
    """How an op's dims relate, for the kernel verifier (see :class:`KernelOp`).

    Each operand and result dim gets an index label; dims that share a label are the same index
    space (they must be split the same way, and a result dim is split the way its label is split
    among the operands; a result label no operand has is whole). ``whole`` holds the labels the op
    reduces over, scans along, gathers from, or broadcasts: a dim with such a label must be whole in
    every program.
    """

    operands: tuple[tuple[str, ...], ...]
    results: tuple[tuple[str, ...], ...]
    whole: frozenset[str] = frozenset()


def _lead(rank: int) -> tuple[str, ...]:
    """Labels of the leading (batch/time) dims, shared positionally by all operands."""
    return tuple(f"d{i}" for i in range(rank))


class TiledOp(IRDLOperation, ABC):
    """An op that may appear in a kernel body: it states its :class:`TileRule`."""

    @abstractmethod
    def tile_rule(self) -> TileRule:
        """The labels of this op's operand and result dims, and those it needs whole."""


def _rank(v: SSAValue | Attribute) -> int:
    return len(shape_of(v.type if isinstance(v, SSAValue) else v))


# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------


@irdl_op_definition
class WeightOp(IRDLOperation):
    """A named weight of the weight store.

    Syntax::

        %w = ternary.weight @model.layers.0.attn.i_proj.weight : tensor<64x64xbf16>
        %t = ternary.weight @model.layers.0.attn.i_proj.weight : !ternary.trits<64x64>
        %s = ternary.weight @model.layers.0.attn.i_proj.weight_scale : f32

    The result is the stored tensor: a float master, a norm weight or table (any store float), a
    trits or packed ternary weight, or a weight scale (``f32`` / ``tensor<f32>``, holding 1/s_w as
    ``numerics.quant_weight`` returns it). The module names the store; the verifier never opens it.
    """

    name = "ternary.weight"

    sym = prop_def(FlatSymbolRefAttrConstr)
    result = result_def()

    traits = traits_def(Pure())
    assembly_format = "$sym attr-dict `:` type($result)"

    def __init__(self, sym: str | SymbolRefAttr, result_type: Attribute):
        super().__init__(
            properties={"sym": SymbolRefAttr(sym) if isinstance(sym, str) else sym},
            result_types=[result_type],
        )

    def verify_(self) -> None:
        t = self.result.type
        ok = (
            isinstance(t, TritsType | PackedType)
            or is_scale_type(t)
            or (isinstance(t, TensorType) and isinstance(t.get_element_type(), STORE_FLOATS))
        )
        if not ok:
            raise VerifyException(
                f"weight: {self.sym} has type {t}; expected a float tensor, !ternary.trits, "
                "!ternary.packed or an f32 scale"
            )
        if isinstance(t, TritsType | PackedType) and DYN in t.get_shape():
            raise VerifyException(f"weight: {self.sym} must have a static shape, got {t}")


@irdl_op_definition
class QuantWeightOp(TiledOp):
    """Per-tensor absmean ternary quantization of a float master weight (offline).

    Syntax::

        %trits, %scale = ternary.quant_weight %w : tensor<64x32xbf16> -> !ternary.trits<64x32>, f32

    Semantics: ``numerics.quant_weight``: ``scale = max(mean|W|, 1e-5)`` (= 1/s_w) and
    ``trits = clamp(round_half_even(W / scale), -1, 1)``. The fold-weight-quant pass replaces it by
    weight refs; never apply it to trits (not idempotent).
    """

    name = "ternary.quant_weight"

    master = operand_def(TensorType)
    trits = result_def(TritsType)
    scale = result_def()

    traits = traits_def(Pure())
    assembly_format = "$master attr-dict `:` type($master) `->` type($trits) `,` type($scale)"

    def __init__(self, master: SSAValue | Operation, scale_type: Attribute = f32):
        shape = shape_of(SSAValue.get(master).type)
        super().__init__(operands=[master], result_types=[TritsType(shape), scale_type])

    def verify_(self) -> None:
        w = _tensor("quant_weight", "master weight", self.master.type, "float", 2)
        if len(w) != 2:
            raise VerifyException(f"quant_weight: master weight must be 2-D [N, K], got {self.master.type}")
        _expect_shape("quant_weight", "trits", shape_of(self.trits.type), w, "the master's shape")
        _scale("quant_weight", "scale", self.scale.type)

    def tile_rule(self) -> TileRule:
        return TileRule((("n", "k"),), (("n", "k"), ()), frozenset({"n", "k"}))


@irdl_op_definition
class UnpackOp(TiledOp):
    """Unpack a packed ternary weight into trits.

    Syntax::

        %t = ternary.unpack %p : !ternary.packed<32x64, "2bit"> -> !ternary.trits<32x64>

    Semantics: ``numerics.unpack(packed, K, format)``.
    """

    name = "ternary.unpack"

    packed = operand_def(PackedType)
    trits = result_def(TritsType)

    traits = traits_def(Pure())
    assembly_format = "$packed attr-dict `:` type($packed) `->` type($trits)"

    def __init__(self, packed: SSAValue | Operation):
        shape = shape_of(SSAValue.get(packed).type)
        super().__init__(operands=[packed], result_types=[TritsType(shape)])

    def verify_(self) -> None:
        _expect_shape(
            "unpack", "trits", shape_of(self.trits.type), shape_of(self.packed.type), "the packed shape"
        )

    def tile_rule(self) -> TileRule:
        # Trits of one row share bytes: the K axis is never split.
        return TileRule((("n", "k"),), (("n", "k"),), frozenset({"k"}))


# --------------------------------------------------------------------------------------------------
# BitLinear steps: rmsnorm, quant_act, accum, dequant
# --------------------------------------------------------------------------------------------------


def _check_gamma(op: str, gamma: Attribute, k: int, of: str = "x") -> None:
    g = _tensor(op, "gamma", gamma, "float", 1)
    _expect_shape(op, "gamma", g, (k,), f"the last dim of {of}")


def _check_eps(op: str, eps: FloatAttr) -> None:
    if not eps.value.data >= 0.0:
        raise VerifyException(f"{op}: eps must be >= 0, got {eps.value.data}")


def _eps_attr(eps: float | FloatAttr) -> FloatAttr:
    return eps if isinstance(eps, FloatAttr) else FloatAttr(eps, f32)


@irdl_op_definition
class RMSNormOp(TiledOp):
    """RMSNorm over the last axis.

    Syntax::

        %y = ternary.rmsnorm %x, %gamma : tensor<?x?x64xf32>, tensor<64xf32>
        %y = ternary.rmsnorm %x, %gamma eps 1.000000e-05 : tensor<?x64xf32>, tensor<64xf32>

    Semantics: ``numerics.rmsnorm(x, gamma, eps)`` in f32; ``x: [..., K]``, ``gamma: [K]``,
    result like x. ``eps`` defaults to 1e-6 (printed only when different).
    """

    name = "ternary.rmsnorm"

    T: ClassVar = VarConstraint("T", base(TensorType))
    x = operand_def(T)
    gamma = operand_def(TensorType)
    result = result_def(T)
    eps = prop_def(FloatAttr[Float32Type], default_value=FloatAttr(RMS_EPS, f32))

    traits = traits_def(Pure())
    assembly_format = "$x `,` $gamma (`eps` $eps^)? attr-dict `:` type($x) `,` type($gamma)"

    def __init__(
        self, x: SSAValue | Operation, gamma: SSAValue | Operation, eps: float | FloatAttr = RMS_EPS
    ):
        super().__init__(
            operands=[x, gamma], result_types=[SSAValue.get(x).type], properties={"eps": _eps_attr(eps)}
        )

    def verify_(self) -> None:
        x = _tensor("rmsnorm", "x", self.x.type, "f32", 1)
        _check_gamma("rmsnorm", self.gamma.type, x[-1])
        _check_eps("rmsnorm", self.eps)

    def tile_rule(self) -> TileRule:
        row = (*_lead(_rank(self.x) - 1), "k")
        return TileRule((row, ("k",)), (row,), frozenset({"k"}))


@irdl_op_definition
class RMSNormalizeOp(TiledOp):
    """RMSNorm without gamma: each row divided by its root mean square, over the last axis.

    Syntax::

        %n = ternary.rms_normalize %x : tensor<?x?x64xf32>
        %n = ternary.rms_normalize %x eps 1.000000e-05 : tensor<?x64xf32>

    Semantics: ``numerics.rms_normalize(x, eps)``: ``x * (1 / sqrt(mean(x^2) + eps))`` in f32;
    ``x: [..., K]``, result like x. ``eps`` defaults to 1e-6 (printed only when different).
    ``ternary.scale`` by gamma after it is bit-identical to ``ternary.rmsnorm``: fuse-bitlinear uses
    the pair so that projections reading one input compute the row statistics once.
    """

    name = "ternary.rms_normalize"

    T: ClassVar = VarConstraint("T", base(TensorType))
    x = operand_def(T)
    result = result_def(T)
    eps = prop_def(FloatAttr[Float32Type], default_value=FloatAttr(RMS_EPS, f32))

    traits = traits_def(Pure())
    assembly_format = "$x (`eps` $eps^)? attr-dict `:` type($x)"

    def __init__(self, x: SSAValue | Operation, eps: float | FloatAttr = RMS_EPS):
        super().__init__(
            operands=[x], result_types=[SSAValue.get(x).type], properties={"eps": _eps_attr(eps)}
        )

    def verify_(self) -> None:
        _tensor("rms_normalize", "x", self.x.type, "f32", 1)
        _check_eps("rms_normalize", self.eps)

    def tile_rule(self) -> TileRule:
        # the row statistics reduce over K: K whole, rows split freely
        row = (*_lead(_rank(self.x) - 1), "k")
        return TileRule((row,), (row,), frozenset({"k"}))


@irdl_op_definition
class ScaleOp(TiledOp):
    """Scale each row by a per-feature weight (RMSNorm's gamma after ``rms_normalize``).

    Syntax::

        %y = ternary.scale %n, %gamma : tensor<?x?x64xf32>, tensor<64xf32>

    Semantics: ``numerics.scale(x, gamma)``: ``x * gamma`` in f32, ``gamma: [K]`` (any float type,
    read as f32) broadcast over the rows of ``x: [..., K]``; result like x.
    """

    name = "ternary.scale"

    T: ClassVar = VarConstraint("T", base(TensorType))
    x = operand_def(T)
    gamma = operand_def(TensorType)
    result = result_def(T)

    traits = traits_def(Pure())
    assembly_format = "$x `,` $gamma attr-dict `:` type($x) `,` type($gamma)"

    def __init__(self, x: SSAValue | Operation, gamma: SSAValue | Operation):
        super().__init__(operands=[x, gamma], result_types=[SSAValue.get(x).type])

    def verify_(self) -> None:
        x = _tensor("scale", "x", self.x.type, "f32", 1)
        _check_gamma("scale", self.gamma.type, x[-1])

    def tile_rule(self) -> TileRule:
        # elementwise: gamma's K is the rows' K, split (if ever) the same way
        row = (*_lead(_rank(self.x) - 1), "k")
        return TileRule((row, ("k",)), (row,))


@irdl_op_definition
class ResidualRMSNormOp(TiledOp):
    """Fused residual add + RMSNorm (block step 3).

    Syntax::

        %normed, %sum = ternary.residual_rmsnorm %x, %residual, %gamma : tensor<?x64xf32>, tensor<64xf32>

    Semantics: ``numerics.residual_rmsnorm``: ``sum = x + residual``; ``normed = rmsnorm(sum, gamma,
    eps)``. ``x``, ``residual`` and both results share one type ``[..., K]``; ``gamma: [K]``.
    """

    name = "ternary.residual_rmsnorm"

    T: ClassVar = VarConstraint("T", base(TensorType))
    x = operand_def(T)
    residual = operand_def(T)
    gamma = operand_def(TensorType)
    normed = result_def(T)
    sum = result_def(T)
    eps = prop_def(FloatAttr[Float32Type], default_value=FloatAttr(RMS_EPS, f32))

    traits = traits_def(Pure())
    assembly_format = (
        "$x `,` $residual `,` $gamma (`eps` $eps^)? attr-dict `:` type($x) `,` type($gamma)"
    )

    def __init__(
        self,
        x: SSAValue | Operation,
        residual: SSAValue | Operation,
        gamma: SSAValue | Operation,
        eps: float | FloatAttr = RMS_EPS,
    ):
        t = SSAValue.get(x).type
        super().__init__(
            operands=[x, residual, gamma], result_types=[t, t], properties={"eps": _eps_attr(eps)}
        )

    def verify_(self) -> None:
        x = _tensor("residual_rmsnorm", "x", self.x.type, "f32", 1)
        _check_gamma("residual_rmsnorm", self.gamma.type, x[-1])
        _check_eps("residual_rmsnorm", self.eps)

    def tile_rule(self) -> TileRule:
        row = (*_lead(_rank(self.x) - 1), "k")
        return TileRule((row, row, ("k",)), (row, row), frozenset({"k"}))


@irdl_op_definition
class QuantActOp(TiledOp):
    """Per-token absmax int8 activation quantization.

    Syntax::

        %q, %s = ternary.quant_act %x : tensor<?x64xf32> -> tensor<?x64xi8>, tensor<?x1xf32>

    Semantics: ``numerics.quant_act``: ``s = 127 / max(max|x|, 1e-5)`` per row,
    ``q = clamp(round_half_away(x * s), -128, 127)``. ``x: [..., K] f32`` gives ``q: [..., K] i8``
    and ``s: [..., 1] f32``.
    """

    name = "ternary.quant_act"

    x = operand_def(TensorType)
    q = result_def(TensorType)
    scale = result_def(TensorType)

    traits = traits_def(Pure())
    assembly_format = "$x attr-dict `:` type($x) `->` type($q) `,` type($scale)"

    def __init__(self, x: SSAValue | Operation):
        shape = shape_of(SSAValue.get(x).type)
        super().__init__(
            operands=[x],
            result_types=[TensorType(IntegerType(8), shape), TensorType(f32, (*shape[:-1], 1))],
        )

    def verify_(self) -> None:
        x = _tensor("quant_act", "x", self.x.type, "f32", 1)
        q = _tensor("quant_act", "q", self.q.type, "i8")
        _expect_shape("quant_act", "q", q, x, "the shape of x")
        s = _tensor("quant_act", "scale", self.scale.type, "f32")
        if len(s) != len(x) or s[-1] != 1:
            raise VerifyException(
                f"quant_act: scale has shape {_shape_str(s)}, expected {_shape_str((*x[:-1], 1))} "
                "(one scale per row, last dim 1)"
            )
        _expect_shape("quant_act", "scale", s, (*x[:-1], 1), "one scale per row of x")

    def tile_rule(self) -> TileRule:
        lead = _lead(_rank(self.x) - 1)
        row = (*lead, "k")
        return TileRule((row,), (row, (*lead, "one")), frozenset({"k"}))


@irdl_op_definition
class AccumOp(TiledOp):
    """Ternary accumulation: int8 activations times trits, exactly, in int32.

    Syntax::

        %acc = ternary.accum %q, %w : tensor<?x64xi8>, !ternary.trits<32x64> -> tensor<?x32xi32>
        %acc = ternary.accum %q, %p : tensor<?x64xi8>, !ternary.packed<32x64, "base3"> -> tensor<?x32xi32>

    Semantics: ``numerics.accum``: ``acc[..., n] = sum_k q[..., k] * trits[n, k]`` (additions and
    subtractions only); a packed weight means ``accum(q, unpack(w))``. ``q: [..., K] i8``,
    ``w: [N, K]``, ``acc: [..., N] i32``. Never a float matrix product.
    """

    name = "ternary.accum"

    x = operand_def(TensorType)
    weight = operand_def()
    acc = result_def(TensorType)

    traits = traits_def(Pure())
    assembly_format = "$x `,` $weight attr-dict `:` type($x) `,` type($weight) `->` type($acc)"

    def __init__(self, x: SSAValue | Operation, weight: SSAValue | Operation):
        xs = shape_of(SSAValue.get(x).type)
        n = shape_of(SSAValue.get(weight).type)[0]
        super().__init__(operands=[x, weight], result_types=[TensorType(IntegerType(32), (*xs[:-1], n))])

    def verify_(self) -> None:
        x = _tensor("accum", "activation", self.x.type, "i8", 1)
        n, k = _weight_nk("accum", "weight", self.weight.type)
        if not _dims_agree(x[-1], k):
            raise VerifyException(
                f"accum: activation K={_dim_str(x[-1])} does not match weight K={_dim_str(k)}"
            )
        acc = _tensor("accum", "result", self.acc.type, "i32")
        _expect_shape("accum", "result", acc, (*x[:-1], n), "[..., N]: the activation's rows, the weight's N")

    def tile_rule(self) -> TileRule:
        lead = _lead(_rank(self.x) - 1)
        return TileRule(((*lead, "k"), ("n", "k")), ((*lead, "n"),), frozenset({"k"}))


@irdl_op_definition
class DequantOp(TiledOp):
    """Dequantize an int32 accumulator back to f32.

    Syntax::

        %y = ternary.dequant %acc, %s, %ws : tensor<?x32xi32>, tensor<?x1xf32>, f32 -> tensor<?x32xf32>

    Semantics: ``numerics.dequant(acc, s, weight_scale)``: ``y = acc / (s * (1 / weight_scale))`` in
    f32. ``acc: [..., N] i32``, ``s: [..., 1] f32`` (from quant_act), ``weight_scale``: the weight's
    f32 scale (1/s_w), ``y: [..., N] f32``.
    """

    name = "ternary.dequant"

    acc = operand_def(TensorType)
    x_scale = operand_def(TensorType)
    weight_scale = operand_def()
    result = result_def(TensorType)

    traits = traits_def(Pure())
    assembly_format = (
        "$acc `,` $x_scale `,` $weight_scale attr-dict `:` type($acc) `,` type($x_scale) `,` "
        "type($weight_scale) `->` type($result)"
    )

    def __init__(
        self, acc: SSAValue | Operation, x_scale: SSAValue | Operation, weight_scale: SSAValue | Operation
    ):
        shape = shape_of(SSAValue.get(acc).type)
        super().__init__(operands=[acc, x_scale, weight_scale], result_types=[TensorType(f32, shape)])

    def verify_(self) -> None:
        acc = _tensor("dequant", "accumulator", self.acc.type, "i32", 1)
        s = _tensor("dequant", "activation scale", self.x_scale.type, "f32")
        if len(s) != len(acc) or s[-1] != 1:
            raise VerifyException(
                f"dequant: activation scale has shape {_shape_str(s)}, expected "
                f"{_shape_str((*acc[:-1], 1))} (one scale per row, last dim 1)"
            )
        _expect_shape("dequant", "activation scale", s, (*acc[:-1], 1), "one scale per row")
        _scale("dequant", "weight scale", self.weight_scale.type)
        y = _tensor("dequant", "result", self.result.type, "f32")
        _expect_shape("dequant", "result", y, acc, "the accumulator's shape")

    def tile_rule(self) -> TileRule:
        lead = _lead(_rank(self.acc) - 1)
        row = (*lead, "n")
        # The per-row scale's last dim (size 1) is broadcast along N: it must be whole.
        return TileRule((row, (*lead, "one"), ()), (row,), frozenset({"one"}))


# --------------------------------------------------------------------------------------------------
# Elementwise ops (f32, one shared type)
# --------------------------------------------------------------------------------------------------


class _ElementwiseOp(TiledOp, ABC):
    """Elementwise f32 op: every operand and the result have one tensor type."""

    def verify_(self) -> None:
        _tensor(self.name.removeprefix("ternary."), "operand", self.operands[0].type, "f32")

    def tile_rule(self) -> TileRule:
        labels = _lead(_rank(self.operands[0]))
        return TileRule(tuple(labels for _ in self.operands), tuple(labels for _ in self.results))


class _UnaryOp(_ElementwiseOp, ABC):
    T: ClassVar = VarConstraint("T", base(TensorType))
    x = operand_def(T)
    result = result_def(T)

    traits = traits_def(Pure())
    assembly_format = "$x attr-dict `:` type($x)"

    def __init__(self, x: SSAValue | Operation):
        super().__init__(operands=[x], result_types=[SSAValue.get(x).type])


class _BinaryOp(_ElementwiseOp, ABC):
    T: ClassVar = VarConstraint("T", base(TensorType))
    lhs = operand_def(T)
    rhs = operand_def(T)
    result = result_def(T)

    traits = traits_def(Pure())
    assembly_format = "$lhs `,` $rhs attr-dict `:` type($result)"

    def __init__(self, lhs: SSAValue | Operation, rhs: SSAValue | Operation):
        super().__init__(operands=[lhs, rhs], result_types=[SSAValue.get(lhs).type])


@irdl_op_definition
class SigmoidOp(_UnaryOp):
    """``ternary.sigmoid %x : tensor<?x64xf32>``: ``numerics.sigmoid``, ``1 / (1 + exp(-x))`` in f32."""

    name = "ternary.sigmoid"


@irdl_op_definition
class SiluOp(_UnaryOp):
    """``ternary.silu %x : tensor<?x64xf32>``: ``numerics.silu``, ``x * sigmoid(x)`` in f32."""

    name = "ternary.silu"


@irdl_op_definition
class OneMinusOp(_UnaryOp):
    """``ternary.one_minus %f : tensor<?x64xf32>``: ``1 - x`` in f32 (the input gate's ``1 - f``)."""

    name = "ternary.one_minus"


@irdl_op_definition
class SiluMulOp(_BinaryOp):
    """``ternary.silu_mul %gate, %up : tensor<?x128xf32>``: ``numerics.silu_mul``,
    ``SiLU(gate) * up`` computed as ``gate * up / (1 + exp(-gate))`` in f32 (the GLU's p, and the
    MLGRU's ``i' = SiLU(i) * (1 - f)``). Not commutative."""

    name = "ternary.silu_mul"


@irdl_op_definition
class MulOp(_BinaryOp):
    """``ternary.mul %a, %b : tensor<?x64xf32>``: ``a * b`` in f32."""

    name = "ternary.mul"
    traits = traits_def(Pure(), Commutative())


@irdl_op_definition
class AddOp(_BinaryOp):
    """``ternary.add %a, %b : tensor<?x64xf32>``: ``a + b`` in f32 (the residual adds)."""

    name = "ternary.add"
    traits = traits_def(Pure(), Commutative())


@irdl_op_definition
class SubOp(_BinaryOp):
    """``ternary.sub %a, %b : tensor<?x64xf32>``: ``a - b`` in f32."""

    name = "ternary.sub"


@irdl_op_definition
class ScanStepOp(_ElementwiseOp):
    """One decode step of the MLGRU recurrence.

    Syntax::

        %h1 = ternary.scan_step %x, %f, %h : tensor<?x64xf32>

    Semantics: ``numerics.scan_step``: ``f * h + x`` in f32; all of type ``[B, d]``.
    """

    name = "ternary.scan_step"

    T: ClassVar = VarConstraint("T", base(TensorType))
    x = operand_def(T)
    f = operand_def(T)
    h = operand_def(T)
    result = result_def(T)

    traits = traits_def(Pure())
    assembly_format = "$x `,` $f `,` $h attr-dict `:` type($x)"

    def __init__(self, x: SSAValue | Operation, f: SSAValue | Operation, h: SSAValue | Operation):
        super().__init__(operands=[x, f, h], result_types=[SSAValue.get(x).type])


@irdl_op_definition
class LowerBoundOp(TiledOp):
    """Apply a layer's forget-gate lower bound: ``lb + (1 - lb) * x``.

    Syntax::

        %f = ternary.lower_bound %sig, %lb : tensor<?x?x64xf32>, tensor<64xf32>

    Semantics: with ``x = sigmoid(f~)`` this is ``numerics.forget_gate(f~, lb)``:
    ``lb + (1 - lb) * x`` in f32, ``lb: [d]`` broadcast over the rows of ``x: [..., d]``.
    """

    name = "ternary.lower_bound"

    T: ClassVar = VarConstraint("T", base(TensorType))
    x = operand_def(T)
    lb = operand_def(TensorType)
    result = result_def(T)

    traits = traits_def(Pure())
    assembly_format = "$x `,` $lb attr-dict `:` type($x) `,` type($lb)"

    def __init__(self, x: SSAValue | Operation, lb: SSAValue | Operation):
        super().__init__(operands=[x, lb], result_types=[SSAValue.get(x).type])

    def verify_(self) -> None:
        x = _tensor("lower_bound", "x", self.x.type, "f32", 1)
        lb = _tensor("lower_bound", "lower bound", self.lb.type, "f32", 1)
        _expect_shape("lower_bound", "lower bound", lb, (x[-1],), "the last dim of x")

    def tile_rule(self) -> TileRule:
        row = (*_lead(_rank(self.x) - 1), "c")
        return TileRule((row, ("c",)), (row,))


@irdl_op_definition
class GateNormOp(TiledOp):
    """The MLGRU output gate: RMSNorm on g, SiLU on h.

    Syntax::

        %o = ternary.gate_norm %g, %h, %gamma : tensor<?x?x64xf32>, tensor<64xf32>

    Semantics: ``numerics.gate_norm(g, h, gamma, eps)``: ``rmsnorm(g, gamma, eps) * h * sigmoid(h)``
    in f32. ``g``, ``h`` and the result share one type ``[..., d]``; ``gamma: [d]``.
    """

    name = "ternary.gate_norm"

    T: ClassVar = VarConstraint("T", base(TensorType))
    g = operand_def(T)
    h = operand_def(T)
    gamma = operand_def(TensorType)
    result = result_def(T)
    eps = prop_def(FloatAttr[Float32Type], default_value=FloatAttr(RMS_EPS, f32))

    traits = traits_def(Pure())
    assembly_format = "$g `,` $h `,` $gamma (`eps` $eps^)? attr-dict `:` type($g) `,` type($gamma)"

    def __init__(
        self,
        g: SSAValue | Operation,
        h: SSAValue | Operation,
        gamma: SSAValue | Operation,
        eps: float | FloatAttr = RMS_EPS,
    ):
        super().__init__(
            operands=[g, h, gamma], result_types=[SSAValue.get(g).type], properties={"eps": _eps_attr(eps)}
        )

    def verify_(self) -> None:
        g = _tensor("gate_norm", "g", self.g.type, "f32", 1)
        _check_gamma("gate_norm", self.gamma.type, g[-1], "g")
        _check_eps("gate_norm", self.eps)

    def tile_rule(self) -> TileRule:
        row = (*_lead(_rank(self.g) - 1), "k")
        return TileRule((row, row, ("k",)), (row,), frozenset({"k"}))


@irdl_op_definition
class MaskOp(TiledOp):
    """Zero the rows of padded positions (left padding).

    Syntax::

        %y = ternary.mask %x, %mask : tensor<?x?x64xf32>, tensor<?x?xi64>

    Semantics: ``x * float32(mask)[..., None]``, as ``numerics.input_gate`` applies its mask:
    ``x: [..., d] f32``, ``mask: [...]`` (the attention mask, 0 at padded positions and 1 elsewhere;
    integer or f32), result like x.
    """

    name = "ternary.mask"

    T: ClassVar = VarConstraint("T", base(TensorType))
    x = operand_def(T)
    mask = operand_def(TensorType)
    result = result_def(T)

    traits = traits_def(Pure())
    assembly_format = "$x `,` $mask attr-dict `:` type($x) `,` type($mask)"

    def __init__(self, x: SSAValue | Operation, mask: SSAValue | Operation):
        super().__init__(operands=[x, mask], result_types=[SSAValue.get(x).type])

    def verify_(self) -> None:
        x = _tensor("mask", "x", self.x.type, "f32", 1)
        m = _tensor("mask", "mask", self.mask.type, "mask")
        _expect_shape("mask", "mask", m, x[:-1], "the shape of x without its last dim")

    def tile_rule(self) -> TileRule:
        lead = _lead(_rank(self.x) - 1)
        return TileRule(((*lead, "c"), lead), ((*lead, "c"),))


# --------------------------------------------------------------------------------------------------
# The MLGRU recurrence
# --------------------------------------------------------------------------------------------------


@irdl_op_definition
class ScanOp(TiledOp):
    """The diagonal linear recurrence over time (prefill).

    Syntax::

        %h, %h_last = ternary.scan %x, %f : tensor<?x?x64xf32>, tensor<?x64xf32>
        %h, %h_last = ternary.scan %x, %f init %h0 : tensor<?x?x64xf32>, tensor<?x64xf32>

    Semantics: ``numerics.scan(x, f, h0)``: ``h_t = f_t * h_{t-1} + x_t`` in f32, ``h_{-1} = h0``
    (zeros without ``init``). ``x, f, h: [B, T, d]``; ``h0, h_last: [B, d]`` (the state after the
    last step). The types printed are those of x and h_last.
    """

    name = "ternary.scan"

    T: ClassVar = VarConstraint("T", base(TensorType))
    S: ClassVar = VarConstraint("S", base(TensorType))
    x = operand_def(T)
    f = operand_def(T)
    h0 = opt_operand_def(S)
    h = result_def(T)
    h_last = result_def(S)

    traits = traits_def(Pure())
    assembly_format = "$x `,` $f (`init` $h0^)? attr-dict `:` type($x) `,` type($h_last)"

    def __init__(
        self, x: SSAValue | Operation, f: SSAValue | Operation, h0: SSAValue | Operation | None = None
    ):
        xt = SSAValue.get(x).type
        b, _, d = shape_of(xt)
        super().__init__(
            operands=[x, f, [] if h0 is None else [h0]], result_types=[xt, TensorType(f32, (b, d))]
        )

    def verify_(self) -> None:
        x = _tensor("scan", "x", self.x.type, "f32", 3)
        if len(x) != 3:
            raise VerifyException(f"scan: x must be [B, T, d], got {self.x.type}")
        s = _tensor("scan", "state", self.h_last.type, "f32")
        _expect_shape("scan", "state", s, (x[0], x[2]), "[B, d] of x")

    def tile_rule(self) -> TileRule:
        seq, state = ("b", "t", "c"), ("b", "c")
        ins = (seq, seq) + ((state,) if self.h0 is not None else ())
        # Step t needs step t-1: the time axis is never split.
        return TileRule(ins, (seq, state), frozenset({"t"}))


# --------------------------------------------------------------------------------------------------
# Embedding, lower bounds, slicing
# --------------------------------------------------------------------------------------------------


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

    table = operand_def(TensorType)
    ids = operand_def(TensorType)
    result = result_def(TensorType)

    traits = traits_def(Pure())
    assembly_format = "$table `[` $ids `]` attr-dict `:` type($table) `,` type($ids) `->` type($result)"

    def __init__(self, table: SSAValue | Operation, ids: SSAValue | Operation):
        _, d = shape_of(SSAValue.get(table).type)
        lead = shape_of(SSAValue.get(ids).type)
        super().__init__(operands=[table, ids], result_types=[TensorType(f32, (*lead, d))])

    def verify_(self) -> None:
        table = _tensor("embedding", "table", self.table.type, "float", 2)
        if len(table) != 2:
            raise VerifyException(f"embedding: table must be 2-D [V, d], got {self.table.type}")
        ids = _tensor("embedding", "ids", self.ids.type, "ids")
        out = _tensor("embedding", "result", self.result.type, "f32")
        _expect_shape("embedding", "result", out, (*ids, table[1]), "the ids' shape, then d")

    def tile_rule(self) -> TileRule:
        lead = _lead(_rank(self.ids))
        # Any token may pick any row of the table: V is never split.
        return TileRule((("v", "c"), lead), ((*lead, "c"),), frozenset({"v"}))


@irdl_op_definition
class LowerBoundsOp(TiledOp):
    """All layers' forget-gate lower bounds from ``model.lower_bounds``.

    Syntax::

        %lbs = ternary.lower_bounds %p : tensor<24x64xbf16> -> tensor<24x64xf32>

    Semantics: ``numerics.lower_bounds``: ``s = softmax(p, axis=0)``; ``lb = cumsum(s, axis=0) -
    s[0]`` in f32; ``p: [L, d]``, result ``[L, d]`` f32 (row l is layer l's bound; row 0 is 0).
    """

    name = "ternary.lower_bounds"

    param = operand_def(TensorType)
    result = result_def(TensorType)

    traits = traits_def(Pure())
    assembly_format = "$param attr-dict `:` type($param) `->` type($result)"

    def __init__(self, param: SSAValue | Operation):
        shape = shape_of(SSAValue.get(param).type)
        super().__init__(operands=[param], result_types=[TensorType(f32, shape)])

    def verify_(self) -> None:
        p = _tensor("lower_bounds", "param", self.param.type, "float", 2)
        if len(p) != 2:
            raise VerifyException(f"lower_bounds: param must be 2-D [L, d], got {self.param.type}")
        r = _tensor("lower_bounds", "result", self.result.type, "f32")
        _expect_shape("lower_bounds", "result", r, p, "the param's shape")

    def tile_rule(self) -> TileRule:
        # softmax and cumsum run along the layer axis.
        return TileRule((("l", "c"),), (("l", "c"),), frozenset({"l"}))


@irdl_op_definition
class SplitOp(TiledOp):
    """Split the last axis into equal consecutive parts (the GLU's gate | up halves).

    Syntax::

        %gate, %up = ternary.split %gu : tensor<?x256xf32> -> tensor<?x128xf32>, tensor<?x128xf32>

    Semantics: with n results and ``x: [..., n*m]``, result i is ``x[..., i*m:(i+1)*m]``; all results
    have one type ``[..., m]`` with x's element type.
    """

    name = "ternary.split"

    input = operand_def(TensorType)
    parts = var_result_def(TensorType)

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
        t = self.input.type
        assert isinstance(t, TensorType)
        if t.get_num_dims() < 1:
            raise VerifyException(f"split: input must have at least 1 dim, got {t}")
        n = len(self.parts)
        if n < 2:
            raise VerifyException(f"split: expected at least 2 parts, got {n}")
        *lead, k = t.get_shape()
        if k != DYN and k % n:
            raise VerifyException(f"split: last dim {k} does not split into {n} equal parts")
        m = DYN if k == DYN else k // n
        for i, p in enumerate(self.parts):
            pt = p.type
            assert isinstance(pt, TensorType)
            if pt != self.parts[0].type:
                raise VerifyException(
                    f"split: all parts must have one type; part {i} is {pt}, part 0 is {self.parts[0].type}"
                )
            if pt.get_element_type() != t.get_element_type():
                raise VerifyException(
                    f"split: part {i} has element type {pt.get_element_type()}, "
                    f"expected {t.get_element_type()}"
                )
            _expect_shape("split", f"part {i}", pt.get_shape(), (*lead, m), f"1/{n} of the input's last dim")

    def tile_rule(self) -> TileRule:
        lead = _lead(_rank(self.input) - 1)
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

    input = operand_def(TensorType)
    result = result_def(TensorType)
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
        t = self.input.type
        r = self.result.type
        assert isinstance(t, TensorType) and isinstance(r, TensorType)
        if t.get_num_dims() < 1:
            raise VerifyException(f"row: input must have at least 1 dim, got {t}")
        rows = t.get_shape()[0]
        i = self.index.value.data
        if i < 0 or (rows != DYN and i >= rows):
            raise VerifyException(f"row: index {i} is out of range for {_dim_str(rows)} rows")
        if r.get_element_type() != t.get_element_type():
            raise VerifyException(
                f"row: result element type {r.get_element_type()} differs from the input's "
                f"{t.get_element_type()}"
            )
        _expect_shape("row", "result", r.get_shape(), t.get_shape()[1:], "the input without its first dim")

    def tile_rule(self) -> TileRule:
        rest = _lead(_rank(self.input) - 1)
        return TileRule((("l", *rest),), (rest,), frozenset({"l"}))


# --------------------------------------------------------------------------------------------------
# The fused level: kernel and yield
# --------------------------------------------------------------------------------------------------


def tile_type(t: Attribute, tile: TileMapAttr) -> Attribute:
    """The type one program sees of a value of type ``t`` split by ``tile``: split dims become ``?``."""
    axes = tile.axes()
    if not any(a is not None for a in axes):
        return t
    shape = tuple(DYN if a is not None else d for d, a in zip(shape_of(t), axes))
    if isinstance(t, TensorType):
        return TensorType(t.get_element_type(), shape, t.encoding)
    if isinstance(t, TritsType):
        return TritsType(shape)
    if isinstance(t, PackedType):
        return PackedType(shape, t.format)
    raise ValueError(f"tile_type: {t} has no dims to split")


class _KernelIsolation(IsolatedFromAbove):
    """IsolatedFromAbove, with a message that says what to do."""

    def verify(self, op: Operation) -> None:
        for inner in op.walk():
            if inner is op:
                continue
            for i, v in enumerate(inner.operands):
                if not op.is_ancestor(v.owner) or v.owner is op:
                    raise VerifyException(
                        f"kernel: {inner.name} uses a value defined outside the kernel (its operand {i}); "
                        "pass it to the kernel as an operand"
                    )


class _KernelCanonicalization(HasCanonicalizationPatternsTrait):
    @classmethod
    def get_canonicalization_patterns(cls) -> tuple[RewritePattern, ...]:
        return (DropUnusedKernelValues(),)


@irdl_op_definition
class KernelOp(IRDLOperation):
    """A fused kernel: one launch of a grid of programs, each running the body on its own tiles.

    Syntax::

        %y = ternary.kernel grid [16] (%a = %x : tensor<?x64xf32> tiled [0, *],
                                       %g = %gamma : tensor<64xf32>,
                                       %w = %trits : !ternary.trits<32x64>,
                                       %s = %scale : f32) -> (tensor<?x32xf32> tiled [0, *]) {
          %n = ternary.rmsnorm %a, %g : tensor<?x64xf32>, tensor<64xf32>
          ...
          ternary.yield %y1 : tensor<?x32xf32>
        }

    **Grid.** ``grid [b_0, ..., b_{G-1}]`` has one entry per grid axis: axis g cuts the dims it
    splits into consecutive blocks of ``b_g`` indices, and there is one program per block, so
    ``ceil(extent_g / b_g)`` programs along g (all dims split by one axis have one extent). A program
    is a point ``(p_0, ..., p_{G-1})`` of the grid. ``grid []`` is a single program.

    **Tiles.** Each operand and result carries a tile map (``tiled [..]``, one entry per dim; omitted
    when every dim is whole): an int g means grid axis g splits that dim, ``*`` means the dim is whole.
    Program p owns, of every operand and result, block ``p_g`` of each dim split by axis g and all of
    every whole dim. The body's block argument i is operand i restricted to that tile: its type is the
    operand type with split dims made ``?`` (:func:`tile_type`). Every result must be split by every
    grid axis exactly once, so the programs write disjoint tiles that cover it; an operand may leave
    axes out (it is then the same for every program along them, e.g. a weight).

    **The rule (what the verifier checks).** The body must not need a value produced by another
    program of the same launch. The verifier follows, for every value in the body, which grid axis
    splits each of its dims. Each body op states a :class:`TileRule` (its ``tile_rule()``): labels
    for its dims, and the labels it needs whole:

    * every op may only see its own tile: dims that share a label must be split the same way
      (e.g. both operands of ``ternary.mul``; ``accum``'s activation rows and result rows);
    * a dim the op reduces over, scans along, gathers from or broadcasts must be whole:
      the last axis K of ``rmsnorm``, ``residual_rmsnorm``, ``gate_norm``, ``quant_act``, ``accum``
      (K of both operands) and ``split``; K of ``unpack`` (trits of a row share bytes); the time
      axis T of ``scan``; the table's V axis of ``embedding``; the layer axis of ``lower_bounds``
      and ``row``; the size-1 scale dim ``dequant`` broadcasts; both axes of ``quant_weight``.
      Rows (leading dims), accum's N, and the channel axis d of ``scan``, ``scan_step``, ``mask``,
      ``lower_bound`` and the elementwise ops are independent and may be split;
    * each yielded value must be split exactly as its result's tile map says;
    * the body uses only its block arguments and values it defines (pass anything else, weights
      included, as an operand), and holds only ternary ops with a tiling rule (no nested kernel).

    The kernel as a whole is side-effect free when its body is, so xDSL's cse and dce treat it as
    a value; its canonicalization drops unused results and unread operands.
    """

    name = "ternary.kernel"

    inputs = var_operand_def()
    outputs = var_result_def()
    grid = prop_def(DenseArrayBase.constr(i64))
    input_tiles = prop_def(ArrayAttr[TileMapAttr])
    result_tiles = prop_def(ArrayAttr[TileMapAttr])
    body = region_def("single_block")

    traits = traits_def(
        _KernelIsolation(), RecursiveMemoryEffect(), RecursivelySpeculatable(), _KernelCanonicalization()
    )

    def __init__(
        self,
        grid: Sequence[int],
        inputs: Sequence[SSAValue | Operation],
        input_tiles: Sequence[TileMapAttr | Sequence[int | None]],
        result_types: Sequence[Attribute],
        result_tiles: Sequence[TileMapAttr | Sequence[int | None]],
        body: Region | None = None,
    ):
        """Build a kernel; without ``body``, the region gets one empty block whose arguments have
        the operands' tile types (fill it, ending with ``ternary.yield``)."""
        in_t = [t if isinstance(t, TileMapAttr) else TileMapAttr(t) for t in input_tiles]
        out_t = [t if isinstance(t, TileMapAttr) else TileMapAttr(t) for t in result_tiles]
        if body is None:
            arg_types = [tile_type(SSAValue.get(v).type, t) for v, t in zip(inputs, in_t, strict=True)]
            body = Region(Block(arg_types=arg_types))
        super().__init__(
            operands=[inputs],
            result_types=[result_types],
            properties={
                "grid": DenseArrayBase.from_list(i64, grid),
                "input_tiles": ArrayAttr(in_t),
                "result_tiles": ArrayAttr(out_t),
            },
            regions=[body],
        )

    def grid_sizes(self) -> tuple[int, ...]:
        """Block size of each grid axis."""
        return tuple(self.grid.get_values())

    # ---------------------------------------------------------------- verification

    def verify_(self) -> None:
        grid = self.grid_sizes()
        for g, b in enumerate(grid):
            if b < 1:
                raise VerifyException(f"kernel: grid axis {g} has block size {b}; expected >= 1")
        if len(self.input_tiles) != len(self.inputs):
            raise VerifyException(
                f"kernel: {len(self.inputs)} operands but {len(self.input_tiles)} input tile maps"
            )
        if len(self.result_tiles) != len(self.outputs):
            raise VerifyException(
                f"kernel: {len(self.outputs)} results but {len(self.result_tiles)} result tile maps"
            )
        if not self.outputs:
            raise VerifyException("kernel: expected at least one result")
        extents: dict[int, tuple[int, str]] = {}
        for kind, values, tiles in (
            ("operand", self.inputs, self.input_tiles.data),
            ("result", self.outputs, self.result_tiles.data),
        ):
            for i, (v, tile) in enumerate(zip(values, tiles)):
                self._verify_tile(kind, i, v.type, tile, len(grid), extents)
        block = self.body.block
        if len(block.args) != len(self.inputs):
            raise VerifyException(
                f"kernel: body has {len(block.args)} arguments, expected {len(self.inputs)} (one per operand)"
            )
        for i, (arg, v, tile) in enumerate(zip(block.args, self.inputs, self.input_tiles.data)):
            want = tile_type(v.type, tile)
            if arg.type != want:
                raise VerifyException(
                    f"kernel: body argument {i} has type {arg.type}, expected the tile type {want}"
                )
        yield_op = block.last_op
        if not isinstance(yield_op, YieldOp):
            raise VerifyException("kernel: body must end with ternary.yield")
        if len(yield_op.values) != len(self.outputs):
            raise VerifyException(
                f"kernel: body yields {len(yield_op.values)} values for {len(self.outputs)} results"
            )
        for i, (v, r, tile) in enumerate(zip(yield_op.values, self.outputs, self.result_tiles.data)):
            want = tile_type(r.type, tile)
            if v.type != want:
                raise VerifyException(
                    f"kernel: yielded value {i} has type {v.type}, expected the tile type {want}"
                )
        self._verify_programs_independent(block, yield_op)

    def _verify_tile(
        self,
        kind: str,
        i: int,
        t: Attribute,
        tile: TileMapAttr,
        n_axes: int,
        extents: dict[int, tuple[int, str]],
    ) -> None:
        shape = shape_of(t)
        axes = tile.axes()
        if len(axes) != len(shape):
            raise VerifyException(
                f"kernel: {kind} {i} has {len(shape)} dims but tile map {tile.spelling()} has {len(axes)}"
            )
        for d, (a, n) in enumerate(zip(axes, shape)):
            if a is None:
                continue
            if a >= n_axes:
                raise VerifyException(
                    f"kernel: {kind} {i} is split by grid axis {a}, but the grid has {n_axes} axes"
                )
            where = f"{kind} {i} dim {d}"
            if n != DYN:
                seen = extents.setdefault(a, (n, where))
                if seen[0] != n:
                    raise VerifyException(
                        f"kernel: grid axis {a} splits dims of different extents: "
                        f"{seen[1]} has {seen[0]}, {where} has {n}"
                    )
        if kind == "result":
            used = {a for a in axes if a is not None}
            missing = sorted(set(range(n_axes)) - used)
            if missing:
                raise VerifyException(
                    f"kernel: result {i} (tiled {tile.spelling()}) is not split by grid axis {missing[0]}: "
                    "every program along it would write the same tile"
                )

    @staticmethod
    def _describe(axis: int | None) -> str:
        return "whole" if axis is None else f"split by grid axis {axis}"

    def _verify_programs_independent(self, block: Block, yield_op: YieldOp) -> None:
        split: dict[SSAValue, tuple[int | None, ...]] = {}
        for arg, tile in zip(block.args, self.input_tiles.data):
            split[arg] = tile.axes()
        for op in block.ops:
            if op is yield_op:
                break
            if not isinstance(op, TiledOp):
                raise VerifyException(
                    f"kernel: {op.name} cannot appear in a kernel body "
                    "(only ternary compute ops with a tiling rule)"
                )
            rule = op.tile_rule()
            bound: dict[str, tuple[int | None, str]] = {}
            for i, (v, labels) in enumerate(zip(op.operands, rule.operands, strict=True)):
                if v not in split:
                    raise VerifyException(f"kernel: {op.name} uses its operand {i} before it is defined")
                axes = split[v]
                for d, (label, axis) in enumerate(zip(labels, axes, strict=True)):
                    where = f"operand {i} dim {d}"
                    if label in rule.whole and axis is not None:
                        raise VerifyException(
                            f"kernel: {op.name} needs {where} whole (it reduces, scans, gathers or "
                            f"broadcasts along it), but grid axis {axis} splits it across programs"
                        )
                    seen = bound.setdefault(label, (axis, where))
                    if seen[0] != axis:
                        raise VerifyException(
                            f"kernel: {op.name} mixes tiles: {seen[1]} is {self._describe(seen[0])} but "
                            f"{where} is {self._describe(axis)}"
                        )
            for r, labels in zip(op.results, rule.results, strict=True):
                split[r] = tuple(bound.get(label, (None, ""))[0] for label in labels)
        for i, (v, tile) in enumerate(zip(yield_op.values, self.result_tiles.data)):
            got = TileMapAttr(split[v])
            if got != tile:
                raise VerifyException(
                    f"kernel: result {i} is tiled {tile.spelling()} but the body yields a value tiled "
                    f"{got.spelling()}"
                )

    # ---------------------------------------------------------------- custom format

    def print(self, printer: Printer) -> None:
        printer.print_string(" grid [")
        printer.print_list(self.grid_sizes(), lambda b: printer.print_string(str(b)))
        printer.print_string("] (")

        def one_input(i: int) -> None:
            arg, v, tile = self.body.block.args[i], self.inputs[i], self.input_tiles.data[i]
            printer.print_block_argument(arg, print_type=False)
            printer.print_string(" = ")
            printer.print_operand(v)
            printer.print_string(" : ")
            printer.print_attribute(v.type)
            if not tile.is_whole():
                printer.print_string(f" tiled {tile.spelling()}")

        def one_result(i: int) -> None:
            tile = self.result_tiles.data[i]
            printer.print_attribute(self.outputs[i].type)
            if not tile.is_whole():
                printer.print_string(f" tiled {tile.spelling()}")

        printer.print_list(range(len(self.inputs)), one_input)
        printer.print_string(") -> (")
        printer.print_list(range(len(self.outputs)), one_result)
        printer.print_string(")")
        printer.print_op_attributes(self.attributes, print_keyword=True)
        printer.print_string(" ")
        printer.print_region(self.body, print_entry_block_args=False)

    @classmethod
    def parse(cls, parser: Parser) -> KernelOp:
        parser.parse_keyword("grid")
        grid = parser.parse_comma_separated_list(
            parser.Delimiter.SQUARE, lambda: parser.parse_integer(allow_boolean=False)
        )

        def tile_for(t: Attribute) -> TileMapAttr:
            if parser.parse_optional_keyword("tiled") is not None:
                return TileMapAttr.parse_list(parser)
            return TileMapAttr([None] * len(shape_of(t)))

        args: list[Parser.Argument] = []
        inputs: list[SSAValue] = []
        in_tiles: list[TileMapAttr] = []

        def one_input() -> None:
            arg = parser.parse_argument(expect_type=False)
            parser.parse_punctuation("=")
            operand: UnresolvedOperand = parser.parse_unresolved_operand()
            parser.parse_punctuation(":")
            t = parser.parse_type()
            tile = tile_for(t)
            inputs.append(parser.resolve_operand(operand, t))
            in_tiles.append(tile)
            args.append(arg.resolve(tile_type(t, tile) if len(tile.axes()) == len(shape_of(t)) else t))

        parser.parse_comma_separated_list(parser.Delimiter.PAREN, one_input)
        parser.parse_punctuation("->")
        result_types: list[Attribute] = []
        out_tiles: list[TileMapAttr] = []

        def one_result() -> None:
            t = parser.parse_type()
            result_types.append(t)
            out_tiles.append(tile_for(t))

        parser.parse_comma_separated_list(parser.Delimiter.PAREN, one_result)
        attrs = parser.parse_optional_attr_dict_with_keyword()
        body = parser.parse_region(args)
        op = cls(grid, inputs, in_tiles, result_types, out_tiles, body)
        if attrs is not None:
            op.attributes.update(attrs.data)
        return op


@irdl_op_definition
class YieldOp(IRDLOperation):
    """End of a kernel body: the program's tiles of the kernel's results.

    Syntax::

        ternary.yield %a, %b : tensor<?x32xf32>, tensor<?x1xf32>
    """

    name = "ternary.yield"

    values = var_operand_def()

    traits = traits_def(Pure(), IsTerminator(), HasParent(KernelOp), ReturnLike())
    assembly_format = "attr-dict ($values^ `:` type($values))?"

    def __init__(self, *values: SSAValue | Operation):
        super().__init__(operands=[values])


class DropUnusedKernelValues(RewritePattern):
    """Canonicalization: drop kernel results nobody uses and operands the body does not read."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: KernelOp, rewriter: PatternRewriter) -> None:
        block = op.body.block
        keep_out = [i for i, r in enumerate(op.results) if r.uses]
        keep_in = [i for i, a in enumerate(block.args) if a.uses]
        if not keep_out:
            return  # the whole kernel is dead: dce removes it
        if len(keep_out) == len(op.results) and len(keep_in) == len(block.args):
            return
        yield_op = block.last_op
        assert isinstance(yield_op, YieldOp)
        rewriter.replace(yield_op, YieldOp(*(yield_op.values[i] for i in keep_out)))
        for i in reversed(range(len(block.args))):
            if i not in keep_in:
                rewriter.erase_block_argument(block.args[i])
        new = KernelOp(
            grid=op.grid_sizes(),
            inputs=[op.inputs[i] for i in keep_in],
            input_tiles=[op.input_tiles.data[i] for i in keep_in],
            result_types=[op.results[i].type for i in keep_out],
            result_tiles=[op.result_tiles.data[i] for i in keep_out],
            body=rewriter.move_region_contents_to_new_regions(op.body),
        )
        new.attributes.update(op.attributes)
        new_results: list[SSAValue | None] = [None] * len(op.results)
        for j, i in enumerate(keep_out):
            new_results[i] = new.results[j]
        rewriter.replace(op, new, new_results)


Ternary = Dialect(
    "ternary",
    [
        WeightOp,
        QuantWeightOp,
        UnpackOp,
        RMSNormOp,
        RMSNormalizeOp,
        ScaleOp,
        ResidualRMSNormOp,
        QuantActOp,
        AccumOp,
        DequantOp,
        SigmoidOp,
        SiluOp,
        OneMinusOp,
        SiluMulOp,
        MulOp,
        AddOp,
        SubOp,
        ScanStepOp,
        LowerBoundOp,
        GateNormOp,
        MaskOp,
        ScanOp,
        EmbeddingOp,
        LowerBoundsOp,
        SplitOp,
        RowOp,
        KernelOp,
        YieldOp,
    ],
    [TritsType, PackedType, TileMapAttr],
)
