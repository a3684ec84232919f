"""``mmfc compile ... --emit mlir -o OUT.mlir``: the upstream module for users with their own MLIR
pipeline, and what calling it needs, as three files written together (all or none):

* ``OUT.mlir``: the upstream module (``builtin.module @mmfc``; ``func``/``arith``/``math``/``tensor``/
  ``linalg.generic``/``scf``), verified by real MLIR before anything is written;
* ``OUT.weights.safetensors``: every weight argument under its name, as the functions take it
  (packed trits as the int8 bytes of ``tensor<Nx⌈K/P⌉xi8>``, scales as 0-d float32, norms and the
  embedding in their stored float type);
* ``OUT.weights.json``: the order of the weight arguments (each function takes its inputs, then
  these weights, in this order), their upstream types, and each entry point's inputs and outputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from xdsl.dialects.builtin import ModuleOp

from mmfc.dialects import ternary as T
from mmfc.dialects.weights import MemoryStore, WeightStore
from mmfc.backends.mlir.arguments import host_array, upstream_type
from mmfc.backends.mlir.compiler import module_text, verify_text
from mmfc.backends.mlir.lower import Lowered, lower_module

FORMAT = "mmfc-upstream-mlir"


@dataclass(frozen=True)
class Exported:
    """The paths written and what they hold."""

    mlir: Path
    weights: Path
    order: Path
    weight_count: int
    weight_bytes: int


def companion_paths(out: Path) -> tuple[Path, Path]:
    """``OUT.weights.safetensors`` and ``OUT.weights.json`` beside ``OUT.mlir``."""
    stem = out.name[: -len(".mlir")] if out.name.endswith(".mlir") else out.name
    return out.with_name(f"{stem}.weights.safetensors"), out.with_name(f"{stem}.weights.json")


def _weights_store(lowered: Lowered, store: WeightStore) -> MemoryStore:
    """A layer over ``store`` whose tensors under the argument names are the argument arrays; tensors
    already stored as the argument wants them (norms, scales, a bf16 embedding) stay in ``store``."""
    from mmfc.dialects.dtypes import of_element_type

    layer = MemoryStore(base=store)
    for w in lowered.weights:
        want = upstream_type(w.type)
        code = of_element_type(want.get_element_type())
        if not w.folded and code is not None and store.info(w.name).stored == code.code and not isinstance(w.type, T.PackedType):
            continue  # copied byte for byte (a bf16 tensor keeps its bf16 bytes)
        layer.put(w.name, host_array(lowered.weight_value(w, store), w.type, f"weight @{w.name}"), copy=False)
    return layer


def _order(lowered: Lowered, weights_file: str) -> dict[str, Any]:
    def arg(name: str, t: Any) -> dict[str, Any]:
        return {"name": name, "type": str(upstream_type(t))}

    weights = []
    for i, w in enumerate(lowered.weights):
        entry = arg(w.name, w.type) | {"index": i, "folded": w.folded}
        if isinstance(w.type, T.PackedType):
            entry["packed"] = {"format": w.type.format.data, "trits": list(w.type.get_shape())}
        weights.append(entry)
    entries = {}
    for name, plan in lowered.entries.items():
        fn = next(op for op in lowered.module.ops if getattr(op, "sym_name", None) and op.sym_name.data == name)
        hints = [a.name_hint or f"input{i}" for i, a in enumerate(fn.body.block.args[: len(plan.inputs)])]
        entries[name] = {
            "inputs": [arg(h, t) for h, t in zip(hints, plan.inputs)],
            "outputs": [str(upstream_type(t)) for t in plan.outputs],
        }
    return {"format": FORMAT, "module": "mmfc", "weights_file": weights_file, "entries": entries, "weights": weights}


def export_upstream(module: ModuleOp, store: WeightStore, out: str | Path) -> Exported:
    """Lower ``module`` and write the three files (module docstring) atomically."""
    from mmfc.dialects.files import atomic_files

    out = Path(out)
    weights_path, order_path = companion_paths(out)
    lowered = lower_module(module, store)
    text = module_text(lowered.module)
    verify_text(text)
    header = (
        f"// Upstream MLIR exported by mmfc. Every function takes its inputs, then the weights listed in\n"
        f"// {order_path.name} in that order (values in {weights_path.name}).\n"
    )
    layer = _weights_store(lowered, store)
    names = [w.name for w in lowered.weights]
    with atomic_files() as files:  # the weights streamed into their temporary file, then all three land
        saved = layer.save(weights_path, standalone=True, names=names, files=files)
        weight_bytes = sum(int(np.prod(saved.info(n).shape or (1,))) * _itemsize(saved.info(n).stored) for n in names)
        files.open(out, "w").write(header + text)
        files.open(order_path, "w").write(json.dumps(_order(lowered, weights_path.name), indent=1) + "\n")
    return Exported(out, weights_path, order_path, len(names), weight_bytes)


def _itemsize(code: str) -> int:
    from mmfc.dialects.dtypes import by_code

    known = by_code(code)
    return 1 if known is None else known.itemsize


__all__ = ["FORMAT", "Exported", "companion_paths", "export_upstream"]
