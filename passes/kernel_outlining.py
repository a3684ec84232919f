"""Kernel outlining: unfused ``ternary`` ops into ``ternary.kernel`` ops (shared by the fusion passes).

A fusion pass decides *what* runs in one launch and over which grid; this module does the *how*, for
any set of ops that have a :class:`~mmfc.dialects.ternary.TileRule`:

* :func:`propagate_splits` answers "which grid axis splits which dim" for every value a set of ops
  touches, from a few seeds (e.g. "grid axis 0 splits the last dim of this accum's result"). It
  solves the rule the kernel verifier checks, stated once in ``mmfc.dialects.ternary.tiling``
  (``index_spaces``): the dims of one index space of an op share one choice, so a choice propagates
  through the whole set; a space an op needs whole (a reduced axis, the time axis of a scan, a dim
  the op creates, ...) refuses any split;
* :func:`outline` moves a set of ops of one block into a new kernel: values defined outside become
  kernel operands (deduplicated by value and tile map), values used outside become results;
* :func:`absorb_producer` moves an op whose results feed a kernel into the kernel's body (prologue
  fusion), :func:`absorb_consumer` one that reads a kernel's results (epilogue fusion);
* :func:`in_kernel` and :func:`check_block_size` are the small helpers every fusion pass shares.

**Legality is the kernel verifier's.** Each function builds its candidate kernel on the side and
verifies it (one legal launch, no value needed from another program of the same launch); it also
checks that the new kernel can be placed in the block (no path from the fused ops through an op left
outside back into them). Only then is the IR rewritten, through xDSL's rewriters. On any failure a
:class:`FusionError` says why, and the IR is exactly as it was.

Placement: the kernel takes the position of the last op it replaces; ops between that use what the
kernel computes move after it, in order. Ops with regions are never fused; an op of another dialect
is simply an outside user or producer.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from xdsl.dialects.builtin import StringAttr
from xdsl.ir import Attribute, Block, Operation, SSAValue
from xdsl.pattern_rewriter import PatternRewriter
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.utils.exceptions import VerifyException

from mmfc.dialects import ternary as T

Axes = T.Axes
"""Per dim of a value: the grid axis that splits it, or None (whole)."""

Seeds = Mapping[tuple[SSAValue, int], int | None]
"""``(value, dim) -> grid axis`` (None: must stay whole). Negative dims count from the end."""


class FusionError(Exception):
    """The requested fusion is not legal (or not possible); the IR has not been changed."""


def in_kernel(op: Operation) -> bool:
    """Whether ``op`` already runs inside a kernel body."""
    parent = op.parent_op()
    while parent is not None:
        if isinstance(parent, T.KernelOp):
            return True
        parent = parent.parent_op()
    return False


def check_block_size(option: str, value: int, allow_zero: bool = False) -> None:
    """Reject a block size a grid cannot have (a fusion pass's option, checked when the pipeline is
    parsed)."""
    if value < 1 and not (allow_zero and value == 0):
        floor = ">= 0 (0: not split)" if allow_zero else ">= 1"
        raise ValueError(f"{option} must be {floor}, got {value}")


# --------------------------------------------------------------------------------------------------
# Which grid axis splits which dim
# --------------------------------------------------------------------------------------------------

_Node = tuple  # ("v", value, dim) for a value computed by the set, ("u", op, operand index, dim) for a use


@dataclass
class Splits:
    """The answer of :func:`propagate_splits`.

    ``values``: the split of every result of the ops; ``uses``: the split in which op ``op`` reads
    its operand ``i`` when that operand comes from outside the set (one outside value may be read
    split differently by different ops: it is then passed to the kernel once per tile map).
    """

    values: dict[SSAValue, Axes] = field(default_factory=dict)
    uses: dict[tuple[Operation, int], Axes] = field(default_factory=dict)


def _describe(node: _Node) -> str:
    if node[0] == "v":
        v, d = node[1], node[2]
        owner = v.owner.name if isinstance(v.owner, Operation) else "a block argument"
        return f"dim {d} of a result of {owner}"
    op, i, d = node[1], node[2], node[3]
    return f"dim {d} of operand {i} of {op.name}"


def propagate_splits(ops: Sequence[Operation], seeds: Seeds) -> Splits:
    """Propagate the seeds' grid axes through the tiling rules of ``ops`` (see the module docstring).

    Every dim gets the axis its index space was seeded with, or None (whole) when no seed reaches it.
    A seed on a value computed outside ``ops`` applies to each of its uses in ``ops`` (a value the
    ops neither compute nor read is ignored). Raises
    :class:`FusionError` when an op has no tiling rule, two seeds disagree, or a seed splits a dim
    that an op needs whole (the message names the op and the dim).
    """
    members = set(ops)
    uf: T.UnionFind[_Node] = T.UnionFind()
    whole: dict[_Node, str] = {}  # a node of each class that must stay whole -> why

    def operand_node(op: Operation, i: int, d: int) -> _Node:
        v = op.operands[i]
        return ("v", v, d) if v.owner in members else ("u", op, i, d)

    for op in ops:
        if not isinstance(op, T.TiledOp):
            raise FusionError(f"{op.name} has no tiling rule: it cannot run inside a kernel")
        spaces = T.index_spaces(op.tile_rule())
        members_of: dict[T.IndexSpace, list[_Node]] = defaultdict(list)
        for i, dims in enumerate(spaces.operands):
            for d, space in enumerate(dims):
                members_of[space].append(operand_node(op, i, d))
        for r, dims in zip(op.results, spaces.results, strict=True):
            for d, space in enumerate(dims):
                members_of[space].append(("v", r, d))
        for space, nodes in members_of.items():
            for n in nodes[1:]:
                uf.union(nodes[0], n)
            uf.find(nodes[0])
            if space.whole_because is not None:
                whole[nodes[0]] = f"{op.name} {space.whole_because}"

    must_be_whole = {uf.find(n): why for n, why in whole.items()}
    chosen: dict[_Node, tuple[int | None, str]] = {}
    for (value, dim), axis in seeds.items():
        rank = T.rank(value)
        d = dim + rank if dim < 0 else dim
        if not 0 <= d < rank:
            raise FusionError(f"seed dim {dim} is out of range for a value of rank {rank}")
        nodes: list[_Node]
        if value.owner in members:
            nodes = [("v", value, d)]
        else:
            nodes = [("u", op, i, d) for op in ops for i, v in enumerate(op.operands) if v is value]
        for n in nodes:
            root = uf.find(n)
            if axis is not None and root in must_be_whole:
                raise FusionError(
                    f"grid axis {axis} cannot split {_describe(n)}: {must_be_whole[root]}"
                )
            seen = chosen.setdefault(root, (axis, _describe(n)))
            if seen[0] != axis:
                raise FusionError(
                    f"{_describe(n)} would be split by {_axis(axis)} but {seen[1]} (the same index) "
                    f"by {_axis(seen[0])}"
                )

    def axes_of(nodes: Iterable[_Node]) -> Axes:
        return tuple(chosen.get(uf.find(n), (None, ""))[0] for n in nodes)

    splits = Splits()
    for op in ops:
        for r in op.results:
            splits.values[r] = axes_of(("v", r, d) for d in range(T.rank(r)))
        for i, v in enumerate(op.operands):
            if v.owner not in members:
                splits.uses[(op, i)] = axes_of(("u", op, i, d) for d in range(T.rank(v)))
    return splits


def _axis(axis: int | None) -> str:
    return "no grid axis" if axis is None else f"grid axis {axis}"


# --------------------------------------------------------------------------------------------------
# Building a candidate kernel
# --------------------------------------------------------------------------------------------------


def _tile_map(axes: Axes) -> T.TileMapAttr:
    try:
        return T.TileMapAttr(axes)
    except VerifyException as exc:  # e.g. one grid axis splitting two dims of one value
        raise FusionError(str(exc)) from None


def _tiled_clone(op: Operation, operands: Sequence[SSAValue], result_axes: Sequence[Axes]) -> Operation:
    """``op`` on tiles: the same op on ``operands``, its results' split dims made ``?``."""
    types = [T.tile_type(r.type, _tile_map(a)) for r, a in zip(op.results, result_axes, strict=True)]
    new = type(op).create(
        operands=operands,
        result_types=types,
        properties=dict(op.properties),
        attributes=dict(op.attributes),
    )
    for old_r, new_r in zip(op.results, new.results):
        new_r.name_hint = old_r.name_hint
    return new


class _Candidate:
    """A kernel under construction: operands (deduplicated by value and tile map), body ops built
    against stand-in block arguments, then the kernel op itself (:meth:`build`).

    Nothing here touches the IR outside the candidate until :func:`_commit`: body ops refer to
    stand-ins (arguments of a scratch block), and outside values are referenced only by the kernel op.
    """

    def __init__(self, grid: Sequence[int]) -> None:
        self.grid = tuple(grid)
        self.inputs: list[SSAValue] = []
        self.input_axes: list[Axes] = []
        self._index: dict[tuple[SSAValue, Axes], int] = {}
        self._scratch = Block()
        self._stand_ins: list[SSAValue] = []
        self.body: list[Operation] = []

    def operand(self, value: SSAValue, axes: Axes) -> SSAValue:
        """The body's view of outside ``value`` read with split ``axes`` (a new operand if needed)."""
        key = (value, axes)
        if key not in self._index:
            self._index[key] = len(self.inputs)
            self.inputs.append(value)
            self.input_axes.append(axes)
            t = T.tile_type(value.type, _tile_map(axes))
            self._stand_ins.append(self._scratch.insert_arg(t, len(self._scratch.args)))
        return self._stand_ins[self._index[key]]

    def build(
        self,
        yields: Sequence[SSAValue],
        result_types: Sequence[Attribute],
        result_axes: Sequence[Axes],
        attributes: Mapping[str, Attribute],
    ) -> T.KernelOp:
        kernel = T.KernelOp(
            self.grid,
            self.inputs,
            [_tile_map(a) for a in self.input_axes],
            result_types,
            [_tile_map(a) for a in result_axes],
        )
        kernel.attributes.update(attributes)
        block = kernel.body.block
        for arg, stand_in, v in zip(block.args, self._stand_ins, self.inputs, strict=True):
            arg.name_hint = v.name_hint
            stand_in.replace_all_uses_with(arg)
        Rewriter.insert_op([*self.body, T.YieldOp(*yields)], InsertPoint.at_end(block))
        return kernel


def _body_operands(
    cand: _Candidate, op: Operation, inner: Mapping[SSAValue, SSAValue], splits: Splits
) -> list[SSAValue]:
    """``op``'s operands as the body sees them: values the body computes, else kernel operands."""
    return [
        inner[v] if v in inner else cand.operand(v, splits.uses[(op, i)]) for i, v in enumerate(op.operands)
    ]


def _discard(kernel: T.KernelOp) -> None:
    """Drop a candidate kernel that was never inserted (removing its uses of outside values)."""
    Rewriter.erase_op(kernel, safe_erase=False)


# --------------------------------------------------------------------------------------------------
# Placing a kernel in the block
# --------------------------------------------------------------------------------------------------


def _block_of(ops: Sequence[Operation]) -> Block:
    block = ops[0].parent_block()
    if block is None or any(op.parent_block() is not block for op in ops):
        raise FusionError("the ops to fuse must lie in one block")
    return block


def _plan_placement(group: Sequence[Operation]) -> tuple[Operation, list[Operation]]:
    """Where a kernel replacing ``group`` goes (right after the returned op, the group's last) and
    which outside ops between must move after it (they use what the group computes). Raises
    :class:`FusionError` when such an op also feeds the group: the kernel would depend on itself."""
    block = _block_of(group)
    members = set(group)
    tainted = {r for op in group for r in op.results}
    to_move: list[Operation] = []
    remaining = len(members)
    for op in block.ops:
        if op in members:
            remaining -= 1
            if to_move and any(v in tainted for v in op.operands if v.owner not in members):
                raise FusionError("an op outside the kernel both uses what it computes and feeds it")
            if remaining == 0:
                return op, to_move
        elif remaining < len(members) and any(v in tainted for inner in op.walk() for v in inner.operands):
            to_move.append(op)
            tainted.update(op.results)
    raise AssertionError("unreachable: every member is in the block")


def _commit(
    group: Sequence[Operation], kernel: T.KernelOp, replacements: Mapping[SSAValue, SSAValue]
) -> T.KernelOp:
    """Verify ``kernel`` and put it in place of ``group``, whose results used elsewhere are replaced
    as ``replacements`` says (see the module docstring). On failure the candidate is discarded and
    :class:`FusionError` raised, with the IR unchanged."""
    members = set(group)
    try:
        try:
            kernel.verify()
        except VerifyException as exc:
            raise FusionError(" ".join(str(exc).split())) from None
        last, to_move = _plan_placement(group)
        for op in group:
            for r in op.results:
                if r not in replacements and any(u.operation not in members for u in r.uses):
                    raise FusionError(f"a result of {op.name} is used outside the kernel but not yielded")
    except FusionError:
        _discard(kernel)
        raise
    block = last.parent_block()
    assert block is not None
    rewriter = PatternRewriter(last)
    rewriter.insert(kernel, InsertPoint.after(last))
    anchor: Operation = kernel
    for op in to_move:
        op.detach()  # xDSL's rewriters have no "move": detach, then insert
        rewriter.insert(op, InsertPoint.after(anchor))
        anchor = op
    for old, new in replacements.items():
        rewriter.replace_uses_with_if(old, new, lambda use: use.operation not in members)
    order = {op: i for i, op in enumerate(block.ops)}
    for op in sorted(group, key=order.__getitem__, reverse=True):  # users before what they use
        rewriter.erase(op)
    return kernel


# --------------------------------------------------------------------------------------------------
# The rewrites
# --------------------------------------------------------------------------------------------------


def _used_outside(value: SSAValue, members: set[Operation]) -> bool:
    return any(use.operation not in members for use in value.uses)


def outline(
    ops: Sequence[Operation],
    grid: Sequence[int],
    seeds: Seeds,
    *,
    label: str | None = None,
) -> T.KernelOp:
    """Move ``ops`` (one block, any order) into a new ``ternary.kernel`` over ``grid``; return it.

    Tile maps come from :func:`propagate_splits` with ``seeds``. Operands: every value the ops read
    that is defined elsewhere, once per (value, tile map). Results: every value they compute that an
    op outside the set uses, in op order. ``label`` sets the kernel's ``label`` attribute (named by
    the interpreter's debug dumps). Raises :class:`FusionError` (IR unchanged) when the set cannot be
    one legal kernel.
    """
    if not ops:
        raise FusionError("nothing to outline")
    if any(op.regions for op in ops):
        raise FusionError("ops with regions are never outlined")
    block = _block_of(ops)
    order = {op: i for i, op in enumerate(block.ops)}
    ops = sorted(set(ops), key=order.__getitem__)
    members = set(ops)
    exported = [r for op in ops for r in op.results if _used_outside(r, members)]
    if not exported:
        raise FusionError("nothing the ops compute is used outside them")
    splits = propagate_splits(ops, seeds)
    cand = _Candidate(grid)
    inner: dict[SSAValue, SSAValue] = {}
    for op in ops:
        operands = _body_operands(cand, op, inner, splits)
        new = _tiled_clone(op, operands, [splits.values[r] for r in op.results])
        inner.update(zip(op.results, new.results))
        cand.body.append(new)
    kernel = cand.build(
        [inner[r] for r in exported],
        [r.type for r in exported],
        [splits.values[r] for r in exported],
        {"label": StringAttr(label)} if label else {},
    )
    return _commit(ops, kernel, dict(zip(exported, kernel.results)))


def _check_neighbour(kernel: T.KernelOp, op: Operation, before: bool) -> None:
    if not isinstance(op, T.TiledOp) or op.regions:
        raise FusionError(f"{op.name} has no tiling rule: it cannot run inside a kernel")
    block = kernel.parent_block()
    if block is None or op.parent_block() is not block:
        raise FusionError(f"{op.name} is not in the kernel's block")
    if op.is_before_in_block(kernel) != before:
        raise FusionError(f"{op.name} does not come {'before' if before else 'after'} the kernel")


def _clone_body(kernel: T.KernelOp, cand: _Candidate) -> list[SSAValue]:
    """Copy ``kernel``'s operands (same tile maps) and body into ``cand``; return the body's yielded
    values as copied. Operands already claimed in ``cand`` are shared."""
    mapping: dict[SSAValue, SSAValue] = {}
    for v, arg, tile in zip(kernel.inputs, kernel.body.block.args, kernel.input_tiles.data, strict=True):
        mapping[arg] = cand.operand(v, tile.axes())
    yield_op = kernel.body.block.last_op
    assert isinstance(yield_op, T.YieldOp)
    for op in kernel.body.block.ops:
        if op is not yield_op:
            cand.body.append(op.clone(mapping))
    return [mapping[v] for v in yield_op.values]


def absorb_producer(kernel: T.KernelOp, op: Operation, *, duplicate: bool = False) -> T.KernelOp:
    """Prologue fusion: move ``op``, whose results feed ``kernel``, into the kernel's body.

    The kernel keeps its grid and its other operands: ``op``'s results take the tile maps of the
    operands they fed, and ``op``'s own operands the splits those imply (:func:`propagate_splits`).
    A result of ``op`` also used outside the kernel becomes a kernel result (legal only if every grid
    axis splits it); with ``duplicate=True`` the op is copied into the kernel instead and the original
    stays for its other users (recomputation). Returns the new kernel, which replaces ``kernel``;
    raises :class:`FusionError`, with the IR unchanged, when the result is not one legal launch.
    """
    _check_neighbour(kernel, op, before=True)
    fed = {i for i, v in enumerate(kernel.inputs) if v.owner is op}
    if not fed:
        raise FusionError(f"no result of {op.name} feeds the kernel")
    seeds: dict[tuple[SSAValue, int], int | None] = {}
    for i in sorted(fed):
        for d, a in enumerate(kernel.input_tiles.data[i].axes()):
            if seeds.setdefault((kernel.inputs[i], d), a) != a:
                raise FusionError(f"the kernel reads a result of {op.name} in two tilings")
    splits = propagate_splits([op], seeds)
    elsewhere = [r for r in op.results if any(u.operation is not kernel for u in r.uses)]
    exported = [] if duplicate else elsewhere

    cand = _Candidate(kernel.grid_sizes())
    operands = [cand.operand(v, splits.uses[(op, i)]) for i, v in enumerate(op.operands)]
    produced = _tiled_clone(op, operands, [splits.values[r] for r in op.results])
    cand.body.append(produced)
    by_result = dict(zip(op.results, produced.results))
    mapping: dict[SSAValue, SSAValue] = {}
    for i, (v, arg, tile) in enumerate(
        zip(kernel.inputs, kernel.body.block.args, kernel.input_tiles.data, strict=True)
    ):
        mapping[arg] = by_result[v] if i in fed else cand.operand(v, tile.axes())
    yield_op = kernel.body.block.last_op
    assert isinstance(yield_op, T.YieldOp)
    for body_op in kernel.body.block.ops:
        if body_op is not yield_op:
            cand.body.append(body_op.clone(mapping))
    new = cand.build(
        [mapping[v] for v in yield_op.values] + [by_result[r] for r in exported],
        [*kernel.result_types, *(r.type for r in exported)],
        [*(t.axes() for t in kernel.result_tiles.data), *(splits.values[r] for r in exported)],
        dict(kernel.attributes),
    )
    replacements = dict(zip(kernel.results, new.results))
    replacements.update(zip(exported, new.results[len(kernel.results) :]))
    group: list[Operation] = [kernel] if duplicate and elsewhere else [op, kernel]
    return _commit(group, new, replacements)


def absorb_consumer(kernel: T.KernelOp, op: Operation) -> T.KernelOp:
    """Epilogue fusion: move ``op``, which reads results of ``kernel``, into the kernel's body.

    ``op`` reads those results in the kernel's result tile maps; its other operands become kernel
    operands with the tile maps that implies, and its results become kernel results (legal only if
    every grid axis splits them). Kernel results that only ``op`` used are no longer yielded. Returns
    the new kernel (replacing ``kernel``); raises :class:`FusionError`, IR unchanged, when not legal.
    """
    _check_neighbour(kernel, op, before=False)
    reads = [i for i, v in enumerate(op.operands) if v.owner is kernel]
    if not reads:
        raise FusionError(f"{op.name} reads no result of the kernel")
    exported = [r for r in op.results if r.uses]
    if not exported:
        raise FusionError(f"nothing uses the results of {op.name}")
    results = list(kernel.results)
    seeds: dict[tuple[SSAValue, int], int | None] = {}
    for i in reads:
        v = op.operands[i]
        for d, a in enumerate(kernel.result_tiles.data[results.index(v)].axes()):
            seeds[(v, d)] = a
    splits = propagate_splits([op], seeds)

    cand = _Candidate(kernel.grid_sizes())
    yielded = _clone_body(kernel, cand)
    inner = dict(zip(results, yielded))
    operands = _body_operands(cand, op, inner, splits)
    consumed = _tiled_clone(op, operands, [splits.values[r] for r in op.results])
    cand.body.append(consumed)
    by_result = dict(zip(op.results, consumed.results))
    keep = [j for j, r in enumerate(results) if any(u.operation is not op for u in r.uses)]
    new = cand.build(
        [yielded[j] for j in keep] + [by_result[r] for r in exported],
        [results[j].type for j in keep] + [r.type for r in exported],
        [kernel.result_tiles.data[j].axes() for j in keep] + [splits.values[r] for r in exported],
        dict(kernel.attributes),
    )
    replacements = {results[j]: new.results[n] for n, j in enumerate(keep)}
    replacements.update(zip(exported, new.results[len(keep) :]))
    return _commit([kernel, op], new, replacements)


__all__ = [
    "Axes",
    "FusionError",
    "Seeds",
    "Splits",
    "absorb_consumer",
    "absorb_producer",
    "check_block_size",
    "in_kernel",
    "outline",
    "propagate_splits",
]
