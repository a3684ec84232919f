"""The ``toy`` target: every op through mmfc's shared op semantics, kernels as whole tensors.

A target is three things (``mmfc.dialects.target``): options, ``build`` (the artifact's own files
and a record of what they depend on) and ``load`` (a runner). This one needs no code generation: its
runner walks each function's ops and computes each with ``semantics.evaluate``; a ``ternary.kernel``
is its body evaluated once on whole operands (programs of one launch never depend on each other, so
one program over everything computes what the grid computes).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp

from mmfc.dialects import ternary as T
from mmfc.dialects.diagnostics import UserError
from mmfc.dialects.dump import DumpWriter, OpRecord, label_of
from mmfc.dialects.target import Build, Features, Runner, Target, TargetOption, function_of, parse_bool
from mmfc.dialects.ternary.semantics import evaluate
from mmfc.dialects.values import as_output, coerce_input
from mmfc.dialects.weights import WeightStore

LISTING = "program.txt"
TOY_FORMAT = 1


def listing(module: ModuleOp) -> str:
    """One line per op each function runs (a kernel by its label)."""
    lines = []
    for fn in module.ops:
        if isinstance(fn, func.FuncOp):
            lines.append(f"@{fn.sym_name.data}")
            for op in fn.body.block.ops:
                if not isinstance(op, T.WeightOp | func.ReturnOp):
                    lines.append(f"  {op.name}" + (f" {label_of(op)}" if label_of(op) else ""))
    return "\n".join(lines) + "\n"


class ToyRunner(Runner):
    """Values are numpy arrays; each function runs op by op (see the module docstring)."""

    target = "toy"

    def __init__(self, module: ModuleOp, store: WeightStore) -> None:
        super().__init__(module, store)
        self.ops_run = 0

    @property
    def device(self) -> str:
        return "the toy evaluator (numpy, whole tensors)"

    def _weight(self, op: T.WeightOp) -> Any:
        raw = self.store.get(op.sym.string_value())  # type: ignore[union-attr]
        value, problem = coerce_input(np.float32(raw) if T.is_scale_type(op.result.type) else np.asarray(raw), op.result.type)
        if problem is not None:
            raise UserError(f"toy: weight @{op.sym.string_value()}: {problem}")
        return value

    def run(self, entry: str, *inputs: Any, dump_dir: str | Path | None = None) -> list[Any]:
        fn = function_of(self.module, entry)
        args = fn.body.block.args
        if len(inputs) != len(args):
            raise UserError(f"@{entry} takes {len(args)} inputs, got {len(inputs)}")
        env: dict[Any, Any] = {}
        for i, (arg, value) in enumerate(zip(args, inputs)):
            env[arg], problem = coerce_input(self.upload(value), arg.type)
            if problem is not None:
                raise UserError(f"@{entry}: input {i} has type {arg.type}: {problem}")
        dump = DumpWriter(dump_dir) if dump_dir is not None else None
        index = 0
        for op in fn.body.block.ops:
            if isinstance(op, func.ReturnOp):
                return [env[v] for v in op.operands]
            if isinstance(op, T.WeightOp):
                env[op.result] = self._weight(op)
                continue
            operands = [env[v] for v in op.operands]
            results = self._kernel(op, operands) if isinstance(op, T.KernelOp) else evaluate(op, *operands)
            env.update(zip(op.results, results))
            self.ops_run += 1
            if dump is not None:
                values = tuple(as_output(r) for r in results)
                dump(OpRecord(index, op.name, label_of(op), entry, None, values, ("",) * len(values)))
                index += 1
        raise UserError(f"@{entry} has no func.return")

    def _kernel(self, kernel: T.KernelOp, operands: list[Any]) -> tuple[Any, ...]:
        inner = dict(zip(kernel.body.block.args, operands))
        for op in kernel.body.block.ops:
            if isinstance(op, T.YieldOp):
                return tuple(inner[v] for v in op.values)
            inner.update(zip(op.results, evaluate(op, *(inner[v] for v in op.operands))))
        raise UserError(f"kernel {label_of(kernel)} has no ternary.yield")

    def report(self) -> dict[str, Any]:
        return {"ops_run": self.ops_run}


class ToyTarget(Target):
    """Whole-tensor evaluation through the shared op semantics (an example plugin)."""

    name = "toy"
    summary = "example plugin: every op through the shared semantics, kernels as whole tensors"
    features = Features(device="CPU (numpy, whole tensors)", unfused="runs")
    options = (
        TargetOption("listing", "write program.txt (the ops it runs) into the artifact", parse=parse_bool, default=True),
        TargetOption("strict", "refuse an artifact whose program.txt differs from its IR", parse=parse_bool, default=True, at="load"),
    )

    def build(self, module: ModuleOp, store: WeightStore, options: Mapping[str, Any]) -> Build:
        files = {LISTING: listing(module).encode()} if options.get("listing", True) else {}
        return Build(files, {"toy_format": TOY_FORMAT})

    def load(
        self,
        module: ModuleOp,
        store: WeightStore,
        folder: Path | None,
        record: Mapping[str, Any],
        options: Mapping[str, Any],
    ) -> Runner:
        if record.get("toy_format") != TOY_FORMAT:
            raise UserError(f"target toy: built by toy format {record.get('toy_format')!r}; this one reads {TOY_FORMAT}")
        if options.get("strict", True) and folder is not None and (folder / LISTING).is_file():
            if (folder / LISTING).read_text() != listing(module):
                raise UserError(f"target toy: {folder / LISTING} does not match the artifact's IR")
        return ToyRunner(module, store)
