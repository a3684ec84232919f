"""What the code generator needs to know about one kernel: the index spaces of its values.

Every dim of every value a kernel touches (its operands, the values of its body, its results) lies in
an *index space*: the dims an op's tiling rule gives one label are one space, and a value read or
written by several ops carries its spaces between them. A space is either

* a **row** space (batch, time: a leading dim of activations, never the last dim of a tensor of
  features): the program loops over it, one row at a time (the scan's time axis in order);
* a **gather** space (the vocabulary rows of an embedding table): indexed by data, never looped;
* a **feature** space (K of a norm or an accumulation, N of a projection, the channels of the
  recurrence): the program holds one block of it in registers, ``tl.arange(0, BLOCK)`` with a mask;
  a feature space of static size 1 (a per-row quantization scale) is held as a scalar.

Each space has a size (static, or read at run time from an operand's dim, passed to the kernel as an
integer argument) and, when a grid axis splits it, that axis and its block size.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from xdsl.dialects.builtin import TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.traits import IsTerminator

from mmfc.dialects import ternary as T
from mmfc.dialects.diagnostics import UserError

Node = tuple[SSAValue, int]  # (value, dim)


@dataclass
class Space:
    """One index space of a kernel (see the module docstring)."""

    id: int
    kind: str = "row"  # "row" | "feature" | "unit"
    static: int | None = None  # the size, when the types say it
    size_from: tuple[int, int] | None = None  # (kernel operand, dim) giving the size at run time
    axis: int | None = None  # the grid axis splitting it
    block: int | None = None  # that axis's block size

    @property
    def name(self) -> str:
        return f"s{self.id}"

    @property
    def size_arg(self) -> str:
        """The kernel argument (or constant) holding the size."""
        return str(self.static) if self.static is not None else f"n_{self.name}"

    @property
    def pow2_block(self) -> int:
        """``BLOCK`` of a feature space: the next power of two of what one program holds."""
        held = self.block if self.axis is not None and self.block is not None else self.static
        if held is None:
            raise UserError(f"a feature dim of dynamic size must be split by a grid axis (space {self.name})")
        return next_pow2(held)


def next_pow2(n: int) -> int:
    """The least power of two >= ``n`` (1 for n <= 1): Triton's block sizes."""
    return 1 << max(0, (max(n, 1) - 1).bit_length())


def rank(v: SSAValue) -> int:
    return len(T.shape_of(v.type))


@dataclass
class KernelSpaces:
    """The index spaces of one kernel: :meth:`of` gives a value's spaces, dim by dim."""

    kernel: T.KernelOp
    spaces: list[Space] = field(default_factory=list)
    _space_of: dict[Node, Space] = field(default_factory=dict)
    rows: list[Space] = field(default_factory=list)  # loop order, outermost first
    values: list[SSAValue] = field(default_factory=list)  # every value of the kernel

    def of(self, v: SSAValue) -> tuple[Space, ...]:
        return tuple(self._space_of[(v, d)] for d in range(rank(v)))

    def feature(self, v: SSAValue) -> Space | None:
        """The feature space of ``v`` (its last dim), None when it has none (a per-row scalar, such
        as a token id or a quantization scale)."""
        dims = self.of(v)
        if not dims or dims[-1].kind != "feature":
            return None
        return dims[-1]

    def row_dims(self, v: SSAValue) -> tuple[Space, ...]:
        return tuple(s for s in self.of(v) if s.kind == "row")

    def level(self, v: SSAValue) -> int:
        """How many row loops deep ``v`` lives: the length of its prefix of the loop nest (0: the
        same in every row, e.g. a norm weight)."""
        rows = self.row_dims(v)
        if tuple(rows) != tuple(self.rows[: len(rows)]):
            raise UserError(
                f"kernel {self.kernel.attributes.get('label')}: a value's row dims {[s.name for s in rows]} are not a "
                f"prefix of the loop nest {[s.name for s in self.rows]}"
            )
        return len(rows)


def analyze(kernel: T.KernelOp) -> KernelSpaces:
    """The index spaces of ``kernel`` (see the module docstring)."""
    uf: T.UnionFind[Node] = T.UnionFind()
    block = kernel.body.block
    body_ops = [op for op in block.ops if not op.has_trait(IsTerminator)]
    values: list[SSAValue] = [*kernel.inputs, *block.args, *(r for op in body_ops for r in op.results), *kernel.results]
    for v in values:
        for d in range(rank(v)):
            uf.find((v, d))
    # a block argument is its operand; a yielded value is its result
    for v, arg in zip(kernel.inputs, block.args):
        for d in range(rank(v)):
            uf.union((v, d), (arg, d))
    yield_op = block.last_op
    assert isinstance(yield_op, T.YieldOp)
    for y, r in zip(yield_op.values, kernel.results):
        for d in range(rank(r)):
            uf.union((y, d), (r, d))
    for op in body_ops:
        _union_op(uf, op)

    ks = KernelSpaces(kernel, values=values)
    by_root: dict[Node, Space] = {}
    for v in values:
        for d in range(rank(v)):
            root = uf.find((v, d))
            if root not in by_root:
                by_root[root] = Space(len(by_root))
                ks.spaces.append(by_root[root])
            ks._space_of[(v, d)] = by_root[root]

    # what splits each space, and its size
    for i, (v, tile) in enumerate(zip(kernel.inputs, kernel.input_tiles.data)):
        for d, (axis, n) in enumerate(zip(tile.axes(), T.shape_of(v.type))):
            s = ks._space_of[(v, d)]
            _note_size(s, n, i, d, packed_k=isinstance(v.type, T.PackedType) and d == 1)
            if axis is not None:
                s.axis, s.block = axis, kernel.grid_sizes()[axis]
    for r, tile in zip(kernel.results, kernel.result_tiles.data):
        for d, axis in enumerate(tile.axes()):
            if axis is not None:
                s = ks._space_of[(r, d)]
                s.axis, s.block = axis, kernel.grid_sizes()[axis]
    for v in values:  # static sizes the types of the body and the results state
        for d, n in enumerate(T.shape_of(v.type)):
            s = ks._space_of[(v, d)]
            if n != T.DYN and s.static is None:
                s.static = n

    # feature spaces: the last dim of a tensor of features, and both dims of weights (the kernel's
    # operands share their spaces with the block arguments, which say whether they are ids or masks)
    for v in [*block.args, *(r for op in body_ops for r in op.results), *kernel.results]:
        t = v.type
        if isinstance(t, T.TritsType | T.PackedType):
            for d in range(2):
                ks._space_of[(v, d)].kind = "feature"
        elif isinstance(t, TensorType) and rank(v) >= 1 and not _is_index_tensor(v, body_ops):
            ks._space_of[(v, rank(v) - 1)].kind = "feature"
    for s in ks.spaces:
        if s.kind == "feature" and s.static == 1 and s.axis is None:
            s.kind = "unit"
    for op in body_ops:  # the rows of an embedding table are picked by token ids, not looped over
        if isinstance(op, T.EmbeddingOp):
            ks._space_of[(op.table, 0)].kind = "gather"

    # the loop nest: row spaces in the dim order of the highest-rank value
    for v in sorted(values, key=rank, reverse=True):
        for s in ks.of(v):
            if s.kind == "row" and s not in ks.rows:
                ks.rows.append(s)
    for s in ks.spaces:
        if s.static is None and s.size_from is None:
            raise UserError(
                f"kernel {kernel.attributes.get('label')}: the size of index space {s.name} is known neither from the "
                "types nor from an operand"
            )
    return ks


def _note_size(s: Space, n: int, operand: int, dim: int, packed_k: bool) -> None:
    if n != T.DYN:
        s.static = n  # a packed weight's type states K in trits, the size of its K space
    elif s.size_from is None and not packed_k:  # (its array holds bytes: never a run-time size)
        s.size_from = (operand, dim)


def _is_index_tensor(v: SSAValue, body_ops: Iterable[Operation]) -> bool:
    """Token ids and attention masks: tensors of row dims only (no feature axis)."""
    for use in v.uses:
        op = use.operation
        if isinstance(op, T.EmbeddingOp) and use.index == 1:
            return True
        if isinstance(op, T.MaskOp) and use.index == 1:
            return True
    return False


def _union_op(uf: T.UnionFind[Node], op: Operation) -> None:
    if not isinstance(op, T.TiledOp):
        raise UserError(f"{op.name} cannot run inside a kernel (it has no tiling rule)")
    rule = op.tile_rule()
    first: dict[str, Node] = {}
    for values, labels_list in ((op.operands, rule.operands), (op.results, rule.results)):
        for v, labels in zip(values, labels_list, strict=True):
            for d, label in enumerate(labels):
                node = (v, d)
                if label in first:
                    uf.union(first[label], node)
                else:
                    first[label] = node


__all__ = ["KernelSpaces", "Space", "analyze", "next_pow2"]
