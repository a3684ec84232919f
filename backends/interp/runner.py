"""Run a module of the ternary dialect with numpy: the Python API of the reference interpreter.

::

    from mmfc.backends.interp import InterpRunner

    runner = InterpRunner(module, store)                   # store: a WeightStore, or None to resolve
    logits, *state = runner.run("prefill", ids, mask, *h0)  # the module's mmfc.weights attribute
    logits, state = runner.prefill(ids, mask)               # modules made by dialects.builder.build_model
    logits, state = runner.decode_step(next_ids, state)

Generation (greedy or sampled, one loop for every target) is ``mmfc.CompiledModel.generate``.

One runner serves every batch size and length: dynamic dims (``?``) take the sizes the inputs bring.
Weights are read once and kept (a decode loop reads each weight once).

Debug mode (see :mod:`mmfc.backends.interp.trace`): ``trace=callback`` (or a list of them) receives an
``OpRecord`` for each op of the function bodies as it finishes (a kernel as one op;
``trace_kernel_bodies=True`` adds every op inside a kernel, per program); ``debug_dump_dir=DIR``
writes them to ``DIR/<run>_<entry>/NNN_<op>.npy`` plus ``trace.jsonl`` (``run(..., dump_dir=D)``
writes one run's records straight into ``D``), in the dump format of :mod:`mmfc.dialects.dump`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.interpreter import Interpreter
from xdsl.interpreters.func import FuncFunctions

from mmfc.dialects.diagnostics import UserError
from mmfc.dialects.target import Runner
from mmfc.dialects.weights import WeightStore, resolve_store, set_mlir_path
from mmfc.backends.interp.errors import InterpError
from mmfc.backends.interp.functions import TernaryFunctions, supported_op_types
from mmfc.backends.interp.trace import Monitor
from mmfc.dialects.dump import DumpWriter, TraceCallback
from mmfc.dialects.values import as_output, coerce_input, value_dtype, value_shape


def make_interpreter(
    module: ModuleOp,
    store: WeightStore | None = None,
    *,
    check_coverage: bool = True,
    trace: TraceCallback | Sequence[TraceCallback] = (),
    trace_kernel_bodies: bool = False,
) -> tuple[Interpreter, TernaryFunctions, Monitor]:
    """An xDSL :class:`Interpreter` over ``module`` with the func and ternary implementations, and a
    :class:`Monitor` listener (result type checks, error location, tracing). Call functions with
    ``interpreter.call_op("name", args)``."""
    functions = TernaryFunctions(store=store, check_coverage=check_coverage)
    callbacks = [trace] if callable(trace) else list(trace)
    monitor = Monitor(functions, callbacks, trace_kernel_bodies=trace_kernel_bodies)
    interpreter = Interpreter(module, listeners=(monitor,))
    interpreter.register_implementations(FuncFunctions())
    interpreter.register_implementations(functions)
    return interpreter, functions, monitor


class InterpRunner(Runner):
    """Runs the functions of ``module`` on numpy inputs (see the module docstring); the runner of the
    ``interp`` target (:mod:`mmfc.backends.interp.target`): its device values are numpy arrays.

    ``store``: the weight store; None resolves the module's ``mmfc.weights`` attribute (relative to
    ``mlir_path`` when given, else to the path recorded by ``set_mlir_path``, else the current
    directory; a module without the attribute has no weights). ``verify``: verify the module first.
    ``check_coverage``: check that each kernel's programs write every result element exactly once.
    ``trace``, ``trace_kernel_bodies``, ``trace_weights``, ``debug_dump_dir``: the debug mode (module
    docstring; ``trace_weights`` also records each ``ternary.weight`` read).
    """

    def __init__(
        self,
        module: ModuleOp,
        store: WeightStore | None = None,
        mlir_path: str | Path | None = None,
        *,
        verify: bool = True,
        check_coverage: bool = True,
        trace: TraceCallback | Sequence[TraceCallback] = (),
        trace_kernel_bodies: bool = False,
        trace_weights: bool = False,
        debug_dump_dir: str | Path | None = None,
    ) -> None:
        super().__init__(module, store)
        if verify:
            module.verify()
        if store is None:
            if mlir_path is not None:
                set_mlir_path(module, mlir_path)
            store = resolve_store(module)
        self.module = module
        self.store = store
        self.debug_dump_dir = Path(debug_dump_dir) if debug_dump_dir is not None else None
        self._trace = [trace] if callable(trace) else list(trace)
        self.interpreter, self.functions, self.monitor = make_interpreter(
            module, store, check_coverage=check_coverage, trace_kernel_bodies=trace_kernel_bodies
        )
        self.monitor.trace_weights = trace_weights
        self.runs = 0
        self._checked: set[str] = set()

    target = "interp"

    @property
    def device(self) -> str:
        return "numpy interpreter on the CPU"

    # ------------------------------------------------------------------------------ entry points

    def entries(self) -> list[str]:
        """Names of the module's functions."""
        return [op.sym_name.data for op in self.module.ops if isinstance(op, func.FuncOp)]

    def function(self, entry: str) -> func.FuncOp:
        """The ``func.func @entry``; an :class:`InterpError` naming the available ones if absent."""
        for op in self.module.ops:
            if isinstance(op, func.FuncOp) and op.sym_name.data == entry:
                return op
        have = ", ".join(f"@{name}" for name in self.entries()) or "none"
        raise InterpError(f"no function @{entry} in the module (functions: {have})")

    def signature(self, entry: str) -> list[str]:
        """The input types of ``entry`` as text (for messages and ``--help``-like listings)."""
        return [str(t) for t in self.function(entry).function_type.inputs.data]

    # ------------------------------------------------------------------------------------ running

    def run(
        self,
        entry: str,
        *inputs: Any,
        trace: TraceCallback | Sequence[TraceCallback] = (),
        dump_dir: str | Path | None = None,
    ) -> list[np.ndarray]:
        """Run ``@entry`` on ``inputs`` (numpy arrays, one per argument); return its results.

        Inputs are checked against the argument types: count, rank, static dims and dtype (exact,
        except float arrays for ``bf16``/``f16``/``f64`` tensors and numbers for ``f32`` scalars),
        each mistake an :class:`InterpError`. Results are arrays (a scalar as a 0-d array).
        ``trace``/``dump_dir`` add debug callbacks for this run only (see the module docstring).
        Problems found while running (dims that disagree at run time, token ids out of range,
        weights that do not match the IR) are :class:`InterpError` (a ``UserError``) with ``.op``.
        """
        self.monitor.stack.clear()  # failing_op() must not name an op of an earlier run
        fn = self.function(entry)
        args = self._check_inputs(fn, inputs)
        self._check_supported(fn)
        callbacks = [*self._trace, *([trace] if callable(trace) else trace)]
        if dump_dir is not None:
            callbacks.append(DumpWriter(dump_dir))
        elif self.debug_dump_dir is not None:
            callbacks.append(DumpWriter(self.debug_dump_dir / f"{self.runs:03d}_{entry}"))
        self.runs += 1
        self.monitor.reset(callbacks)
        try:
            results = self.interpreter.call_op(fn, args)
        except UserError as exc:
            if isinstance(exc, InterpError) and exc.op is None:
                exc.op = self.monitor.failing_op()
            # xDSL notes the whole module, printed, on an exception raised inside an op: noise for a
            # user's mistake (internal errors keep it, to debug with)
            if hasattr(exc, "__notes__"):
                del exc.__notes__
            raise
        finally:
            self.functions.programs.clear()
        return [as_output(v) for v in results]

    def _check_inputs(self, fn: func.FuncOp, inputs: Sequence[Any]) -> tuple[Any, ...]:
        name = fn.sym_name.data
        types = fn.function_type.inputs.data
        if len(inputs) != len(types):
            noun = "input" if len(types) == 1 else "inputs"
            raise InterpError(f"@{name} takes {len(types)} {noun} ({_listing(types)}), got {len(inputs)}")
        args = []
        for i, (v, t) in enumerate(zip(inputs, types)):
            v, problem = coerce_input(v, t)
            if problem is not None:
                hint = fn.body.block.args[i].name_hint
                what = f"input {i}" + (f" ({hint})" if hint else "")
                raise InterpError(f"@{name}: {what} has type {t}: {problem}", input_index=i)
            args.append(v)
        return tuple(args)

    def _check_supported(self, fn: func.FuncOp) -> None:
        """Every op ``fn`` (and what it calls) runs must have an implementation: say which does not
        before running, rather than halfway through."""
        name = fn.sym_name.data
        if name in self._checked:
            return
        supported = supported_op_types()
        todo, seen = [fn], set()
        while todo:
            f = todo.pop()
            if f in seen:
                continue
            seen.add(f)
            for op in f.body.walk():
                if type(op) not in supported:
                    raise InterpError(f"the interpreter cannot run {op.name} (in @{f.sym_name.data})", op)
                if isinstance(op, func.CallOp):
                    todo.append(self.function(op.callee.string_value()))
        self._checked.add(name)

    # ----------------------------------------------------- conveniences for build_model's entries

    def _state_shapes(self, entry: str, first_state: int) -> list[tuple[int, ...] | None]:
        return [value_shape(t) for t in self.function(entry).function_type.inputs.data[first_state:]]

    def prefill(
        self,
        input_ids: Any,
        attention_mask: Any | None = None,
        state: Sequence[Any] | None = None,
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """``@prefill(input_ids [B, T], attention_mask [B, T], h_0..h_{L-1} [B, d])`` of a module made
        by ``build_model``: returns ``(logits [B, T, V], new state)``. The mask defaults to all ones
        and the state to zeros; ids and mask are taken as int64."""
        ids = np.asarray(input_ids, dtype=np.int64)
        if ids.ndim != 2:
            raise InterpError(f"prefill: input_ids must be [B, T], got shape {ids.shape}")
        mask = np.ones_like(ids) if attention_mask is None else np.asarray(attention_mask, dtype=np.int64)
        state = self._state_or_zeros("prefill", 2, ids.shape[0], state)
        logits, *new_state = self.run("prefill", ids, mask, *state)
        return logits, new_state

    def decode_step(self, input_ids: Any, state: Sequence[Any] | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        """``@decode_step(ids [B], h_0..)``: one token per row -> ``(logits [B, V], new state)``."""
        ids = np.asarray(input_ids, dtype=np.int64).reshape(-1)
        state = self._state_or_zeros("decode_step", 1, ids.shape[0], state)
        logits, *new_state = self.run("decode_step", ids, *state)
        return logits, new_state

    def _state_or_zeros(self, entry: str, first: int, batch: int, state: Sequence[Any] | None) -> list[Any]:
        shapes = self._state_shapes(entry, first)
        if state is not None:
            return [np.asarray(h, dtype=np.float32) for h in state]
        zeros = []
        for t, shape in zip(self.function(entry).function_type.inputs.data[first:], shapes):
            if shape is None or any(d < 0 for d in shape[1:]):
                raise InterpError(f"{entry}: cannot make a zero state for an argument of type {t}; pass state=")
            zeros.append(np.zeros((batch, *shape[1:]), dtype=value_dtype(t)))
        return zeros


def _listing(types: Sequence[Any]) -> str:
    return ", ".join(str(t) for t in types)


def run_module(
    module: ModuleOp, entry: str, *inputs: Any, store: WeightStore | None = None, **kwargs: Any
) -> list[np.ndarray]:
    """One-shot ``InterpRunner(module, store, **kwargs).run(entry, *inputs)``."""
    return InterpRunner(module, store, **kwargs).run(entry, *inputs)


__all__ = ["InterpRunner", "make_interpreter", "run_module"]
