"""The interpreter's debug mode: record what each op computed, in the shared dump format.

While a run goes, the interpreter reports every *traced* op to the callbacks given as ``trace=``
(:class:`~mmfc.dialects.dump.OpRecord`: the op, its results, its position in the run). Traced ops are:

* every op of the function bodies (``ternary.kernel`` as one op, with its whole results), except
  ``ternary.weight`` (its result is a stored tensor, not a computation; ``trace_weights=True`` adds
  them) and terminators;
* with ``trace_kernel_bodies=True``, also every op inside a kernel body, once per program, with the
  program's grid point (``OpRecord.program``) and its tile-sized results.

:class:`~mmfc.dialects.dump.DumpWriter` writes the records to a dump folder; ``mmfc.compare`` finds
the first record where two runs (two backends) differ.
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.interpreter import Interpreter, PythonValues
from xdsl.ir import Operation
from xdsl.traits import IsTerminator

from mmfc.dialects import ternary as T
from mmfc.dialects.dump import OpRecord, TraceCallback, enclosing_func, label_of
from mmfc.dialects.values import as_output
from mmfc.backends.interp.functions import TernaryFunctions, check_results


class Monitor(Interpreter.Listener):
    """Watches every op the interpreter runs (an xDSL interpreter listener).

    Always: keeps the stack of ops being run (``failing_op()``: the innermost one when a run raised),
    and checks each op's results against its result types. With callbacks: builds an
    :class:`OpRecord` for each traced op (see the module docstring) and hands it to each callback.
    """

    def __init__(
        self,
        functions: TernaryFunctions,
        callbacks: Sequence[TraceCallback] = (),
        *,
        trace_kernel_bodies: bool = False,
        trace_weights: bool = False,
    ) -> None:
        self.functions = functions
        self.callbacks = list(callbacks)
        self.trace_kernel_bodies = trace_kernel_bodies
        self.trace_weights = trace_weights
        self.stack: list[Operation] = []
        self.count = 0

    def reset(self, callbacks: Sequence[TraceCallback] = ()) -> None:
        """Start a new run: empty stack, record indices from 0, these callbacks."""
        self.stack.clear()
        self.count = 0
        self.callbacks = list(callbacks)

    def failing_op(self) -> Operation | None:
        return self.stack[-1] if self.stack else None

    def will_interpret_op(self, op: Operation, args: PythonValues) -> None:
        self.stack.append(op)

    def did_interpret_op(self, op: Operation, results: PythonValues) -> None:
        check_results(op, results)
        self.stack.pop()
        if self.callbacks and self._traced(op):
            kernel = self.functions.programs[-1].kernel if self.functions.programs else None
            record = OpRecord(
                index=self.count,
                name=op.name,
                label=label_of(op) if kernel is None else label_of(kernel),
                func=enclosing_func(op),
                program=self.functions.programs[-1].point if self.functions.programs else None,
                results=tuple(as_output(v) for v in results),
                result_names=tuple(r.name_hint or "" for r in op.results),
                op=op,
                body=None if kernel is None else _body_position(kernel, op),
            )
            self.count += 1
            for callback in self.callbacks:
                callback(record)

    def _traced(self, op: Operation) -> bool:
        if op.has_trait(IsTerminator) or not op.results:
            return False
        if isinstance(op, T.WeightOp) and not self.trace_weights:
            return False
        return self.trace_kernel_bodies or not self.functions.programs



def _body_position(kernel: T.KernelOp, op: Operation) -> int:
    return next(i for i, inner in enumerate(kernel.body.block.ops) if inner is op)


__all__ = ["Monitor"]
