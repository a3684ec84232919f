"""Decode and prefill of mmfc-triton on a GPU, side by side with what a user would pick instead.

usage: python benchmarks/decode_gpu.py --model 370m [--batch 1 8] [--prefill 2048] [--json FILE]
                                       [--systems mmfc,eager,dense] [--steps 200]

One process per model size (370m, 1.3b, 2.7b: the released shapes). The model is built directly as
random trits + scales from a seed (no float masters to fold), in the layout of a pre-quantized
checkpoint, and compiled for the triton target on this machine. Measured, in this order (so that
the memory figures of mmfc are those of a process that ran mmfc alone):

* ``mmfc``: artifact load time; time to first token after a 16-token prompt, cold (Triton compiles
  its kernels) and warm; decode ms/token (median of CUDA-graph replays after warm-up, per batch
  size); peak GPU memory of the decode phase after the prompt (``torch.cuda.max_memory_allocated``)
  and the device's used memory (``nvidia-smi``); launches per decode token (counted); prefill of
  ``--prefill`` tokens (median of warm runs);
* ``eager``: ``HGRNBitForCausalLM`` in fp16, eager, re-quantizing its weights on every call as the
  reference code does (decode and prefill);
* ``dense``: the same model with weights dequantized once to fp16, under ``torch.compile``, captured
  by hand in a CUDA graph and timed by replay (the replay is checked: it must follow new inputs and
  beat the un-captured compiled call); its prefill runs the recurrence as a chunked scan;
* ``roofline``: packed weight bytes / the device-to-device copy bandwidth measured in this run.

Prints a table; ``--json`` writes per system ``decode_ms`` (per batch), ``prefill_ms``,
``peak_bytes``, ``launches_per_token`` plus the GPU, driver and versions.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch


# ------------------------------------------------------------------------------------------ the model


def ternary_model(preset: str, seed: int, device: str) -> Any:
    """The released shape ``preset`` as a pre-quantized model: random trits (about a third zero),
    per-tensor scales near 0.02, norms near 1, a random embedding and lower bounds."""
    from mmfc.frontends.torch.config import preset_config
    from mmfc.frontends.torch.modeling import BitLinear, HGRNBitForCausalLM, RMSNorm

    config = preset_config(preset)
    model = HGRNBitForCausalLM.from_config(config, device="meta")
    model.quantize_()
    model = model.to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, BitLinear):
                module.weight.copy_(torch.randint(-1, 2, module.weight.shape, generator=gen, device=device, dtype=torch.int8))
                module.weight_scale.fill_(0.02)
            elif isinstance(module, RMSNorm):
                module.weight.copy_(1 + 0.1 * torch.randn(module.weight.shape, generator=gen, device=device))
        model.model.embeddings.weight.copy_(torch.randn(model.model.embeddings.weight.shape, generator=gen, device=device))
        model.model.lower_bounds.copy_(torch.randn(model.model.lower_bounds.shape, generator=gen, device=device))
    return model


def packed_bytes(model: Any) -> int:
    from mmfc.frontends.torch.modeling import BitLinear

    return sum(m.out_features * math.ceil(m.in_features / 4) for m in model.modules() if isinstance(m, BitLinear))


# ------------------------------------------------------------------------------------------ timing


def cuda_ms(fn: Callable[[], Any], repeats: int, warmup: int = 3, warm_s: float = 0.5) -> float:
    """Median milliseconds of ``fn`` over ``repeats`` runs, each between CUDA events, after at least
    ``warmup`` runs and ``warm_s`` seconds of them (an idle GPU clocks down: short kernels timed cold
    measure the clock ramp)."""
    start = time.perf_counter()
    done = 0
    while done < warmup or time.perf_counter() - start < warm_s:
        fn()
        done += 1
        if done % 16 == 0:
            torch.cuda.synchronize()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def copy_bandwidth_gbps() -> float:
    """Device-to-device copy bandwidth (bytes read + written per second) of a 4 GiB copy."""
    n = 1 << 31
    src = torch.empty(n, dtype=torch.uint8, device="cuda").random_()
    dst = torch.empty_like(src)
    ms = cuda_ms(lambda: dst.copy_(src), 10)
    del src, dst
    torch.cuda.empty_cache()
    return 2 * n / (ms * 1e-3) / 1e9


def smi_used_mib() -> int | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        pid, used = (x.strip() for x in line.split(","))
        if int(pid) == os.getpid():
            return int(used)
    return None


# ------------------------------------------------------------------------------------------ mmfc


def bench_mmfc(
    model: Any, batches: list[int], prefill: int, steps: int, measure_ttft: bool = True, options: dict[str, str] | None = None
) -> dict[str, Any]:
    """mmfc-triton; ``options``: the triton target's options (compile-time ones, such as ``block_n``,
    go to the compiler, load-time ones, such as ``gemv``, to the loader)."""
    import mmfc
    from mmfc.api import compile_artifact
    from mmfc.backends.triton.runtime import summarize_profile
    from mmfc.targets import get_target

    at = {o.name: o.at for o in get_target("triton").options}
    options = dict(options or {})
    unknown = sorted(set(options) - set(at))
    if unknown:
        raise SystemExit(f"unknown triton option(s) {unknown}; known: {sorted(at)}")
    build = {k: v for k, v in options.items() if at[k] != "load"}
    run = {k: v for k, v in options.items() if at[k] == "load"}
    out: dict[str, Any] = {"options": options}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        compile_artifact(model, Path(tmp) / "art", target="triton", **build)
        out["compile_s"] = round(time.perf_counter() - start, 2)
        torch.cuda.synchronize()
        start = time.perf_counter()
        compiled = mmfc.load(Path(tmp) / "art", **run)
        torch.cuda.synchronize()
        out["load_s"] = round(time.perf_counter() - start, 3)
    runner = compiled.runner
    out["device"] = runner.device
    vocab = compiled.config["vocab_size"]
    prompt = torch.randint(0, vocab, (1, 16), device="cuda")
    ttft = []
    for _ in range(2 if measure_ttft else 0):  # cold (Triton compiles the prefill kernels), then warm
        torch.cuda.synchronize()
        start = time.perf_counter()
        first = compiled(prompt).logits[:, -1].argmax(-1)
        first.item()
        ttft.append((time.perf_counter() - start) * 1e3)
    if ttft:
        out["ttft_cold_ms"], out["ttft_warm_ms"] = round(ttft[0], 2), round(ttft[1], 2)
    out["decode_ms"] = {}
    for b in batches:
        ids = torch.randint(0, vocab, (b, 16), device="cuda")
        state = compiled(ids).state
        nxt = torch.randint(0, vocab, (b,), device="cuda")
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        launches = runner.launch_count
        logits, state = compiled.decode_step(nxt, state)  # builds the workspace, captures the graph
        values = list(state.values)
        launches = runner.launch_count - launches
        ms = cuda_ms(lambda: runner.run("decode_step", nxt, *values), steps)
        out["decode_ms"][str(b)] = round(ms, 4)
        if b == batches[0]:
            torch.cuda.synchronize()
            out["peak_bytes"] = torch.cuda.max_memory_allocated()
            out["launches_per_token"] = launches
            out["nvidia_smi_used_mib"] = smi_used_mib()
            out["profile"] = summarize_profile(runner.profile("decode_step", nxt, *[v.clone() for v in values]))
    if prefill:
        ids = torch.randint(0, vocab, (1, prefill), device="cuda")
        out["prefill_ms"] = round(cuda_ms(lambda: compiled(ids), 3, warmup=1), 2)
    del compiled, runner
    torch.cuda.empty_cache()
    return out


# ------------------------------------------------------------------------------------------ baselines


def bench_eager(model: Any, batches: list[int], prefill: int, steps: int) -> dict[str, Any]:
    """``HGRNBitForCausalLM`` in fp16 with float masters, re-quantized at every call."""
    from mmfc.frontends.torch import numerics as tn
    from mmfc.frontends.torch.modeling import BitLinear

    eager = ternary_model_like(model, torch.float16)
    original = BitLinear.ternary

    def every_call(self: BitLinear) -> Any:  # no cache: quantize on the fly, as the reference does
        return tn.quant_weight(self.weight)

    BitLinear.ternary = every_call  # type: ignore[method-assign]
    try:
        out: dict[str, Any] = {"decode_ms": {}}
        vocab = model.config.vocab_size
        for b in batches:
            ids = torch.randint(0, vocab, (b, 16), device="cuda")
            state = eager(ids).state
            nxt = torch.randint(0, vocab, (b,), device="cuda")
            out["decode_ms"][str(b)] = round(cuda_ms(lambda: eager.decode_step(nxt, state), max(5, steps // 20)), 3)
        if prefill:
            ids = torch.randint(0, vocab, (1, prefill), device="cuda")
            out["prefill_ms"] = round(cuda_ms(lambda: eager(ids), 1, warmup=1), 1)
        torch.cuda.synchronize()
        out["peak_bytes"] = torch.cuda.max_memory_allocated()
    finally:
        BitLinear.ternary = original  # type: ignore[method-assign]
    del eager
    torch.cuda.empty_cache()
    return out


def ternary_model_like(model: Any, dtype: torch.dtype) -> Any:
    """The same model with float masters (trits * scale) in ``dtype``, quantized again at every call
    (which gives back the same trits; the scale shrinks, a pitfall that matters not for timing)."""
    from mmfc.frontends.torch.modeling import HGRNBitForCausalLM

    copy = HGRNBitForCausalLM.from_config(model.config, device="meta").to_empty(device="cuda")
    ternary = model.state_dict()
    masters = {}
    for name in copy.state_dict():
        t = ternary[name]
        masters[name] = t.float() * ternary[name + "_scale"] if t.dtype == torch.int8 else t
    copy.load_state_dict(masters)
    return copy.to(dtype)


class Dense:
    """The model with every ternary matrix dequantized once to fp16 (``trits * scale``), activations
    fake-quantized to 8 bits per token as the model does, the recurrence as a chunked scan."""

    def __init__(self, model: Any) -> None:
        from mmfc.frontends.torch.modeling import BitLinear

        self.cfg = model.config
        half = torch.float16
        self.emb = model.model.embeddings.weight.to(half)
        lb = torch.softmax(model.model.lower_bounds.float(), 0)
        self.lbs = (lb.cumsum(0) - lb[0]).to(half)
        self.layers = []
        for layer in model.model.layers:
            def proj(m: BitLinear) -> tuple[torch.Tensor, torch.Tensor]:
                return (m.weight.to(half) * m.weight_scale.to(half)).contiguous(), m.norm.weight.to(half)

            att, mlp = layer.attn, layer.mlp
            w_ifg = torch.cat([proj(att.i_proj)[0], proj(att.f_proj)[0], proj(att.g_proj)[0]])
            self.layers.append({
                "attn_norm": layer.attn_norm.weight.to(half), "ifg": w_ifg,
                "ifg_norms": [proj(att.i_proj)[1], proj(att.f_proj)[1], proj(att.g_proj)[1]],
                "g_norm": att.g_norm.weight.to(half), "o": proj(att.o_proj), "mlp_norm": layer.mlp_norm.weight.to(half),
                "gate": proj(mlp.gate_proj), "down": proj(mlp.down_proj),
            })
        self.norm = model.model.norm.weight.to(half)
        self.head = proj(model.lm_head)

    @staticmethod
    def rms(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6).to(x.dtype) * g

    @staticmethod
    def fq(x: torch.Tensor) -> torch.Tensor:
        s = 127.0 / x.abs().amax(-1, keepdim=True).clamp(min=1e-5)
        return (x * s).round().clamp(-128, 127) / s

    @classmethod
    def bitlinear(cls, x: torch.Tensor, w: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(cls.fq(cls.rms(x, g)), w)

    @classmethod
    def layer(
        cls, x: torch.Tensor, h: torch.Tensor, lb: torch.Tensor, attn_norm: torch.Tensor, w_ifg: torch.Tensor,
        n_i: torch.Tensor, n_f: torch.Tensor, n_g: torch.Tensor, g_norm: torch.Tensor, o_w: torch.Tensor,
        o_n: torch.Tensor, mlp_norm: torch.Tensor, gate_w: torch.Tensor, gate_n: torch.Tensor, down_w: torch.Tensor,
        down_n: torch.Tensor, scan: Callable[..., Any],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer, a function of tensors only: ``torch.compile`` compiles it once for every layer
        (they share shapes), instead of tracing the 24 to 32 layers unrolled."""
        d = x.shape[-1]
        a = cls.rms(x, attn_norm)
        ifg = torch.cat([cls.fq(cls.rms(a, n)) for n in (n_i, n_f, n_g)], -1)
        i, f, g = (torch.nn.functional.linear(ifg[..., j * d:(j + 1) * d], w_ifg[j * d:(j + 1) * d]) for j in range(3))
        f = lb + (1 - lb) * torch.sigmoid(f)
        i = torch.nn.functional.silu(i) * (1 - f)
        hs, last = scan(i, f, h)
        o = cls.rms(g, g_norm) * torch.nn.functional.silu(hs)
        r = x + cls.bitlinear(o, o_w, o_n)
        m = cls.rms(r, mlp_norm)
        gate, up = cls.bitlinear(m, gate_w, gate_n).chunk(2, -1)
        return r + cls.bitlinear(torch.nn.functional.silu(gate) * up, down_w, down_n), last

    def layer_args(self, index: int) -> list[torch.Tensor]:
        p = self.layers[index]
        return [
            self.lbs[index], p["attn_norm"], p["ifg"], *p["ifg_norms"], p["g_norm"], *p["o"], p["mlp_norm"], *p["gate"], *p["down"],
        ]

    def __call__(self, ids: torch.Tensor, h: list[torch.Tensor], layer: Callable[..., Any], head: Callable[..., Any]) -> Any:
        x = self.emb[ids]
        new_h = []
        for index in range(len(self.layers)):
            x, last = layer(x, h[index], *self.layer_args(index))
            new_h.append(last)
        return head(x, self.norm, *self.head), new_h

    @classmethod
    def final(cls, x: torch.Tensor, norm: torch.Tensor, w: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        return cls.bitlinear(cls.rms(x, norm), w, n)


def step_scan(i: torch.Tensor, f: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    h = f * h + i
    return h, h


def chunked_scan(i: torch.Tensor, f: torch.Tensor, h: torch.Tensor, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """``h_t = f_t h_{t-1} + i_t`` over [B, T, d]: within chunks in parallel (log-space cumulative
    products), across chunks in order."""
    b, t, d = i.shape
    out = []
    for c0 in range(0, t, chunk):
        fi, ii = f[:, c0:c0 + chunk].float(), i[:, c0:c0 + chunk].float()
        logf = torch.log(fi.clamp(min=1e-20)).cumsum(1)
        decay = torch.exp(logf)  # prod_{r<=t} f_r
        scaled = ii * torch.exp(-logf)
        hs = decay * (h.float()[:, None] + scaled.cumsum(1))
        out.append(hs.to(i.dtype))
        h = hs[:, -1].to(i.dtype)
    return torch.cat(out, 1), h


def bench_dense(model: Any, batches: list[int], prefill: int, steps: int) -> dict[str, Any]:
    dense = Dense(model)
    vocab, d, layers = model.config.vocab_size, model.config.hidden_size, model.config.num_hidden_layers
    head = torch.compile(Dense.final)
    step_layer = torch.compile(functools.partial(Dense.layer, scan=step_scan))
    compiled_step = lambda ids, h: dense(ids, h, step_layer, head)  # noqa: E731
    out: dict[str, Any] = {"decode_ms": {}, "graph_check": {}}
    for b in batches:
        ids = torch.randint(0, vocab, (b,), device="cuda")
        h = [torch.zeros(b, d, dtype=torch.float16, device="cuda") for _ in range(layers)]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                compiled_step(ids, h)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_logits, static_h = compiled_step(ids, h)
        replay_ms = cuda_ms(graph.replay, steps)
        call_ms = cuda_ms(lambda: compiled_step(ids, h), max(5, steps // 10))
        # the graph really replays: new inputs give the compiled call's outputs, faster than it
        ids.copy_(torch.randint(0, vocab, (b,), device="cuda"))
        graph.replay()
        want, _ = compiled_step(ids, h)
        follows = bool(torch.allclose(static_logits.float(), want.float(), rtol=1e-2, atol=1e-2))
        out["graph_check"][str(b)] = {"follows_inputs": follows, "replay_ms": round(replay_ms, 4), "compiled_call_ms": round(call_ms, 4)}
        if not follows or replay_ms > call_ms:
            raise SystemExit(f"the dense baseline's CUDA graph does not replay as it should: {out['graph_check']}")
        out["decode_ms"][str(b)] = round(replay_ms, 4)
    if prefill:
        ids = torch.randint(0, vocab, (1, prefill), device="cuda")
        h = [torch.zeros(1, d, dtype=torch.float16, device="cuda") for _ in range(layers)]
        prefill_layer = torch.compile(functools.partial(Dense.layer, scan=chunked_scan))
        compiled_prefill = lambda ids, h: dense(ids, h, prefill_layer, head)  # noqa: E731
        for _ in range(2):
            compiled_prefill(ids, h)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            compiled_prefill(ids, h)
        out["prefill_ms"] = round(cuda_ms(graph.replay, 10), 2)
    torch.cuda.synchronize()
    out["peak_bytes"] = torch.cuda.max_memory_allocated()
    del dense
    torch.cuda.empty_cache()
    return out


# ------------------------------------------------------------------------------------------ main


def machine() -> dict[str, Any]:
    import numpy
    import triton

    smi = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()
    return {
        "gpu": torch.cuda.get_device_name(), "nvidia_smi": smi, "python": platform.python_version(),
        "torch": torch.__version__, "triton": triton.__version__, "numpy": numpy.__version__,
        "cuda": torch.version.cuda,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="370m", help="a preset: 370m, 1.3b, 2.7b")
    parser.add_argument("--batch", type=int, nargs="+", default=[1])
    parser.add_argument("--prefill", type=int, default=2048, help="prompt tokens of the prefill timing (0: skip)")
    parser.add_argument("--steps", type=int, default=200, help="timed decode steps")
    parser.add_argument("--systems", default="mmfc,eager,dense")
    parser.add_argument("--json", help="write (merge) the results into this JSON file")
    parser.add_argument("--skip-ttft", action="store_true", help="do not time the first token (its Triton compile is long)")
    parser.add_argument(
        "--variant", action="append", default=[], metavar="NAME:KEY=VALUE,...",
        help="also time mmfc with these triton options (e.g. nodp4a:dp4a=false), as system mmfc[NAME]",
    )
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU")
    torch.backends.cuda.matmul.allow_tf32 = False
    # built on the host: mmfc's memory figures must be those of a process holding only mmfc's copy
    model = ternary_model(args.model, seed=0, device="cpu")
    systems = args.systems.split(",")
    results: dict[str, Any] = {"model": args.model, "batch": args.batch, "prefill_tokens": args.prefill, "machine": machine()}
    bench: dict[str, Callable[..., dict[str, Any]]] = {"mmfc": bench_mmfc, "eager": bench_eager, "dense": bench_dense}
    for spec in args.variant:
        label, _, opts = spec.partition(":")
        options = dict(kv.split("=", 1) for kv in opts.split(",") if kv)
        name = f"mmfc[{label}]"
        bench[name] = lambda *a, _o=options, **k: bench_mmfc(*a, options=_o, **k)
        systems.insert(systems.index("mmfc") + 1 if "mmfc" in systems else 0, name)
    for name in systems:
        if not name.startswith("mmfc") and model.device.type != "cuda":
            model = model.to("cuda")  # the baselines run the PyTorch model on the GPU
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        extra = {"measure_ttft": not args.skip_ttft} if name.startswith("mmfc") else {}
        try:
            results[name] = bench[name](model, args.batch, args.prefill, args.steps, **extra)
        except Exception as error:  # noqa: BLE001 - one system failing must not lose the others' figures
            import traceback

            traceback.print_exc()
            results[name] = {"error": f"{type(error).__name__}: {error}", "decode_ms": {}}
            torch.cuda.empty_cache()
        results[name]["wall_s"] = round(time.perf_counter() - start, 1)
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    bandwidth = copy_bandwidth_gbps()
    weight_bytes = packed_bytes(model)
    results["roofline"] = {
        "copy_gbps": round(bandwidth, 1),
        "packed_weight_bytes": weight_bytes,
        "decode_ms": {str(b): round(weight_bytes / (bandwidth * 1e9) * 1e3, 4) for b in args.batch},
    }
    print(f"\n{args.model}: decode ms/token (batch {args.batch}), prefill {args.prefill} tokens ms, peak GB")
    for name in [*systems, "roofline"]:
        r = results[name]
        decode = " ".join(f"{r['decode_ms'][str(b)]:.4g}" if str(b) in r["decode_ms"] else "-" for b in args.batch)
        peak = f"{r['peak_bytes'] / 1e9:.2f}" if "peak_bytes" in r else "-"
        print(f"  {name:<9} decode {decode:<20} prefill {r.get('prefill_ms', '-')!s:<10} peak {peak}")
    for name in systems:
        if not name.startswith("mmfc"):
            continue
        print(f"  {name}: launches/token {results[name].get('launches_per_token')}, per kernel (each launch timed alone):")
        for row in results[name].get("profile", []):
            print(f"    {row['kernel']:<64} x{row['launches']:<3} {row['ms']:>8.4f} ms  {row['gbps']!s:>7} GB/s  grid {row['grid']}")
    if args.json:
        path = Path(args.json)
        merged = json.loads(path.read_text()) if path.exists() else {}
        merged[args.model] = results
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(merged, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
