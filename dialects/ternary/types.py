"""The types and attributes of the ``ternary`` dialect, and the shape helpers its verifiers share.

* ``!ternary.trits<NxK>`` (:class:`TritsType`): int8 trits in {-1, 0, +1}, N first like a ``Linear``;
* ``!ternary.packed<NxK, "2bit">`` / ``"base3"`` (:class:`PackedType`): the same weight packed row by
  row (the shape is the logical one, in trits);
* ``#ternary.tile<[0, *, 1]>`` (:class:`TileMapAttr`): how a kernel operand or result is split across
  the programs of its grid.

Builtin types carry the rest: f32 activations, i8 activations with f32 per-row scales, i32
accumulators, weight scales ``f32`` / ``tensor<f32>``. Dims may be dynamic (:data:`DYN`); two dims are
compared only when both are static.
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    ArrayAttr,
    BFloat16Type,
    Float16Type,
    Float32Type,
    Float64Type,
    IntAttr,
    ShapedType,
    StringAttr,
    TensorType,
)
from xdsl.ir import Attribute, ParametrizedAttribute, SSAValue, TypeAttribute
from xdsl.irdl import irdl_attr_definition
from xdsl.parser import AttrParser
from xdsl.printer import Printer
from xdsl.utils.exceptions import VerifyException

from mmfc.dialects.numerics import PACK_FORMATS, packed_row_bytes

DYN = DYNAMIC_INDEX
"""A dynamic dim (``?``), as builtin tensor types store it."""

WHOLE = -1
"""In a tile map: this dim is not split; every program sees all of it (printed ``*``)."""

STORE_FLOATS = (BFloat16Type, Float16Type, Float32Type, Float64Type)
"""Element types a tensor read from the weight store may have (computed in f32 once read)."""


# --------------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------------


def dim_str(d: int) -> str:
    """``?`` for a dynamic dim, else the number."""
    return "?" if d == DYN else str(d)


def shape_str(shape: Sequence[int]) -> str:
    """``[?, 64]``: a shape as verifier messages spell it."""
    return "[" + ", ".join(dim_str(d) for d in shape) + "]"


def dims_agree(a: int, b: int) -> bool:
    """Two dims agree unless both are static and differ."""
    return a == DYN or b == DYN or a == b


def shapes_agree(a: Sequence[int], b: Sequence[int]) -> bool:
    """Same rank, and every pair of dims agrees (:func:`dims_agree`)."""
    return len(a) == len(b) and all(dims_agree(x, y) for x, y in zip(a, b))


def shape_of(t: Attribute) -> tuple[int, ...]:
    """Dims of a tensor, trits or packed type (``DYN`` for ``?``); ``()`` for a scalar type."""
    if isinstance(t, ShapedType):
        return t.get_shape()
    return ()


def rank(v: SSAValue | Attribute) -> int:
    """Number of dims of a value or a type (0 for a scalar type)."""
    return len(shape_of(v.type if isinstance(v, SSAValue) else v))


def is_scale_type(t: Attribute) -> bool:
    """A weight scale: ``f32`` or ``tensor<f32>``."""
    return isinstance(t, Float32Type) or (
        isinstance(t, TensorType) and t.get_shape() == () and isinstance(t.get_element_type(), Float32Type)
    )


# --------------------------------------------------------------------------------------------------
# Ternary weight types
# --------------------------------------------------------------------------------------------------


def _parse_nk(parser: AttrParser) -> ArrayAttr[IntAttr]:
    dims = parser.parse_dimension_list()
    return ArrayAttr(IntAttr(d) for d in dims)


def _check_nk(name: str, shape: tuple[int, ...]) -> None:
    if len(shape) != 2:
        raise VerifyException(f"{name}: expected a 2-D weight shape NxK, got {shape_str(shape)}")
    if any(d < 0 and d != DYN for d in shape):
        raise VerifyException(f"{name}: dims must be >= 0 or ?, got {shape_str(shape)}")


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


# --------------------------------------------------------------------------------------------------
# Tile maps
# --------------------------------------------------------------------------------------------------


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


__all__ = [
    "DYN",
    "STORE_FLOATS",
    "WHOLE",
    "PackedType",
    "TileMapAttr",
    "TritsType",
    "dim_str",
    "dims_agree",
    "is_scale_type",
    "rank",
    "shape_of",
    "shape_str",
    "shapes_agree",
]
