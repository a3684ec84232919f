"""``lower-to-accel``: fused ``ternary`` IR -> ``accel`` programs for one accelerator, tiled to its SRAM.

Each ``func.func`` becomes an ``accel.program`` and each ``ternary.kernel`` one ``accel.group``; a
function-level ``ternary.embedding`` becomes a gather group. Weights, ``lower_bounds`` and ``row``
cost nothing here: weights are read by the groups that stream them, the lower bounds are constants of
the model. How a kernel becomes a group, and how the tiler picks the fastest tiling that fits the
SRAM, is :mod:`mmfc.dialects.accel_lowering` (shared with the simulator).

Refused in one line: an SRAM too small for a kernel's smallest tiling (``sram.capacity_bytes``),
accumulators too narrow for its K (``tacc.accumulator_bits``), an unknown accelerator; refused at the
op: unfused compute at function level (compile with ``-O2``), kernel bodies the lowering does not
support.

Options: ``arch`` (a preset name or a ``.toml`` path; default ``edge-fpga``), ``batch`` (1) and
``prompt_len`` (64): the rows the tiling is chosen for.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.passes import ModulePass

from mmfc.dialects.accel_lowering import lower_function
from mmfc.dialects.arch import load_arch


@dataclass(frozen=True)
class LowerToAccel(ModulePass):
    """Fused ternary IR -> accel programs, tiled to the SRAM of ``arch`` (see the module docstring).

    Options: ``arch`` (preset name or ``.toml`` path, default ``edge-fpga``), ``batch`` (1) and
    ``prompt_len`` (64): the rows the tiling is chosen for.
    """

    name = "lower-to-accel"

    arch: str = "edge-fpga"
    batch: int = 1
    prompt_len: int = 64

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        arch = load_arch(self.arch)
        programs = [lower_function(f, arch, self.arch, self.batch, self.prompt_len) for f in list(op.ops)
                    if isinstance(f, func.FuncOp) and not f.is_declaration]
        for f in list(op.ops):
            f.detach()
            f.erase()
        for p in programs:
            op.body.block.add_op(p)


__all__ = ["LowerToAccel"]
