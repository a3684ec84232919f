"""The ``triton`` target: generated Triton kernels for NVIDIA GPUs (or Triton's interpreter on a CPU).

:meth:`TritonTarget.build` generates ``kernels.py`` (one ``@triton.jit`` function per kernel op, and
the launch plan; see :mod:`.codegen`) and ``constants.safetensors`` (values folded from weights), and
records the Triton version and the plan format. Nothing is compiled at build time: Triton compiles
the generated source for the GPU it runs on at the first launch, so loading an artifact with another
Triton version or on another GPU recompiles (and says so); an artifact of another plan format is
refused. Unfused IR runs too: each function-level op becomes a kernel of its own.

This module imports neither torch nor Triton (the CLI reads every target's options).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xdsl.dialects.builtin import ModuleOp

from mmfc.dialects.target import Build, Features, Target, TargetOption, parse_bool
from mmfc.dialects.weights import WeightStore


def _device(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in ("auto", "cuda", "interpret"):
        raise ValueError("expected auto, cuda or interpret")
    return text


def _accumulate(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in ("auto", "add", "dot"):
        raise ValueError("expected auto, add or dot")
    return text


def _block(value: Any) -> int:
    block = int(value)
    if block < 1 or block & (block - 1):
        raise ValueError(f"must be a power of two, got {value}")
    return block


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
            "block_n",
            "output features per program of the fused kernels at -O2 (a power of two; more programs for small models)",
            parse=_block,
            default=16,
        ),
    )

    def pipeline(self, level: str, standard: str, options: Mapping[str, Any]) -> str:
        """The standard pipeline, its kernels cut into programs of ``block_n`` output features: a
        decode step reads each weight once, and a GPU needs several programs per multiprocessor."""
        block = int(options.get("block_n", 16))
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
        record = {"plan_format": PLAN_FORMAT, "triton": installed_triton(), "kernels": len(generated.kernels)}
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
        return TritonRunner(module, store, folder, options)


__all__ = ["TritonTarget"]
