"""How fused ``ternary`` IR becomes ``accel`` instruction groups, tiled to an accelerator's SRAM.

The machinery of the ``lower-to-accel`` pass (``passes/lower_to_accel.py``), on the ground floor
because the simulator (``backends/sim``) lowers with it too, as the interpreter and the passes share
``ternary/tiling.py``.

**A kernel as a group.** :class:`KernelShape` analyses a ``ternary.kernel`` once: its operands
(activations moved per row, parameters moved once, ternary weights streamed in tiles), its *stream
axis* (the grid axis that splits the output features N of every accumulate's weight), and each body
op's instruction kind and size. :meth:`KernelShape.plan` then writes the group for ``tile_rows``
weight rows per tile:

1. the prologue: activation and parameter DMAs, then the body ops that do not vary along the
   stream axis (norms, quantization of the whole input row), once;
2. per tile ``t`` (rows ``[t*n, min((t+1)*n, N))`` of every weight): one weight DMA per accumulate
   into that accumulate's buffer ``t mod buffers`` (it waits for the accumulate of tile
   ``t - buffers``, the buffer's last reader: double buffering when ``buffers`` is 2), the
   accumulates, and the tile's vector work (dequantize, gates, a scan step);
3. a barrier on every result, then one DMA out per result.

Consecutive vector ops of one phase and size chain into one ``accel.vector``. The plan's SRAM budget
is the capacity less the weight buffers and the parameters; what is left holds activation rows
(:meth:`~mmfc.dialects.accel_schedule.GroupPlan.rows_per_pass`).

**The tiler.** For each kernel, the candidate tile sizes are the weights' N and every power of two
from :data:`MIN_TILE_ROWS` below it. A candidate *fits* when its weight buffers (two tiles of every
weight when the SRAM has two or more banks; one otherwise), the parameters and one activation row fit
in ``sram.capacity_bytes``. Among those that fit, the tiler keeps the one the schedule
(:mod:`mmfc.dialects.accel_schedule`, the simulator's own timing) finds fastest on the design rows
(``batch`` rows for a function without a time axis, ``batch * prompt_len`` with one; ties go to the
larger tile). The candidate set does not depend on the accelerator, so a design with more SRAM
chooses among a superset and is never slower at the design rows. Refused in one line naming the key:
an SRAM too small for the smallest tile (``sram.capacity_bytes``), accumulators too narrow for a
kernel's K (``tacc.accumulator_bits``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from xdsl.dialects import func
from xdsl.dialects.builtin import IntegerType, TensorType
from xdsl.ir import Attribute, Operation, SSAValue

from mmfc.dialects import ternary as T
from mmfc.dialects.accel import build_program
from mmfc.dialects.accel_schedule import VECTOR_KINDS, GroupPlan, Instr, group_cycles, packed_bytes
from mmfc.dialects.arch import Accelerator, ArchError
from mmfc.dialects.source import OpError

MIN_TILE_ROWS = 8
"""The smallest tile the tiler considers (a weight with fewer rows is one tile)."""

#: function-level ops that cost nothing on the accelerator (weights are streamed by the groups that
#: read them; the lower bounds are constants of the model)
_FREE = (T.WeightOp, T.LowerBoundsOp, T.RowOp)

_ELEM_BYTES = {"f32": 4, "f16": 2, "bf16": 2, "f64": 8}


def element_bytes(t: Attribute) -> int:
    """Bytes of one element of a value of type ``t`` (f32 for a scalar weight scale)."""
    if isinstance(t, TensorType):
        elem = t.get_element_type()
        if isinstance(elem, IntegerType):
            return max(1, elem.width.data // 8)
        return _ELEM_BYTES.get(str(elem), 4)
    return 4


def short_name(op: Operation) -> str:
    return op.name.removeprefix("ternary.")


@dataclass
class _BodyOp:
    """One body op: what it becomes (``tacc``, ``quantize``, ``vector``, ``scan_step``, ``scan``,
    ``view``), whether it varies along the stream axis, and its size: elements per activation row
    (``width`` of them scale with the tile width when it varies, else ``elements`` is exact)."""

    index: int
    op: Operation
    kind: str
    varies: bool
    elements: int = 0
    tile_dims: int = 0  # how many of its dims the stream axis splits (0 or 1)
    weight: str = ""  # an accumulate's weight symbol
    k: int = 0


@dataclass
class KernelShape:
    """A kernel, analysed once (module docstring); ``weights``: each weight operand's symbol."""

    kernel: T.KernelOp
    label: str
    index: int
    weights: dict[int, str]
    stream_axis: int = -1
    n_rows: int = 0  # the extent of the stream axis (output features N)
    acts: list[int] = field(default_factory=list)  # operand index -> act DMA
    act_bytes_per_row_in: list[tuple[int, int]] = field(default_factory=list)  # (per token row, per batch row)
    param_bytes: int = 0
    body: list[_BodyOp] = field(default_factory=list)
    result_bytes_per_row: list[tuple[int, int]] = field(default_factory=list)
    accum_k: dict[str, int] = field(default_factory=dict)  # weight symbol -> K

    @classmethod
    def analyse(
        cls, kernel: T.KernelOp, index: int, weight_symbols: dict[SSAValue, str], row_dims: int = 1
    ) -> KernelShape:
        """Analyse ``kernel`` (``index``: its group's position; ``weight_symbols``: function-level
        values read by ``ternary.weight`` -> their symbols; ``row_dims``: the dynamic dims of a token
        row, 2 for ``[B, T, ...]`` activations: a value with fewer is per batch row). Raises
        ``OpError`` for what the accel lowering does not support."""
        attr = kernel.attributes.get("label")
        label = getattr(attr, "data", None) or f"kernel {index}"
        block = kernel.body.block
        weights: dict[int, str] = {}
        for i, v in enumerate(kernel.inputs):
            if isinstance(v.type, T.PackedType | T.TritsType):
                sym = weight_symbols.get(v)
                if sym is None:
                    raise OpError(
                        kernel, f"kernel {label}: operand {i} is a ternary weight that is not read by ternary.weight"
                    )
                weights[i] = sym
        shape = cls(kernel, label, index, weights)
        splits = T.body_splits(kernel)
        arg_index = {arg: i for i, arg in enumerate(block.args)}
        # the stream axis: the grid axis splitting every accumulate's weight rows
        axes = set()
        for op in block.ops:
            if isinstance(op, T.AccumOp):
                i = arg_index.get(op.weight)
                if i is None or i not in weights:
                    raise OpError(
                        op, f"kernel {label}: the accel lowering needs each accumulate's weight to be a kernel operand"
                    )
                axes.add(kernel.input_tiles.data[i].axes()[0])
                shape.accum_k[weights[i]] = T.shape_of(kernel.inputs[i].type)[1]
                shape.n_rows = T.shape_of(kernel.inputs[i].type)[0]
        if axes:
            if len(axes) > 1 or None in axes:
                raise OpError(
                    kernel, f"kernel {label}: the accel lowering needs every accumulate's weight rows split by one grid axis"
                )
            shape.stream_axis = axes.pop()  # type: ignore[assignment]
        g = shape.stream_axis
        varies: dict[SSAValue, bool] = {}
        for i, (arg, v) in enumerate(zip(block.args, kernel.inputs)):
            varies[arg] = g >= 0 and g in kernel.input_tiles.data[i].axes()
            if i in weights:
                continue
            if _has_rows(v.type):
                shape.acts.append(i)
                shape.act_bytes_per_row_in.append(_row_bytes(v.type, row_dims))
            else:
                shape.param_bytes += _value_bytes(v.type)
        for index_in_body, op in enumerate(block.ops):
            if isinstance(op, T.YieldOp):
                break
            vary = any(varies.get(v, False) for v in op.operands)
            for r in op.results:
                varies[r] = vary
            name = short_name(op)
            result = op.results[0] if op.results else None
            axes_r = splits.get(result, ()) if result is not None else ()
            elements, tile_dims = _elements(result.type if result is not None else None, axes_r, g)
            if isinstance(op, T.AccumOp):
                i = arg_index[op.weight]
                kind, extra = "tacc", {"weight": weights[i], "k": T.shape_of(kernel.inputs[i].type)[1]}
            elif isinstance(op, T.QuantActOp):
                kind, extra = "quantize", {}
                elements, tile_dims = _elements(op.operands[0].type, splits.get(op.operands[0], ()), g)
            elif isinstance(op, T.ScanStepOp):
                kind, extra = "scan_step", {}
            elif isinstance(op, T.ScanOp):
                kind, extra = "scan", {}
            elif isinstance(op, T.SplitOp):
                kind, extra = "view", {}
            elif name in VECTOR_KINDS:
                kind, extra = "vector", {}
                if name in ("rmsnorm", "rms_normalize", "residual_rmsnorm", "gate_norm"):
                    elements, tile_dims = _elements(op.operands[0].type, splits.get(op.operands[0], ()), g)
            else:
                raise OpError(op, f"kernel {label}: {op.name} is not supported inside a kernel by the accel lowering")
            shape.body.append(_BodyOp(index_in_body, op, kind, vary, elements, tile_dims, **extra))
        yield_op = block.last_op
        assert yield_op is not None
        for r in kernel.outputs:
            shape.result_bytes_per_row.append(_row_bytes(r.type, row_dims))
        return shape

    # ------------------------------------------------------------------------------------ planning

    def tiles(self, tile_rows: int) -> list[tuple[int, int]]:
        """Weight rows ``[start, stop)`` of each tile (none without a stream axis)."""
        if self.stream_axis < 0:
            return []
        return [(s, min(s + tile_rows, self.n_rows)) for s in range(0, self.n_rows, tile_rows)]

    def weight_buffer_bytes(self, tile_rows: int, fmt: str, buffers: int) -> int:
        """SRAM the weight buffers take: ``buffers`` tiles of every accumulate's weight."""
        n = min(tile_rows, self.n_rows)
        return buffers * sum(packed_bytes(n, k, fmt) for k in self.accum_k.values())

    def act_bytes_per_row(self, tile_rows: int) -> int:
        """SRAM one activation row needs: inputs, results, and every intermediate (a varying one at
        one tile's width)."""
        width = min(tile_rows, self.n_rows) if self.stream_axis >= 0 else 0
        total = sum(a + b for a, b in (*self.act_bytes_per_row_in, *self.result_bytes_per_row))
        for b in self.body:
            if b.kind == "view" or not b.op.results:
                continue
            for r in b.op.results:
                elems = b.elements if not b.tile_dims else b.elements * width
                total += elems * element_bytes(r.type)
        return total

    def plan(self, tile_rows: int, fmt: str, buffers: int, sram_capacity: int) -> GroupPlan:
        """The group for ``tile_rows`` weight rows per tile (module docstring)."""
        instrs: list[Instr] = []
        producer: dict[SSAValue, int] = {}
        block = self.kernel.body.block

        def emit(ins: Instr) -> int:
            instrs.append(ins)
            return len(instrs) - 1

        for i, (per_row, per_batch) in zip(self.acts, self.act_bytes_per_row_in):
            producer[block.args[i]] = emit(Instr("dma_in", what="act", bytes_per_row=per_row, bytes_per_batch=per_batch))
        if self.param_bytes:
            param = emit(Instr("dma_in", what="param", bytes=self.param_bytes))
            for i, arg in enumerate(block.args):
                if i not in self.weights and i not in self.acts:
                    producer[arg] = param
        shared = [b for b in self.body if not b.varies]
        varying = [b for b in self.body if b.varies]
        self._emit_ops(shared, -1, 0, emit, producer, {}, instrs)
        outputs: list[int] = []
        last_reader: dict[str, dict[int, list[int]]] = {}  # weight -> tile -> its accumulates
        for t, (start, stop) in enumerate(self.tiles(tile_rows)):
            weight_dma: dict[str, int] = {}
            for sym, k in self.accum_k.items():
                deps = tuple(last_reader.get(sym, {}).get(t - buffers, ()))
                weight_dma[sym] = emit(Instr("dma_in", deps, what="weight", weight=sym, rows=(start, stop), k=k,
                                             buffer=t % buffers))
            tile_producer = dict(producer)
            self._emit_ops(varying, t, stop - start, emit, tile_producer, weight_dma, instrs, (start, stop), last_reader)
            outputs += [tile_producer[v] for v in block.last_op.operands if v in tile_producer]  # type: ignore[union-attr]
        outputs += [producer[v] for v in block.last_op.operands if v in producer]  # type: ignore[union-attr]
        done = emit(Instr("barrier", tuple(sorted(set(outputs))))) if outputs else None
        for per_row, per_batch in self.result_bytes_per_row:
            emit(Instr("dma_out", (done,) if done is not None else (), what="act", bytes_per_row=per_row,
                       bytes_per_batch=per_batch))
        weights = self.weight_buffer_bytes(tile_rows, fmt, buffers)
        return GroupPlan(
            self.label, self.index, self.stream_axis, tile_rows if self.stream_axis >= 0 else 1,
            self.act_bytes_per_row(tile_rows), max(0, sram_capacity - weights - self.param_bytes), tuple(instrs),
        )

    def _emit_ops(
        self,
        ops: list[_BodyOp],
        tile: int,
        width: int,
        emit: object,
        producer: dict[SSAValue, int],
        weight_dma: dict[str, int],
        instrs: list[Instr],
        rows: tuple[int, int] = (0, 0),
        last_reader: dict[str, dict[int, list[int]]] | None = None,
    ) -> None:
        """Emit the instructions of ``ops`` (one phase: shared when ``tile`` is -1, else tile ``tile``
        of ``width`` rows), chaining consecutive vector ops of one size."""
        assert callable(emit)
        chain: list[_BodyOp] = []

        def elements(b: _BodyOp) -> int:
            return b.elements * width if b.tile_dims else b.elements

        def deps_of(bs: list[_BodyOp]) -> tuple[int, ...]:
            inside = {r for b in bs for r in b.op.results}
            found = {producer[v] for b in bs for v in b.op.operands if v not in inside and v in producer}
            return tuple(sorted(found))

        def flush() -> None:
            if not chain:
                return
            idx = emit(Instr("vector", deps_of(chain), ops=tuple(short_name(b.op) for b in chain),
                             elements=elements(chain[0]), tile=tile, body=tuple(b.index for b in chain)))
            for b in chain:
                for r in b.op.results:
                    producer[r] = idx
            chain.clear()

        for b in ops:
            if b.kind == "vector":
                if chain and elements(chain[-1]) != elements(b):
                    flush()
                chain.append(b)
                continue
            flush()
            if b.kind == "view":
                for r in b.op.results:
                    if b.op.operands[0] in producer:
                        producer[r] = producer[b.op.operands[0]]
                continue
            deps = deps_of([b])
            if b.kind == "tacc":
                if tile < 0:
                    raise OpError(b.op, f"kernel {self.label}: an accumulate that does not vary along the stream axis")
                deps = tuple(sorted({*deps, weight_dma[b.weight]}))
                idx = emit(Instr("tacc", deps, weight=b.weight, rows=rows, k=b.k, tile=tile, body=(b.index,)))
                if last_reader is not None:
                    last_reader.setdefault(b.weight, {}).setdefault(tile, []).append(idx)
            else:
                idx = emit(Instr(b.kind, deps, elements=elements(b), tile=tile, body=(b.index,)))
            for r in b.op.results:
                producer[r] = idx
        flush()


def _has_rows(t: Attribute) -> bool:
    """Whether a function-level value has activation rows (a dynamic dim: batch, time)."""
    return isinstance(t, TensorType) and any(d == T.DYN for d in t.get_shape())


def _row_bytes(t: Attribute, row_dims: int) -> tuple[int, int]:
    """``(bytes per token row, bytes per batch row)`` of a function-level value: its static dims
    times the element size, per token row when it has ``row_dims`` dynamic dims, else per batch row."""
    if not isinstance(t, TensorType):
        return 0, 0
    shape = t.get_shape()
    b = math.prod(d for d in shape if d != T.DYN) * element_bytes(t)
    dynamic = sum(1 for d in shape if d == T.DYN)
    return (b, 0) if dynamic >= row_dims else (0, b)


def _value_bytes(t: Attribute) -> int:
    if isinstance(t, TensorType):
        return math.prod(t.get_shape()) * element_bytes(t)
    return 4


def _elements(t: Attribute | None, axes: tuple[int | None, ...], g: int) -> tuple[int, int]:
    """``(elements per row, tile dims)`` of a body value: static dims count, a dim the stream axis
    splits counts as the tile width (``tile dims`` 1), other dynamic dims are rows."""
    if t is None or not isinstance(t, TensorType):
        return 0, 0
    elements, tile_dims = 1, 0
    for d, a in zip(t.get_shape(), axes or (None,) * len(t.get_shape())):
        if g >= 0 and a == g:
            tile_dims = 1
        elif d != T.DYN:
            elements *= d
    return elements, tile_dims



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
            groups.append(embedding_group(op, len(groups), arch.sram.capacity_bytes))
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


def embedding_group(op: T.EmbeddingOp, index: int, sram_capacity: int) -> GroupPlan:
    """A gather: one table row per activation row in, the f32 row out."""
    table = op.operands[0]
    d = T.shape_of(table.type)[-1]
    row_in = d * element_bytes(table.type)
    row_out = d * 4
    instrs = (
        Instr("dma_in", what="table", bytes_per_row=row_in),
        Instr("dma_out", (0,), what="act", bytes_per_row=row_out),
    )
    return GroupPlan("embedding", index, -1, 1, row_in + row_out, sram_capacity, instrs)


__all__ = [
    "MIN_TILE_ROWS",
    "KernelShape",
    "candidates",
    "choose_tile_rows",
    "design_rows",
    "element_bytes",
    "has_time_axis",
    "lower_function",
    "plan_function",
    "short_name",
    "signature",
]
