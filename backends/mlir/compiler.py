"""Upstream MLIR text: printed from xDSL, verified by real MLIR, compiled by IREE for this CPU.

* :func:`module_text` prints the lowered module (xDSL's printer writes syntax MLIR parses);
* :func:`verify_text` parses and verifies it with the MLIR that IREE ships
  (``iree.compiler.ir``); a failure is a bug of the lowering, reported with MLIR's diagnostics;
* :func:`compile_vmfb` compiles it to an IREE VM flatbuffer for ``llvm-cpu`` with the host CPU's
  features (:data:`COMPILE_FLAGS`);
* :func:`host_cpu_features` and :func:`iree_versions` are what an artifact records, so that
  loading it on another CPU or with another IREE is refused in one line.

IREE is imported inside the functions only.
"""

from __future__ import annotations

import io
import subprocess
from functools import cache
from pathlib import Path

from xdsl.dialects.builtin import ModuleOp
from xdsl.printer import Printer

from mmfc.dialects.diagnostics import UserError

#: ``iree-compile`` flags of the target (besides the device): code for the CPU it compiles on, with
#: all its features (AVX-512, VNNI, ...). The lowering shapes the loops; nothing else is tuned here.
COMPILE_FLAGS = (
    "--iree-hal-target-device=local",
    "--iree-hal-local-target-device-backends=llvm-cpu",
    "--iree-llvmcpu-target-cpu=host",
)


def module_text(module: ModuleOp) -> str:
    """The upstream module as MLIR text."""
    out = io.StringIO()
    Printer(stream=out).print_op(module)
    out.write("\n")
    return out.getvalue()


class MLIRVerifyError(Exception):
    """Real MLIR rejected the lowered module (a bug of the lowering, not of the user's model)."""


def verify_text(text: str) -> None:
    """Parse and verify ``text`` with MLIR (``iree.compiler.ir``); :class:`MLIRVerifyError` with the
    diagnostics if it does not parse or verify."""
    from iree.compiler import ir

    with ir.Context() as ctx:
        ctx.allow_unregistered_dialects = False
        try:
            module = ir.Module.parse(text)
        except ir.MLIRError as exc:
            raise MLIRVerifyError(f"MLIR does not parse the lowered module: {exc}") from None
        if not module.operation.verify():
            raise MLIRVerifyError("MLIR does not verify the lowered module")


def compile_vmfb(text: str, extra_flags: tuple[str, ...] = ()) -> bytes:
    """``text`` compiled by IREE for ``llvm-cpu`` on this host (:data:`COMPILE_FLAGS`)."""
    import iree.compiler as ic

    try:
        return bytes(ic.compile_str(text, extra_args=[*COMPILE_FLAGS, *extra_flags]))
    except ic.CompilerToolError as exc:
        raise MLIRVerifyError(f"iree-compile failed on the lowered module: {str(exc)[-4000:]}") from None


def iree_versions() -> dict[str, str | None]:
    """Installed versions of ``iree-base-compiler`` and ``iree-base-runtime`` (None if missing)."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for key, dist in (("compiler", "iree-base-compiler"), ("runtime", "iree-base-runtime")):
        try:
            found[key] = version(dist)
        except PackageNotFoundError:
            found[key] = None
    return found


def require_iree() -> None:
    """A one-line ``UserError`` when the IREE packages are not installed."""
    missing = [d for d, v in zip(("iree-base-compiler", "iree-base-runtime"), iree_versions().values()) if v is None]
    if missing:
        raise UserError(f"the iree-cpu target needs {' and '.join(missing)} (pip install 'mmfc[iree]')")


@cache
def host_cpu_features() -> tuple[str, ...] | None:
    """The CPU features IREE's runtime sees on this machine (``iree-cpuinfo``), sorted: what code
    compiled for this host may use. None when the tool is not there or fails (then only IREE's own
    check, when it loads the module, stands between a module and a CPU that lacks its features)."""
    import iree._runtime_libs as libs

    tool = Path(libs.__file__).parent / "iree-cpuinfo"
    try:
        out = subprocess.run([str(tool)], capture_output=True, text=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    features = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] == "1":
            features.append(parts[0])
    return tuple(sorted(features))


__all__ = [
    "COMPILE_FLAGS",
    "MLIRVerifyError",
    "compile_vmfb",
    "host_cpu_features",
    "iree_versions",
    "module_text",
    "require_iree",
    "verify_text",
]
