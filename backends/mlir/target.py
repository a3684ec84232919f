"""The ``iree-cpu`` target: ternary IR lowered to upstream MLIR, compiled by IREE for this CPU.

:meth:`IreeCpuTarget.build` lowers the final IR (fused or unfused) to upstream ``func``/``arith``/
``math``/``tensor``/``linalg.generic``/``scf`` (:mod:`.lower`), verifies the text with real MLIR,
compiles it with ``iree-compile`` for ``llvm-cpu`` with the host's CPU features, and puts in the
artifact, under its checksums:

* ``model.vmfb``: the compiled module;
* ``upstream.mlir``: the upstream module it was compiled from (for users with their own pipeline);
* ``constants.safetensors``: the folded weight arguments (values computed from weights alone), as
  the runtime passes them, when there are any.

The record holds the IREE compiler and runtime versions, the CPU features it compiled for, and the
weight arguments in order (the functions take ``inputs..., weights...``). :meth:`load` refuses, in
one line, an artifact compiled with another IREE runtime or for CPU features this machine lacks.
IREE is imported only when this target builds or loads.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xdsl.dialects.builtin import ModuleOp

from mmfc.dialects.diagnostics import UserError
from mmfc.dialects.target import Build, Features, Target, TargetOption, parse_choice
from mmfc.dialects.weights import WeightStore

VMFB_FILE = "model.vmfb"
UPSTREAM_FILE = "upstream.mlir"
CONSTANTS_FILE = "constants.safetensors"
#: the layout of the build record and files; an artifact of another format is refused
PLAN_FORMAT = 1


_driver = parse_choice("local-task", "local-sync")


class IreeCpuTarget(Target):
    """Upstream MLIR through IREE on the host CPU (module docstring)."""

    name = "iree-cpu"
    summary = "upstream MLIR (linalg.generic) compiled by IREE for this CPU (llvm-cpu, host features)"
    features = Features(device="CPU (IREE llvm-cpu, host features)", unfused="runs")
    options = (
        TargetOption(
            "driver",
            "IREE driver: local-task (a worker thread per core) or local-sync (the caller's thread only)",
            parse=_driver,
            default="local-task",
            choices=("local-task", "local-sync"),
            at="load",
        ),
    )

    def check_module(self, module: ModuleOp, options: Mapping[str, Any]) -> None:
        from mmfc.backends.mlir.lower import check_lowerable

        check_lowerable(module)

    def build(self, module: ModuleOp, store: WeightStore, options: Mapping[str, Any]) -> Build:
        from mmfc.backends.mlir.compiler import (
            COMPILE_FLAGS,
            compile_vmfb,
            host_cpu_features,
            iree_versions,
            module_text,
            require_iree,
            verify_text,
        )
        from mmfc.backends.mlir.lower import lower_module

        require_iree()
        lowered = lower_module(module, store)
        text = module_text(lowered.module)
        verify_text(text)
        files = {VMFB_FILE: compile_vmfb(text), UPSTREAM_FILE: text.encode()}
        if lowered.constants:
            files[CONSTANTS_FILE] = _constants_file(lowered)
        record = {
            "plan_format": PLAN_FORMAT,
            "iree": iree_versions(),
            "compile_flags": list(COMPILE_FLAGS),
            "cpu_features": _listed(host_cpu_features()),
            "weights": [w.name for w in lowered.weights],
            "folded": [w.name for w in lowered.weights if w.folded],
        }
        return Build(files, record)

    def load(
        self,
        module: ModuleOp,
        store: WeightStore,
        folder: Path | None,
        record: Mapping[str, Any],
        options: Mapping[str, Any],
    ) -> Any:
        from mmfc.backends.mlir.compiler import host_cpu_features, iree_versions, require_iree
        from mmfc.backends.mlir.runtime import IreeRunner, WeightSpec, weight_types

        require_iree()
        assert folder is not None
        if record.get("plan_format") != PLAN_FORMAT:
            raise UserError(
                f"target iree-cpu: artifact of plan format {record.get('plan_format')!r}; this mmfc reads "
                f"{PLAN_FORMAT} (compile the model again)"
            )
        built = (record.get("iree") or {}).get("runtime")
        here = iree_versions()["runtime"]
        if built != here:
            raise UserError(
                f"target iree-cpu: the module was compiled for IREE runtime {built}, but IREE runtime {here} "
                "is installed (compile the model again)"
            )
        recorded, here_features = record.get("cpu_features"), host_cpu_features()
        missing = sorted(set(recorded) - set(here_features)) if recorded is not None and here_features is not None else []
        if missing:
            raise UserError(
                f"target iree-cpu: the module was compiled for CPU features this CPU lacks: {', '.join(missing)} "
                "(compile the model again on this machine)"
            )
        folded = set(record.get("folded", ()))
        constants: dict[str, Any] = {}
        if folded:
            from mmfc.dialects.weights import WeightStore as Store

            stored = Store.open(folder / CONSTANTS_FILE)
            constants = {name: stored.get(name) for name in folded}
        types = weight_types(module)
        specs = []
        for name in record.get("weights", ()):
            if name not in folded and name not in types:
                raise UserError(f"target iree-cpu: the module reads no weight @{name} (compile the model again)")
            specs.append(WeightSpec(name, None if name in folded else types[name], name in folded))
        return IreeRunner(module, store, folder / VMFB_FILE, specs, constants, str(options.get("driver", "local-task")))


def _listed(features: tuple[str, ...] | None) -> list[str] | None:
    return None if features is None else list(features)


def _constants_file(lowered: Any) -> bytes:
    """The folded weight arguments, as the runtime passes them, in a safetensors file."""
    import numpy as np

    from mmfc.backends.mlir.arguments import host_array
    from mmfc.dialects.weights import MemoryStore

    arrays = {w.name: host_array(lowered.constants[w.name], w.type, w.name) for w in lowered.weights if w.folded}
    with tempfile.TemporaryDirectory(prefix="mmfc-iree-") as tmp:
        path = Path(tmp) / CONSTANTS_FILE
        MemoryStore({k: np.asarray(v) for k, v in arrays.items()}).save(path, standalone=True)
        return path.read_bytes()


__all__ = ["CONSTANTS_FILE", "PLAN_FORMAT", "UPSTREAM_FILE", "VMFB_FILE", "IreeCpuTarget"]
