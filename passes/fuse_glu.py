"""``fuse-glu``: the GLU's gate/up split, SiLU(gate)·up and the down projection in one kernel.

The GLU channel mixer is ``[gate | up] = BitLinear_gate(m)``; ``p = SiLU(gate)·up``;
``out = BitLinear_down(p)``, followed in a block by the residual add ``x_next = sum + out``. The down
projection's norm and absmax need whole rows of p, while the gate projection's kernel computes its
output split over N: so gate_proj ends a kernel, and the split, ``silu_mul`` and the down projection
begin the next one.

Rewrites, in every block outside kernels, for each ``split`` into two halves whose ``silu_mul``
(gate, up) feeds a down projection:

* after fuse-bitlinear (the down projection already a kernel that alone reads p): ``silu_mul`` and
  then ``split`` move into that kernel as its prologue (every program computes whole rows of p from
  whole rows of the gate projection's output, then accumulates its own slice of N);
* alone (the down projection still an unfused BitLinear chain): the split, ``silu_mul`` and the chain
  become one kernel, grid ``[block-n]`` over the down projection's N (``[block-n, block-batch]`` with
  a batch split), as fuse-bitlinear would build it;
* with ``residual`` (default): an ``add`` that reads the kernel's output moves in as its epilogue
  (the block's final residual add; each program adds its own slice), and then, when it is an ``add``
  read only by the kernel, the producer of its other operand too (the ``x + residual`` that
  fuse-bitlinear re-computes in place of a residual norm's sum).

Leaves alone: a ``silu_mul`` whose halves do not come from one ``split``, a down projection whose
input has other users, ops inside kernels, ops of other dialects, and anything the kernel verifier
rejects (e.g. a residual operand that would have to be read whole).
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from mmfc.dialects import ternary as T
from mmfc.passes.fuse_bitlinear import BitLinearChain, bitlinear_grid, kernel_label, match_bitlinear
from mmfc.passes.kernel_outlining import (
    FusionError,
    absorb_consumer,
    absorb_producer,
    check_block_size,
    in_kernel,
    outline,
)


def glu_product(split: T.SplitOp) -> T.SiluMulOp | None:
    """The ``silu_mul(gate, up)`` of a two-way ``split`` (its only user), or None."""
    if len(split.parts) != 2:
        return None
    gate, up = split.parts
    users = {u.operation for part in split.parts for u in part.uses}
    if len(users) != 1:
        return None
    mul = users.pop()
    if isinstance(mul, T.SiluMulOp) and mul.lhs is gate and mul.rhs is up:
        return mul
    return None


def _down_chain(product: T.SiluMulOp) -> BitLinearChain | None:
    """The unfused BitLinear chain that alone reads ``product``'s result."""
    users = {u.operation for u in product.result.uses}
    if len(users) != 1 or not isinstance(norm := users.pop(), T.RMSNormOp):
        return None
    quants = [u.operation for u in norm.result.uses]
    if len(quants) != 1 or not isinstance(quants[0], T.QuantActOp):
        return None
    dequants = [u.operation for u in quants[0].scale.uses]
    if len(dequants) != 1 or not isinstance(dequants[0], T.DequantOp):
        return None
    chain = match_bitlinear(dequants[0])
    return chain if chain is not None and chain.norm is norm else None


@dataclass(frozen=True)
class FuseGLU(ModulePass):
    """GLU split + SiLU(gate)·up + down projection (+ the residual add) -> one kernel.

    Options: ``block-n`` and ``block-batch`` (the grid of a down-projection kernel this pass builds
    itself, as in fuse-bitlinear; default 256 and 0 = rows whole), ``residual`` (move the residual
    add that reads the kernel's output in as an epilogue, default true). See the module docstring.
    """

    name = "fuse-glu"

    block_n: int = 256
    block_batch: int = 0
    residual: bool = True

    def __post_init__(self) -> None:
        check_block_size("block-n", self.block_n)
        check_block_size("block-batch", self.block_batch, allow_zero=True)

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for split in [o for o in op.walk() if isinstance(o, T.SplitOp) and not in_kernel(o)]:
            product = glu_product(split)
            if product is None:
                continue
            kernel = self._down_kernel(split, product)
            if kernel is not None and self.residual:
                absorb_residual_add(kernel)

    def _down_kernel(self, split: T.SplitOp, product: T.SiluMulOp) -> T.KernelOp | None:
        users = {u.operation for u in product.result.uses}
        if len(users) == 1 and isinstance(kernel := users.pop(), T.KernelOp):
            try:
                kernel = absorb_producer(kernel, product)
            except FusionError:
                return None
            try:
                return absorb_producer(kernel, split)
            except FusionError:
                return kernel
        chain = _down_chain(product)
        if chain is None:
            return None
        grid, seeds = bitlinear_grid([chain], self.block_n, self.block_batch)
        try:
            return outline([split, product, *chain.ops], grid, seeds, label=kernel_label([chain]))
        except FusionError:
            return None


def absorb_residual_add(kernel: T.KernelOp) -> T.KernelOp:
    """Move the ``add`` that alone reads a result of ``kernel`` into it, then the ``add`` producing its
    other operand when only that add reads it; return the kernel now in place."""
    for result in kernel.results:
        users = {u.operation for u in result.uses}
        if len(users) != 1 or not isinstance(add := users.pop(), T.AddOp):
            continue
        others = [v for v in add.operands if v is not result]
        try:
            kernel = absorb_consumer(kernel, add)
        except FusionError:
            continue
        for v in others:
            producer = v.owner
            if isinstance(producer, T.AddOp) and all(u.operation is kernel for u in v.uses):
                try:
                    kernel = absorb_producer(kernel, producer)
                except FusionError:
                    pass
        break
    return kernel


__all__ = ["FuseGLU", "absorb_residual_add", "glu_product"]
