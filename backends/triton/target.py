"""The ``triton`` target: generated Triton kernels for NVIDIA GPUs (or Triton's interpreter on a CPU).

:meth:`TritonTarget.build` generates ``kernels.py`` (one ``@triton.jit`` function per kernel op, and
the launch plan; see :mod:`.codegen`) and ``constants.safetensors`` (values folded from weights), and
records the plan format, the Triton version and the GPU of the machine that built it. Nothing is
compiled at build time: Triton compiles the generated source for the GPU it runs on at the first
launch, so loading an artifact with another Triton version or on another GPU recompiles (and says so
on stderr); an artifact of another plan format is refused in one line. Unfused IR runs too: each function-level op becomes a kernel of its own.

This module imports neither torch nor Triton (the CLI reads every target's options).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xdsl.dialects.builtin import ModuleOp

from mmfc.dialects.target import Build, Features, Target, TargetOption, parse_bool, parse_choice
from mmfc.dialects.weights import WeightStore


_device = parse_choice("auto", "cuda", "interpret")
_accumulate = parse_choice("auto", "add", "dot")


def _count(value: Any) -> int:
    n = int(value)
    if n < 0:
        raise ValueError(f"must be 0 or more, got {value}")
    return n


def _warps(value: Any) -> int:
    n = int(value)
    if n < 0 or n > 32 or n & (n - 1):
        raise ValueError(f"must be 0 (auto) or a power of two up to 32, got {value}")
    return n


GPU_BLOCK_N = 16
INTERPRETER_BLOCK_N = 256


def _block(value: Any) -> int | str:
    if str(value).strip().lower() == "auto":
        return "auto"
    block = int(value)
    if block < 1 or block & (block - 1):
        raise ValueError(f"must be a power of two, got {value}")
    return block


def current_gpu() -> str | None:
    """This machine's GPU and compute capability (``NVIDIA H200 (sm_90)``), or None without one; the
    generated source is compiled for it at the first launch."""
    import torch

    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability()
    return f"{torch.cuda.get_device_name()} (sm_{major}{minor})"


def installed_triton() -> str | None:
    try:
        from importlib.metadata import version

        return version("triton")
    except Exception:  # noqa: BLE001 - not installed
        return None


class TritonTarget(Target):
    """Generated Triton kernels: one launch per kernel op, weights packed, accumulation in int32."""

    name = "triton"
    summary = "generated Triton kernels (NVIDIA GPU; Triton's interpreter on a CPU)"
    features = Features(device="NVIDIA GPU (compiled Triton), or CPU (Triton interpreter)", unfused="runs (one kernel per op)")
    options = (
        TargetOption(
            "device",
            "where the kernels run: auto (the GPU when there is one, else the interpreter), cuda, interpret",
            parse=_device,
            default="auto",
            choices=("auto", "cuda", "interpret"),
            at="load",
        ),
        TargetOption("graphs", "replay decode steps from a CUDA graph per batch size (GPU only)", parse=parse_bool, default=True, at="load"),
        TargetOption(
            "accumulate",
            "how ternary accumulations run: auto, add (additions and subtractions), dot (int8 tensor-core dots)",
            parse=_accumulate,
            default="auto",
            choices=("auto", "add", "dot"),
            at="load",
        ),
        TargetOption(
            "gemv",
            "decode steps of at most 8 rows take the GEMV schedule where a kernel has it (weights held in "
            "registers, one row at a time, dp4a on a GPU); false: the schedule of prefill",
            parse=parse_bool,
            default=True,
            at="load",
        ),
        TargetOption(
            "rows_per_program",
            "rows each program walks in kernels whose rows may be split among programs (0: auto, whole blocks "
            "until a launch has about a thousand programs on a GPU, all rows in the interpreter)",
            parse=_count,
            default=0,
            at="load",
        ),
        TargetOption(
            "gemv_warps",
            "warps per program of the GEMV schedule (0: auto, by the widest block of the kernel)",
            parse=_warps,
            default=0,
            at="load",
        ),
        TargetOption("dp4a", "the GEMV schedule sums four byte products per dp4a instruction (GPU only)", parse=parse_bool,
                     default=True, at="load"),
        TargetOption(
            "block_n",
            "output features per program of the fused kernels at -O2 (a power of two, or auto: 16 when compiling "
            "on a machine with a GPU, where a decode step needs many programs, else 256, for the interpreter)",
            parse=_block,
            default="auto",
        ),
    )

    def pipeline(self, level: str, standard: str, options: Mapping[str, Any]) -> str:
        """The standard pipeline, its kernels cut into programs of ``block_n`` output features: a
        decode step reads each weight once, and a GPU needs several programs per multiprocessor."""
        block = options.get("block_n", "auto")
        if block == "auto":
            block = GPU_BLOCK_N if current_gpu() is not None else INTERPRETER_BLOCK_N
        cut = {
            "fuse-bitlinear": f"fuse-bitlinear{{block-n={block}}}",
            "fuse-recurrence": f"fuse-recurrence{{block-d={block}}}",
            "fuse-glu": f"fuse-glu{{block-n={block}}}",
        }
        return ",".join(cut.get(step, step) for step in standard.split(",")) if standard else standard

    def build(self, module: ModuleOp, store: WeightStore, options: Mapping[str, Any]) -> Build:
        from mmfc.backends.triton.codegen import PLAN_FORMAT, generate
        from mmfc.backends.triton.runtime import CONSTANTS_FILE, KERNELS_FILE

        generated = generate(module, store)
        files = {KERNELS_FILE: generated.source.encode()}
        if generated.constants:
            import numpy as np

            from mmfc.dialects.weights import MemoryStore

            with tempfile.TemporaryDirectory(prefix="mmfc-triton-") as tmp:
                path = Path(tmp) / CONSTANTS_FILE
                MemoryStore({k: np.asarray(v) for k, v in generated.constants.items()}).save(path, standalone=True)
                files[CONSTANTS_FILE] = path.read_bytes()
        record = {
            "plan_format": PLAN_FORMAT,
            "triton": installed_triton(),
            "gpu": current_gpu(),
            "kernels": len(generated.kernels),
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
        from mmfc.backends.triton.runtime import TritonRunner

        assert folder is not None
        here = installed_triton()
        built = record.get("triton")
        if built is not None and here is not None and built != here:
            sys.stderr.write(f"mmfc: note: kernels generated with Triton {built}; compiling them with Triton {here}\n")
        runner = TritonRunner(module, store, folder, options)
        gpu = current_gpu() if not runner.interpret else None
        if gpu is not None and record.get("gpu") not in (None, gpu):
            sys.stderr.write(f"mmfc: note: kernels generated on {record.get('gpu')}; Triton compiles them for {gpu}\n")
        return runner


__all__ = ["TritonTarget"]
