"""The ``interp`` target: the numpy reference interpreter behind the backend interface.

It runs any ``ternary`` IR, unfused or fused, on the CPU with the golden semantics, so its artifact
needs nothing beside the IR and the weights: :meth:`InterpTarget.build` makes no files. Registered
under the ``mmfc.targets`` entry-point group like any plugin target (``pyproject.toml``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xdsl.dialects.builtin import ModuleOp

from mmfc.dialects.target import Build, Features, Target, TargetOption, parse_bool
from mmfc.dialects.weights import WeightStore


class InterpTarget(Target):
    """The numpy reference interpreter: the golden model every other target is checked against."""

    name = "interp"
    summary = "numpy reference interpreter (the golden model; any IR, fused or not)"
    features = Features(device="CPU (numpy)", unfused="runs")
    options = (
        TargetOption(
            "check_coverage",
            "check that each kernel's programs write every result element exactly once (slower)",
            parse=parse_bool,
            default=True,
            at="load",
        ),
        TargetOption(
            "trace_kernel_bodies",
            "debug dumps also record every op inside a kernel, once per program",
            parse=parse_bool,
            default=False,
            at="load",
        ),
    )

    def build(self, module: ModuleOp, store: WeightStore, options: Mapping[str, Any]) -> Build:
        return Build()

    def load(
        self,
        module: ModuleOp,
        store: WeightStore,
        folder: Path | None,
        record: Mapping[str, Any],
        options: Mapping[str, Any],
    ) -> Any:
        from mmfc.backends.interp.runner import InterpRunner

        return InterpRunner(
            module,
            store,
            check_coverage=bool(options.get("check_coverage", True)),
            trace_kernel_bodies=bool(options.get("trace_kernel_bodies", False)),
        )


__all__ = ["InterpTarget"]
