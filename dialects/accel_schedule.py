"""What an ``accel`` instruction group costs on an accelerator, and when each instruction runs.

This is the timing meaning of the ``accel`` dialect (:mod:`mmfc.dialects.accel`), the way
``ternary/semantics.py`` is the numeric meaning of ``ternary``: the lowering pass's tiler evaluates
candidate tilings with it (so the tiling it picks is the fastest the simulator will see), and the
simulator (``backends/sim``) runs every group through it.

* :class:`Instr` is one instruction in a compact form (the IR op's fields); a :class:`GroupPlan` is
  one group: its instructions in program order, its tiling and its SRAM budget.
* :func:`instr_cost` is the cost model: the unit an instruction occupies, for how many cycles, its
  pipeline latency, its DRAM transfer, and the actions it performs (adds, int8 ops, vector element
  passes, SRAM bytes) on ``m`` activation rows.
* :func:`schedule_group` is the event-driven schedule at tile granularity: each instruction starts
  when its dependencies have ended and its unit is free (units take their instructions in program
  order), pipelined units accept the next instruction after its occupancy while results appear
  after the latency (fill and drain), DMA transfers take the first free engine, wait out the DRAM
  latency and then share the DRAM bandwidth in issue order. Cycles are exact integers; the DRAM
  bus is tracked in exact fractions of a cycle and a transfer ends at the next whole cycle. Nothing
  steps per cycle: the cost of a schedule is linear in the number of instructions.

A group whose activation rows do not fit in the SRAM left for them runs in several *passes* of as
many rows as fit, one after the other, each streaming the weights again
(:meth:`GroupPlan.rows_per_pass`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from mmfc.dialects.arch import Accelerator

UNITS = ("tacc", "vector", "dma")
"""The units an instruction may occupy (a barrier occupies none)."""

STALL_CAUSES = ("dram", "dependency", "unit")

# --------------------------------------------------------------------------------------------------
# Instructions and groups, compact
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Instr:
    """One instruction (the fields of its ``accel`` op; see that module for their syntax).

    ``op``: ``dma_in``, ``dma_out``, ``tacc``, ``vector``, ``quantize``, ``scan_step``, ``scan``,
    ``barrier``. ``deps``: indices of earlier instructions of the group whose results it needs.
    ``what``: a DMA's payload (``weight``, ``act``, ``param``, ``table``). ``ops``: the body ops a
    vector instruction chains (``rmsnorm``, ``sigmoid``, ...). ``weight``: the weight symbol a
    weight DMA or an accumulate reads, ``rows`` its ``[start, stop)`` weight rows, ``k`` its trits per
    row. ``bytes``: bytes moved whatever the rows; ``bytes_per_row``: bytes per activation row.
    ``elements``: elements per activation row (vector, quantize, scan). ``tile``: the tile (program
    along the stream axis) it works for, -1 for the group's shared work. ``buffer``: the weight
    buffer a DMA fills. ``body``: positions of the kernel-body ops it computes.
    """

    op: str
    deps: tuple[int, ...] = ()
    what: str = ""
    ops: tuple[str, ...] = ()
    weight: str = ""
    rows: tuple[int, int] = (0, 0)
    k: int = 0
    bytes: int = 0
    bytes_per_row: int = 0
    bytes_per_batch: int = 0
    elements: int = 0
    tile: int = -1
    buffer: int = -1
    body: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        """A short name for traces: ``tacc tile 3``, ``vector sigmoid+lower_bound``, ``dma_in weight``."""
        if self.op == "vector":
            head = "vector " + "+".join(self.ops)
        elif self.op in ("dma_in", "dma_out"):
            head = f"{self.op} {self.what}".rstrip()
        else:
            head = self.op
        return head + (f" tile {self.tile}" if self.tile >= 0 else "")


@dataclass(frozen=True)
class GroupPlan:
    """One instruction group: one ``ternary.kernel`` (or a function-level gather) on the accelerator.

    ``label``: the kernel's label; ``kernel``: its position among the function's groups;
    ``stream_axis``: the grid axis along which weight tiles stream (-1: none); ``tile_rows``: weight
    rows per tile (the block size of that axis while simulating); ``act_bytes_per_row``: SRAM bytes one
    activation row needs while the group runs; ``act_capacity_bytes``: SRAM left for activation rows
    (the capacity less the weight buffers and parameters); ``instrs``: the instructions in program
    order."""

    label: str
    kernel: int
    stream_axis: int
    tile_rows: int
    act_bytes_per_row: int
    act_capacity_bytes: int
    instrs: tuple[Instr, ...]

    def rows_per_pass(self) -> int:
        """Activation rows one pass holds (at least 1; the lowering checks that one fits)."""
        if self.act_bytes_per_row <= 0:
            return 1 << 62
        return max(1, self.act_capacity_bytes // self.act_bytes_per_row)


# --------------------------------------------------------------------------------------------------
# The cost model
# --------------------------------------------------------------------------------------------------

# Element passes of each vector op kind, as the latency kinds of its pipeline stages (one pass of the
# lanes over the op's elements per stage), and the per-row stages (reductions, reciprocals).
# Special functions are expanded by the accelerator's method (`_function_stages`).
_ELEMENTWISE: dict[str, tuple[str, ...]] = {
    "scale": ("mul",),
    "dequant": ("mul",),
    "mul": ("mul",),
    "mask": ("mul",),
    "lower_bound": ("mul",),  # lb + (1 - lb) * x: one multiply-add
    "scan_step": ("mul",),  # f * h + x: one multiply-add
    "add": ("add",),
    "sub": ("add",),
    "one_minus": ("add",),
    "split": (),  # a view
}


def _function_stages(kind: str, arch: Accelerator) -> tuple[str, ...]:
    """The element stages of a special function, by the accelerator's method for it."""
    v = arch.vector
    if kind == "sigmoid":
        return {"lut": ("lut",), "pwl": ("add", "mul"), "exp-div": ("exp", "add", "div")}[v.sigmoid]
    if kind == "silu":
        return ("lut",) if v.silu == "lut" else (*_function_stages("sigmoid", arch), "mul")
    if kind == "rsqrt":
        return {"lut": ("lut",), "newton": ("lut", "mul", "mul", "add", "mul", "mul", "add"),
                "sqrt-div": ("div", "div")}[v.rsqrt]
    raise KeyError(kind)


def vector_stages(kind: str, arch: Accelerator) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(element stages, per-row stages)`` of vector op ``kind`` on ``arch`` (each a tuple of
    latency kinds of ``[vector.latency_cycles]``). Raises ``KeyError`` for an unknown kind."""
    if kind in _ELEMENTWISE:
        return _ELEMENTWISE[kind], ()
    if kind in ("sigmoid", "silu"):
        return _function_stages(kind, arch), ()
    if kind == "silu_mul":
        return (*_function_stages("silu", arch), "mul"), ()
    if kind == "rms_normalize":  # square-accumulate, multiply by 1/rms
        return ("mul", "mul"), ("reduce", *_function_stages("rsqrt", arch))
    if kind == "rmsnorm":  # ... and by gamma
        return ("mul", "mul", "mul"), ("reduce", *_function_stages("rsqrt", arch))
    if kind == "residual_rmsnorm":
        return ("add", "mul", "mul", "mul"), ("reduce", *_function_stages("rsqrt", arch))
    if kind == "gate_norm":  # rmsnorm(g) * silu(h)
        return ("mul", "mul", "mul", *_function_stages("silu", arch), "mul"), ("reduce", *_function_stages("rsqrt", arch))
    raise KeyError(kind)


VECTOR_KINDS = (*_ELEMENTWISE, "sigmoid", "silu", "silu_mul", "rms_normalize", "rmsnorm", "residual_rmsnorm", "gate_norm")
"""Every op kind an ``accel.vector`` may chain."""


@dataclass(frozen=True, slots=True)
class Cost:
    """What one instruction costs on ``m`` rows: ``unit`` (None for a barrier), ``occupancy``
    (cycles the unit is busy), ``latency`` (extra cycles until its result is ready: the pipeline
    drain), ``dram_bytes`` (a DMA's transfer), and its actions."""

    unit: str | None
    occupancy: int = 0
    latency: int = 0
    dram_bytes: int = 0
    adds: int = 0
    skipped_adds: int = 0
    int8_ops: int = 0
    vector_ops: int = 0
    sram_bytes: int = 0


NonzeroCount = Callable[[str, int, int], int]
"""``(weight symbol, row start, row stop) -> nonzero trits`` in those rows (for ``skip_zeros``)."""


def packed_bytes(rows: int, k: int, fmt: str) -> int:
    """Bytes of ``rows`` weight rows of ``k`` trits packed in ``fmt`` (``2bit``: 4 trits per byte,
    ``base3``: 5), each row padded to whole bytes."""
    per = {"2bit": 4, "base3": 5}[fmt]
    return rows * -(-k // per)


def instr_cost(
    ins: Instr, arch: Accelerator, m: int, steps: int = 1, nonzeros: NonzeroCount | None = None
) -> Cost:
    """The cost of ``ins`` on ``m`` activation rows (``steps``: time steps of a ``scan``).

    * DMA: ``bytes + bytes_per_row * m`` (a weight DMA: its packed rows in the arch's format); the
      transfer itself is timed by :func:`schedule_group` (latency, then the shared bandwidth).
    * ``tacc``: ``m * n * k`` adds (zero trits skipped when ``tacc.skip_zeros``, counted apart), at
      ``lanes`` adds per cycle but no faster than the SRAM port reads the weight tile and the
      activations; the latency is ``tacc.latency_cycles``.
    * ``vector``/``quantize``/``scan_step``: one pass of the lanes per element stage and per-row
      stage of each chained op (:func:`vector_stages`); the latency is the sum of the stages'
      latencies; a quantize is an absmax pass, one reciprocal per row and a scale pass whose round
      and clamp are the int8 ops. ``scan``: ``steps`` dependent steps, each at least one multiply-add
      latency long.
    """
    if ins.op in ("dma_in", "dma_out"):
        if ins.what == "weight":
            b = packed_bytes(ins.rows[1] - ins.rows[0], ins.k, arch.weight_format)
        else:
            b = ins.bytes + ins.bytes_per_row * m + ins.bytes_per_batch * max(1, m // max(steps, 1))
        return Cost("dma", dram_bytes=b, sram_bytes=b)
    if ins.op == "barrier":
        return Cost(None)
    sram_port = arch.sram.bytes_per_cycle
    lanes_v = arch.vector.lanes
    lat = arch.vector.latency_cycles
    if ins.op == "tacc":
        n = ins.rows[1] - ins.rows[0]
        dense = m * n * ins.k
        skipped = 0
        if arch.tacc.skip_zeros and nonzeros is not None:
            skipped = dense - m * nonzeros(ins.weight, ins.rows[0], ins.rows[1])
        adds = dense - skipped
        sram = packed_bytes(n, ins.k, arch.weight_format) + m * ins.k + 4 * m * n
        occupancy = max(-(-adds // arch.tacc.lanes), -(-sram // sram_port), 1)
        return Cost("tacc", occupancy, arch.tacc.latency_cycles, adds=adds, skipped_adds=skipped, sram_bytes=sram)
    e = m * ins.elements
    if ins.op == "quantize":
        passes = 2 * e + m  # absmax, scale (+ round/clamp), and one reciprocal per row
        occupancy = max(-(-passes // lanes_v), -(-(5 * e) // sram_port), 1)
        latency = lat["reduce"] + lat["div"] + lat["mul"] + lat["quantize"]
        return Cost("vector", occupancy, latency, int8_ops=e, vector_ops=2 * e + m, sram_bytes=5 * e)
    if ins.op in ("vector", "scan_step", "scan"):
        kinds = ins.ops if ins.op == "vector" else ("scan_step",)
        elem_passes = row_passes = latency = 0
        for kind in kinds:
            elem, row = vector_stages(kind, arch)
            elem_passes += len(elem)
            row_passes += len(row)
            latency += sum(lat[s] for s in elem) + sum(lat[s] for s in row)
        vector_ops = elem_passes * e + row_passes * m
        sram = 8 * e * max(1, len(kinds))
        if ins.op == "scan":  # steps dependent multiply-adds over the batch rows of each step
            per_step = max(-(-(e // max(steps, 1)) // lanes_v), lat["mul"], 1)
            return Cost("vector", per_step * steps, 0, vector_ops=vector_ops, sram_bytes=sram)
        occupancy = max(-(-vector_ops // lanes_v), -(-sram // sram_port), 1) if vector_ops else 1
        return Cost("vector", occupancy, latency, vector_ops=vector_ops, sram_bytes=sram)
    raise ValueError(f"unknown accel instruction {ins.op!r}")


# --------------------------------------------------------------------------------------------------
# The schedule
# --------------------------------------------------------------------------------------------------


@dataclass
class Counters:
    """Totals of a schedule (or of many, added up): cycles, actions, bytes, unit busy cycles and
    stall cycles by unit and cause."""

    cycles: int = 0
    adds: int = 0
    skipped_adds: int = 0
    int8_ops: int = 0
    vector_ops: int = 0
    sram_bytes: int = 0
    dram_bytes: dict[str, int] = field(default_factory=dict)  # by payload: weight, act, param, table
    busy: dict[str, int] = field(default_factory=dict)  # tacc, vector: cycles; dma: engine-cycles; dram: bus cycles
    stalls: dict[str, dict[str, int]] = field(default_factory=dict)  # unit -> cause -> cycles
    instructions: int = 0

    def add(self, other: Counters, times: int = 1) -> None:
        """Add ``other`` (``times`` over) into this."""
        self.cycles += other.cycles * times
        for name in ("adds", "skipped_adds", "int8_ops", "vector_ops", "sram_bytes", "instructions"):
            setattr(self, name, getattr(self, name) + getattr(other, name) * times)
        for what, b in other.dram_bytes.items():
            self.dram_bytes[what] = self.dram_bytes.get(what, 0) + b * times
        for unit, c in other.busy.items():
            self.busy[unit] = self.busy.get(unit, 0) + c * times
        for unit, causes in other.stalls.items():
            mine = self.stalls.setdefault(unit, {})
            for cause, c in causes.items():
                mine[cause] = mine.get(cause, 0) + c * times

    @property
    def total_dram_bytes(self) -> int:
        return sum(self.dram_bytes.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "cycles": self.cycles, "adds": self.adds, "skipped_adds": self.skipped_adds, "int8_ops": self.int8_ops,
            "vector_ops": self.vector_ops, "sram_bytes": self.sram_bytes, "dram_bytes": dict(self.dram_bytes),
            "busy": dict(self.busy), "stalls": {u: dict(c) for u, c in self.stalls.items()},
            "instructions": self.instructions,
        }


@dataclass
class Timing:
    """One schedule: each instruction's ``start`` and ``end`` cycle (relative to the schedule's
    start), the unit lane it ran on (``tacc``, ``vector``, ``dma 0``, ...), and the totals."""

    start: list[int]
    end: list[int]
    lane: list[str]
    counters: Counters


def schedule_group(
    plan: GroupPlan, arch: Accelerator, rows: int, seq: int = 1, nonzeros: NonzeroCount | None = None
) -> list[tuple[int, Timing]]:
    """The schedule of ``plan`` on ``rows`` activation rows (``seq``: time steps of a scan): one
    :class:`Timing` per pass, as ``(rows of the pass, timing)``; passes run one after another. A
    group with nothing per row (e.g. none) still runs once."""
    per_pass = plan.rows_per_pass()
    rows = max(rows, 1)
    full, rest = divmod(rows, per_pass)
    out = []
    if full:
        t = schedule_pass(plan.instrs, arch, per_pass, max(1, seq * per_pass // rows), nonzeros)
        out += [(per_pass, t)] * full
    if rest:
        out.append((rest, schedule_pass(plan.instrs, arch, rest, max(1, seq * rest // rows), nonzeros)))
    return out


def schedule_pass(
    instrs: Sequence[Instr], arch: Accelerator, m: int, steps: int = 1, nonzeros: NonzeroCount | None = None
) -> Timing:
    """The event-driven schedule of one pass of ``instrs`` over ``m`` rows (module docstring).

    Stall accounting, per unit: cycles the unit sat idle before an instruction because that
    instruction's last dependency was not done are ``dram`` when that dependency was a transfer from
    DRAM and ``dependency`` otherwise; cycles an instruction waited, ready, for its busy unit are
    ``unit``. For DMA transfers, waiting for a free engine is ``unit`` and waiting for the DRAM bus
    (bandwidth taken by other transfers) is ``dram``.
    """
    n = len(instrs)
    start = [0] * n
    end = [0] * n
    lane = [""] * n
    c = Counters(instructions=n)
    busy = {"tacc": 0, "vector": 0, "dma": 0, "dram": 0}
    stalls = {u: {k: 0 for k in STALL_CAUSES} for u in UNITS}
    free = {"tacc": 0, "vector": 0}
    engines = [0] * arch.dma.engines
    setup = arch.dma.setup_cycles
    latency = arch.dram_latency_cycles
    rate = min(arch.dram_bytes_per_cycle, Fraction(arch.sram.bytes_per_cycle))
    bus_free = Fraction(0)
    bus_busy = Fraction(0)
    from_dram = [False] * n
    for i, ins in enumerate(instrs):
        cost = instr_cost(ins, arch, m, steps, nonzeros)
        ready, last = 0, -1
        for d in ins.deps:
            if end[d] >= ready:
                ready, last = end[d], d
        c.adds += cost.adds
        c.skipped_adds += cost.skipped_adds
        c.int8_ops += cost.int8_ops
        c.vector_ops += cost.vector_ops
        c.sram_bytes += cost.sram_bytes
        unit = cost.unit
        if unit is None:  # a barrier
            start[i] = end[i] = ready
            lane[i] = "barrier"
            continue
        if unit == "dma":
            e = min(range(len(engines)), key=engines.__getitem__)
            t0 = max(ready, engines[e])
            if engines[e] > ready:
                stalls["dma"]["unit"] += engines[e] - ready
            elif last >= 0 and ready > engines[e]:
                stalls["dma"]["dependency"] += ready - engines[e]
            first_byte = t0 + setup + latency
            bus_start = max(Fraction(first_byte), bus_free)
            if bus_start > first_byte:
                stalls["dma"]["dram"] += math.ceil(bus_start - first_byte)
            transfer = Fraction(cost.dram_bytes) / rate
            bus_free = bus_start + transfer
            bus_busy += transfer
            done = math.ceil(bus_free)
            start[i], end[i], lane[i] = t0, done, f"dma {e}"
            engines[e] = done
            busy["dma"] += done - t0
            c.dram_bytes[ins.what] = c.dram_bytes.get(ins.what, 0) + cost.dram_bytes
            from_dram[i] = ins.op == "dma_in"
            continue
        unit_free = free[unit]
        s = max(ready, unit_free)
        if unit_free > ready:
            stalls[unit]["unit"] += unit_free - ready
        elif ready > unit_free and last >= 0:
            stalls[unit]["dram" if from_dram[last] else "dependency"] += ready - unit_free
        free[unit] = s + cost.occupancy
        start[i], end[i], lane[i] = s, s + cost.occupancy + cost.latency, unit
        busy[unit] += cost.occupancy
    busy["dram"] = math.ceil(bus_busy)
    c.cycles = max(end, default=0)
    c.busy = busy
    c.stalls = stalls
    return Timing(start, end, lane, c)


def group_cycles(plan: GroupPlan, arch: Accelerator, rows: int, seq: int = 1) -> int:
    """Total cycles of ``plan`` on ``rows`` rows, passes included (what the tiler minimizes)."""
    return sum(t.counters.cycles for _, t in schedule_group(plan, arch, rows, seq))


__all__ = [
    "STALL_CAUSES",
    "UNITS",
    "VECTOR_KINDS",
    "Cost",
    "Counters",
    "GroupPlan",
    "Instr",
    "NonzeroCount",
    "Timing",
    "group_cycles",
    "instr_cost",
    "packed_bytes",
    "schedule_group",
    "schedule_pass",
    "vector_stages",
]
