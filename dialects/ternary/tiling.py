"""Tiling: which dims of a kernel's values a grid axis may split, and the grid arithmetic of a launch.

**The rule of split legality, once.** Every op that may run in a kernel body states a
:class:`TileRule`: an index label for each of its operand and result dims, and the labels it needs
whole. :func:`index_spaces` turns a rule into the op's index spaces: dims that share a label are one
space (one grid axis splits all of them, or none does), and a space is whole when the op reduces,
scans, gathers or broadcasts along it (its label is in ``rule.whole``) or creates it (a result label
no operand has). Two users apply it:

* the kernel verifier *checks* given splits, forward through the body (:func:`result_splits`,
  :func:`body_splits`);
* ``passes/kernel_outlining.propagate_splits`` *solves* for splits from a few seeds.

**The grid arithmetic every backend needs** (the interpreter now; a Triton code generator and the
accelerator simulator later): the extent of each grid axis from the operands' run-time shapes
(:func:`grid_extents`), the number of programs per axis (:func:`program_counts`), the grid points
(:func:`program_points`), a program's index bounds per axis (:func:`program_bounds`, the last block
clipped), the slice of a value a program owns (:func:`tile_index`), a result's shape from one
program's tile (:func:`full_shape`), and the type one program sees (:func:`tile_type`).
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Hashable, TypeVar

from xdsl.dialects.builtin import TensorType
from xdsl.ir import Attribute, SSAValue
from xdsl.irdl import IRDLOperation
from xdsl.traits import IsTerminator
from xdsl.utils.exceptions import VerifyException

from mmfc.dialects.ternary.types import DYN, PackedType, TileMapAttr, TritsType, shape_of

if TYPE_CHECKING:
    from mmfc.dialects.ternary.kernel import KernelOp

N = TypeVar("N", bound=Hashable)

Axes = tuple[int | None, ...]
"""Per dim of a value: the grid axis that splits it, or None (whole)."""

Bounds = tuple[tuple[int, int], ...]
"""Per grid axis: the ``[start, stop)`` indices one program owns."""


# --------------------------------------------------------------------------------------------------
# Tiling rules and index spaces
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TileRule:
    """How an op's dims relate, for kernels (see :func:`index_spaces` for what it implies).

    Each operand and result dim gets an index label; dims that share a label are the same index
    space. ``whole`` holds the labels the op reduces over, scans along, gathers from, or broadcasts:
    a dim with such a label must be whole in every program.
    """

    operands: tuple[tuple[str, ...], ...]
    results: tuple[tuple[str, ...], ...]
    whole: frozenset[str] = frozenset()


def lead_labels(rank: int) -> tuple[str, ...]:
    """Labels of the leading (batch/time) dims, shared positionally by all operands of an op."""
    return tuple(f"d{i}" for i in range(rank))


class TiledOp(IRDLOperation, ABC):
    """An op that may appear in a kernel body: it states its :class:`TileRule`."""

    @abstractmethod
    def tile_rule(self) -> TileRule:
        """The labels of this op's operand and result dims, and those it needs whole."""


REDUCES = "reduces, scans, gathers or broadcasts along it"
"""Why a space whose label is in ``TileRule.whole`` is whole (completes "the op ...")."""

CREATES = "creates it"
"""Why a space of result dims only is whole: the op makes the dim up (e.g. a per-row scale's 1)."""


@dataclass(frozen=True)
class IndexSpace:
    """The dims of one op that share an index label: one grid axis splits all of them, or none does.

    ``whole_because`` completes "the op ..." when no grid axis may split the space (:data:`REDUCES`
    or :data:`CREATES`); None when it may be split.
    """

    label: str
    whole_because: str | None = None


@dataclass(frozen=True)
class IndexSpaces:
    """The index space of every dim of one op: per operand (per result), per dim."""

    operands: tuple[tuple[IndexSpace, ...], ...]
    results: tuple[tuple[IndexSpace, ...], ...]


def index_spaces(rule: TileRule) -> IndexSpaces:
    """The index spaces of an op with tiling rule ``rule``: the one statement of split legality.

    Dims that share a label are one space. A space is whole when its label is in ``rule.whole``
    (:data:`REDUCES`) or no operand has it (:data:`CREATES`: a result dim the op creates).
    """
    operand_labels = {label for labels in rule.operands for label in labels}

    def space(label: str) -> IndexSpace:
        if label in rule.whole:
            return IndexSpace(label, REDUCES)
        if label not in operand_labels:
            return IndexSpace(label, CREATES)
        return IndexSpace(label)

    return IndexSpaces(
        tuple(tuple(space(label) for label in labels) for labels in rule.operands),
        tuple(tuple(space(label) for label in labels) for labels in rule.results),
    )


class UnionFind(Generic[N]):
    """Disjoint sets of hashable nodes (union by assignment, path compression): which dims of a
    set of ops are one index space, as the passes and the backends compute it."""

    def __init__(self) -> None:
        self.parent: dict[N, N] = {}

    def find(self, n: N) -> N:
        self.parent.setdefault(n, n)
        root = n
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[n] != root:  # path compression
            self.parent[n], n = root, self.parent[n]
        return root

    def union(self, a: N, b: N) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def _describe(axis: int | None) -> str:
    return "whole" if axis is None else f"split by grid axis {axis}"


def result_splits(op: TiledOp, operand_splits: Sequence[Axes]) -> tuple[Axes, ...]:
    """The splits of ``op``'s results when it reads its operands split as ``operand_splits``.

    A result dim is split as its index space is split among the operands (whole when no operand has
    the space). Raises ``VerifyException`` (a ``kernel: ...`` message) when a dim of a whole space is
    split, or two dims of one space are split differently.
    """
    spaces = index_spaces(op.tile_rule())
    bound: dict[IndexSpace, tuple[int | None, str]] = {}
    for i, (axes, dims) in enumerate(zip(operand_splits, spaces.operands, strict=True)):
        for d, (space, axis) in enumerate(zip(dims, axes, strict=True)):
            where = f"operand {i} dim {d}"
            if space.whole_because is not None and axis is not None:
                raise VerifyException(
                    f"kernel: {op.name} needs {where} whole (it {space.whole_because}), but grid axis "
                    f"{axis} splits it across programs"
                )
            seen = bound.setdefault(space, (axis, where))
            if seen[0] != axis:
                raise VerifyException(
                    f"kernel: {op.name} mixes tiles: {seen[1]} is {_describe(seen[0])} but {where} is "
                    f"{_describe(axis)}"
                )
    return tuple(tuple(bound.get(space, (None, ""))[0] for space in dims) for dims in spaces.results)


def body_splits(kernel: KernelOp) -> dict[SSAValue, Axes]:
    """The split of every value of ``kernel``'s body: block arguments as the operands' tile maps say,
    then each op's results forward (:func:`result_splits`).

    Raises ``VerifyException`` (a ``kernel: ...`` message) when the body holds an op without a tiling
    rule, uses a value before defining it, or breaks an op's rule.
    """
    block = kernel.body.block
    split: dict[SSAValue, Axes] = {}
    for arg, tile in zip(block.args, kernel.input_tiles.data):
        split[arg] = tile.axes()
    for op in block.ops:
        if op.has_trait(IsTerminator):
            break
        if not isinstance(op, TiledOp):
            raise VerifyException(
                f"kernel: {op.name} cannot appear in a kernel body "
                "(only ternary compute ops with a tiling rule)"
            )
        operand_splits = []
        for i, v in enumerate(op.operands):
            if v not in split:
                raise VerifyException(f"kernel: {op.name} uses its operand {i} before it is defined")
            operand_splits.append(split[v])
        split.update(zip(op.results, result_splits(op, operand_splits), strict=True))
    return split


# --------------------------------------------------------------------------------------------------
# What one program sees
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


class GridError(ValueError):
    """Run-time shapes that do not fit a kernel's grid; the message says why in one line."""


def grid_extents(kernel: KernelOp, shapes: Sequence[Sequence[int]]) -> tuple[int, ...]:
    """The extent of each grid axis of ``kernel`` from its operands' run-time ``shapes`` (``()`` for a
    scalar; a packed weight's shape is in bytes): the size of the operand dims the axis splits.

    Raises :class:`GridError` when an operand's rank differs from its tile map's, a packed weight is
    split along K (a byte holds several trits), one axis splits dims of different sizes, or an axis
    splits no operand (its extent is unknown).
    """
    seen: dict[int, tuple[int, str]] = {}
    operands = zip(shapes, kernel.input_tiles.data, kernel.inputs, strict=True)
    for i, (shape, tile, operand) in enumerate(operands):
        axes = tile.axes()
        if len(shape) != len(axes):
            raise GridError(f"operand {i} has shape {tuple(shape)}, but its tile map has {len(axes)} dims")
        for d, a in enumerate(axes):
            if a is None:
                continue
            if isinstance(operand.type, PackedType) and d == 1:
                raise GridError(f"operand {i} is a packed weight split along K (bytes hold several trits)")
            first = seen.setdefault(a, (shape[d], f"operand {i} dim {d}"))
            if first[0] != shape[d]:
                raise GridError(
                    f"grid axis {a} splits dims of different sizes at run time: {first[1]} has {first[0]}, "
                    f"operand {i} dim {d} has {shape[d]}"
                )
    n_axes = len(kernel.grid_sizes())
    missing = [g for g in range(n_axes) if g not in seen]
    if missing:
        raise GridError(f"grid axis {missing[0]} splits no operand: its extent is unknown")
    return tuple(seen[g][0] for g in range(n_axes))


def program_counts(grid: Sequence[int], extents: Sequence[int]) -> tuple[int, ...]:
    """Programs per grid axis: ``ceil(extent / block)``; an axis of extent 0 runs one program (on
    empty tiles, so that the results' whole dims are known)."""
    return tuple(max(1, math.ceil(e / b)) for e, b in zip(extents, grid, strict=True))


def program_points(grid: Sequence[int], extents: Sequence[int]) -> Iterator[tuple[int, ...]]:
    """Every program of a launch, as its grid point ``(p_0, ..., p_{G-1})``, in row-major order (one
    point, ``()``, for ``grid []``). Programs are independent: any order gives the same results."""
    return itertools.product(*(range(c) for c in program_counts(grid, extents)))


def program_bounds(point: Sequence[int], grid: Sequence[int], extents: Sequence[int]) -> Bounds:
    """The indices program ``point`` owns along each grid axis: ``[p * b, min((p + 1) * b, extent))``
    (the last block is clipped)."""
    return tuple((p * b, min((p + 1) * b, e)) for p, b, e in zip(point, grid, extents, strict=True))


def tile_index(axes: Axes, bounds: Bounds) -> tuple[slice, ...]:
    """The index of the tile a program with ``bounds`` owns of a value split as ``axes``: its block of
    each split dim, all of each whole dim (one slice per dim)."""
    return tuple(slice(None) if a is None else slice(*bounds[a]) for a in axes)


def full_shape(axes: Axes, tile_shape: Sequence[int], extents: Sequence[int]) -> tuple[int, ...]:
    """The shape of a value split as ``axes``, one program's tile of which has shape ``tile_shape``:
    a split dim has its axis' extent, a whole dim the tile's size."""
    return tuple(n if a is None else extents[a] for n, a in zip(tile_shape, axes, strict=True))


__all__ = [
    "CREATES",
    "REDUCES",
    "Axes",
    "Bounds",
    "GridError",
    "IndexSpace",
    "IndexSpaces",
    "TileRule",
    "TiledOp",
    "UnionFind",
    "body_splits",
    "full_shape",
    "grid_extents",
    "index_spaces",
    "lead_labels",
    "program_bounds",
    "program_counts",
    "program_points",
    "result_splits",
    "tile_index",
    "tile_type",
]
