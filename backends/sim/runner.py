"""The runner of the ``sim`` target: real values per tile, and the accelerator's timing for each call.

Values: the function's ops run in order through the shared op -> numerics table
(:func:`mmfc.dialects.ternary.evaluate`), so the simulated machine produces real logits. A kernel runs
its body once per *tile*: one program of the kernel's grid with the block size of its stream axis
set to the group's ``tile_rows`` (block sizes are a schedule and never change values), vectorized
numpy on the tile; body ops that do not vary along the stream axis (the norm and quantization of the
whole input row) run once per kernel, as the accelerator's group prologue does. With
``timing_only``, each kernel runs as one program (values computed once per kernel, not per tile).

Timing: each call is timed by the :class:`~mmfc.backends.sim.engine.Engine` on its shape (batch,
and sequence length from the first input: ``[B, T]`` token ids, or ``[B]`` for a decode step) and
added to the runner's history, which :meth:`SimRunner.report` summarizes
(:mod:`mmfc.backends.sim.report`). :meth:`SimRunner.simulate` times a call without computing any
value (``mmfc sim --timing-only``, sweeps).

Debug mode (``run(..., dump_dir=D)``): the shared dump of :mod:`mmfc.dialects.dump`: each function-level
op (kernels with their whole results) and every kernel-body op with its whole value assembled over
the tiles (``body`` = its position), which ``mmfc.compare.check_kernel_ops`` checks per op.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import SSAValue

from mmfc.backends.sim.engine import CallTiming, Engine, nonzero_counter
from mmfc.dialects import numerics as nm
from mmfc.dialects import ternary as T
from mmfc.dialects.accel_schedule import GroupPlan
from mmfc.dialects.arch import Accelerator
from mmfc.dialects.diagnostics import UserError
from mmfc.dialects.dump import DumpWriter, OpRecord
from mmfc.dialects.target import Runner, function_of
from mmfc.dialects.values import as_output, coerce_input
from mmfc.dialects.weights import WeightStore


class SimRunner(Runner):
    """Runs a model on a simulated accelerator (module docstring).

    ``programs``: function name -> its lowered groups; ``arch``: the accelerator; ``timing_only``:
    compute each kernel's values once instead of per tile; ``trace``: keep every instruction's
    events for a Perfetto trace (:meth:`trace_events`)."""

    target = "sim"

    def __init__(
        self,
        module: ModuleOp,
        store: WeightStore,
        programs: Mapping[str, Sequence[GroupPlan]],
        arch: Accelerator,
        *,
        timing_only: bool = False,
        trace: bool = False,
    ) -> None:
        super().__init__(module, store)
        self.arch = arch
        self.programs = dict(programs)
        self.timing_only = timing_only
        nonzeros = nonzero_counter(self._trits) if arch.tacc.skip_zeros else None
        self.engine = Engine(self.programs, arch, nonzeros, trace=trace)
        self.history: list[CallTiming] = []
        self._weights: dict[str, Any] = {}

    @property
    def device(self) -> str:
        return f"simulated accelerator {self.arch.name or self.arch.source} ({self.arch.summary()})"

    # ------------------------------------------------------------------------------ timing

    def simulate(self, entry: str, batch: int, seq: int = 1) -> CallTiming:
        """Time one call of ``entry`` on ``batch`` sequences of ``seq`` tokens, values skipped, and
        add it to the history."""
        if entry not in self.programs:
            raise UserError(f"no function @{entry} in the lowered program (functions: {', '.join(self.programs)})")
        timing = self.engine.time_call(entry, batch, seq)
        self.history.append(timing)
        return timing

    def reset(self) -> None:
        """Forget the history (the next report starts from zero)."""
        self.history.clear()

    def report(self) -> dict[str, Any] | None:
        from mmfc.backends.sim.report import summarize

        return summarize(self.arch, self.history) if self.history else None

    def trace_events(self) -> list[tuple[str, str, str, int, int]]:
        """Every traced instruction of the history as ``(name, lane, group, start, end)`` in cycles
        from the first call's start (calls back to back)."""
        out = []
        clock = 0
        for call in self.history:
            out += [(n, lane, f"{call.entry}: {g}", s + clock, e + clock) for n, lane, g, s, e in call.events]
            clock += call.cycles
        return out

    # ------------------------------------------------------------------------------ values

    def run(self, entry: str, *inputs: Any, dump_dir: str | Path | None = None) -> list[np.ndarray]:
        fn = function_of(self.module, entry)
        types = fn.function_type.inputs.data
        if len(inputs) != len(types):
            raise UserError(f"@{entry} takes {len(types)} inputs, got {len(inputs)}")
        args = []
        for i, (v, t) in enumerate(zip(inputs, types)):
            v, problem = coerce_input(v, t)
            if problem is not None:
                raise UserError(f"@{entry}: input {i} has type {t}: {problem}")
            args.append(v)
        writer = DumpWriter(dump_dir) if dump_dir is not None else None
        results = self._run_function(fn, args, writer)
        self.simulate(entry, *rows_of(types[0] if types else None, np.shape(args[0]) if args else ()))
        return [as_output(r) for r in results]

    def _run_function(self, fn: func.FuncOp, args: list[Any], writer: DumpWriter | None) -> list[Any]:
        env: dict[SSAValue, Any] = dict(zip(fn.body.block.args, args))
        groups = self.programs.get(fn.sym_name.data, [])
        group = 0
        records = 0
        entry = fn.sym_name.data
        for op in fn.body.block.ops:
            if isinstance(op, func.ReturnOp):
                return [env[v] for v in op.operands]
            if isinstance(op, T.WeightOp):
                env[op.result] = self._weight(op)
                continue
            operands = [env[v] for v in op.operands]
            if isinstance(op, T.KernelOp):
                plan = groups[group] if group < len(groups) else None
                group += 1
                outs, body_values = self._run_kernel(op, operands, plan, want_body=writer is not None)
            else:
                if isinstance(op, T.EmbeddingOp):
                    group += 1
                    _check_ids(op, operands)
                outs, body_values = T.evaluate(op, *operands), {}
            env.update(zip(op.results, outs))
            if writer is not None:
                label = _label(op)
                writer(OpRecord(records, op.name, label, entry, None, tuple(np.asarray(o) for o in outs), ("",) * len(outs), op))
                records += 1
                for index, (body_op, values) in sorted(body_values.items()):
                    writer(OpRecord(records, body_op.name, label, entry, None, values, ("",) * len(values), body_op, body=index))
                    records += 1
        raise UserError(f"@{entry} has no func.return")

    def _weight(self, op: T.WeightOp) -> Any:
        sym = op.sym.string_value()
        key = f"{sym}:{op.result.type}"
        if key not in self._weights:
            raw = self.store.get(sym) if self.store is not None else None
            if raw is None:
                raise UserError(f"ternary.weight: @{sym} needs a weight store")
            t = op.result.type
            if T.is_scale_type(t):
                value: Any = T.weight_scale_value(raw, t)
            elif isinstance(t, T.PackedType):
                value = np.asarray(raw, dtype=np.uint8)
            elif isinstance(t, T.TritsType):
                value = np.asarray(raw, dtype=np.int8)
            else:
                value = np.asarray(raw, dtype=np.float32)
            self._weights[key] = value
        return self._weights[key]

    def _trits(self, sym: str) -> np.ndarray:
        """The trits of weight ``sym`` (for counting zeros), unpacked with the IR's format."""
        for op in self.module.walk():
            if isinstance(op, T.WeightOp) and op.sym.string_value() == sym:
                raw = self._weight(op)
                t = op.result.type
                if isinstance(t, T.PackedType):
                    return nm.unpack(raw, T.shape_of(t)[1], t.format.data)
                return np.asarray(raw)
        raise UserError(f"no weight @{sym} in the module")

    def _run_kernel(
        self, kernel: T.KernelOp, args: list[Any], plan: GroupPlan | None, want_body: bool
    ) -> tuple[tuple[Any, ...], dict[int, tuple[Any, tuple[np.ndarray, ...]]]]:
        """The kernel's results, computed tile by tile (module docstring), and with ``want_body``
        every body op's whole value: ``{position: (op, results)}``."""
        grid = kernel.grid_sizes()
        try:
            extents = T.grid_extents(kernel, [np.shape(v) for v in args])
        except T.GridError as exc:
            raise UserError(f"{kernel.name}: {exc}") from None
        stream = plan.stream_axis if plan is not None and not self.timing_only else -1
        blocks = tuple(
            (plan.tile_rows if g == stream and plan is not None else max(e, 1)) for g, e in enumerate(extents)
        )
        block = kernel.body.block
        in_axes = [tile.axes() for tile in kernel.input_tiles.data]
        splits = T.body_splits(kernel) if want_body or stream >= 0 else {}
        varies: dict[SSAValue, bool] = {}
        for arg, axes in zip(block.args, in_axes):
            varies[arg] = stream >= 0 and stream in axes
        body_ops = [op for op in block.ops if not isinstance(op, T.YieldOp)]
        for op in body_ops:
            vary = any(varies.get(v, False) for v in op.operands)
            for r in op.results:
                varies[r] = vary
        yield_op = block.last_op
        assert isinstance(yield_op, T.YieldOp)
        out_axes = [tile.axes() for tile in kernel.result_tiles.data]
        results: list[np.ndarray] | None = None
        whole: dict[SSAValue, np.ndarray] = {}
        shared: dict[SSAValue, Any] = {}
        for n, point in enumerate(T.program_points(blocks, extents)):
            bounds = T.program_bounds(point, blocks, extents)
            env: dict[SSAValue, Any] = dict(shared)
            for arg, v, axes in zip(block.args, args, in_axes):
                env[arg] = v if not any(a is not None for a in axes) else v[T.tile_index(axes, bounds)]
            for op in body_ops:
                if n > 0 and op.results and not varies[op.results[0]]:
                    continue  # computed once, by the first tile (the group's prologue)
                try:
                    outs = T.evaluate(op, *(env[v] for v in op.operands))
                except ValueError as exc:
                    raise UserError(f"{op.name}: {exc}") from None
                env.update(zip(op.results, outs))
                if n == 0:
                    shared.update((r, o) for r, o in zip(op.results, outs) if not varies[r])
            if want_body:
                for op in body_ops:
                    for r in op.results:
                        _place(whole, r, env[r], splits.get(r, ()), bounds, extents, n == 0 or varies[r])
            outs = [env[v] for v in yield_op.operands]
            if not grid:
                results = [np.asarray(o) if not np.isscalar(o) else o for o in outs]
                break
            if results is None:
                results = [np.empty(T.full_shape(axes, np.shape(o), extents), dtype=np.asarray(o).dtype)
                           for o, axes in zip(outs, out_axes)]
            for r, o, axes in zip(results, outs, out_axes):
                r[T.tile_index(axes, bounds)] = o
        assert results is not None
        body_values: dict[int, tuple[Any, tuple[np.ndarray, ...]]] = {}
        if want_body:
            for index, op in enumerate(body_ops):
                body_values[index] = (op, tuple(whole[r] for r in op.results))
        return tuple(results), body_values


def rows_of(t: Any, shape: tuple[int, ...]) -> tuple[int, int]:
    """``(batch, seq)`` of a call from its first argument: ``[B, T]`` token ids (two dynamic dims)
    are B sequences of T tokens, anything else B rows of one step."""
    from xdsl.dialects.builtin import TensorType

    dynamic = sum(d == T.DYN for d in t.get_shape()) if isinstance(t, TensorType) else 0
    batch = int(shape[0]) if len(shape) >= 1 else 1
    seq = int(shape[1]) if dynamic >= 2 and len(shape) >= 2 else 1
    return batch, seq


def _place(
    whole: dict[SSAValue, np.ndarray], r: SSAValue, value: Any, axes: tuple[int | None, ...], bounds: T.Bounds,
    extents: tuple[int, ...], write: bool,
) -> None:
    """Write one tile's value of body value ``r`` into its whole value (split dims assembled)."""
    value = np.asarray(value)
    if not any(a is not None for a in axes) or value.ndim == 0:
        if r not in whole:
            whole[r] = value
        return
    if r not in whole:
        whole[r] = np.empty(T.full_shape(axes, value.shape, extents), dtype=value.dtype)
    if write:
        whole[r][T.tile_index(axes, bounds)] = value


def _label(op: Any) -> str | None:
    attr = op.attributes.get("label")
    data = getattr(attr, "data", None)
    return data if isinstance(data, str) else None


def _check_ids(op: T.EmbeddingOp, operands: list[Any]) -> None:
    table, ids = operands
    v = np.shape(table)[0]
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= v):
        bad = ids[(ids < 0) | (ids >= v)].flat[0]
        raise UserError(f"ternary.embedding: token id {int(bad)} is out of range [0, {v})")


__all__ = ["SimRunner", "rows_of"]
