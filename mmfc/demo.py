"""The main job on the bundled ``tiny`` preset (``python -m mmfc.demo``, run by ``make demo``).

Each section prints what it does and checks its own claim; the demo exits with 1 if a check fails, so
``make demo`` is also a smoke test.
"""

from __future__ import annotations

import io
import json
import re
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

import torch

from mmfc import cli
from mmfc.commands.info import describe, format_bytes, render
from mmfc.source import ModelSource
from mmfc.frontends.torch import HGRNBitForCausalLM

PRESET = "tiny"
SEED = 0
NEW_TOKENS = 16
PAD_ID = 0
# Two prompts of different lengths, batched with left padding (ids < the tiny vocabulary, 1024).
PROMPTS = [[1, 17, 230, 45, 99, 512, 8], [1, 600, 7]]
# The flip-aware rule (docs/model.md) bounds max |Δlogits| between two faithful paths by 0.1.
MAX_ABS_LOGIT_DIFF = 0.1

_failures: list[str] = []


def section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 74 - len(title)))


def check(ok: bool, claim: str) -> None:
    """Print a claim with its outcome; a failed one makes the demo exit with 1."""
    print(f"  [{'ok' if ok else 'FAILED'}] {claim}")
    if not ok:
        _failures.append(claim)


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids [B, T], attention_mask [B, T])`` with each prompt right-aligned (mask 0 on padding)."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - len(p) :] = torch.tensor(p)
        mask[row, width - len(p) :] = 1
    return ids, mask


def main() -> int:
    start = time.perf_counter()
    _failures.clear()

    section(f"1. The model: preset {PRESET} (mmfc info --preset {PRESET})")
    model = HGRNBitForCausalLM.from_preset(PRESET, seed=SEED)
    print(render(describe(model.config, ModelSource("preset", preset=PRESET))))
    check(
        model.num_parameters() == model.config.num_parameters,
        "instantiated parameters == the count from the config",
    )

    section(f"2. Greedy generation: {len(PROMPTS)} prompts in one batch, left-padded")
    ids, mask = left_pad(PROMPTS, PAD_ID)
    # eos disabled so that both rows run the full length whatever the random weights predict
    out = model.generate(ids, attention_mask=mask, max_new_tokens=NEW_TOKENS, eos_token_id=None)
    width = ids.shape[1]
    for row, prompt in enumerate(PROMPTS):
        print(f"  row {row}: prompt {prompt} (padded to {width})")
        print(f"         new    {out[row, width:].tolist()}")
    alone = [
        model.generate(torch.tensor([p]), max_new_tokens=NEW_TOKENS, eos_token_id=None)[0, len(p) :]
        for p in PROMPTS
    ]
    check(
        all(torch.equal(out[row, width:], alone[row]) for row in range(len(PROMPTS))),
        "each row equals its prompt generated alone, without padding",
    )
    argv = [
        "generate",
        "--preset",
        PRESET,
        "--init-seed",
        str(SEED),
        "--prompt-ids",
        ",".join(map(str, PROMPTS[1])),
    ]
    argv += ["--max-new-tokens", str(NEW_TOKENS), "--ignore-eos", "--json"]
    print("  the same from the command line:\n  $ mmfc " + " ".join(argv))
    captured = io.StringIO()
    with redirect_stdout(captured):
        rc = cli.main(argv)
    cli_new_ids = json.loads(captured.getvalue())["new_ids"] if rc == 0 else None
    print(f"    new_ids {cli_new_ids}")
    check(cli_new_ids == out[1, width:].tolist(), "`mmfc generate` gives row 1's tokens")

    section("3. Prefill vs step-by-step decode (the recurrent state is the only cache)")
    full_mask = torch.cat([mask, torch.ones_like(out[:, width:])], dim=1)
    full = model(out, attention_mask=full_mask).logits  # one prefill over prompt + generated tokens
    step = model.prefill(ids, mask)
    stepped = [step.logits[:, -1]]
    state = step.state
    for j in range(NEW_TOKENS - 1):
        logits, state = model.decode_step(out[:, width + j], state)
        stepped.append(logits)
    decoded = torch.stack(stepped, dim=1)  # logits predicting each generated token
    diff = float((full[:, width - 1 : -1] - decoded).abs().max())
    print(f"  prefill of {out.shape[1]} tokens vs prefill of the prompt + {NEW_TOKENS - 1} decode steps")
    check(diff <= MAX_ABS_LOGIT_DIFF, f"max |Δlogits| = {diff:.3g}  (flip-aware bound {MAX_ABS_LOGIT_DIFF})")
    check(
        torch.equal(decoded.argmax(-1), out[:, width:]), "the decoded argmax reproduces the generated tokens"
    )

    section("4. Checkpoints: float masters vs pre-quantized (int8 trits + float32 scales)")
    with tempfile.TemporaryDirectory(prefix="mmfc-demo-") as tmp:
        float_dir, quant_dir = Path(tmp) / "float", Path(tmp) / "ternary"
        model.save_pretrained(float_dir)
        model.save_pretrained(quant_dir, quantized=True)
        for d in (float_dir, quant_dir):
            size = format_bytes((d / "model.safetensors").stat().st_size)
            print(f"  {d.name:8s} {size:>9s}  model.safetensors")
        loaded = HGRNBitForCausalLM.from_pretrained(quant_dir)
        check(
            loaded.config.quantization_config is not None,
            "config.json of the saved copy names its quantization",
        )
        reference = model(out, attention_mask=full_mask).logits
        again = loaded(out, attention_mask=full_mask).logits
        delta = float((reference - again).abs().max())
        check(delta == 0.0, f"logits of the reloaded pre-quantized model: max |Δ| = {delta:g} (identical)")
        print("  (packing to 2bit/base3 happens when compiling: see `mmfc info` for the packed sizes)")

    section("5. The compiler: import -> ternary IR -> -O2 passes -> artifact (interp target)")
    compile_section(model, out, full_mask)

    section("6. Upstream MLIR on the CPU: the iree-cpu target (IREE, host CPU features)")
    iree_section(model, out, full_mask)

    section("7. Generated GPU kernels: the triton target (compiled on a GPU, interpreted on a CPU)")
    triton_section(model, out, full_mask)

    section("8. A hypothetical accelerator: the sim target (mmfc sim --arch edge-fpga)")
    sim_section(model, out, full_mask)

    section("Next")
    print("  mmfc targets; mmfc compile --preset 370m --target triton -o 370m.triton (on a GPU);")
    print("  mmfc sim --preset 370m --arch edge-fpga --timing-only; docs/targets.md, docs/simulator.md, docs/mlir.md")
    print(f"\ndemo finished in {time.perf_counter() - start:.1f} s")
    if _failures:
        print(f"demo FAILED: {len(_failures)} check(s) did not hold", file=sys.stderr)
        return 1
    return 0


def n_low_margin(model: HGRNBitForCausalLM, ids: torch.Tensor) -> int:
    from mmfc.testing import MARGIN, top2_margin

    return int((top2_margin(model(ids).logits.numpy()) < MARGIN).sum())


def compile_section(model: HGRNBitForCausalLM, ids: torch.Tensor, mask: torch.Tensor) -> None:
    """``mmfc compile --preset tiny -O2 -o DIR`` in Python: the fused, packed, matmul-free program run
    by the numpy interpreter (the golden model), checked against PyTorch by the flip-aware rule."""
    import mmfc
    from mmfc.api import pipeline_spec
    from mmfc.stats import format_stats
    from mmfc.testing import compare_logits

    with tempfile.TemporaryDirectory(prefix="mmfc-demo-") as tmp:
        art = Path(tmp) / "tiny.interp"
        t0 = time.perf_counter()
        mmfc.compile(model, target="interp", pipeline="-O2", out=art)
        print(f"  pipeline: {pipeline_spec('-O2')}")
        print(f"  compiled in {time.perf_counter() - t0:.1f} s -> {art.name}/ "
              f"({', '.join(sorted(p.name for p in art.iterdir()))})")
        stats = json.loads((art / "manifest.json").read_text())["stats"]
        for line in format_stats(stats).splitlines():
            print("  " + line)
        per_layer = stats["kernels_per_layer"]
        check(bool(per_layer) and max(per_layer) <= 6, f"kernels per layer in decode_step: {per_layer} (<= 6)")
        text = (art / "model.mlir").read_text()
        check("ternary.kernel" in text and "quant_weight" not in text,
              "the final IR holds fused kernels over packed weights (check-matmul-free passed)")
        loaded = mmfc.load(art)
        got = loaded(ids, attention_mask=mask).logits
        want = model(ids, attention_mask=mask).logits
        rep = compare_logits(got, want)
        check(rep.ok, f"artifact logits vs PyTorch: rel RMS {rep.rel_rms:.2e}, max |Δ| {rep.max_abs:.2e} (flip-aware rule)")
        prompt = ids[:1, :6]
        a = loaded.generate(prompt, max_new_tokens=8, eos_token_id=None)
        b = model.generate(prompt, max_new_tokens=8, eos_token_id=None)
        from mmfc.testing import assert_generate_matches

        # equal tokens, or (flip-aware rule) equal up to the first step whose top-2 margin is < 1e-2
        try:
            assert_generate_matches(a, b, model(b).logits[:, 5:-1], 6)
            ok = True
        except AssertionError:
            ok = False
        same = torch.equal(a, b)
        check(ok and (same or n_low_margin(model, b) > 0),
              f"greedy tokens of the artifact {'==' if same else 'match (flip-aware)'} PyTorch's: {a[0, 6:].tolist()}")


def iree_section(model: HGRNBitForCausalLM, ids: torch.Tensor, mask: torch.Tensor) -> None:
    """``mmfc compile --preset tiny --target iree-cpu``: the fused IR lowered to upstream MLIR (verified
    by MLIR), compiled by IREE for this CPU, checked against PyTorch by the flip-aware rule."""
    import mmfc
    from mmfc.testing import compare_logits

    with tempfile.TemporaryDirectory(prefix="mmfc-demo-") as tmp:
        art = Path(tmp) / "tiny.iree"
        t0 = time.perf_counter()
        mmfc.compile(model, target="iree-cpu", out=art)
        print(f"  compiled in {time.perf_counter() - t0:.1f} s -> {art.name}/ "
              f"({', '.join(sorted(p.name for p in art.iterdir()))})")
        upstream = (art / "upstream.mlir").read_text()
        ops = re.findall(r"^\s*(?:%[^=]*=\s*)?([a-z_]+)\.[a-z_.]+", upstream, flags=re.M)
        dialects = sorted(set(ops) - {"builtin"})
        check("ternary." not in upstream and "linalg.generic" in upstream,
              f"upstream.mlir holds upstream dialects only ({', '.join(dialects)}); the weights are arguments")
        loaded = mmfc.load(art)
        rep = compare_logits(loaded(ids, attention_mask=mask).logits, model(ids, attention_mask=mask).logits)
        check(rep.ok, f"iree-cpu logits vs PyTorch: rel RMS {rep.rel_rms:.2e}, max |Δ| {rep.max_abs:.2e} (flip-aware rule)")
        prompt = ids[:1, :6]
        a = loaded.generate(prompt, max_new_tokens=8, eos_token_id=None)
        b = model.generate(prompt, max_new_tokens=8, eos_token_id=None)
        check(torch.equal(a, b), f"greedy tokens of the iree-cpu artifact == PyTorch's: {a[0, 6:].tolist()}")
        state = loaded.prefill(prompt).state
        t0 = time.perf_counter()
        token = a[:, 6]
        for _ in range(16):
            logits, state = loaded.decode_step(token, state)
            token = logits.argmax(-1)
        print(f"  decode: {(time.perf_counter() - t0) / 16 * 1e3:.2f} ms/token on {loaded.runner.device}")
        print("  (mmfc compile --preset tiny --emit mlir -o tiny.mlir writes the upstream module for your own pipeline)")


def _greedy_matches(model: HGRNBitForCausalLM, compiled: object, prompt: torch.Tensor, what: str) -> None:
    from mmfc.testing import assert_generate_matches

    got = compiled.generate(prompt, max_new_tokens=8, eos_token_id=None)  # type: ignore[attr-defined]
    want = model.generate(prompt, max_new_tokens=8, eos_token_id=None)
    try:  # equal tokens, or (flip-aware rule) equal up to the first step whose top-2 margin is < 1e-2
        assert_generate_matches(got, want, model(want).logits[:, prompt.shape[1] - 1 : -1], prompt.shape[1])
        ok = True
    except AssertionError:
        ok = False
    same = torch.equal(got, want)
    check(ok and (same or n_low_margin(model, want) > 0),
          f"greedy tokens of {what} {'==' if same else 'match (flip-aware)'} PyTorch's: {got[0, prompt.shape[1]:].tolist()}")


def triton_section(model: HGRNBitForCausalLM, ids: torch.Tensor, mask: torch.Tensor) -> None:
    """``mmfc compile --preset tiny --target triton``: one generated ``@triton.jit`` function per kernel
    shape, checked against PyTorch and, kernel by kernel, against the interpreter."""
    import mmfc
    from mmfc.compare import first_kernel_difference
    from mmfc.testing import compare_logits

    with tempfile.TemporaryDirectory(prefix="mmfc-demo-") as tmp:
        art = Path(tmp) / "tiny.triton"
        t0 = time.perf_counter()
        compiled = mmfc.compile(model, target="triton", out=art)
        functions = [line.split("(")[0][4:] for line in (art / "kernels.py").read_text().splitlines() if line.startswith("def k_")]
        print(f"  compiled in {time.perf_counter() - t0:.1f} s -> {art.name}/kernels.py: {len(functions)} generated kernels, "
              f"e.g. {functions[2]}")
        print(f"  runs as: {compiled.runner.device}")
        steps = len(compiled.runner.plan["entries"]["decode_step"]["steps"])
        check(steps == 1 + 4 * model.config.num_hidden_layers + 1, f"launches per decode token: {steps}")
        got = compiled(ids, attention_mask=mask).logits
        rep = compare_logits(got.cpu(), model(ids, attention_mask=mask).logits)
        check(rep.ok, f"triton logits vs PyTorch: rel RMS {rep.rel_rms:.2e}, max |Δ| {rep.max_abs:.2e} (flip-aware rule)")
        _greedy_matches(model, compiled, ids[:1, :6], "the triton target")
        reference = mmfc.compile(model, target="interp")
        row = ids[:1, -4:].numpy()
        zeros = [torch.zeros(1, model.config.hidden_size).numpy()] * model.config.num_hidden_layers
        found = first_kernel_difference(compiled.runner, reference.runner, "prefill", row, row * 0 + 1, *zeros, rtol=1e-4, atol=1e-5)
        check(found.difference is None, f"kernel by kernel against the interpreter (debug dumps): {found}")


def sim_section(model: HGRNBitForCausalLM, ids: torch.Tensor, mask: torch.Tensor) -> None:
    """``mmfc.compile(model, target="sim", arch="edge-fpga")``: the simulated machine computes the
    logits and reports its cycles and energy."""
    import mmfc
    from mmfc.testing import compare_logits

    compiled = mmfc.compile(model, target="sim", arch="edge-fpga")
    got = compiled(ids, attention_mask=mask).logits
    rep = compare_logits(got, model(ids, attention_mask=mask).logits)
    check(rep.ok, f"simulated logits vs PyTorch: rel RMS {rep.rel_rms:.2e}, max |Δ| {rep.max_abs:.2e} (flip-aware rule)")
    _greedy_matches(model, compiled, ids[:1, :6], "the simulated accelerator")
    r = compiled.report() or {}
    print(f"  edge-fpga at {r.get('clock_mhz')} MHz: {r.get('cycles_per_token', 0):,.0f} cycles/token -> "
          f"{r.get('tokens_per_s', 0):,.0f} tokens/s, {r.get('energy_j_per_token', 0) * 1e3:.3f} mJ/token, "
          f"{r.get('dram_bytes_per_token', 0) / 1e3:.1f} kB of DRAM traffic per token")
    check(r.get("cycles", 0) > 0 and r.get("energy_j_per_token", 0) > 0, "the simulator reports cycles and energy")


if __name__ == "__main__":
    raise SystemExit(main())
