"""Run a compiled module with IREE's runtime: weights uploaded once, values kept on the device.

The runner loads the ``.vmfb`` into an IREE context on the ``local-task`` driver (a worker thread per
core) or ``local-sync`` (the caller's thread), and uploads every weight argument once, in the order
the lowering fixed (:class:`~.lower.WeightArg`), into one huge-page host mapping (:mod:`.arena`). ``run(entry, *inputs)`` passes the inputs (host
arrays are uploaded; the runner's own device arrays, e.g. the recurrent state a previous step
returned, are passed as they are) and then the same weight buffers, and returns IREE device
arrays: the state of a decode step stays on the device for the next one; only ``download`` copies to
the host.

Debug mode (``run(..., dump_dir=D)``) runs the debug variant of the module (lowered with
``debug=True`` and compiled on first use): it returns, after the results, every kernel's results
and every body op's whole results, which are written to ``D`` in the shared dump format.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.ir import Attribute

from mmfc.dialects import ternary as T
from mmfc.dialects.diagnostics import UserError
from mmfc.dialects.target import Runner
from mmfc.dialects.weights import WeightStore
from mmfc.backends.mlir.arguments import c_order, from_host_array, host_array, host_dtype, is_bf16
from mmfc.backends.mlir.lower import MODULE_NAME

DRIVERS = ("local-task", "local-sync")


@dataclass(frozen=True)
class WeightSpec:
    """One weight argument as a runner uploads it: its name, where its value comes from (``folded``:
    the build's constants, already in the argument's host representation; else the weight store) and,
    for a stored weight, its ternary IR type (None for a folded one)."""

    name: str
    type: Attribute | None
    folded: bool


def weight_types(module: ModuleOp) -> dict[str, Attribute]:
    """Symbol -> IR type of every ``ternary.weight`` of ``module``."""
    return {op.sym.string_value(): op.result.type for op in module.walk() if isinstance(op, T.WeightOp)}


class IreeRunner(Runner):
    """The runner of the ``iree-cpu`` target (module docstring).

    ``vmfb``: the compiled module (bytes, or the path of a file to map); ``weights``: the weight
    arguments in order; ``constants``: host values of the folded ones; ``driver``: ``local-task`` or
    ``local-sync``.
    """

    target = "iree-cpu"

    def __init__(
        self,
        module: ModuleOp,
        store: WeightStore,
        vmfb: bytes | Path,
        weights: Sequence[WeightSpec],
        constants: Mapping[str, Any],
        driver: str = "local-task",
    ) -> None:
        super().__init__(module, store)
        import iree.runtime as rt

        if driver not in DRIVERS:
            raise UserError(f"target iree-cpu: unknown driver {driver!r} (expected {' or '.join(DRIVERS)})")
        self.rt = rt
        self.driver = driver
        self.config = rt.Config(driver)
        self.hal_device = self.config.device
        self.context = rt.SystemContext(config=self.config)
        if isinstance(vmfb, Path):
            vm_module = rt.VmModule.mmap(self.context.instance, str(vmfb))
        else:
            vm_module = rt.VmModule.copy_buffer(self.context.instance, vmfb)
        self.context.add_vm_module(vm_module)
        self.functions = getattr(self.context.modules, MODULE_NAME)
        self.weight_specs = list(weights)
        self._upload_weights(constants)
        self._debug: Any = None  # (functions, plan) of the debug variant, made on first use
        self._input_types: dict[str, list[Attribute]] = {}
        self._ids_of: dict[str, list[tuple[int, int]]] = {}
        self._device_specs: dict[tuple[str, int], tuple[tuple[int, ...], np.dtype | None]] = {}

    @property
    def device(self) -> str:
        threads = "a worker thread per core" if self.driver == "local-task" else "the caller's thread"
        return f"IREE llvm-cpu on the host CPU ({self.driver}: {threads})"

    # ------------------------------------------------------------------------------ values

    def _upload_weights(self, constants: Mapping[str, Any]) -> None:
        """Every weight argument, in order, into one huge-page arena imported by IREE (:mod:`.arena`)."""
        from iree.runtime.dtypes import map_dtype_to_hal_element_type

        from mmfc.backends.mlir.arena import WeightArena

        arrays, element_types = [], []
        for w in self.weight_specs:
            array = c_order(constants[w.name]) if w.folded else self._stored_weight(w)
            arrays.append(array)
            bf16 = w.type is not None and is_bf16(w.type)
            element_types.append(int(self.rt.HalElementType.BFLOAT_16 if bf16 else map_dtype_to_hal_element_type(array.dtype)))
        self.arena = WeightArena(arrays)
        self.weight_bytes = self.arena.nbytes
        self.weights = self.arena.device_arrays(self.rt, self.hal_device, element_types)

    def _stored_weight(self, w: WeightSpec) -> np.ndarray:
        assert w.type is not None
        if self.store is None:
            raise UserError(f"weight @{w.name} needs a weight store, but none was given")
        raw = self.store.get(w.name)
        value = np.float32(raw) if T.is_scale_type(w.type) and not isinstance(w.type, TensorType) else raw
        return host_array(value, w.type, f"weight @{w.name}")

    def _device_array(self, array: np.ndarray, t: Attribute | None = None) -> Any:
        """A host array copied into a device buffer; a bf16 tensor's uint16 bits typed as bf16 (numpy
        has no bf16, and ``asdevicearray`` types a buffer by its numpy dtype)."""
        rt = self.rt
        array = c_order(array)
        if t is None or not is_bf16(t):
            return rt.asdevicearray(self.hal_device, array)
        view = self.hal_device.allocator.allocate_buffer_copy(
            memory_type=rt.MemoryType.DEVICE_LOCAL,
            allowed_usage=rt.BufferUsage.DEFAULT,
            device=self.hal_device,
            buffer=array,
            element_type=rt.HalElementType.BFLOAT_16,
        )
        return rt.DeviceArray(self.hal_device, view, override_dtype=array.dtype)

    def upload(self, value: Any) -> Any:
        if isinstance(value, self.rt.DeviceArray):
            return value
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        return self._device_array(np.asarray(value))

    def download(self, value: Any) -> np.ndarray:
        if isinstance(value, self.rt.DeviceArray):
            return np.asarray(value.to_host())
        return np.asarray(value)

    # ------------------------------------------------------------------------------ running

    def _inputs(self, entry: str, inputs: Sequence[Any]) -> list[Any]:
        from mmfc.dialects.values import coerce_input

        types = self._input_types.get(entry)
        if types is None:  # a UserError naming the functions if there is no such entry
            types = self._input_types[entry] = self.input_types(entry)
        if len(inputs) != len(types):
            noun = "input" if len(types) == 1 else "inputs"
            raise UserError(f"@{entry} takes {len(types)} {noun}, got {len(inputs)}")
        out = []
        for i, (v, t) in enumerate(zip(inputs, types)):
            if isinstance(v, self.rt.DeviceArray):
                problem = self._device_problem(entry, i, v)
                if problem is not None:
                    raise UserError(f"@{entry}: input {i} has type {t}: {problem}")
                out.append(v)
                continue
            if hasattr(v, "detach"):
                v = v.detach().cpu().numpy()
            value, problem = coerce_input(v, t)
            if problem is not None:
                raise UserError(f"@{entry}: input {i} has type {t}: {problem}")
            out.append(self._device_array(host_array(value, t, f"@{entry} input {i}"), t))
        self._check_ids(entry, inputs)
        return out

    def _device_problem(self, entry: str, index: int, v: Any) -> str | None:
        """Why a device array does not fit input ``index`` of ``entry`` (None when it does)."""
        key = (entry, index)
        want = self._device_specs.get(key)
        if want is None:
            from mmfc.backends.mlir.arguments import upstream_type

            t = self._input_types[entry][index]
            dims = tuple(upstream_type(t).get_shape())
            want = self._device_specs[key] = (dims, None if is_bf16(t) else host_dtype(t))
        dims, dtype = want
        shape = tuple(v.shape)
        if len(shape) != len(dims) or any(d != T.DYN and d != n for d, n in zip(dims, shape)):
            return f"a device array of shape {shape} does not fit"
        if dtype is not None and np.dtype(v.dtype) != dtype:
            return f"a device array of dtype {v.dtype} does not fit"
        return None

    def _check_ids(self, entry: str, inputs: Sequence[Any]) -> None:
        """Token ids must index the embedding table (an out-of-range gather reads any memory):
        checked on the host, as every target checks them."""
        for index, vocab in self._id_inputs(entry):
            ids = inputs[index]
            ids = self.download(ids) if isinstance(ids, self.rt.DeviceArray) else np.asarray(ids)
            if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
                bad = ids[(ids < 0) | (ids >= vocab)].flatten()[0]
                raise UserError(f"ternary.embedding: token id {int(bad)} is out of range [0, {vocab})")

    def _id_inputs(self, entry: str) -> list[tuple[int, int]]:
        """``(input index, vocabulary size)`` of each input of ``entry`` that an embedding gathers
        with (found once per entry: a decode step should not walk the IR)."""
        found = self._ids_of.get(entry)
        if found is None:
            from mmfc.dialects.target import function_of

            args = list(function_of(self.module, entry).body.block.args)
            found = [
                (args.index(op.ids), T.shape_of(op.table.type)[0])
                for op in function_of(self.module, entry).body.walk()
                if isinstance(op, T.EmbeddingOp) and op.ids in args
            ]
            self._ids_of[entry] = found
        return found

    def run(self, entry: str, *inputs: Any, dump_dir: str | Path | None = None) -> list[Any]:
        args = self._inputs(entry, inputs)
        if dump_dir is not None:
            return self._run_debug(entry, args, Path(dump_dir))
        results = getattr(self.functions, entry)(*args, *self.weights)
        return _as_list(results)

    # ------------------------------------------------------------------------------ debug mode

    def _run_debug(self, entry: str, args: list[Any], dump_dir: Path) -> list[Any]:
        from mmfc.dialects.dump import DumpWriter, OpRecord

        functions, plan = self._debug_variant()
        results = _as_list(getattr(functions, entry)(*args, *self.weights))
        n_out = len(self.output_types(entry))
        outputs, extra = results[:n_out], results[n_out:]
        writer = DumpWriter(dump_dir)
        position = 0
        for index, record in enumerate(plan.entries[entry].records):
            values = extra[position : position + len(record.types)]
            position += len(record.types)
            host = tuple(from_host_array(self.download(v), t) for v, t in zip(values, record.types))
            writer(OpRecord(index, record.op, record.label, entry, None, host, ("",) * len(host), body=record.body))
        return outputs

    def _debug_variant(self) -> Any:
        if self._debug is None:
            from mmfc.backends.mlir.compiler import compile_vmfb, module_text
            from mmfc.backends.mlir.lower import lower_module

            plan = lower_module(self.module, self.store, debug=True)
            names = [w.name for w in plan.weights]
            if names != [w.name for w in self.weight_specs]:
                raise UserError("target iree-cpu: the debug variant takes other weights than the module (compile again)")
            vm_module = self.rt.VmModule.copy_buffer(self.context.instance, compile_vmfb(module_text(plan.module)))
            context = self.rt.SystemContext(config=self.config)
            context.add_vm_module(vm_module)
            self._debug = (getattr(context.modules, MODULE_NAME), plan)
        return self._debug

    def close(self) -> None:
        self.weights = []
        self._debug = None
        self.arena = None


def _as_list(results: Any) -> list[Any]:
    if isinstance(results, tuple | list):
        return list(results)
    return [results]


__all__ = ["DRIVERS", "MODULE_NAME", "IreeRunner", "WeightSpec", "weight_types"]
