"""``fuse-bitlinear``: each BitLinear (rmsnorm -> quant_act -> accum -> dequant) becomes one kernel.

Rewrites, in every block outside kernels:

* a **BitLinear chain**: ``rmsnorm`` (the BitLinear's own norm) -> ``quant_act`` -> ``accum`` ->
  ``dequant``, each intermediate used only by the next step (an ``unpack`` of the weight used only
  by this ``accum`` joins the chain). The kernel's grid splits the weight's output features N (the
  accum's last dim) into blocks of ``block-n``; with ``block-batch`` > 0 a second grid axis also
  splits the batch dim (dim 0). Every program normalizes and quantizes the whole input rows itself
  (the norm and the absmax need whole rows: a cheap recomputation, K floats per row) and accumulates
  its own slice of N;
* **projections that read the same input** (the MLGRU's i, f, g: three chains on one value, with the
  same N) share one kernel: one launch, one read of the input, and one pass of norm statistics:
  the body's ``rmsnorm`` ops on that input (same eps) become one ``rms_normalize`` and a ``scale``
  by each projection's own gamma (bit-identical: ``numerics.rmsnorm`` is exactly
  ``scale(rms_normalize(x), gamma)``); each projection keeps its own gamma and scales;
* a **norm prologue**: a ``rmsnorm`` or ``residual_rmsnorm`` that produces the kernel's input and is
  used only by it (``attn_norm`` before i/f/g; ``mlp_norm`` before gate_proj; the final norm before
  the head) moves into the kernel. A ``residual_rmsnorm``'s ``sum`` is used later by the block's
  final add; with ``recompute-residual`` (default) that use is rewritten to a fresh ``ternary.add``
  of the same two operands (bit-identical: one f32 addition) so the norm can move in; fuse-glu then
  fuses that add into the down projection's kernel, where each program adds only its own slice. The
  alternative, leaving the residual norm outside, would cost a launch per layer.

Leaves alone: chains whose intermediates have other users; weights (``ternary.weight``) and
``quant_weight`` (offline work: the trits and the scale become kernel operands, whatever the weight
form: float masters with ``quant_weight``, trits, or packed); ops inside kernels; ops of other
dialects; a group or prologue the kernel verifier would reject (e.g. an input whose producer's other
users need it whole).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.pattern_rewriter import PatternRewriter
from xdsl.rewriter import InsertPoint

from mmfc.dialects import ternary as T
from mmfc.passes.kernel_outlining import (
    FusionError,
    Seeds,
    absorb_producer,
    check_block_size,
    in_kernel,
    outline,
)


@dataclass(frozen=True)
class BitLinearChain:
    """The unfused ops of one BitLinear, as :func:`match_bitlinear` found them."""

    norm: T.RMSNormOp
    quant: T.QuantActOp
    accum: T.AccumOp
    dequant: T.DequantOp
    unpack: T.UnpackOp | None = None

    @property
    def ops(self) -> list[Operation]:
        steps: list[Operation] = [self.norm, self.quant, self.accum, self.dequant]
        return steps if self.unpack is None else [self.unpack, *steps]

    @property
    def input(self) -> SSAValue:
        """The activation the BitLinear reads (before its own norm)."""
        return self.norm.x

    @property
    def out_features(self) -> int:
        return T.shape_of(self.accum.weight.type)[0]

    def name(self) -> str | None:
        """The BitLinear's weight name without ``.weight`` (``model.layers.0.attn.i_proj``), if the
        weight is read from the store (directly, through quant_weight, or through unpack)."""
        w = self.unpack.packed if self.unpack is not None else self.accum.weight
        owner = w.owner
        if isinstance(owner, T.QuantWeightOp):
            owner = owner.master.owner
        if isinstance(owner, T.WeightOp):
            return owner.sym.string_value().removesuffix(".weight")
        return None


def _only_user(value: SSAValue, op: Operation) -> bool:
    return bool(value.uses) and all(use.operation is op for use in value.uses)


def match_bitlinear(dequant: T.DequantOp) -> BitLinearChain | None:
    """The BitLinear chain that ends at ``dequant``, or None when the ops do not form one (another
    producer, an intermediate with other users, ops in different blocks or already in a kernel)."""
    accum, quant = dequant.acc.owner, dequant.x_scale.owner
    if not (isinstance(accum, T.AccumOp) and isinstance(quant, T.QuantActOp)):
        return None
    norm = quant.x.owner
    if not isinstance(norm, T.RMSNormOp) or accum.x is not quant.q:
        return None
    if not (
        _only_user(norm.result, quant)
        and _only_user(quant.q, accum)
        and _only_user(quant.scale, dequant)
        and _only_user(accum.acc, dequant)
    ):
        return None
    unpack = accum.weight.owner
    if not (isinstance(unpack, T.UnpackOp) and _only_user(unpack.trits, accum)):
        unpack = None
    chain = BitLinearChain(norm, quant, accum, dequant, unpack)
    block = dequant.parent_block()
    if block is None or in_kernel(dequant) or any(op.parent_block() is not block for op in chain.ops):
        return None
    return chain


def bitlinear_grid(
    chains: Sequence[BitLinearChain], block_n: int, block_batch: int
) -> tuple[tuple[int, ...], Seeds]:
    """Grid and seeds of a BitLinear kernel: axis 0 splits every chain's N (the accum's last dim);
    axis 1, when ``block_batch`` > 0 and the activations have a batch dim, splits dim 0."""
    seeds: dict[tuple[SSAValue, int], int | None] = {}
    batch = block_batch > 0 and all(len(T.shape_of(c.accum.acc.type)) >= 2 for c in chains)
    for c in chains:
        seeds[(c.accum.acc, -1)] = 0
        if batch:
            seeds[(c.accum.acc, 0)] = 1
    return ((block_n, block_batch) if batch else (block_n,)), seeds


def kernel_label(chains: Sequence[BitLinearChain]) -> str | None:
    """``model.layers.0.attn.i_proj+f_proj+g_proj``: the BitLinear names, the shared prefix once."""
    names = [c.name() for c in chains]
    if any(n is None for n in names):
        return None
    first = names[0]
    assert first is not None
    prefix = first.rsplit(".", 1)[0] + "." if "." in first else ""
    rest = [n.removeprefix(prefix) if n is not None and n.startswith(prefix) else n for n in names[1:]]
    return "+".join([first, *(r for r in rest if r is not None)])


@dataclass(frozen=True)
class FuseBitLinear(ModulePass):
    """RMSNorm + quantize + ternary accumulate + dequantize -> one kernel (one per input, norm included).

    Options: ``block-n`` (output features per program, default 256), ``block-batch`` (batch rows per
    program; 0, the default, keeps rows whole), ``absorb-norm`` (move a preceding ``rmsnorm`` /
    ``residual_rmsnorm`` into the kernel, default true), ``recompute-residual`` (let a
    ``residual_rmsnorm`` whose sum is used later move in anyway, re-adding the sum where it is used;
    default true). See the module docstring for what is rewritten and what is left alone.
    """

    name = "fuse-bitlinear"

    block_n: int = 256
    block_batch: int = 0
    absorb_norm: bool = True
    recompute_residual: bool = True

    def __post_init__(self) -> None:
        check_block_size("block-n", self.block_n)
        check_block_size("block-batch", self.block_batch, allow_zero=True)

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for group in _groups(op):
            kernels = self._outline_group(group)
            if self.absorb_norm and len(kernels) == 1:
                kernels = [absorb_norm_prologue(kernels[0], group[0].input, self.recompute_residual)]
            for kernel in kernels:
                share_norm_statistics(kernel)

    def _outline_group(self, group: list[BitLinearChain]) -> list[T.KernelOp]:
        """One kernel for the group; failing that (an op between them that needs one projection's
        output and feeds another), one kernel per chain."""
        grid, seeds = bitlinear_grid(group, self.block_n, self.block_batch)
        try:
            return [outline([o for c in group for o in c.ops], grid, seeds, label=kernel_label(group))]
        except FusionError:
            if len(group) == 1:
                return []
        kernels = []
        for chain in group:
            grid, seeds = bitlinear_grid([chain], self.block_n, self.block_batch)
            try:
                kernels.append(outline(chain.ops, grid, seeds, label=kernel_label([chain])))
            except FusionError:
                pass
        return kernels


def _groups(module: ModuleOp) -> list[list[BitLinearChain]]:
    """BitLinear chains grouped by (block, input value, N), in the order of their first op."""
    groups: dict[tuple[Block, SSAValue, int], list[BitLinearChain]] = {}
    for op in module.walk():
        if isinstance(op, T.DequantOp):
            chain = match_bitlinear(op)
            if chain is not None:
                block = op.parent_block()
                assert block is not None
                groups.setdefault((block, chain.input, chain.out_features), []).append(chain)
    return list(groups.values())


def share_norm_statistics(kernel: T.KernelOp) -> int:
    """In ``kernel``'s body, rewrite every set of >= 2 ``rmsnorm`` ops on one value with one eps into
    one ``rms_normalize`` (placed before the first of them) and one ``scale`` per former norm, by
    that norm's own gamma; return how many ``rms_normalize`` ops were created.

    Bit-identical: ``numerics.rmsnorm(x, g, eps)`` is ``scale(rms_normalize(x, eps), g)``, the same
    f32 operations in the same order; only the row statistics are no longer recomputed. Each new
    ``scale`` keeps its norm's result name, and the tiling is unchanged (``rms_normalize`` needs K
    whole exactly as ``rmsnorm`` does).
    """
    sets: dict[tuple[SSAValue, float], list[T.RMSNormOp]] = {}
    for op in kernel.body.block.ops:
        if isinstance(op, T.RMSNormOp):
            sets.setdefault((op.x, op.eps.value.data), []).append(op)
    created = 0
    for norms in sets.values():
        if len(norms) < 2:
            continue
        first = norms[0]
        normalize = T.RMSNormalizeOp(first.x, first.eps)
        hint = first.x.name_hint
        normalize.result.name_hint = f"{hint}_normalized" if hint else None
        rewriter = PatternRewriter(first)
        rewriter.insert(normalize, InsertPoint.before(first))
        for norm in norms:
            rewriter.replace(norm, T.ScaleOp(normalize.result, norm.gamma))  # the scale keeps the norm's name
        created += 1
    return created


def absorb_norm_prologue(kernel: T.KernelOp, x: SSAValue, recompute_residual: bool) -> T.KernelOp:
    """Move the ``rmsnorm`` / ``residual_rmsnorm`` producing ``x`` into ``kernel`` when only the kernel
    reads it (see the module docstring for a residual norm's sum); return the kernel now in place."""
    norm = x.owner
    if isinstance(norm, T.RMSNormOp) and _only_user(norm.result, kernel):
        try:
            return absorb_producer(kernel, norm)
        except FusionError:
            return kernel
    if not (isinstance(norm, T.ResidualRMSNormOp) and _only_user(norm.normed, kernel)):
        return kernel
    rewriter = PatternRewriter(norm)
    readd: T.AddOp | None = None
    if norm.sum.uses:
        if not recompute_residual:
            return kernel
        # x + residual, the very f32 addition residual_rmsnorm's sum is
        readd = T.AddOp(norm.x, norm.residual)
        rewriter.insert(readd, InsertPoint.after(norm))
        readd.result.name_hint = norm.sum.name_hint
        rewriter.replace_all_uses_with(norm.sum, readd.result)
    try:
        return absorb_producer(kernel, norm)
    except FusionError:
        if readd is not None:  # undo: the IR must be as it was
            rewriter.replace_all_uses_with(readd.result, norm.sum)
            rewriter.erase(readd)
        return kernel


__all__ = [
    "BitLinearChain",
    "FuseBitLinear",
    "absorb_norm_prologue",
    "bitlinear_grid",
    "kernel_label",
    "match_bitlinear",
    "share_norm_statistics",
]
