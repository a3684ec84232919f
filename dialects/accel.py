"""The ``accel`` dialect: the instruction set of a hypothetical ternary accelerator.

The lowering pass ``lower-to-accel`` (``passes/lower_to_accel.py``) turns each function of fused
``ternary`` IR into an ``accel.program`` and each ``ternary.kernel`` into one ``accel.group`` of
instructions with explicit data movement, tiled to the accelerator's SRAM. A program reads::

    accel.program @decode_step arch "edge-fpga" batch 1 seq 1 {
      accel.group "model.layers.0.attn.o_proj" kernel 2 stream_axis 0 tile_rows 64 act_bytes_per_row 3076 act_capacity_bytes 2080000 {
        %0 = accel.dma_in "act" per_row 1024
        %1 = accel.dma_in "param" bytes 1028
        %2 = accel.vector ["gate_norm", "rmsnorm"] elements 256 body [0, 1] after %0, %1
        %3 = accel.quantize elements 256 body [2] after %2
        %4 = accel.dma_in "weight" @model.layers.0.attn.o_proj.weight rows 0 to 64 k 256 buffer 0
        %5 = accel.tacc @model.layers.0.attn.o_proj.weight rows 0 to 64 k 256 tile 0 body [3] after %3, %4
        %6 = accel.vector ["dequant"] elements 64 tile 0 body [4] after %5
        ...
        %9 = accel.barrier after %6, %8
        %10 = accel.dma_out "act" per_row 1024 after %9
      }
    }

Every instruction returns an ``!accel.token`` and lists the tokens it waits for after ``after``:
dependencies are SSA edges, so a group is a dataflow graph in program order. Sizes are static:
``bytes`` whatever the rows, ``per_row`` per activation row (the run's batch x sequence rows are known
only when it runs), ``per_batch`` per sequence of the batch (a recurrent state), ``elements`` per
activation row. ``body`` names the ops of the kernel's body an
instruction computes (their positions), which links the timing to the values.

What the instructions cost, and when each runs, is :mod:`mmfc.dialects.accel_schedule` (the
instructions convert to its compact :class:`~mmfc.dialects.accel_schedule.Instr` and back:
:func:`group_plan`, :func:`build_group`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from xdsl.dialects.builtin import (
    ArrayAttr,
    DenseArrayBase,
    I64,
    IntegerAttr,
    StringAttr,
    SymbolRefAttr,
    i64,
)
from xdsl.ir import Attribute, Block, Dialect, ParametrizedAttribute, Region, SSAValue, TypeAttribute
from xdsl.irdl import (
    IRDLOperation,
    irdl_attr_definition,
    irdl_op_definition,
    opt_prop_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import IsolatedFromAbove, NoTerminator, SymbolOpInterface
from xdsl.utils.exceptions import VerifyException

from mmfc.dialects.accel_schedule import VECTOR_KINDS, GroupPlan, Instr

DMA_PAYLOADS = ("weight", "act", "param", "table")


@irdl_attr_definition
class TokenType(ParametrizedAttribute, TypeAttribute):
    """``!accel.token``: the completion of an instruction, which later instructions wait for."""

    name = "accel.token"


@functools.lru_cache(maxsize=4096)
def _int(value: int) -> IntegerAttr:
    return IntegerAttr(value, i64)  # attributes are immutable: one object per value


def _ints(values: Sequence[int]) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, list(values))


class InstructionOp(IRDLOperation):
    """Base of the instructions: a token result, the tokens waited for, and a parent group."""

    deps = var_operand_def(TokenType)
    token = result_def(TokenType)

    def body_ops(self) -> tuple[int, ...]:
        body = getattr(self, "body", None)
        return tuple(body.get_values()) if body is not None else ()


_AFTER = "(`after` $deps^)? attr-dict"


@irdl_op_definition
class DmaInOp(InstructionOp):
    """A transfer from DRAM into SRAM.

    Syntax::

        %w = accel.dma_in "weight" @model.layers.0.mlp.down_proj.weight rows 0 to 128 k 2816 buffer 1 after %t
        %x = accel.dma_in "act" per_row 4096
        %h = accel.dma_in "act" per_batch 4096
        %p = accel.dma_in "param" bytes 4100
        %e = accel.dma_in "table" @model.embeddings.weight per_row 2048

    ``weight``: rows ``[start, stop)`` of a ternary weight of ``k`` trits per row, packed in the
    accelerator's format, into weight buffer ``buffer``; ``act``: activation rows; ``param``: norm
    vectors and scales; ``table``: rows gathered from an embedding table.
    """

    name = "accel.dma_in"
    what = prop_def(StringAttr)
    weight = opt_prop_def(SymbolRefAttr)
    row_start = opt_prop_def(IntegerAttr[I64])
    row_stop = opt_prop_def(IntegerAttr[I64])
    k = opt_prop_def(IntegerAttr[I64])
    bytes = opt_prop_def(IntegerAttr[I64])
    bytes_per_row = opt_prop_def(IntegerAttr[I64])
    bytes_per_batch = opt_prop_def(IntegerAttr[I64])
    buffer = opt_prop_def(IntegerAttr[I64])
    assembly_format = (
        "$what ($weight^)? (`rows` $row_start^ `to` $row_stop)? (`k` $k^)? (`bytes` $bytes^)? "
        "(`per_row` $bytes_per_row^)? (`per_batch` $bytes_per_batch^)? (`buffer` $buffer^)? " + _AFTER
    )

    def verify_(self) -> None:
        _verify_dma(self)


@irdl_op_definition
class DmaOutOp(InstructionOp):
    """A transfer from SRAM to DRAM (a group's results).

    Syntax::

        %o = accel.dma_out "act" per_row 4096 after %b
    """

    name = "accel.dma_out"
    what = prop_def(StringAttr)
    bytes = opt_prop_def(IntegerAttr[I64])
    bytes_per_row = opt_prop_def(IntegerAttr[I64])
    bytes_per_batch = opt_prop_def(IntegerAttr[I64])
    assembly_format = "$what (`bytes` $bytes^)? (`per_row` $bytes_per_row^)? (`per_batch` $bytes_per_batch^)? " + _AFTER

    def verify_(self) -> None:
        _verify_dma(self)


def _verify_dma(op: DmaInOp | DmaOutOp) -> None:
    what = op.what.data
    if what not in DMA_PAYLOADS:
        raise VerifyException(f"{op.name}: payload must be one of {', '.join(DMA_PAYLOADS)}, got {what!r}")
    for name in ("bytes", "bytes_per_row", "bytes_per_batch"):
        attr = getattr(op, name)
        if attr is not None and attr.value.data < 0:
            raise VerifyException(f"{op.name}: {name} must be >= 0, got {attr.value.data}")
    if isinstance(op, DmaInOp) and what == "weight":
        if op.weight is None or op.row_start is None or op.row_stop is None or op.k is None:
            raise VerifyException(f"{op.name}: a weight transfer names its weight, rows and k")
        _verify_rows(op, op.row_start.value.data, op.row_stop.value.data, op.k.value.data)


def _verify_rows(op: IRDLOperation, start: int, stop: int, k: int) -> None:
    if not 0 <= start < stop:
        raise VerifyException(f"{op.name}: rows {start} to {stop} is empty or negative")
    if k < 1:
        raise VerifyException(f"{op.name}: k must be >= 1, got {k}")


@irdl_op_definition
class TaccOp(InstructionOp):
    """Ternary accumulate over one tile: rows ``[start, stop)`` of weight ``@w`` (``k`` trits each)
    against the int8 activations of every row, into int32 accumulators: ``rows x n x k`` adds and
    subtracts, no multiplies.

    Syntax::

        %a = accel.tacc @model.layers.0.attn.o_proj.weight rows 0 to 64 k 256 tile 0 body [3] after %q, %w
    """

    name = "accel.tacc"
    weight = prop_def(SymbolRefAttr)
    row_start = prop_def(IntegerAttr[I64])
    row_stop = prop_def(IntegerAttr[I64])
    k = prop_def(IntegerAttr[I64])
    tile = prop_def(IntegerAttr[I64])
    body = opt_prop_def(DenseArrayBase.constr(i64))
    assembly_format = "$weight `rows` $row_start `to` $row_stop `k` $k `tile` $tile (`body` $body^)? " + _AFTER

    def verify_(self) -> None:
        _verify_rows(self, self.row_start.value.data, self.row_stop.value.data, self.k.value.data)


@irdl_op_definition
class VectorOp(InstructionOp):
    """Elementwise and row ops on the vector unit, chained in its pipeline: each op kind of the list
    (``rmsnorm``, ``dequant``, ``sigmoid``, ``silu_mul``, ... see ``VECTOR_KINDS``) over ``elements``
    elements per activation row.

    Syntax::

        %v = accel.vector ["dequant", "sigmoid", "lower_bound"] elements 64 tile 2 body [9, 14, 15] after %a
    """

    name = "accel.vector"
    ops = prop_def(ArrayAttr[StringAttr])
    elements = prop_def(IntegerAttr[I64])
    tile = opt_prop_def(IntegerAttr[I64])
    body = opt_prop_def(DenseArrayBase.constr(i64))
    assembly_format = "$ops `elements` $elements (`tile` $tile^)? (`body` $body^)? " + _AFTER

    def verify_(self) -> None:
        if not self.ops.data:
            raise VerifyException("accel.vector: expected at least one op kind")
        for kind in self.ops.data:
            if kind.data not in VECTOR_KINDS:
                raise VerifyException(f"accel.vector: unknown op kind {kind.data!r} (kinds: {', '.join(VECTOR_KINDS)})")
        _verify_elements(self)


def _verify_elements(op: IRDLOperation) -> None:
    elements = op.elements.value.data  # type: ignore[attr-defined]
    if elements < 0:
        raise VerifyException(f"{op.name}: elements must be >= 0, got {elements}")


class ElementsOp(InstructionOp):
    """The shape shared by the instructions over ``elements`` values per row of the vector unit
    (quantize, scan step, scan): an optional tile and body positions, the same syntax."""

    elements = prop_def(IntegerAttr[I64])
    tile = opt_prop_def(IntegerAttr[I64])
    body = opt_prop_def(DenseArrayBase.constr(i64))
    assembly_format = "`elements` $elements (`tile` $tile^)? (`body` $body^)? " + _AFTER

    def verify_(self) -> None:
        _verify_elements(self)


@irdl_op_definition
class QuantizeOp(ElementsOp):
    """Per-row int8 quantization on the vector unit: absmax, scale, round half away from zero, clamp.

    Syntax::

        %q = accel.quantize elements 256 body [2] after %n
    """

    name = "accel.quantize"


@irdl_op_definition
class ScanStepOp(ElementsOp):
    """One step of the recurrence ``h = f * h + x`` over ``elements`` channels per row (decode).

    Syntax::

        %h = accel.scan_step elements 64 tile 0 body [19] after %v
    """

    name = "accel.scan_step"


@irdl_op_definition
class ScanOp(ElementsOp):
    """The recurrence over every time step of the rows (prefill): dependent steps, one per token.

    Syntax::

        %h = accel.scan elements 64 tile 0 body [20] after %v
    """

    name = "accel.scan"


@irdl_op_definition
class BarrierOp(InstructionOp):
    """Wait for every listed instruction; costs nothing (a join point, e.g. before a group's results
    leave for DRAM).

    Syntax::

        %b = accel.barrier after %6, %8
    """

    name = "accel.barrier"
    assembly_format = "`after` $deps attr-dict"


INSTRUCTIONS: dict[str, type[InstructionOp]] = {
    "dma_in": DmaInOp,
    "dma_out": DmaOutOp,
    "tacc": TaccOp,
    "vector": VectorOp,
    "quantize": QuantizeOp,
    "scan_step": ScanStepOp,
    "scan": ScanOp,
    "barrier": BarrierOp,
}


@irdl_op_definition
class GroupOp(IRDLOperation):
    """One instruction group: what one ``ternary.kernel`` (or a function-level gather) does on the
    accelerator. ``kernel``: its position among the function's groups; ``stream_axis``: the kernel's
    grid axis along which weight tiles stream (-1: none); ``tile_rows``: weight rows per tile;
    ``act_bytes_per_row``: SRAM one activation row needs; ``act_capacity_bytes``: SRAM left for
    activation rows (more rows run in several passes).

    Syntax::

        accel.group "lm_head" kernel 9 stream_axis 0 tile_rows 256 act_bytes_per_row 5120 act_capacity_bytes 1900000 {
          ...instructions...
        }
    """

    name = "accel.group"
    label = prop_def(StringAttr)
    kernel = prop_def(IntegerAttr[I64])
    stream_axis = prop_def(IntegerAttr[I64])
    tile_rows = prop_def(IntegerAttr[I64])
    act_bytes_per_row = prop_def(IntegerAttr[I64])
    act_capacity_bytes = prop_def(IntegerAttr[I64])
    body = region_def("single_block")
    traits = traits_def(NoTerminator())
    assembly_format = (
        "$label `kernel` $kernel `stream_axis` $stream_axis `tile_rows` $tile_rows `act_bytes_per_row` "
        "$act_bytes_per_row `act_capacity_bytes` $act_capacity_bytes attr-dict-with-keyword $body"
    )

    def verify_(self) -> None:
        for op in self.body.block.ops:
            if not isinstance(op, InstructionOp):
                raise VerifyException(f"accel.group: {op.name} is not an accel instruction")
        if self.tile_rows.value.data < 1:
            raise VerifyException(f"accel.group: tile_rows must be >= 1, got {self.tile_rows.value.data}")
        if self.act_capacity_bytes.value.data < 0 or self.act_bytes_per_row.value.data < 0:
            raise VerifyException("accel.group: SRAM sizes must be >= 0")


@irdl_op_definition
class ProgramOp(IRDLOperation):
    """The accelerator program of one function: its groups, run one after another. ``arch``: the
    accelerator it was tiled for; ``batch``, ``seq``: the rows it was tiled for (the design point;
    it runs on any).

    Syntax::

        accel.program @prefill arch "edge-fpga" batch 1 seq 64 {
          accel.group ... { ... }
        }
    """

    name = "accel.program"
    sym_name = prop_def(StringAttr)
    arch = prop_def(StringAttr)
    batch = prop_def(IntegerAttr[I64])
    seq = prop_def(IntegerAttr[I64])
    body = region_def("single_block")
    traits = traits_def(NoTerminator(), SymbolOpInterface(), IsolatedFromAbove())

    def print(self, printer: Printer) -> None:
        printer.print_string(" ")
        printer.print_symbol_name(self.sym_name.data)
        printer.print_string(" arch ")
        printer.print_attribute(self.arch)
        printer.print_string(f" batch {self.batch.value.data} seq {self.seq.value.data}")
        printer.print_op_attributes(self.attributes, print_keyword=True)
        printer.print_string(" ")
        printer.print_region(self.body, print_entry_block_args=False, print_empty_block=False)

    @classmethod
    def parse(cls, parser: Parser) -> ProgramOp:
        name = parser.parse_symbol_name()
        parser.parse_keyword("arch")
        arch = parser.parse_str_literal()
        parser.parse_keyword("batch")
        batch = parser.parse_integer(allow_boolean=False)
        parser.parse_keyword("seq")
        seq = parser.parse_integer(allow_boolean=False)
        attrs = parser.parse_optional_attr_dict_with_keyword()
        body = parser.parse_region()
        op = cls.create(
            properties={"sym_name": name, "arch": StringAttr(arch), "batch": _int(batch), "seq": _int(seq)},
            regions=[body],
        )
        if attrs is not None:
            op.attributes.update(attrs.data)
        return op

    def groups(self) -> list[GroupOp]:
        return [op for op in self.body.block.ops if isinstance(op, GroupOp)]

    def verify_(self) -> None:
        for op in self.body.block.ops:
            if not isinstance(op, GroupOp):
                raise VerifyException(f"accel.program: {op.name} is not an accel.group")


# --------------------------------------------------------------------------------------------------
# IR <-> compact form
# --------------------------------------------------------------------------------------------------


def _get(op: IRDLOperation, name: str, default: int = 0) -> int:
    attr = getattr(op, name, None)
    return attr.value.data if attr is not None else default


def instr_of(op: InstructionOp, index_of: dict[SSAValue, int]) -> Instr:
    """The compact :class:`Instr` of ``op`` (``index_of``: the group's tokens -> instruction index)."""
    deps = tuple(index_of[d] for d in op.deps)
    body = op.body_ops()
    if isinstance(op, DmaInOp | DmaOutOp):
        weight = op.weight.string_value() if isinstance(op, DmaInOp) and op.weight is not None else ""
        rows = (_get(op, "row_start"), _get(op, "row_stop")) if weight else (0, 0)
        return Instr(
            "dma_in" if isinstance(op, DmaInOp) else "dma_out", deps, what=op.what.data, weight=weight, rows=rows,
            k=_get(op, "k"), bytes=_get(op, "bytes"), bytes_per_row=_get(op, "bytes_per_row"),
            bytes_per_batch=_get(op, "bytes_per_batch"),
            buffer=_get(op, "buffer", -1),
        )
    if isinstance(op, TaccOp):
        return Instr(
            "tacc", deps, weight=op.weight.string_value(), rows=(op.row_start.value.data, op.row_stop.value.data),
            k=op.k.value.data, tile=op.tile.value.data, body=body,
        )
    if isinstance(op, VectorOp):
        return Instr("vector", deps, ops=tuple(s.data for s in op.ops.data), elements=op.elements.value.data,
                     tile=_get(op, "tile", -1), body=body)
    if isinstance(op, QuantizeOp | ScanStepOp | ScanOp):
        kind = {QuantizeOp: "quantize", ScanStepOp: "scan_step", ScanOp: "scan"}[type(op)]
        return Instr(kind, deps, elements=op.elements.value.data, tile=_get(op, "tile", -1), body=body)
    assert isinstance(op, BarrierOp)
    return Instr("barrier", deps)


def group_plan(group: GroupOp) -> GroupPlan:
    """The compact :class:`GroupPlan` of ``group`` (what the schedule runs)."""
    index_of: dict[SSAValue, int] = {}
    instrs = []
    for i, op in enumerate(group.body.block.ops):
        assert isinstance(op, InstructionOp)
        instrs.append(instr_of(op, index_of))
        index_of[op.token] = i
    return GroupPlan(
        group.label.data, group.kernel.value.data, group.stream_axis.value.data, group.tile_rows.value.data,
        group.act_bytes_per_row.value.data, group.act_capacity_bytes.value.data, tuple(instrs),
    )


def _instruction(ins: Instr, deps: list[SSAValue]) -> InstructionOp:
    props: dict[str, Attribute] = {}
    if ins.body:
        props["body"] = _ints(ins.body)
    if ins.op in ("dma_in", "dma_out"):
        props["what"] = StringAttr(ins.what)
        if ins.weight:
            props.update(weight=SymbolRefAttr(ins.weight), row_start=_int(ins.rows[0]), row_stop=_int(ins.rows[1]),
                         k=_int(ins.k))
        if ins.bytes:
            props["bytes"] = _int(ins.bytes)
        if ins.bytes_per_row:
            props["bytes_per_row"] = _int(ins.bytes_per_row)
        if ins.bytes_per_batch:
            props["bytes_per_batch"] = _int(ins.bytes_per_batch)
        if ins.buffer >= 0:
            props["buffer"] = _int(ins.buffer)
        props.pop("body", None)
    elif ins.op == "tacc":
        props.update(weight=SymbolRefAttr(ins.weight), row_start=_int(ins.rows[0]), row_stop=_int(ins.rows[1]),
                     k=_int(ins.k), tile=_int(ins.tile))
    elif ins.op in ("vector", "quantize", "scan_step", "scan"):
        props["elements"] = _int(ins.elements)
        if ins.op == "vector":
            props["ops"] = ArrayAttr([StringAttr(k) for k in ins.ops])
        if ins.tile >= 0:
            props["tile"] = _int(ins.tile)
    return INSTRUCTIONS[ins.op].create(operands=deps, result_types=[TokenType()], properties=props)


def build_group(plan: GroupPlan) -> GroupOp:
    """The ``accel.group`` op of ``plan`` (the inverse of :func:`group_plan`)."""
    block = Block()
    tokens: list[SSAValue] = []
    for ins in plan.instrs:
        op = _instruction(ins, [tokens[d] for d in ins.deps])
        block.add_op(op)
        tokens.append(op.token)
    return GroupOp.create(
        properties={
            "label": StringAttr(plan.label), "kernel": _int(plan.kernel), "stream_axis": _int(plan.stream_axis),
            "tile_rows": _int(plan.tile_rows), "act_bytes_per_row": _int(plan.act_bytes_per_row),
            "act_capacity_bytes": _int(plan.act_capacity_bytes),
        },
        regions=[Region(block)],
    )


def build_program(name: str, arch: str, batch: int, seq: int, groups: Sequence[GroupPlan]) -> ProgramOp:
    """An ``accel.program`` of ``groups`` in order."""
    block = Block([build_group(g) for g in groups])
    return ProgramOp.create(
        properties={"sym_name": StringAttr(name), "arch": StringAttr(arch), "batch": _int(batch), "seq": _int(seq)},
        regions=[Region(block)],
    )


Accel = Dialect(
    "accel",
    [ProgramOp, GroupOp, DmaInOp, DmaOutOp, TaccOp, VectorOp, QuantizeOp, ScanStepOp, ScanOp, BarrierOp],
    [TokenType],
)

__all__ = [
    "DMA_PAYLOADS",
    "INSTRUCTIONS",
    "Accel",
    "BarrierOp",
    "DmaInOp",
    "DmaOutOp",
    "GroupOp",
    "InstructionOp",
    "ProgramOp",
    "QuantizeOp",
    "ScanOp",
    "ScanStepOp",
    "TaccOp",
    "TokenType",
    "VectorOp",
    "build_group",
    "build_program",
    "group_plan",
    "instr_of",
]
