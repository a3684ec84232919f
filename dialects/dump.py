"""The debug dump: what each kernel (or op) of a run computed, in one format for every backend.

Every backend's debug mode writes this format, so that two runs (two backends, or one backend before
and after a change) can be compared record by record and the first kernel that differs found
(``mmfc.compare``). A run is a sequence of :class:`OpRecord`, one per traced op execution:

* function-level ops (``ternary.kernel`` as one op with its whole results; function-level
  ``embedding``, ``add``, ...), in execution order, ``program`` None, ``body`` None;
* optionally ops *inside* a kernel body (``body`` = the op's position in the body): either once per
  program with that program's tiles (``program`` = the grid point; the interpreter's
  ``trace_kernel_bodies``), or once per launch with the whole value assembled over the programs
  (``program`` None), which is what backends that do not run programs one by one record.

A dump is a folder: ``DIR/NNN_<op>[_<label>].npy`` per result (``NNN`` the record's index, ``<op>``
the op name without ``ternary.``, ``_<label>`` a kernel's label attribute, made file-name safe; a
record with several results writes ``NNN_<op>.0.npy``, ``NNN_<op>.1.npy``, ...) and ``DIR/trace.jsonl``,
one JSON object per record in order: ``index``, ``op``, ``label``, ``func``, ``program``, ``body``,
``results`` (file, SSA name, shape, dtype). Values are the host arrays of :mod:`mmfc.dialects.values`.
Records are appended as the run goes, so a run that fails leaves those up to the failing op.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.ir import Operation

JOURNAL = "trace.jsonl"


@dataclass(frozen=True)
class OpRecord:
    """One traced op execution.

    ``index``: 0-based position among the records of this run; ``name``: the op name
    (``ternary.kernel``); ``label``: the ``label`` attribute of the kernel the op is or lies in (None
    when there is none); ``func``: the enclosing function; ``program``: the grid point of a body op
    recorded per program (None otherwise); ``body``: the position of a body op in its kernel's body
    (None for a function-level op); ``results``: the computed values (host arrays; a scalar as a 0-d
    array); ``result_names``: the SSA names of the results where the IR has them (``%y`` -> ``y``),
    else ``""``; ``op``: the op itself (None for a record loaded from a dump).
    """

    index: int
    name: str
    label: str | None
    func: str
    program: tuple[int, ...] | None
    results: tuple[np.ndarray, ...]
    result_names: tuple[str, ...]
    op: Operation | None = None
    body: int | None = None

    @property
    def stem(self) -> str:
        """``NNN_<op>[_<label>]``: the file name stem of this record in a dump."""
        short = self.name.removeprefix("ternary.").replace(".", "_")
        label = f"_{_safe(self.label)}" if self.label else ""
        return f"{self.index:03d}_{short}{label}"

    @property
    def key(self) -> tuple[str, str | None, str, int | None, tuple[int, ...] | None]:
        """What identifies the record across runs: op name, label, function, body position, program."""
        return (self.name, self.label, self.func, self.body, self.program)

    def describe(self) -> str:
        where = f" program {self.program}" if self.program is not None else ""
        label = f" ({self.label})" if self.label else ""
        inside = f" body op {self.body} of" if self.body is not None else ""
        return f"#{self.index} {self.name}{label} in{inside} @{self.func}{where}"


TraceCallback = Callable[[OpRecord], None]
"""Receives each record of a run as it is made (a debug-mode hook of every backend's runner)."""


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:60]


def label_of(op: Operation) -> str | None:
    """The ``label`` attribute of ``op`` (a kernel's name in dumps and messages), or None."""
    attr = op.attributes.get("label")
    data = getattr(attr, "data", None)
    return data if isinstance(data, str) else None


def enclosing_func(op: Operation) -> str:
    """The name of the ``func.func`` that holds ``op`` (``?`` when none does)."""
    node: Operation | None = op
    while node is not None:
        if isinstance(node, func.FuncOp):
            return node.sym_name.data
        node = node.parent_op()
    return "?"


class TraceRecorder:
    """A trace callback that keeps every record (with copies of the results) in ``records``."""

    def __init__(self) -> None:
        self.records: list[OpRecord] = []

    def __call__(self, record: OpRecord) -> None:
        self.records.append(replace(record, results=tuple(np.array(r, copy=True) for r in record.results)))


class DumpWriter:
    """A trace callback writing the dump folder ``directory`` (module docstring).

    ``directory`` is created if missing; a ``trace.jsonl`` already there is replaced (one dump per run).
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / JOURNAL).write_text("")

    def __call__(self, record: OpRecord) -> None:
        files = []
        many = len(record.results) > 1
        for i, (value, name) in enumerate(zip(record.results, record.result_names)):
            fname = f"{record.stem}.{i}.npy" if many else f"{record.stem}.npy"
            value = np.asarray(value)
            np.save(self.directory / fname, value, allow_pickle=False)
            files.append({"file": fname, "name": name, "shape": list(value.shape), "dtype": str(value.dtype)})
        line: dict[str, Any] = {
            "index": record.index,
            "op": record.name,
            "label": record.label,
            "func": record.func,
            "program": list(record.program) if record.program is not None else None,
            "body": record.body,
            "results": files,
        }
        with open(self.directory / JOURNAL, "a", encoding="utf-8") as journal:
            journal.write(json.dumps(line) + "\n")


def load_dump(directory: str | Path) -> list[OpRecord]:
    """The records of a dump folder (results loaded from the ``.npy`` files)."""
    directory = Path(directory)
    records = []
    for line in (directory / JOURNAL).read_text().splitlines():
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
                body=entry.get("body"),
            )
        )
    return records


__all__ = [
    "JOURNAL",
    "DumpWriter",
    "OpRecord",
    "TraceCallback",
    "TraceRecorder",
    "enclosing_func",
    "label_of",
    "load_dump",
]
