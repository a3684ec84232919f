"""``fuse-recurrence``: the MLGRU's gates and recurrence in one kernel; its output gate into o_proj's.

Rewrites, in every block outside kernels:

* the **gates + recurrence**: a ``scan`` (prefill) or ``scan_step`` (decode) together with the
  elementwise gate ops that feed it -- ``sigmoid``, ``lower_bound``, ``one_minus``, ``silu_mul``
  (``i' = SiLU(i)·(1-f)``), ``mask`` -- found by walking back from the recurrence's operands through
  ops of those kinds. These ops are elementwise over the channels d and the batch, and the scan runs
  along time, so a kernel may split d (and batch) but keeps T whole:

  - with ``into-projections`` (default), they move into the kernel that computes their inputs (the
    i/f/g projections' kernel made by fuse-bitlinear, which splits d = the projections' N across
    programs and keeps rows, hence T, whole): no launch of their own, and i and f̃ never leave the
    kernel. Each op moves only if the kernel verifier accepts the result (e.g. not when that kernel
    splits rows along T);
  - otherwise (or for what could not move) they become one kernel of their own, grid
    ``[block-d]`` over the channels (``[block-d, block-batch]`` with a batch split);

* the **output gate** ``gate_norm`` (RMSNorm(g)·SiLU(h)): when its result is read only by one
  kernel -- the o_proj BitLinear's, whose programs each need whole rows anyway -- it moves into that
  kernel as a prologue (``absorb-gate-norm``, default true).

Leaves alone: a ``gate_norm`` with no kernel to move into (fuse-bitlinear has not run), or with other
users; ops inside kernels; ops of other dialects; anything the kernel verifier would reject.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass

from mmfc.dialects import ternary as T
from mmfc.passes.kernel_outlining import (
    FusionError,
    absorb_consumer,
    absorb_producer,
    check_block_size,
    in_kernel,
    outline,
)

GATE_OPS = (T.SigmoidOp, T.LowerBoundOp, T.OneMinusOp, T.SiluMulOp, T.MaskOp)
"""The elementwise gate ops of the MLGRU that feed its recurrence."""

RECURRENCE_OPS = (T.ScanOp, T.ScanStepOp)


def recurrence_cluster(recurrence: T.ScanOp | T.ScanStepOp) -> list[Operation]:
    """The recurrence op and the gate ops (:data:`GATE_OPS`, same block) that feed it, in block order."""
    block = recurrence.parent_block()
    found: set[Operation] = {recurrence}
    todo = list(recurrence.operands)
    while todo:
        v = todo.pop()
        owner = v.owner
        if isinstance(owner, GATE_OPS) and owner not in found and owner.parent_block() is block:
            found.add(owner)
            todo.extend(owner.operands)
    assert block is not None
    return [op for op in block.ops if op in found]


def _producer_kernel(op: Operation) -> T.KernelOp | None:
    for v in op.operands:
        if isinstance(v.owner, T.KernelOp):
            return v.owner
    return None


def _label(kernel: T.KernelOp | None) -> str | None:
    label = kernel.attributes.get("label") if kernel is not None else None
    return label.data if isinstance(label, StringAttr) else None


def _recurrence_label(producer: T.KernelOp | None) -> str:
    """``model.layers.0.attn.recurrence`` next to a producer labelled ``model.layers.0.attn.i_proj+...``."""
    base = _label(producer)
    if base is not None and "." in base.split("+")[0]:
        return base.split("+")[0].rsplit(".", 1)[0] + ".recurrence"
    return "recurrence"


@dataclass(frozen=True)
class FuseRecurrence(ModulePass):
    """MLGRU gates + scan -> one kernel (in the i/f/g kernel when legal); gate_norm into o_proj's kernel.

    Options: ``into-projections`` (move the gates and the recurrence into the kernel computing their
    inputs, when legal; default true), ``block-d`` (channels per program of a recurrence kernel of its
    own, default 256), ``block-batch`` (batch rows per program of that kernel; 0, the default, keeps
    the batch whole), ``absorb-gate-norm`` (default true). See the module docstring.
    """

    name = "fuse-recurrence"

    into_projections: bool = True
    block_d: int = 256
    block_batch: int = 0
    absorb_gate_norm: bool = True

    def __post_init__(self) -> None:
        check_block_size("block-d", self.block_d)
        check_block_size("block-batch", self.block_batch, allow_zero=True)

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        recurrences = [o for o in op.walk() if isinstance(o, RECURRENCE_OPS) and not in_kernel(o)]
        for recurrence in recurrences:
            self._fuse_recurrence(recurrence)
        if self.absorb_gate_norm:
            for gate in [o for o in op.walk() if isinstance(o, T.GateNormOp) and not in_kernel(o)]:
                users = {use.operation for use in gate.result.uses}
                if len(users) == 1 and isinstance(kernel := users.pop(), T.KernelOp):
                    try:
                        absorb_producer(kernel, gate)
                    except FusionError:
                        pass

    def _fuse_recurrence(self, recurrence: T.ScanOp | T.ScanStepOp) -> None:
        cluster = recurrence_cluster(recurrence)
        first_kernel = next((k for o in cluster if (k := _producer_kernel(o)) is not None), None)
        label = _recurrence_label(first_kernel)
        remaining = cluster
        if self.into_projections and first_kernel is not None:
            kernel = first_kernel
            for i, member in enumerate(cluster):
                if not any(v.owner is kernel for v in member.operands):
                    remaining = cluster[i:]
                    break
                try:
                    kernel = absorb_consumer(kernel, member)
                except FusionError:
                    remaining = cluster[i:]
                    break
            else:
                remaining = []
            if len(remaining) < len(cluster) and (base := _label(kernel)) is not None:
                kernel.attributes["label"] = StringAttr(base + "+recurrence")
        if remaining:
            self._outline(remaining, label)

    def _outline(self, ops: list[Operation], label: str) -> None:
        """A recurrence kernel of its own: axis 0 splits the channels, axis 1 (optional) the batch."""
        value: SSAValue = ops[-1].results[0]  # every op here is elementwise over [..., d] or a scan
        rank = len(T.shape_of(value.type))
        seeds: dict[tuple[SSAValue, int], int | None] = {(value, -1): 0}
        grid: tuple[int, ...] = (self.block_d,)
        if self.block_batch > 0 and rank >= 2:
            seeds[(value, 0)] = 1
            grid = (self.block_d, self.block_batch)
        try:
            outline(ops, grid, seeds, label=label)
        except FusionError:
            pass


__all__ = ["GATE_OPS", "RECURRENCE_OPS", "FuseRecurrence", "recurrence_cluster"]
