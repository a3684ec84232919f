"""``pack-weights``: store ternary weights packed (``2bit``: 4 trits per byte, ``base3``: 5 per byte)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import SSAValue, Use
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from mmfc.dialects import numerics as nm
from mmfc.dialects import ternary as T
from mmfc.dialects import weight_values
from mmfc.dialects import weights as W
from mmfc.dialects.parallel import map_in_order
from mmfc.dialects.progress import progress
from mmfc.dialects.source import OpError

#: format names the ``format`` option accepts (``numerics.PACK_FORMATS``)
FORMATS = tuple(sorted(nm.PACK_FORMATS))


@dataclass(frozen=True)
class PackWeights(ModulePass):
    """Pack stored ternary weights: ``!ternary.trits<NxK>`` refs become ``!ternary.packed<NxK, "fmt">``.

    Rewrites every ``%t = ternary.weight @X : !ternary.trits<NxK>`` into
    ``%t = ternary.weight @X : !ternary.packed<NxK, "fmt">``. The bytes are ``numerics.pack`` of the
    stored trits (row by row, each row padded to whole bytes: ``[N, ceil(K/4)]`` or ``[N, ceil(K/5)]``
    uint8), stored under the same name in a new in-memory store layered over the input
    (``store.derive()``) and bound to the module; the input store is never modified. A symbol
    referenced from several functions is packed once. The consumers of the weight:

    * ``ternary.accum`` takes the packed weight directly (it means ``accum(q, unpack(w))``);
    * a ``ternary.kernel`` operand becomes the packed weight and the body's block argument gets the
      packed tile type (the weight's N may stay split across programs; K is whole, as ``accum``
      needs). Body ops other than ``accum`` that read it get a ``ternary.unpack`` at the start of
      the body. Packing inside keeps the bytes packed up to the kernel (what a backend wants to
      load) and satisfies the kernel verifier (``unpack`` and ``accum`` both need K whole). Only an
      operand whose tile map splits K (which no ``accum`` body allows) is unpacked before the kernel;
    * any other consumer (``func.return``, a call, an op of another dialect) reads
      ``ternary.unpack`` of the packed weight, inserted right after it.

    Left alone: weights that are already packed (``!ternary.packed``, whatever their format), float
    tensors and scales, and every trits ref of a symbol that the module also reads with another type
    (packed or float): the store holds one tensor per name, so packing it would break that read.

    Options: ``format`` (``"2bit"``, the default, or ``"base3"``), e.g. ``pack-weights{format=base3}``.

    Trits held packed in this format by the store (``fold-weight-quant`` holds them ``2bit``) are
    taken as they are; others are packed block by block on the worker threads (``dialects.parallel``).

    Errors (an ``OpError`` at the weight ref): the stored tensor is missing, is not int8 ``[N, K]``, or
    holds values outside {-1, 0, +1} (the rule of ``dialects.weight_values.check_trits``).
    """

    name = "pack-weights"

    format: str = "2bit"

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(
                f"option format must be one of {', '.join(repr(f) for f in FORMATS)}, got {self.format!r}"
            )

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        refs = _trits_refs_by_symbol(op)
        if not refs:
            return  # nothing to pack: the store is never opened
        store = W.resolve_store(op)
        # check and pack everything before rewriting anything: an error leaves the module as it was
        for name, weight_ops in refs.items():
            _check_trits_header(store, name, weight_ops)
        names = list(refs)
        packed: dict[str, np.ndarray] = {}
        with progress(f"pack weights ({self.format})", len(names)) as advance:
            for name, result in zip(names, map_in_order(lambda n: self._packed_bytes(store, n), names)):
                if isinstance(result, str):
                    raise OpError(refs[name][0], f"@{name} {result}; they cannot be packed as trits")
                packed[name] = result
                advance(1)
        new = store.derive()
        for name, weight_ops in refs.items():
            new.put(name, packed[name], copy=False)
            for weight_op in weight_ops:
                _replace(weight_op, self.format)
        W.bind(op, new)

    def _packed_bytes(self, store: W.WeightStore, name: str) -> np.ndarray | str:
        """``numerics.pack`` of the stored trits ``name`` (the bytes themselves when the store holds
        them packed in this format already), or the problem with their values."""
        try:
            return store.packed_trits(name, self.format)
        except ValueError:
            try:
                weight_values.check_trits(store, name)  # the shared rule says what is wrong
            except weight_values.WeightValueError as exc:
                return str(exc)
            raise
        finally:
            store.release(name)


def _check_trits_header(store: W.WeightStore, name: str, refs: Sequence[T.WeightOp]) -> None:
    """Check from the store's header alone that ``name`` is the int8 ``[N, K]`` every ref reads."""
    try:
        info = store.info(name)
    except W.WeightStoreError as exc:
        raise OpError(refs[0], str(exc)) from None
    for ref in refs:
        shape = T.shape_of(ref.result.type)
        if info.stored != "I8" or tuple(info.shape) != shape:
            dims = "x".join(str(d) for d in info.shape) or "scalar"
            raise OpError(
                ref,
                f"@{name} is stored as {info.stored} of shape [{dims}] in the weight store "
                f"{store.describe()}, but the IR reads it as {ref.result.type} (int8 trits of shape "
                f"{list(shape)})",
            )


def _trits_refs_by_symbol(module: ModuleOp) -> dict[str, list[T.WeightOp]]:
    """Trits refs per symbol (first-seen order), leaving out symbols also read with another type."""
    refs: dict[str, list[T.WeightOp]] = {}
    mixed: set[str] = set()
    for inner in module.walk():
        if not isinstance(inner, T.WeightOp):
            continue
        name = inner.sym.string_value()
        if isinstance(inner.result.type, T.TritsType):
            refs.setdefault(name, []).append(inner)
        else:
            mixed.add(name)
    return {name: ops for name, ops in refs.items() if name not in mixed}


def _replace(ref: T.WeightOp, fmt: str) -> None:
    """Replace the trits ref ``ref`` by a packed ref of the same symbol and rewire its users."""
    trits_t = ref.result.type
    assert isinstance(trits_t, T.TritsType)
    packed = T.WeightOp(ref.sym, T.PackedType(trits_t.get_shape(), fmt))
    packed.result.name_hint = ref.result.name_hint
    Rewriter.insert_op(packed, InsertPoint.after(ref))
    unpacked: SSAValue | None = None  # one unpack shared by every consumer that needs trits

    def trits() -> SSAValue:
        nonlocal unpacked
        if unpacked is None:
            unpack = T.UnpackOp(packed.result)
            Rewriter.insert_op(unpack, InsertPoint.after(packed))
            unpacked = unpack.trits
        return unpacked

    for use in tuple(ref.result.uses):
        user = use.operation
        if isinstance(user, T.AccumOp) and use.index == 1:
            user.operands[use.index] = packed.result
        elif isinstance(user, T.KernelOp) and not _splits_k(user, use.index):
            _pack_kernel_operand(user, use, packed.result)
        else:
            user.operands[use.index] = trits()
    Rewriter.erase_op(ref)


def _splits_k(kernel: T.KernelOp, index: int) -> bool:
    return kernel.input_tiles.data[index].axes()[1] is not None


def _pack_kernel_operand(kernel: T.KernelOp, use: Use, packed: SSAValue) -> None:
    """Pass ``packed`` as kernel operand ``use.index``: the block argument takes the packed tile type,
    and body ops other than ``accum`` read an ``unpack`` of it made at the start of the body."""
    index = use.index
    kernel.operands[index] = packed
    tile = kernel.input_tiles.data[index]
    old_arg = kernel.body.block.args[index]
    arg = Rewriter.replace_value_with_new_type(old_arg, T.tile_type(packed.type, tile))
    needs_trits = [u for u in tuple(arg.uses) if not (isinstance(u.operation, T.AccumOp) and u.index == 1)]
    if needs_trits:
        unpack = T.UnpackOp(arg)
        Rewriter.insert_op(unpack, InsertPoint.at_start(kernel.body.block))
        for u in needs_trits:
            u.operation.operands[u.index] = unpack.trits
