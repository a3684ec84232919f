"""Lower a ``ternary`` module (fused or unfused) to an upstream MLIR module: ``func``, ``arith``,
``math``, ``tensor``, ``linalg.generic`` and ``scf`` only.

Every function keeps its name and its inputs, and takes the weights as further arguments: its
signature is ``@entry(inputs..., weights...)``, with the same weight list, in the same order, for
every function (:attr:`Lowered.weights`; the artifact's manifest lists it). Weights are never
inlined as constants: a runtime uploads them once and passes the same buffers at every call.

* ``ternary.weight`` becomes the weight argument of its symbol (types as :mod:`.arguments` says).
* An op whose operands are all weights (``lower_bounds`` and ``row`` of the stored parameter,
  ``quant_weight`` of a float master in unfused IR, ``unpack``) is *folded*: computed once, here,
  with the shared op semantics (``dialects.ternary.semantics``), and passed as a weight argument of
  its own (``Lowered.constants`` holds the values; its name says what it is, e.g.
  ``model.lower_bounds.lower_bounds.row3``).
* ``ternary.kernel`` is inlined: its body's ops are lowered on the kernel's whole operands (the grid
  is a schedule; IREE tiles the loops itself). Every other op is lowered by its rule in :mod:`.ops`.

``debug=True`` lowers the debug variant: every function also returns, after its own results, the
results of each op it runs (kernels whole, then each op of a kernel's body), in the order of
:attr:`EntryPlan.records`: what the debug dump records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue

from mmfc.dialects import ternary as T
from mmfc.dialects.diagnostics import UserError
from mmfc.dialects.weights import WeightStore
from mmfc.backends.mlir.arguments import upstream_type
from mmfc.backends.mlir.emit import Emitter
from mmfc.backends.mlir.ops import lower_op

#: the name of the upstream module (``builtin.module @mmfc``), which IREE's runtime calls it by
MODULE_NAME = "mmfc"


@dataclass(frozen=True)
class WeightArg:
    """One weight argument: ``name`` (the store's symbol, or a folded value's name), ``type`` (its
    ternary IR type), ``folded`` (computed by the lowering; its value is in ``Lowered.constants``)."""

    name: str
    type: Attribute
    folded: bool = False

    @property
    def arg_type(self) -> Attribute:
        return upstream_type(self.type)


@dataclass(frozen=True)
class DebugRecord:
    """One record of the debug variant's extra results: ``op`` name, kernel ``label`` (None outside
    kernels without one), ``body`` (position in its kernel's body; None for a function-level op) and
    ``types``, the ternary IR types of the op's results (one extra result each, in order)."""

    op: str
    label: str | None
    body: int | None
    types: tuple[Attribute, ...]


@dataclass
class EntryPlan:
    """A lowered function: its ternary input and output types (what callers pass and get), and, in
    the debug variant, the records its extra results hold."""

    name: str
    inputs: list[Attribute]
    outputs: list[Attribute]
    records: list[DebugRecord] = field(default_factory=list)


@dataclass
class Lowered:
    """The upstream module and what running it needs (module docstring)."""

    module: ModuleOp
    weights: list[WeightArg]
    constants: dict[str, Any]
    entries: dict[str, EntryPlan]

    def weight_value(self, arg: WeightArg, store: WeightStore) -> Any:
        """The host value of a weight argument, as :mod:`mmfc.dialects.values` holds it."""
        if arg.folded:
            return self.constants[arg.name]
        return read_weight(store, arg.name, arg.type)


def read_weight(store: WeightStore, sym: str, t: Attribute) -> Any:
    """A stored weight as the value of IR type ``t`` (a scale as ``np.float32``)."""
    raw = store.get(sym)
    if T.is_scale_type(t):
        return np.float32(raw) if not hasattr(t, "get_shape") else np.asarray(raw, dtype=np.float32)
    return np.asarray(raw)


def _label(op: Operation) -> str | None:
    attr = op.attributes.get("label")
    return attr.data if isinstance(attr, StringAttr) else None


class _Folding:
    """Which values of the module are weights or folded, their host values (read and computed on
    demand), and the weight arguments in first-use order."""

    def __init__(self, store: WeightStore | None) -> None:
        self.store = store
        self.names: dict[SSAValue, str] = {}  # weight or folded value -> argument name
        self.types: dict[str, Attribute] = {}
        self.folded: set[str] = set()
        self.values: dict[str, Any] = {}
        self.order: list[str] = []  # arguments actually used by lowered ops, first use first
        self.sources: dict[str, tuple[Operation, int]] = {}

    def add_weight(self, op: T.WeightOp) -> None:
        name = op.sym.string_value()
        known = self.types.get(name)
        if known is not None and known != op.result.type:
            raise UserError(f"weight @{name} is read as {known} and as {op.result.type}; the iree-cpu target passes one type")
        self.names[op.result] = name
        self.types[name] = op.result.type

    def foldable(self, op: Operation) -> bool:
        return bool(op.operands) and all(v in self.names for v in op.operands) and not isinstance(op, T.KernelOp)

    def add_folded(self, op: Operation) -> None:
        base = "+".join(self.names[v] for v in op.operands) + "." + op.name.removeprefix("ternary.")
        if isinstance(op, T.RowOp):
            base += f".row{op.index.value.data}"
        for i, r in enumerate(op.results):
            name = base if len(op.results) == 1 else f"{base}.{i}"
            self.names[r] = name
            self.types[name] = r.type
            self.folded.add(name)
            self.sources[name] = (op, i)

    def use(self, value: SSAValue) -> str:
        name = self.names[value]
        if name not in self.order:
            self.order.append(name)
        return name

    def value(self, name: str) -> Any:
        """The host value of a weight or folded value (computed once)."""
        if name not in self.values:
            if name in self.folded:
                from mmfc.dialects.ternary.semantics import evaluate

                op, i = self.sources[name]
                args = [self.value(self.names[v]) for v in op.operands]
                try:
                    results = evaluate(op, *args)
                except ValueError as exc:
                    raise UserError(f"{op.name} of weights: {exc}") from None
                for j, r in enumerate(op.results):
                    self.values[self.names[r]] = results[j]
            else:
                if self.store is None:
                    raise UserError(f"weight @{name} needs a weight store, but none was given")
                self.values[name] = read_weight(self.store, name, self.types[name])
        return self.values[name]


class _FunctionLowering:
    """Lowers one ``func.func`` (see :func:`lower_module`)."""

    def __init__(self, fn: func.FuncOp, folding: _Folding, debug: bool) -> None:
        self.fn = fn
        self.folding = folding
        self.debug = debug
        self.env: dict[SSAValue, SSAValue] = {}
        self.weight_uses: dict[str, SSAValue] = {}  # weight name -> its placeholder argument
        self.records: list[DebugRecord] = []
        self.debug_values: list[SSAValue] = []

    def lower(self) -> tuple[Block, list[SSAValue], list[Attribute]]:
        """The body block (inputs as arguments; weights added by the caller), its results."""
        inputs = list(self.fn.function_type.inputs.data)
        block = Block(arg_types=[upstream_type(t) for t in inputs])
        for arg, new in zip(self.fn.body.block.args, block.args):
            self.env[arg] = new
            if arg.name_hint:
                new.name_hint = arg.name_hint
        self.block = block
        e = Emitter.at_end(block)
        results: list[SSAValue] = []
        for op in self.fn.body.block.ops:
            if isinstance(op, T.WeightOp):
                continue  # weights are arguments; bound when first used
            if isinstance(op, func.ReturnOp):
                for v, t in zip(op.operands, self.fn.function_type.outputs.data):
                    results.append(e.cast(self._value(v), upstream_type(t)))
                break
            if isinstance(op, func.CallOp):
                raise UserError(f"the iree-cpu target cannot lower {op.name} (inline the callee first)")
            if self._is_folded(op):
                continue
            if isinstance(op, T.KernelOp):
                self._kernel(e, op)
            else:
                outs = lower_op(e, op, [self._value(v) for v in op.operands])
                self._bind(op.results, outs)
                self._record(op.name, None, None, op.results, outs)
        return block, results, list(self.fn.function_type.outputs.data)

    def _is_folded(self, op: Operation) -> bool:
        return bool(op.results) and all(r in self.folding.names for r in op.results)

    def _value(self, v: SSAValue) -> SSAValue:
        if v in self.env:
            return self.env[v]
        name = self.folding.use(v)  # a weight or folded value: a placeholder, made an argument later
        if name not in self.weight_uses:
            self.weight_uses[name] = self.block.insert_arg(upstream_type(self.folding.types[name]), len(self.block.args))
        self.env[v] = self.weight_uses[name]
        return self.env[v]

    def _bind(self, results: Any, values: list[SSAValue]) -> None:
        for r, v in zip(results, values):
            self.env[r] = v

    def _record(self, name: str, label: str | None, body: int | None, results: Any, values: list[SSAValue]) -> None:
        if self.debug:
            self.records.append(DebugRecord(name, label, body, tuple(r.type for r in results)))
            self.debug_values.extend(values)

    def _kernel(self, e: Emitter, kernel: T.KernelOp) -> None:
        label = _label(kernel)
        inner: dict[SSAValue, SSAValue] = {a: self._value(v) for a, v in zip(kernel.body.block.args, kernel.inputs)}
        body_records: list[tuple[str, int, Any, list[SSAValue]]] = []
        yielded: list[SSAValue] = []
        for index, op in enumerate(kernel.body.block.ops):
            if isinstance(op, T.YieldOp):
                yielded = [inner[v] for v in op.operands]
                break
            outs = lower_op(e, op, [inner[v] for v in op.operands])
            inner.update(zip(op.results, outs))
            body_records.append((op.name, index, op.results, outs))
        self._bind(kernel.outputs, yielded)
        self._record("ternary.kernel", label, None, kernel.outputs, yielded)
        for name, index, results, outs in body_records:
            self._record(name, label, index, results, outs)


def check_lowerable(module: ModuleOp) -> None:
    """A one-line ``UserError`` for IR the lowering cannot take (an op of another dialect, a call):
    checked before any work."""
    from mmfc.backends.mlir.ops import RULES

    known = (T.WeightOp, T.KernelOp, T.YieldOp, func.FuncOp, func.ReturnOp, *RULES)
    for op in module.walk():
        if op is module:
            continue
        if not isinstance(op, known):
            raise UserError(f"the iree-cpu target cannot lower {op.name}")


def lower_module(module: ModuleOp, store: WeightStore | None, *, debug: bool = False) -> Lowered:
    """The upstream module of ``module`` (module docstring). ``store`` holds the weights the folded
    ops read (None: nothing may be folded)."""
    folding = _Folding(store)
    fns = [op for op in module.ops if isinstance(op, func.FuncOp)]
    for op in module.ops:
        if not isinstance(op, func.FuncOp):
            raise UserError(f"the iree-cpu target cannot lower {op.name} at module level")
    for fn in fns:  # weights and foldable ops, in order (operands come first)
        for op in fn.body.block.ops:
            if isinstance(op, T.WeightOp):
                folding.add_weight(op)
            elif not isinstance(op, func.ReturnOp) and folding.foldable(op):
                folding.add_folded(op)
    lowered = []
    for fn in fns:
        fl = _FunctionLowering(fn, folding, debug)
        block, results, outputs = fl.lower()
        lowered.append((fn, fl, block, results, outputs))
    weights = [WeightArg(name, folding.types[name], name in folding.folded) for name in folding.order]
    funcs = []
    entries: dict[str, EntryPlan] = {}
    for fn, fl, block, results, outputs in lowered:
        # every function takes every weight, in one order: reorder this block's weight arguments
        n_inputs = len(fn.function_type.inputs.data)
        for w in weights:
            arg = block.insert_arg(w.arg_type, len(block.args))
            if w.name in fl.weight_uses:
                fl.weight_uses[w.name].replace_all_uses_with(arg)
        for old in list(block.args[n_inputs : len(block.args) - len(weights)]):
            block.erase_arg(old)
        e = Emitter.at_end(block)
        returned = results + (fl.debug_values if debug else [])
        e.insert(func.ReturnOp(*returned))
        arg_types = [a.type for a in block.args]
        funcs.append(func.FuncOp(fn.sym_name.data, (arg_types, [v.type for v in returned]), Region(block)))
        entries[fn.sym_name.data] = EntryPlan(fn.sym_name.data, list(fn.function_type.inputs.data), outputs, fl.records)
    constants = {w.name: folding.value(w.name) for w in weights if w.folded}
    return Lowered(ModuleOp(funcs, sym_name=StringAttr(MODULE_NAME)), weights, constants, entries)


__all__ = ["MODULE_NAME", "DebugRecord", "EntryPlan", "Lowered", "WeightArg", "check_lowerable", "lower_module", "read_weight"]
