"""Decode speed on the CPU: the iree-cpu target against a dense fp32 PyTorch baseline, in one run.

usage: python benchmarks/decode_cpu.py [--preset 370m] [--steps 64] [--threads 2] [--json out.json]

Both run the same model (the preset's random weights, seed 0), one token per step, batch 1, from the
state a short prompt left:

* **iree-cpu**: ``mmfc.compile(model, target="iree-cpu")`` (-O2: 2-bit packed trits, fused kernels,
  lowered to upstream MLIR and compiled by IREE for this CPU), stepped through
  ``CompiledModel.decode_step`` (the state stays in IREE's buffers);
* **dense fp32 PyTorch**: every BitLinear's weight dequantized once to a dense fp32 matrix
  ``trits * weight_scale``; a step quantizes the activations as the model does (RMSNorm, absmax int8)
  and multiplies by that matrix (``F.linear``: a BLAS sgemv), with ``torch.set_num_threads(threads)``.
  This is the strongest simple CPU baseline: nothing is re-quantized per call.

Reported: ms/token (median over ``--steps`` steps after a warm-up; also the mean and the fastest),
tokens/s, the weights each keeps in memory and the ternary weight bytes each reads per token, and
the machine load (``/proc/loadavg``) before and after, since other processes share the cores; the
two models step in alternating rounds so that a change of load hits both. Both models' prompt
logits are compared with the exact PyTorch model (relative RMS error and max difference).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def dense_baseline(model: Any) -> Any:
    """``model`` with each BitLinear replaced by its dequantized dense fp32 weight (module docstring)."""
    import torch
    from torch import nn

    from mmfc.frontends.torch import numerics as tn
    from mmfc.frontends.torch.modeling import BitLinear

    class DenseBitLinear(nn.Module):
        def __init__(self, layer: BitLinear) -> None:
            super().__init__()
            trits, scale = layer.ternary()
            self.norm = layer.norm
            self.weight = nn.Parameter((trits.to(torch.float32) * scale).contiguous(), requires_grad=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x_q, s_x = tn.quant_act(tn.rmsnorm(x, self.norm.weight, self.norm.eps))
            return nn.functional.linear(x_q.to(torch.float32) / s_x, self.weight)

    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, BitLinear):
                setattr(module, child_name, DenseBitLinear(child))
    return model


class Stepper:
    """Greedy decode steps of one model from a prompt's state, timed one by one."""

    def __init__(self, model: Any, prompt: Any) -> None:
        out = model.prefill(prompt)
        self.step, self.state = model.decode_step, out.state
        self.ids = out.logits[:, -1].argmax(-1)
        self.times: list[float] = []

    def run(self, steps: int, timed: bool = True) -> None:
        import torch

        for _ in range(steps):
            start = time.perf_counter()
            logits, self.state = self.step(self.ids, self.state)
            self.ids = torch.as_tensor(logits).argmax(-1)
            if timed:
                self.times.append(time.perf_counter() - start)


def summary(times: list[float]) -> dict[str, float]:
    ms = [t * 1e3 for t in times]
    return {"median_ms": statistics.median(ms), "mean_ms": statistics.fmean(ms), "min_ms": min(ms)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="370m")
    parser.add_argument("--steps", type=int, default=64, help="timed decode steps of each model (default 64)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="PyTorch threads (default: all cores)")
    parser.add_argument("--driver", default="local-task", help="the iree-cpu driver (local-task or local-sync)")
    parser.add_argument("--json", help="write the results here as JSON")
    args = parser.parse_args()

    import torch

    import mmfc
    from mmfc.models import HGRNBitForCausalLM
    from mmfc.testing import compare_logits

    torch.set_num_threads(args.threads)
    load_before = load_average()
    start = time.perf_counter()
    model = HGRNBitForCausalLM.from_preset(args.preset, seed=0).eval()
    build_s = time.perf_counter() - start
    prompt = torch.tensor([[1, 415, 10697, 7798]])
    with torch.no_grad():
        exact = model(prompt).logits
    start = time.perf_counter()
    compiled = mmfc.compile(model, target="iree-cpu", driver=args.driver)
    compile_s = time.perf_counter() - start
    from mmfc.stats import compile_stats

    iree_weight_bytes = compiled.runner.weight_bytes
    iree_ternary_bytes = compile_stats(compiled.module, compiled.runner.store)["ternary_weight_bytes"]
    with torch.no_grad():
        dense = dense_baseline(model)  # (replaces the BitLinears of `model` in place)
        dense_weight_bytes = sum(p.numel() * p.element_size() for p in dense.parameters())
        dense_ternary_bytes = sum(
            m.weight.numel() * m.weight.element_size() for m in dense.modules() if type(m).__name__ == "DenseBitLinear"
        )
        iree_check, dense_check = compare_logits(compiled(prompt).logits, exact), compare_logits(dense(prompt).logits, exact)
        # the two alternate in rounds, so that a change of the machine's load hits both alike
        iree_steps, dense_steps = Stepper(compiled, prompt), Stepper(dense, prompt)
        for stepper in (iree_steps, dense_steps):
            stepper.run(4, timed=False)
        rounds = 4
        for _ in range(rounds):
            for stepper in (iree_steps, dense_steps):
                stepper.run(max(1, args.steps // rounds))
    iree_times, dense_times = iree_steps.times, dense_steps.times
    load_after = load_average()

    iree, base = summary(iree_times), summary(dense_times)
    rows = [
        ("iree-cpu (2-bit trits, IREE llvm-cpu)", iree, iree_weight_bytes, iree_ternary_bytes),
        ("dense fp32 PyTorch (weights dequantized once)", base, dense_weight_bytes, dense_ternary_bytes),
    ]
    print(f"preset {args.preset}, batch 1, {args.steps} decode steps each; load average {load_before} -> {load_after}")
    print(f"{'':<48} {'ms/token':>9} {'mean':>7} {'min':>7} {'tok/s':>7} {'weights MB':>11} {'read/token MB':>14}")
    for name, s, total, ternary in rows:
        print(
            f"{name:<48} {s['median_ms']:>9.2f} {s['mean_ms']:>7.2f} {s['min_ms']:>7.2f} {1e3 / s['median_ms']:>7.1f} "
            f"{total / 1e6:>11.1f} {ternary / 1e6:>14.1f}"
        )
    speedup = base["median_ms"] / iree["median_ms"]
    print(
        f"speedup (median): {speedup:.2f}x   prompt logits against the exact PyTorch model: iree-cpu rel RMS "
        f"{iree_check.rel_rms:.2e} (max {iree_check.max_abs:.2e}), dense fp32 rel RMS {dense_check.rel_rms:.2e} "
        f"(max {dense_check.max_abs:.2e})"
    )
    print(f"(model built in {build_s:.1f} s, compiled for iree-cpu in {compile_s:.1f} s; torch threads {args.threads}, "
          f"iree driver {args.driver})")
    if args.json:
        result = {
            "preset": args.preset,
            "steps": args.steps,
            "iree_cpu": iree | {"weight_bytes": iree_weight_bytes, "ternary_bytes_per_token": iree_ternary_bytes},
            "dense_fp32": base | {"weight_bytes": dense_weight_bytes, "ternary_bytes_per_token": dense_ternary_bytes},
            "speedup_median": speedup,
            "logits_rel_rms": {"iree_cpu": iree_check.rel_rms, "dense_fp32": dense_check.rel_rms},
            "load_average": {"before": load_before, "after": load_after},
            "compile_s": compile_s,
            "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "python": platform.python_version()},
            "versions": {"torch": torch.__version__, **(runner_versions())},
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
        }
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def runner_versions() -> dict[str, Any]:
    from mmfc.backends.mlir.compiler import iree_versions

    return {f"iree-{k}": v for k, v in iree_versions().items()}


if __name__ == "__main__":
    sys.exit(main())
