"""Debug mode: record what each op computed, to find the first kernel where two backends differ.

While a run goes, the interpreter reports every *traced* op to the callbacks given as ``trace=``
(:class:`OpRecord`: the op, its results, its position in the run). Traced ops are:

* every op of the function bodies (``ternary.kernel`` as one op, with its whole results), except
  ``ternary.weight`` (its result is a stored tensor, not a computation; ``trace_weights=True`` adds
  them) and terminators;
* with ``trace_kernel_bodies=True``, also every op inside a kernel body, once per program, with the
  program's grid point (``OpRecord.program``) and its tile-sized results.

:class:`DumpWriter` is such a callback: it writes each result to ``DIR/NNN_<op>.npy`` (``NNN`` the
record's index, ``<op>`` the op name without ``ternary.``, plus ``_<label>`` when a kernel has a
``label`` attribute; an op with several results writes ``NNN_<op>.0.npy``, ``NNN_<op>.1.npy``, ...)
and appends one JSON line per record to ``DIR/trace.jsonl`` (index, op, label, function, program,
result files with their SSA names, shapes and dtypes). Records are written as the run goes, so a
run that fails leaves the records up to the failing op. :func:`load_dump` reads a dump back, and
:func:`first_difference` walks two record lists (in memory or loaded) in order and returns the first
pair whose results differ: the first kernel to look at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.interpreter import Interpreter, PythonValues
from xdsl.ir import Operation
from xdsl.traits import IsTerminator

from mmfc.dialects import ternary as T
from mmfc.backends.interp.functions import TernaryFunctions, check_results
from mmfc.backends.interp.values import as_output


@dataclass(frozen=True)
class OpRecord:
    """One traced op execution.

    ``index``: 0-based position among the records of this run; ``name``: the op name
    (``ternary.kernel``); ``label``: a kernel's ``label`` attribute (None otherwise); ``func``: the
    enclosing function; ``program``: the grid point for an op inside a kernel body (None outside);
    ``results``: the computed values (arrays; a scalar as a 0-d array); ``result_names``: the SSA
    names of the results where the IR has them (``%y`` -> ``y``), else ``""``; ``op``: the op itself
    (None for a record loaded from a dump).
    """

    index: int
    name: str
    label: str | None
    func: str
    program: tuple[int, ...] | None
    results: tuple[np.ndarray, ...]
    result_names: tuple[str, ...]
    op: Operation | None = None

    @property
    def stem(self) -> str:
        """``NNN_<op>[_<label>]``: the file name stem of this record in a dump."""
        short = self.name.removeprefix("ternary.").replace(".", "_")
        label = f"_{_safe(self.label)}" if self.label else ""
        return f"{self.index:03d}_{short}{label}"

    def describe(self) -> str:
        where = f" program {self.program}" if self.program is not None else ""
        label = f" ({self.label})" if self.label else ""
        return f"#{self.index} {self.name}{label} in @{self.func}{where}"


TraceCallback = Callable[[OpRecord], None]


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:60]


def _label(op: Operation) -> str | None:
    attr = op.attributes.get("label")
    data = getattr(attr, "data", None)
    return data if isinstance(data, str) else None


def _enclosing_func(op: Operation) -> str:
    node: Operation | None = op
    while node is not None:
        if isinstance(node, func.FuncOp):
            return node.sym_name.data
        node = node.parent_op()
    return "?"


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
            record = OpRecord(
                index=self.count,
                name=op.name,
                label=_label(op),
                func=_enclosing_func(op),
                program=self.functions.programs[-1].point if self.functions.programs else None,
                results=tuple(as_output(v) for v in results),
                result_names=tuple(r.name_hint or "" for r in op.results),
                op=op,
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


class TraceRecorder:
    """A trace callback that keeps every record (with copies of the results) in ``records``."""

    def __init__(self) -> None:
        self.records: list[OpRecord] = []

    def __call__(self, record: OpRecord) -> None:
        copied = tuple(np.array(r, copy=True) for r in record.results)
        self.records.append(OpRecord(**{**record.__dict__, "results": copied}))


class DumpWriter:
    """A trace callback writing ``DIR/NNN_<op>.npy`` and ``DIR/trace.jsonl`` (module docstring).

    ``DIR`` is created if missing; a ``trace.jsonl`` already there is replaced (one dump per run).
    """

    JOURNAL = "trace.jsonl"

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / self.JOURNAL).write_text("")

    def __call__(self, record: OpRecord) -> None:
        files = []
        many = len(record.results) > 1
        for i, (value, name) in enumerate(zip(record.results, record.result_names)):
            fname = f"{record.stem}.{i}.npy" if many else f"{record.stem}.npy"
            np.save(self.directory / fname, value, allow_pickle=False)
            files.append({"file": fname, "name": name, "shape": list(value.shape), "dtype": str(value.dtype)})
        line = {
            "index": record.index,
            "op": record.name,
            "label": record.label,
            "func": record.func,
            "program": list(record.program) if record.program is not None else None,
            "results": files,
        }
        with open(self.directory / self.JOURNAL, "a", encoding="utf-8") as journal:
            journal.write(json.dumps(line) + "\n")


def load_dump(directory: str | Path) -> list[OpRecord]:
    """The records of a dump written by :class:`DumpWriter` (results loaded from the ``.npy`` files)."""
    directory = Path(directory)
    records = []
    for line in (directory / DumpWriter.JOURNAL).read_text().splitlines():
        if not line.strip():
            continue
        entry: dict[str, Any] = json.loads(line)
        results = tuple(np.load(directory / r["file"], allow_pickle=False) for r in entry["results"])
        records.append(
            OpRecord(
                index=entry["index"],
                name=entry["op"],
                label=entry["label"],
                func=entry["func"],
                program=tuple(entry["program"]) if entry["program"] is not None else None,
                results=results,
                result_names=tuple(r["name"] for r in entry["results"]),
            )
        )
    return records


@dataclass
class Difference:
    """The first pair of records that differ, and how (``why``)."""

    actual: OpRecord
    expected: OpRecord
    why: str
    max_abs: float = field(default=float("nan"))

    def __str__(self) -> str:
        return f"{self.actual.describe()} differs from {self.expected.describe()}: {self.why}"


def first_difference(
    actual: Sequence[OpRecord], expected: Sequence[OpRecord], *, rtol: float = 0.0, atol: float = 0.0
) -> Difference | None:
    """The first position where two traces differ: another op, another result count, shape or
    dtype, or values outside ``|a - e| <= atol + rtol * |e|`` (integers compared exactly when both
    tolerances are 0; NaN equals NaN). Returns None when the common prefix agrees."""
    for a, e in zip(actual, expected):
        if (a.name, a.label, a.program) != (e.name, e.label, e.program):
            return Difference(a, e, f"a different op ({a.describe()} vs {e.describe()})")
        if len(a.results) != len(e.results):
            return Difference(a, e, f"{len(a.results)} results vs {len(e.results)}")
        for i, (x, y) in enumerate(zip(a.results, e.results)):
            if x.shape != y.shape or x.dtype != y.dtype:
                return Difference(a, e, f"result {i}: {x.dtype}{list(x.shape)} vs {y.dtype}{list(y.shape)}")
            if x.size == 0:
                continue
            xf, yf = x.astype(np.float64), y.astype(np.float64)
            diff = np.abs(xf - yf)
            both_nan = np.isnan(xf) & np.isnan(yf)
            bad = ~both_nan & ~(diff <= atol + rtol * np.abs(yf))
            if np.any(bad):
                worst = float(np.nanmax(np.where(both_nan, 0.0, diff)))
                where = tuple(int(j) for j in np.argwhere(bad)[0])
                return Difference(
                    a, e, f"result {i} differs at {int(bad.sum())} elements (first at {where}, max |diff| {worst:.3g})", worst
                )
    return None


__all__ = [
    "Difference",
    "DumpWriter",
    "Monitor",
    "OpRecord",
    "TraceCallback",
    "TraceRecorder",
    "first_difference",
    "load_dump",
]
