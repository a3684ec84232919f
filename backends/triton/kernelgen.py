"""Generate one ``@triton.jit`` function from one ``ternary.kernel`` op.

The kernel's grid axes become program ids; its feature spaces (:mod:`.analysis`) become blocks
``tl.arange(0, BLOCK)`` with masks (offset by ``program_id * block`` where a grid axis splits them);
its row spaces (batch, time) become loops, outermost first, so a recurrence runs in order over time
inside one program. Every body op is turned into Triton source by its emitter (:mod:`.emitters`, one
entry per op type); an op without one is a compile error naming the op and the kernel's label.

Generated code is plain ``tl.*`` with pointer arithmetic and masks (no libdevice, inline asm,
``make_block_ptr`` or autotuning), so it runs under ``TRITON_INTERPRET=1`` on a CPU as well as
compiled on a GPU, and on Triton 3.6 and 3.9 alike.

Layout of the function::

    def k_<label>(<one pointer per operand>, <one per result>, <one per debug value>, <scratch>,
                  <run-time sizes>, DEBUG: tl.constexpr):
        <program ids, feature offsets and masks, row ranges>
        <level 0: values the same in every row (norm weights, scales)>
        for i_<batch> in range(lo, hi):
            <level 1>
            for i_<time> in range(lo, hi):
                <level 2: one row>
            <after level 2: what a recurrence leaves after the last step>

Values are held in registers one row at a time; a value that an op must read in chunks (the int8
activations of ``accum``, whose weight tile would not fit in registers whole) goes through a small
per-program scratch row. ``DEBUG`` (a constexpr: compiled out when false) stores every body value,
assembled whole over the programs, for the shared kernel dump.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from xdsl.dialects.builtin import TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.traits import IsTerminator

from mmfc.dialects import ternary as T
from mmfc.dialects.diagnostics import UserError
from mmfc.backends.triton.analysis import KernelSpaces, Space, analyze

INDENT = "    "
_SCRATCH = "__SCRATCH_BYTES__"  # replaced by the total once every scratch row is known


def python_name(text: str, prefix: str = "k_") -> str:
    """A Python identifier from a kernel label (``model.layers.0.attn.o_proj`` ->
    ``k_model_layers_0_attn_o_proj``)."""
    return prefix + re.sub(r"\W+", "_", text).strip("_")


def triton_dtype(t: Any) -> str:
    """The ``tl`` dtype of an IR element type (``tl.float32``, ``tl.int8``, ...)."""
    from xdsl.dialects.builtin import BFloat16Type, Float16Type, Float32Type, Float64Type, IntegerType

    if isinstance(t, T.PackedType):
        return "tl.uint8"
    if isinstance(t, T.TritsType):
        return "tl.int8"
    e = t.get_element_type() if isinstance(t, TensorType) else t
    if isinstance(e, Float32Type):
        return "tl.float32"
    if isinstance(e, BFloat16Type):
        return "tl.bfloat16"
    if isinstance(e, Float16Type):
        return "tl.float16"
    if isinstance(e, Float64Type):
        return "tl.float64"
    if isinstance(e, IntegerType):
        return f"tl.int{e.width.data}"
    raise UserError(f"the triton target has no representation for values of type {t}")


@dataclass
class Held:
    """How the generated code holds a value.

    ``kind``: ``reg`` (a variable ``var``: a block over its feature space, or a scalar per row),
    ``mem`` (in memory: kernel operand ``operand``, read when used; ``offset`` a feature-axis offset
    in elements, for the halves of a ``split``), ``weight`` (a weight matrix in memory, read by
    ``accum``: ``operand`` and its ``format``: ``2bit``, ``base3`` or ``trits``).
    ``level``: the loop depth it lives at; ``post``: defined after that level's inner loop.
    """

    kind: str
    level: int
    var: str = ""
    operand: int = -1
    offset: str = "0"
    format: str = ""
    post: bool = False
    base: SSAValue | None = None  # the memory value a view lies in (its layout gives the strides)


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
    scratch_bytes: int  # per program (0: no scratch)
    debug: list[DebugValue]


class Emitter:
    """Builds the source of one kernel; emitters (:mod:`.emitters`) call its methods."""

    def __init__(self, kernel: T.KernelOp, name: str) -> None:
        self.kernel = kernel
        self.name = name
        self.label = _label(kernel)
        self.ks = analyze(kernel)
        self.depth = len(self.ks.rows)
        self.code: list[list[str]] = [[] for _ in range(self.depth + 1)]
        self.post: list[list[str]] = [[] for _ in range(self.depth + 1)]
        self.held: dict[SSAValue, Held] = {}
        self.debug: list[DebugValue] = []
        self.scratch_bytes = 0
        self._n = 0
        self._loaded: dict[tuple[SSAValue, int], str] = {}
        block = kernel.body.block
        for i, arg in enumerate(block.args):
            t = arg.type
            if isinstance(t, T.PackedType):
                self.held[arg] = Held("weight", 0, operand=i, format=t.format.data)
            elif isinstance(t, T.TritsType):
                self.held[arg] = Held("weight", 0, operand=i, format="trits")
            else:
                self.held[arg] = Held("mem", self.level(arg), operand=i)

    # ------------------------------------------------------------------------------ names, levels

    def fresh(self, hint: str) -> str:
        self._n += 1
        return f"{hint}{self._n}"

    def level(self, v: SSAValue) -> int:
        return self.ks.level(v)

    def op_level(self, op: Operation) -> int:
        return max([self.level(v) for v in (*op.operands, *op.results)] + [0])

    def emit(self, level: int, line: str, *, post: bool = False) -> None:
        (self.post if post else self.code)[level].append(line)

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

    def row_offset(self, v: SSAValue, feature_index: str | None) -> str:
        """The element offset of ``v``'s current row (and of ``feature_index`` along its feature
        space) in row-major order."""
        dims = self.ks.of(v)
        terms = []
        stride = "1"
        for s in reversed(dims):
            if s.kind == "row":
                idx = f"i_{s.name}"
            elif s.kind == "unit":
                idx = None
            else:
                idx = feature_index
            if idx is not None and idx != "0":
                terms.append(idx if stride == "1" else f"({idx}) * {stride}")
            stride = self.size(s) if stride == "1" else f"{self.size(s)} * {stride}"
        return " + ".join(reversed(terms)) or "0"

    # ------------------------------------------------------------------------------ values

    def ptr(self, operand: int) -> str:
        return f"in{operand}"

    def value(self, v: SSAValue) -> str:
        """A variable holding ``v`` for the current row (loading an operand on first use)."""
        h = self.held.get(v)
        if h is None:
            raise UserError(f"kernel {self.label}: a value is used before the generated code defines it")
        if h.kind == "reg":
            return h.var
        if h.kind == "weight":
            raise UserError(f"kernel {self.label}: a weight matrix is read here by an op that is not ternary.accum")
        key = (v, 0)
        if key in self._loaded:
            return self._loaded[key]
        var = self.fresh("x")
        self._loaded[key] = var
        self.emit(h.level, f"{var} = {self.load_expr(v, h)}")
        return var

    def load_expr(self, v: SSAValue, h: Held) -> str:
        s = self.feature(v)
        t = v.type
        if not isinstance(t, TensorType) or not t.get_shape():
            return f"tl.load({self.ptr(h.operand)})"  # a scalar (a weight scale)
        if s is None:  # a per-row scalar (token id, mask)
            return f"tl.load({self.ptr(h.operand)} + {self.row_offset(v, None)})"
        index = self.offs(s) if h.offset == "0" else f"{self.offs(s)} + {h.offset}"
        layout = h.base if h.base is not None else v
        load = f"tl.load({self.ptr(h.operand)} + {self.row_offset(layout, index)}, mask={self.mask(s)}, other=0)"
        return f"{load}.to(tl.float32)" if _is_float(t) and triton_dtype(t) != "tl.float32" else load

    def define(self, v: SSAValue, var: str, *, post: bool = False, level: int | None = None) -> None:
        self.held[v] = Held("reg", self.level(v) if level is None else level, var=var, post=post)

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
            h.level,
            operand=h.operand,
            offset=offset if h.offset == "0" else f"{h.offset} + {offset}",
            base=h.base if h.base is not None else of,
        )

    def new_scratch(self, s: Space, dtype_bytes: int = 1) -> str:
        """A per-program scratch row for a block over ``s`` (the runtime allocates every program's
        rows: :attr:`scratch_bytes` each)."""
        offset = self.scratch_bytes
        self.scratch_bytes += s.pow2_block * dtype_bytes
        return f"scratch + pid_linear * {_SCRATCH} + {offset}"

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
        return KernelSource(self.name, self.label, self._assemble(), self.ks, self._size_args(), self.scratch_bytes, self.debug)

    def _note_debug(self, index: int, op: Operation) -> None:
        from mmfc.dialects.values import value_dtype

        for r_index, r in enumerate(op.results):
            h = self.held.get(r)
            if h is None or h.kind != "reg" or not isinstance(r.type, TensorType):
                continue
            dv = DebugValue(index, op.name, r_index, self.ks.of(r), str(value_dtype(r.type)), name=f"dbg{len(self.debug)}")
            self.debug.append(dv)
            self.emit(h.level, f"if DEBUG:", post=h.post)
            self.emit(h.level, INDENT + self._store_line(dv.name, r, h.var), post=h.post)

    def _store_line(self, ptr: str, v: SSAValue, var: str) -> str:
        s = self.feature(v)
        if s is None:
            return f"tl.store({ptr} + {self.row_offset(v, None)}, {var})"
        return f"tl.store({ptr} + {self.row_offset(v, self.offs(s))}, {var}, mask={self.mask(s)})"

    def _store_results(self) -> None:
        yield_op = self.kernel.body.block.last_op
        assert isinstance(yield_op, T.YieldOp)
        for i, (y, r) in enumerate(zip(yield_op.values, self.kernel.results)):
            h = self.held[y]
            var = self.value(y)
            self.emit(h.level, self._store_line(f"out{i}", r, var), post=h.post)

    def _size_args(self) -> list[Space]:
        return [s for s in self.ks.spaces if s.static is None]

    def _preamble(self) -> list[str]:
        grid = self.kernel.grid_sizes()
        lines = [f"pid{a} = tl.program_id({a})" for a in range(len(grid))]
        if grid:
            lin = "pid0"
            for a in range(1, len(grid)):
                lin = f"({lin}) * tl.num_programs({a}) + pid{a}"
            lines.append(f"pid_linear = {lin}")
        else:
            lines.append("pid_linear = 0")
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
        for s in self.ks.rows:
            if s.axis is not None:
                lines.append(f"lo_{s.name} = pid{s.axis} * {s.block}")
                lines.append(f"hi_{s.name} = tl.minimum(lo_{s.name} + {s.block}, {self.size(s)})")
            else:
                lines.append(f"lo_{s.name} = 0")
                lines.append(f"hi_{s.name} = {self.size(s)}")
        return lines

    def signature(self) -> list[str]:
        k = self.kernel
        args = [self.ptr(i) for i in range(len(k.inputs))]
        args += [f"out{i}" for i in range(len(k.results))]
        args += [dv.name for dv in self.debug]
        args += ["scratch"]
        args += [s.size_arg for s in self._size_args()]
        return args

    def _assemble(self) -> str:
        sizes = [s.size_arg for s in self._size_args()]
        lines = [f"@triton.jit(do_not_specialize={sizes!r})" if sizes else "@triton.jit"]
        lines.append(f"def {self.name}({', '.join([*self.signature(), 'DEBUG: tl.constexpr'])}):")
        body = [*self._preamble(), *self.code[0]]
        inner: list[str] = []
        for level in range(self.depth, 0, -1):
            s = self.ks.rows[level - 1]
            # inside loop ``level``: its rows' code, the next loop, then what comes after that loop
            content = self.code[level] + inner + self.post[level]
            inner = [f"for i_{s.name} in range(lo_{s.name}, hi_{s.name}):"]
            inner += [INDENT + line for line in content] or [INDENT + "pass"]
        body += inner + self.post[0]
        lines += [INDENT + line for line in body]
        return "\n".join(lines).replace(_SCRATCH, str(self.scratch_bytes)) + "\n"


def _is_float(t: Any) -> bool:
    from xdsl.dialects.builtin import AnyFloat

    return isinstance(t, TensorType) and isinstance(t.get_element_type(), AnyFloat)


def _label(kernel: T.KernelOp) -> str:
    attr = kernel.attributes.get("label")
    return getattr(attr, "data", None) or "kernel"


def generate_kernel(kernel: T.KernelOp, name: str) -> KernelSource:
    """The Triton source of ``kernel`` as function ``name``."""
    return Emitter(kernel, name).generate()


__all__ = ["DebugValue", "Emitter", "Held", "KernelSource", "generate_kernel", "python_name", "triton_dtype"]
