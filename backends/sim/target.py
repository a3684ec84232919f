"""The ``sim`` target: a cycle-level simulator of a ternary accelerator described in TOML.

:meth:`SimTarget.build` lowers the final IR to ``accel`` programs for the accelerator of the ``arch``
option (``lower-to-accel``: tiled to its SRAM, double-buffered weight streams) and writes them to
``program.accel.mlir`` with the resolved description in ``arch.json``, so an artifact carries the
machine it was compiled for. :meth:`SimTarget.load` makes a :class:`~mmfc.backends.sim.runner.SimRunner`:
real values computed per tile through the shared semantics, and every call timed on the accelerator
(``CompiledModel.report()`` summarizes cycles, tokens/s, energy). Packed weights are packed in the
accelerator's format (``weights.format``) by ``-O2``.

Options: ``arch`` (compile time: a preset name, a ``.toml`` path, or, from Python, a mapping or an
``Accelerator``; default ``edge-fpga``), ``timing_only`` (load time: values once per kernel rather
than per tile), ``trace`` (load time: keep every instruction's events for a Perfetto trace).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xdsl.dialects.builtin import ModuleOp

from mmfc.dialects.arch import DEFAULT_ARCH, Accelerator, load_arch
from mmfc.dialects.diagnostics import UserError
from mmfc.dialects.target import Build, Features, Target, TargetOption, parse_bool
from mmfc.dialects.weights import WeightStore

PROGRAM_FILE = "program.accel.mlir"
ARCH_FILE = "arch.json"
PROGRAM_FORMAT = 1


def parse_arch_option(value: Any) -> Any:
    """The ``arch`` option: a preset name or ``.toml`` path (checked now, kept as given), or a
    mapping / ``Accelerator`` (kept as its resolved description, a JSON-ready mapping)."""
    try:
        arch = load_arch(value)
    except UserError as exc:
        raise ValueError(str(exc)) from None
    if isinstance(value, Accelerator | Mapping):
        return arch.to_dict()
    return str(value)


DESIGN_BATCH = 1
DESIGN_PROMPT_LEN = 64
"""The rows the tiler optimizes for: one sequence; prompts of 64 tokens (the programs run on any)."""


class SimTarget(Target):
    """A simulated ternary accelerator: real values, cycles, energy (module docstring)."""

    name = "sim"
    summary = "cycle-level simulator of a ternary accelerator described in TOML (values + timing + energy)"
    features = Features(device="simulated accelerator (numpy values, event-driven timing)", unfused="refuses")
    options = (
        TargetOption(
            "arch",
            "the accelerator: a preset (edge-fpga, asic, tereffic-hbm, or a plugin's) or a .toml file",
            parse=parse_arch_option,
            default=DEFAULT_ARCH,
            at="compile",
        ),
        TargetOption("timing_only", "compute each kernel's values once, not per tile (faster)", parse=parse_bool,
                     default=False, at="load"),
        TargetOption("trace", "keep every instruction's start and end for a Perfetto trace", parse=parse_bool,
                     default=False, at="load"),
    )

    def pipeline(self, level: str, standard: str, options: Mapping[str, Any]) -> str:
        fmt = load_arch(options.get("arch") or DEFAULT_ARCH).weight_format
        return standard.replace("pack-weights{format=2bit}", f"pack-weights{{format={fmt}}}")

    def check_module(self, module: ModuleOp, options: Mapping[str, Any]) -> None:
        from mmfc.dialects import ternary as T

        if not any(isinstance(op, T.KernelOp) for op in module.walk()):
            raise UserError("target sim runs fused IR (ternary.kernel ops): compile with -O2")

    def build(self, module: ModuleOp, store: WeightStore, options: Mapping[str, Any]) -> Build:
        arch = load_arch(options.get("arch") or DEFAULT_ARCH)
        name = arch.name or str(options.get("arch"))
        text = "\n".join(str(p) for p in lower_programs(module, arch)) + "\n"
        files = {PROGRAM_FILE: text.encode(), ARCH_FILE: json.dumps(arch.to_dict(), indent=1).encode()}
        return Build(files, {"program_format": PROGRAM_FORMAT, "arch": name})

    def load(
        self,
        module: ModuleOp,
        store: WeightStore,
        folder: Path | None,
        record: Mapping[str, Any],
        options: Mapping[str, Any],
    ) -> Any:
        from mmfc.backends.sim.runner import SimRunner

        if folder is None or not (folder / PROGRAM_FILE).is_file():
            raise UserError("target sim: the artifact has no program.accel.mlir (compile it again)")
        if record.get("program_format") != PROGRAM_FORMAT:
            raise UserError(f"{folder}: accel program format {record.get('program_format')!r}; this mmfc reads "
                            f"{PROGRAM_FORMAT} (compile the model again)")
        arch, programs = read_program(folder)
        return SimRunner(module, store, programs, arch, timing_only=bool(options.get("timing_only")),
                         trace=bool(options.get("trace")))


def lower_programs(module: ModuleOp, arch: Accelerator) -> list[Any]:
    """The ``accel.program`` of every function of ``module`` (``lower-to-accel`` at the design point)."""
    from xdsl.dialects import func

    from mmfc.dialects.accel_lowering import lower_function

    return [lower_function(f, arch, arch.name, DESIGN_BATCH, DESIGN_PROMPT_LEN) for f in module.ops
            if isinstance(f, func.FuncOp) and not f.is_declaration]


def lower_module(module: ModuleOp, arch: Accelerator) -> dict[str, list[Any]]:
    """Function name -> its group plans on ``arch`` (what a :class:`SimRunner` runs; the same plans
    :func:`lower_programs` prints, without building their IR)."""
    from xdsl.dialects import func

    from mmfc.dialects.accel_lowering import plan_function

    return {f.sym_name.data: plan_function(f, arch, DESIGN_BATCH, DESIGN_PROMPT_LEN) for f in module.ops
            if isinstance(f, func.FuncOp) and not f.is_declaration}


def read_program(folder: Path) -> tuple[Accelerator, dict[str, list[Any]]]:
    """The accelerator and the lowered programs (function -> group plans) of a build folder."""
    from mmfc.dialects.accel import ProgramOp, group_plan
    from mmfc.dialects.arch import parse_arch
    from mmfc.dialects.context import mmfc_context
    from mmfc.dialects.source import parse_module

    values = json.loads((folder / ARCH_FILE).read_text())
    arch = parse_arch(values, where=str(folder / ARCH_FILE))
    module, _ = parse_module(mmfc_context(), (folder / PROGRAM_FILE).read_text(), str(folder / PROGRAM_FILE))
    programs = {p.sym_name.data: [group_plan(g) for g in p.groups()] for p in module.walk() if isinstance(p, ProgramOp)}
    return arch, programs


__all__ = ["ARCH_FILE", "PROGRAM_FILE", "SimTarget", "lower_module", "lower_programs", "read_program"]
