"""``lower-to-accel``: fused ``ternary`` IR -> ``accel`` programs for one accelerator, tiled to its SRAM.

Each ``func.func`` becomes an ``accel.program`` and each ``ternary.kernel`` one ``accel.group``
(:mod:`passes.accel_groups` says how); a function-level ``ternary.embedding`` becomes a gather group
(table rows in, activation rows out). Weights, ``lower_bounds`` and ``row`` cost nothing here: weights
are read by the groups that stream them, the lower bounds are constants of the model.

**The tiler.** For each kernel, the candidate tile sizes are the weights' N and every power of two
from :data:`MIN_TILE_ROWS` below it. A candidate *fits* when its weight buffers (two tiles of every
weight when the SRAM has two or more banks: double buffering; one otherwise), the parameters and
one activation row fit in ``sram.capacity_bytes``. Among those that fit, the tiler keeps the one the
schedule (:mod:`mmfc.dialects.accel_schedule`, the simulator's own timing) finds fastest on the
design rows (``batch`` rows for a function without a time axis, ``batch * prompt_len`` with one;
ties go to the larger tile). The candidate set does not depend on the accelerator, so a design with
more SRAM chooses among a superset and is never slower at the design rows.

Refused in one line, naming the key: an SRAM too small for the smallest tile
(``sram.capacity_bytes``), accumulators too narrow for a kernel's K (``tacc.accumulator_bits``).
Refused at the op: unfused compute at function level (compile with ``-O2``), kernel bodies the
lowering does not support.

Options: ``arch`` (a preset name or a ``.toml`` path; default ``edge-fpga``), ``batch`` (1),
``prompt_len`` (64).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass

from mmfc.dialects import ternary as T
from mmfc.dialects.accel import build_program
from mmfc.dialects.accel_schedule import GroupPlan, Instr, group_cycles
from mmfc.dialects.arch import Accelerator, ArchError, load_arch
from mmfc.dialects.source import OpError
from mmfc.passes.accel_groups import KernelShape, element_bytes

MIN_TILE_ROWS = 8
"""The smallest tile the tiler considers (a weight with fewer rows is one tile)."""

#: function-level ops that cost nothing on the accelerator (weights are streamed by the groups that
#: read them; the lower bounds are constants of the model)
_FREE = (T.WeightOp, T.LowerBoundsOp, T.RowOp)


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


def has_time_axis(fn: func.FuncOp) -> bool:
    """Whether a function's rows have a time axis: its first argument (token ids ``[B, T]``) has two
    dynamic dims."""
    inputs = fn.function_type.inputs.data
    return bool(inputs) and isinstance(inputs[0], TensorType) and sum(d == T.DYN for d in inputs[0].get_shape()) >= 2


def design_rows(fn: func.FuncOp, batch: int, prompt_len: int) -> tuple[int, int]:
    """``(rows, seq)`` a function is tiled for: ``batch * prompt_len`` rows of ``prompt_len`` steps
    with a time axis, else ``batch`` rows of one step."""
    seq = prompt_len if has_time_axis(fn) else 1
    return batch * seq, seq


def lower_function(fn: func.FuncOp, arch: Accelerator, arch_name: str, batch: int, prompt_len: int) -> Operation:
    """The ``accel.program`` of ``fn`` (module docstring)."""
    _, seq = design_rows(fn, batch, prompt_len)
    return build_program(fn.sym_name.data, arch_name, batch, seq, plan_function(fn, arch, batch, prompt_len))


def plan_function(fn: func.FuncOp, arch: Accelerator, batch: int, prompt_len: int) -> list[GroupPlan]:
    """The groups of ``fn`` in order, as compact plans (what :func:`lower_function` prints as IR, and
    what the simulator runs: building the IR is skipped where nobody reads it)."""
    rows, seq = design_rows(fn, batch, prompt_len)
    row_dims = 2 if has_time_axis(fn) else 1
    symbols: dict[SSAValue, str] = {}
    groups: list[GroupPlan] = []
    chosen: dict[tuple[object, ...], int] = {}
    for op in fn.body.block.ops:
        if isinstance(op, T.WeightOp):
            symbols[op.result] = op.sym.string_value()
            continue
        if isinstance(op, _FREE) or isinstance(op, func.ReturnOp):
            continue
        if isinstance(op, T.EmbeddingOp):
            groups.append(embedding_group(op, len(groups), symbols))
            continue
        if isinstance(op, T.KernelOp):
            shape = KernelShape.analyse(op, len(groups), symbols, row_dims)
            check_accumulators(shape, arch)
            key = signature(op)
            if key not in chosen:
                chosen[key] = choose_tile_rows(shape, arch, rows, seq)
            groups.append(shape.plan(chosen[key], arch.weight_format, buffers(arch), arch.sram.capacity_bytes))
            continue
        raise OpError(op, f"the accel lowering runs fused IR: {op.name} at function level (compile with -O2)")
    return groups


def buffers(arch: Accelerator) -> int:
    """Weight buffers per stream: 2 (double buffering) when the SRAM has two banks or more."""
    return 2 if arch.sram.banks >= 2 else 1


def signature(kernel: T.KernelOp) -> tuple[object, ...]:
    """What the tiling of a kernel depends on: grid, tile maps, operand types and body op types
    (not its weights' names), so layers of one shape are tiled once."""
    body = tuple((op.name, tuple(str(r.type) for r in op.results)) for op in kernel.body.block.ops)
    return (kernel.grid_sizes(), str(kernel.input_tiles), tuple(str(v.type) for v in kernel.inputs), body)


def candidates(n_rows: int) -> list[int]:
    """Tile sizes the tiler considers for a weight of ``n_rows`` rows, largest first."""
    out = [n_rows] if n_rows > 0 else [1]
    size = 1 << max(0, (n_rows - 1).bit_length() - 1) if n_rows > 1 else 0
    while size >= MIN_TILE_ROWS:
        if size < n_rows:
            out.append(size)
        size //= 2
    return out


def choose_tile_rows(shape: KernelShape, arch: Accelerator, rows: int, seq: int) -> int:
    """The fastest fitting tile size (module docstring); an :class:`ArchError` naming
    ``sram.capacity_bytes`` when none fits."""
    if shape.stream_axis < 0:
        plan = shape.plan(1, arch.weight_format, buffers(arch), arch.sram.capacity_bytes)
        _check_fits(shape, plan, arch)
        return 1
    best: tuple[int, int] | None = None
    smallest: GroupPlan | None = None
    for n in candidates(shape.n_rows):
        plan = shape.plan(n, arch.weight_format, buffers(arch), arch.sram.capacity_bytes)
        smallest = plan
        if not fits(shape, plan, arch):
            continue
        cycles = group_cycles(plan, arch, rows, seq)
        if best is None or cycles < best[0]:
            best = (cycles, n)
    if best is None:
        assert smallest is not None
        _check_fits(shape, smallest, arch)
    assert best is not None
    return best[1]


def fits(shape: KernelShape, plan: GroupPlan, arch: Accelerator) -> bool:
    """Whether the weight buffers, the parameters and one activation row fit in the SRAM."""
    return plan.act_capacity_bytes >= plan.act_bytes_per_row and (
        arch.sram.capacity_bytes - plan.act_capacity_bytes <= arch.sram.capacity_bytes
    ) and _needed(shape, plan, arch) <= arch.sram.capacity_bytes


def _needed(shape: KernelShape, plan: GroupPlan, arch: Accelerator) -> int:
    return shape.weight_buffer_bytes(plan.tile_rows, arch.weight_format, buffers(arch)) + shape.param_bytes + plan.act_bytes_per_row


def _check_fits(shape: KernelShape, plan: GroupPlan, arch: Accelerator) -> None:
    need = _needed(shape, plan, arch)
    if need > arch.sram.capacity_bytes:
        raise ArchError(
            f"{arch.source}: sram.capacity_bytes: {arch.sram.capacity_bytes} is too small for kernel "
            f"{shape.label!r}: its smallest tiling needs {need} bytes (weight buffers, parameters and one "
            "activation row)"
        )


def check_accumulators(shape: KernelShape, arch: Accelerator) -> None:
    """Accumulators must hold ``|sum| <= 128 * K`` (int8 activations under trits): an
    :class:`ArchError` naming ``tacc.accumulator_bits`` otherwise."""
    for k in shape.accum_k.values():
        need = math.ceil(math.log2(128 * k + 1)) + 1
        if arch.tacc.accumulator_bits < need:
            raise ArchError(
                f"{arch.source}: tacc.accumulator_bits: {arch.tacc.accumulator_bits} cannot hold the sums of "
                f"kernel {shape.label!r} (K={k} needs {need} bits)"
            )


def embedding_group(op: T.EmbeddingOp, index: int, symbols: dict[SSAValue, str]) -> GroupPlan:
    """A gather: one table row per activation row in, the f32 row out."""
    table = op.operands[0]
    d = T.shape_of(table.type)[-1]
    row_in = d * element_bytes(table.type)
    row_out = d * 4
    instrs = (
        Instr("dma_in", what="table", bytes_per_row=row_in),
        Instr("dma_out", (0,), what="act", bytes_per_row=row_out),
    )
    return GroupPlan("embedding", index, -1, 1, row_in + row_out, 1 << 40, instrs)


__all__ = ["MIN_TILE_ROWS", "LowerToAccel", "candidates", "choose_tile_rows", "design_rows", "has_time_axis", "lower_function", "plan_function", "signature"]
