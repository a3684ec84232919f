"""Generate one ``@triton.jit`` function from one ``ternary.kernel`` op.

The kernel's grid axes become program ids; its feature spaces (:mod:`.analysis`) become blocks
``tl.arange(0, BLOCK)`` with masks (offset by ``program_id * block`` where a grid axis splits them);
its rows (batch, time) are processed **a block of rows at a time**: values are 2-D tiles
``[BLOCK_ROWS, BLOCK_F]``, so the weights a program loads serve every row of the block (the batch of
a decode step, a tile of a prompt), and a per-row statistic is a ``[BLOCK_ROWS]`` vector. Every body
op is turned into Triton source by its emitter (:mod:`.emitters`, one entry per op type); an op
without one is a compile error naming the op and the kernel's label.

Two loop shapes:

* the rows of every value are all the row dims (every kernel but the prefill recurrence): the rows
  are flattened (row-major, as the tensors lie in memory) and one loop walks them in blocks;
* some value has only the outer row dims (the recurrence's initial and final state ``[B, d]``): the
  program loops over the outer rows one at a time and over blocks of the innermost row dim (time)
  inside, so the recurrence runs in order over time, its state carried in registers from block to
  block.

Generated code is plain ``tl.*`` with pointer arithmetic and masks (no libdevice, inline asm,
``make_block_ptr`` or autotuning), so it runs under ``TRITON_INTERPRET=1`` on a CPU as well as
compiled on a GPU, and on Triton 3.6 and 3.9 alike. Layout of the function::

    def k_<label>(<one pointer per operand>, <one per result>, <one per debug value>, <scratch>,
                  <run-time sizes>, [rows_per], BLOCK_ROWS, CHUNK, USE_DOT, GEMV, DP4A, DEBUG: tl.constexpr):
        <program ids, feature offsets and masks, row ranges>
        <values the same in every row (norm weights, scales; with GEMV, the weight tiles)>
        [for i_<outer> in range(lo, hi):          (second loop shape only)
            <values of one outer row (a recurrence's state)>]
            for r0 in range(lo, hi, BLOCK_ROWS):
                rows = r0 + tl.arange(0, BLOCK_ROWS)
                <the body on [BLOCK_ROWS, BLOCK_F] tiles>
            [<what a recurrence leaves after the last row>]

``BLOCK_ROWS`` and ``CHUNK`` (weight bytes per step of an accumulation) are chosen by the runtime at
launch; ``USE_DOT`` selects int8 tensor-core dots for accumulations over blocks of rows; ``GEMV``
the decode schedule of accumulations that have one (``emitters._emit_gemv``: weight tiles held in
registers, one row per block; ``DP4A``: its four-byte dot products as one instruction on a GPU);
where the rows are one loop, a last grid axis splits them, ``rows_per`` rows per program; ``DEBUG``
(compiled out when false) stores every body value, assembled whole over the programs, for the shared
kernel dump. A value an op must read in pieces (the int8 activations of ``accum``, the gates of a
recurrence) goes through a per-program float32 scratch tile.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from xdsl.dialects.builtin import AnyFloat, Float32Type, TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.traits import IsTerminator

from mmfc.dialects import ternary as T
from mmfc.dialects.diagnostics import UserError
from mmfc.backends.triton.analysis import KernelSpaces, Space, analyze

INDENT = "    "
_SCRATCH = "__SCRATCH_PER_ROW__"  # replaced by the total once every scratch slot is known


def python_name(text: str, prefix: str = "k_") -> str:
    """A Python identifier from a kernel label (``model.layers.0.attn.o_proj`` ->
    ``k_model_layers_0_attn_o_proj``)."""
    return prefix + re.sub(r"\W+", "_", text).strip("_")


# Where a value lives, relative to the row loops.
CONST = "const"  # the same in every row (a norm weight, a weight scale)
OUTER = "outer"  # one per outer row (a recurrence's state [B, d] in a prefill)
ROWS = "rows"  # one per row: held as a [BLOCK_ROWS] or [BLOCK_ROWS, BLOCK_F] tile


@dataclass
class Held:
    """How the generated code holds a value.

    ``kind``: ``reg`` (a variable ``var``), ``mem`` (in memory: kernel operand ``operand``, read when
    used; ``offset`` elements along its feature axis, for the halves of a ``split``; ``base`` the
    memory value whose layout it follows) or ``weight`` (a weight matrix read by ``accum``:
    ``operand`` and its ``format``: ``2bit``, ``base3`` or ``trits``). ``where``: :data:`CONST`,
    :data:`OUTER` or :data:`ROWS`; ``after``: defined after the row loop (a recurrence's last state).
    """

    kind: str
    where: str
    var: str = ""
    operand: int = -1
    offset: str = "0"
    format: str = ""
    after: bool = False
    base: SSAValue | None = None


@dataclass
class DebugValue:
    """A body value the debug mode stores: body position, op name, result index, its dims' spaces
    and element dtype (``np`` name)."""

    body: int
    op: str
    result: int
    spaces: tuple[Space, ...]
    dtype: str
    name: str = ""


@dataclass
class KernelSource:
    """One generated kernel: its source text and what the runtime needs to launch it."""

    name: str
    label: str
    text: str
    spaces: KernelSpaces
    size_args: list[Space]
    scratch_per_row: int  # float32 elements of scratch per row of a block, per program (0: none)
    debug: list[DebugValue]
    max_block: int  # the widest feature block (for the number of warps)
    accum_k: list[int]  # the K of every accumulation (for the CHUNK the runtime picks)
    gemv: bool = False  # an accumulation has the GEMV schedule (run with GEMV=True, BLOCK_ROWS=1)
    row_split: bool = False  # a last grid axis splits the rows, rows_per rows per program (argument)


class Emitter:
    """Builds the source of one kernel; emitters (:mod:`.emitters`) call its methods."""

    def __init__(self, kernel: T.KernelOp, name: str) -> None:
        self.kernel = kernel
        self.name = name
        self.label = _label(kernel)
        self.ks = analyze(kernel)
        rows = self.ks.rows
        levels = {self.ks.level(v) for v in self._all_values()}
        self.nested = any(0 < lv < len(rows) for lv in levels)
        if self.nested and any(0 < lv < len(rows) - 1 for lv in levels):
            raise UserError(f"kernel {self.label}: values of more than one outer row level are not supported")
        self.sections: dict[str, list[str]] = {"top": [], "outer": [], "block": [], "after": []}
        # rows that are all one loop (not a recurrence's time in order) may be split among programs
        self.row_split = bool(rows) and not self.nested
        self.held: dict[SSAValue, Held] = {}
        self.debug: list[DebugValue] = []
        self.scratch_per_row = 0
        self.accum_k: list[int] = []
        self.gemv = False  # an accumulation has the GEMV schedule (emitters._emit_gemv)
        self.indent = 0  # levels of indentation of the lines emitted now (inside a generated ``if``)
        self._n = 0
        self._loaded: dict[SSAValue, str] = {}
        for i, arg in enumerate(kernel.body.block.args):
            t = arg.type
            if isinstance(t, T.PackedType):
                self.held[arg] = Held("weight", CONST, operand=i, format=t.format.data)
            elif isinstance(t, T.TritsType):
                self.held[arg] = Held("weight", CONST, operand=i, format="trits")
            else:
                self.held[arg] = Held("mem", self.where(arg), operand=i)

    def _all_values(self) -> list[SSAValue]:
        block = self.kernel.body.block
        return [*block.args, *(r for op in block.ops for r in op.results)]

    # ------------------------------------------------------------------------------ names, places

    def fresh(self, hint: str) -> str:
        self._n += 1
        return f"{hint}{self._n}"

    def where(self, v: SSAValue) -> str:
        level = self.ks.level(v)
        if level == 0:
            return CONST
        return ROWS if level == len(self.ks.rows) else OUTER

    def op_where(self, op: Operation) -> str:
        places = {self.where(v) for v in (*op.operands, *op.results)}
        return ROWS if ROWS in places else (OUTER if OUTER in places else CONST)

    def emit(self, where: str, line: str, *, after: bool = False) -> None:
        line = INDENT * self.indent + line
        if where == ROWS:
            section = "block"
        elif where == OUTER:
            section = "after" if after else "outer"
        else:
            section = "top"
        self.sections[section].append(line)

    # ------------------------------------------------------------------------------ spaces

    def feature(self, v: SSAValue) -> Space | None:
        return self.ks.feature(v)

    def offs(self, s: Space) -> str:
        return f"offs_{s.name}"

    def mask(self, s: Space) -> str:
        return f"mask_{s.name}"

    def size(self, s: Space) -> str:
        return s.size_arg

    def fsize(self, s: Space) -> str:
        """The size as a float32 expression (for means)."""
        return f"{float(s.static)!r}" if s.static is not None else f"{s.size_arg}.to(tl.float32)"

    def shape_of(self, v: SSAValue) -> str:
        """``2d`` ([rows, features]), ``rows`` ([rows]), ``feat`` ([features]) or ``scalar``."""
        feature = self.feature(v) is not None
        if self.where(v) == ROWS:
            return "2d" if feature else "rows"
        return "feat" if feature else "scalar"

    def shaped(self, v: SSAValue, var: str, to: str) -> str:
        """``var`` (holding ``v``) broadcast to combine with a value of shape ``to``."""
        shape = self.shape_of(v)
        if to == "2d" and shape == "feat":
            return f"{var}[None, :]"
        if to == "2d" and shape == "rows":
            return f"{var}[:, None]"
        return var

    def mask_of(self, v: SSAValue) -> str:
        """The mask of ``v``'s tile (rows and feature where it has them)."""
        s = self.feature(v)
        shape = self.shape_of(v)
        if shape == "2d":
            return f"mask_rows[:, None] & {self.mask(s)}[None, :]"  # type: ignore[arg-type]
        if shape == "rows":
            return "mask_rows"
        if shape == "feat":
            return self.mask(s)  # type: ignore[arg-type]
        return ""

    def _row_stride(self, v: SSAValue) -> str:
        """Elements between consecutive rows of ``v`` (the product of its non-row dims)."""
        parts = [self.size(s) for s in self.ks.of(v) if s.kind != "row"]
        return " * ".join(parts) if parts else "1"

    def address(self, v: SSAValue, feature_index: str | None, layout: SSAValue | None = None) -> str:
        """Element offsets of ``v``'s current tile: its rows (all, or the current outer row, or none)
        and ``feature_index`` along its feature axis. ``layout``: the memory value whose strides
        apply (a view's base)."""
        lay = layout if layout is not None else v
        where = self.where(v)
        stride = self._row_stride(lay)
        if where == ROWS:
            row = "rows" if self.feature(v) is None else "rows[:, None]"
            base = row if stride == "1" else f"{row} * {stride}"
        elif where == OUTER:
            base = "i_outer" if stride == "1" else f"i_outer * {stride}"
        else:
            base = ""
        if feature_index is None:
            return base or "0"
        idx = feature_index if where != ROWS else f"({feature_index})[None, :]"
        return f"{base} + {idx}" if base else idx

    # ------------------------------------------------------------------------------ values

    def ptr(self, operand: int) -> str:
        return f"in{operand}"

    def value(self, v: SSAValue) -> str:
        """A variable holding ``v`` for the current tile (loading an operand on first use)."""
        h = self.held.get(v)
        if h is None:
            raise UserError(f"kernel {self.label}: a value is used before the generated code defines it")
        if h.kind == "reg":
            return h.var
        if h.kind == "weight":
            raise UserError(f"kernel {self.label}: a weight matrix is read here by an op that is not ternary.accum")
        if v in self._loaded:
            return self._loaded[v]
        var = self.fresh("x")
        self._loaded[v] = var
        self.emit(h.where, f"{var} = {self.load_expr(v, h)}")
        return var

    def load_expr(self, v: SSAValue, h: Held) -> str:
        s = self.feature(v)
        t = v.type
        if not isinstance(t, TensorType) or not t.get_shape():
            return f"tl.load({self.ptr(h.operand)})"  # a scalar (a weight scale)
        index = None
        if s is not None:
            index = self.offs(s) if h.offset == "0" else f"{self.offs(s)} + {h.offset}"
        mask = self.mask_of(v)
        where = f"{self.ptr(h.operand)} + {self.address(v, index, h.base)}"
        load = f"tl.load({where}, mask={mask}, other=0)" if mask else f"tl.load({where})"
        return f"{load}.to(tl.float32)" if _is_float(t) and not isinstance(t.get_element_type(), Float32Type) else load

    def define(self, v: SSAValue, var: str, *, after: bool = False) -> None:
        self.held[v] = Held("reg", self.where(v), var=var, after=after)

    def view(self, v: SSAValue, of: SSAValue, offset: str) -> None:
        """``v`` is a part of memory value ``of``, ``offset`` elements along its feature axis."""
        h = self.held[of]
        if h.kind != "mem":
            raise UserError(
                f"kernel {self.label}: ternary.split of a value computed in the kernel is not supported by the "
                "triton target (split a kernel operand)"
            )
        self.held[v] = Held(
            "mem",
            h.where,
            operand=h.operand,
            offset=offset if h.offset == "0" else f"{h.offset} + {offset}",
            base=h.base if h.base is not None else of,
        )

    def scratch_slot(self, s: Space) -> str:
        """A float32 scratch tile ``[BLOCK_ROWS, BLOCK(s)]`` of this program (row-major, row stride
        ``BLOCK(s)``): the expression of its base pointer. The runtime allocates every program's."""
        offset = self.scratch_per_row
        self.scratch_per_row += s.pow2_block
        return f"scratch + pid_linear * BLOCK_ROWS * {_SCRATCH} + BLOCK_ROWS * {offset}"

    # ------------------------------------------------------------------------------ generating

    def generate(self) -> KernelSource:
        from mmfc.backends.triton.emitters import EMITTERS

        block = self.kernel.body.block
        for index, op in enumerate(block.ops):
            if op.has_trait(IsTerminator):
                break
            emitter = EMITTERS.get(type(op))
            if emitter is None:
                raise UserError(f"the triton target has no emitter for {op.name} (in kernel {self.label})")
            emitter(self, op)
            self._note_debug(index, op)
        self._store_results()
        widest = max([s.pow2_block for s in self.ks.spaces if s.kind == "feature"] + [1])
        return KernelSource(
            self.name, self.label, self._assemble(), self.ks, self._size_args(), self.scratch_per_row, self.debug,
            widest, self.accum_k, self.gemv, self.row_split,
        )

    def _note_debug(self, index: int, op: Operation) -> None:
        from mmfc.dialects.values import value_dtype

        for r_index, r in enumerate(op.results):
            h = self.held.get(r)
            if h is None or h.kind != "reg" or not isinstance(r.type, TensorType):
                continue
            dv = DebugValue(index, op.name, r_index, self.ks.of(r), str(value_dtype(r.type)), name=f"dbg{len(self.debug)}")
            self.debug.append(dv)
            self.emit(h.where, "if DEBUG:", after=h.after)
            self.emit(h.where, INDENT + self.store_line(dv.name, r, h.var), after=h.after)

    def store_line(self, ptr: str, v: SSAValue, var: str) -> str:
        s = self.feature(v)
        where = f"{ptr} + {self.address(v, None if s is None else self.offs(s))}"
        mask = self.mask_of(v)
        return f"tl.store({where}, {var}, mask={mask})" if mask else f"tl.store({where}, {var})"

    def _store_results(self) -> None:
        yield_op = self.kernel.body.block.last_op
        assert isinstance(yield_op, T.YieldOp)
        for i, (y, r) in enumerate(zip(yield_op.values, self.kernel.results)):
            h = self.held[y]
            var = self.value(y)
            self.emit(h.where, self.store_line(f"out{i}", r, var), after=h.after)

    def _size_args(self) -> list[Space]:
        return [s for s in self.ks.spaces if s.static is None]

    def _preamble(self) -> list[str]:
        grid = self.kernel.grid_sizes()
        lines = [f"pid{a} = tl.program_id({a})" for a in range(len(grid))]
        lin = "0"
        if grid:
            lin = "pid0"
            for a in range(1, len(grid)):
                lin = f"({lin}) * tl.num_programs({a}) + pid{a}"
        if self.row_split:  # one more grid axis, last: the blocks of rows_per rows
            lines.append(f"pid_rows = tl.program_id({len(grid)})")
            lin = "pid_rows" if not grid else f"({lin}) * tl.num_programs({len(grid)}) + pid_rows"
        lines.append(f"pid_linear = {lin}")
        for s in self.ks.spaces:
            if s.kind == "feature":
                n = s.pow2_block
                if s.axis is not None:
                    lines.append(f"{self.offs(s)} = pid{s.axis} * {s.block} + tl.arange(0, {n})")
                    within = f"(tl.arange(0, {n}) < {s.block}) & " if s.block != n else ""
                    lines.append(f"{self.mask(s)} = {within}({self.offs(s)} < {self.size(s)})")
                else:
                    lines.append(f"{self.offs(s)} = tl.arange(0, {n})")
                    lines.append(f"{self.mask(s)} = {self.offs(s)} < {self.size(s)}")
        return lines

    def _range(self, s: Space) -> tuple[str, str]:
        if s.axis is not None:
            lo = f"pid{s.axis} * {s.block}"
            return lo, f"tl.minimum({lo} + {s.block}, {self.size(s)})"
        return "0", self.size(s)

    def _loops(self) -> list[str]:
        rows = self.ks.rows
        body = self.sections["block"] or ["pass"]
        if not rows:  # no rows at all: the body runs once, as a block of one row
            head = ["rows = tl.arange(0, BLOCK_ROWS)", "mask_rows = rows < 1"]
            return head + self.sections["block"] + self.sections["after"]
        if not self.nested:
            if any(s.axis is not None for s in rows[1:]):
                raise UserError(f"kernel {self.label}: only the outermost row dim may be split by the grid")
            lo, hi = self._range(rows[0])
            inner = " * ".join(self.size(s) for s in rows[1:])
            if inner:
                lo, hi = f"({lo}) * {inner}", f"({hi}) * {inner}"
            lines = [f"rows_lo = {lo} + pid_rows * rows_per", f"rows_hi = tl.minimum(rows_lo + rows_per, {hi})"]
            lines.append("for r0 in range(rows_lo, rows_hi, BLOCK_ROWS):")
            lines += [INDENT + "rows = r0 + tl.arange(0, BLOCK_ROWS)", INDENT + "mask_rows = rows < rows_hi"]
            return lines + [INDENT + line for line in body]
        outer, last = rows[:-1], rows[-1]
        if last.axis is not None:
            raise UserError(f"kernel {self.label}: the time dim of a recurrence cannot be split by the grid")
        lines: list[str] = []
        # one loop per outer row space, innermost last; i_outer is the flat outer row index
        flat = "0"
        indent = ""
        for s in outer:
            lo, hi = self._range(s)
            lines.append(f"{indent}for i_{s.name} in range({lo}, {hi}):")
            indent += INDENT
            flat = f"i_{s.name}" if flat == "0" else f"({flat}) * {self.size(s)} + i_{s.name}"
        lines.append(f"{indent}i_outer = {flat}")
        lines += [indent + line for line in self.sections["outer"]]
        lines.append(f"{indent}for t0 in range(0, {self.size(last)}, BLOCK_ROWS):")
        lines.append(f"{indent}{INDENT}steps = t0 + tl.arange(0, BLOCK_ROWS)")
        lines.append(f"{indent}{INDENT}mask_rows = steps < {self.size(last)}")
        lines.append(f"{indent}{INDENT}rows = i_outer * {self.size(last)} + steps")
        lines += [indent + INDENT + line for line in body]
        lines += [indent + line for line in self.sections["after"]]
        return lines

    def signature(self) -> list[str]:
        k = self.kernel
        args = [self.ptr(i) for i in range(len(k.inputs))]
        args += [f"out{i}" for i in range(len(k.results))]
        args += [dv.name for dv in self.debug]
        args += ["scratch"]
        args += [s.size_arg for s in self._size_args()]
        if self.row_split:
            args.append("rows_per")
        return args

    def _assemble(self) -> str:
        sizes = [s.size_arg for s in self._size_args()] + (["rows_per"] if self.row_split else [])
        constexprs = [f"{c}: tl.constexpr" for c in ("BLOCK_ROWS", "CHUNK", "USE_DOT", "GEMV", "DP4A", "DEBUG")]
        lines = [f"@triton.jit(do_not_specialize={sizes!r})" if sizes else "@triton.jit"]
        lines.append(f"def {self.name}({', '.join([*self.signature(), *constexprs])}):")
        body = [*self._preamble(), *self.sections["top"], *self._loops()]
        lines += [INDENT + line for line in body]
        return "\n".join(lines).replace(_SCRATCH, str(self.scratch_per_row)) + "\n"


def _is_float(t: Any) -> bool:
    return isinstance(t, TensorType) and isinstance(t.get_element_type(), AnyFloat)


def _label(kernel: T.KernelOp) -> str:
    attr = kernel.attributes.get("label")
    return getattr(attr, "data", None) or "kernel"


def generate_kernel(kernel: T.KernelOp, name: str) -> KernelSource:
    """The Triton source of ``kernel`` as function ``name``."""
    return Emitter(kernel, name).generate()


__all__ = ["CONST", "OUTER", "ROWS", "DebugValue", "Emitter", "Held", "KernelSource", "generate_kernel", "python_name"]
