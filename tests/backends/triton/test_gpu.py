"""What only a GPU can show: the kernels are compiled (not interpreted), one compiled variant serves
every batch size and length, and a decode step is a CUDA graph replay that allocates nothing.
Skipped without a CUDA GPU (the other triton tests then run in Triton's interpreter)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import mmfc
from mmfc.frontends.torch.modeling import init_random_
from mmfc.models import HGRNBitConfig, HGRNBitForCausalLM
from mmfc.testing import assert_logits_close

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def pair() -> tuple[HGRNBitForCausalLM, mmfc.CompiledModel]:
    config = HGRNBitConfig(vocab_size=97, hidden_size=40, num_hidden_layers=2, intermediate_size=70)
    model = init_random_(HGRNBitForCausalLM.from_config(config), 0)
    return model, mmfc.compile(model, target="triton")


def _compiled_variants(kernel: object) -> int:
    """How many binaries Triton compiled for ``kernel`` (its per-device caches; 3.6 and 3.9)."""
    caches = getattr(kernel, "device_caches", None)
    if caches is not None:
        return sum(len(entry[0]) for entry in caches.values())
    return sum(len(c) for c in getattr(kernel, "cache").values())


def test_kernels_are_compiled_for_the_gpu(pair: tuple[HGRNBitForCausalLM, mmfc.CompiledModel]) -> None:
    model, compiled = pair
    assert os.environ.get("TRITON_INTERPRET", "0") in ("", "0")
    runner = compiled.runner
    assert not runner.interpret and runner.torch_device == "cuda" and "compiled Triton kernels" in runner.device
    ids = torch.tensor([[1, 2, 3, 4]])
    out = compiled(ids)
    assert out.logits.is_cuda and all(h.is_cuda for h in out.state)
    assert_logits_close(out.logits.cpu(), model(ids).logits)
    from triton.runtime.jit import JITFunction

    first = runner.plan["entries"]["prefill"]["steps"][1]["kernel"]
    assert isinstance(getattr(runner.kernels, first), JITFunction)
    assert _compiled_variants(getattr(runner.kernels, first)) >= 1


def test_sizes_never_make_a_new_compiled_variant(pair: tuple[HGRNBitForCausalLM, mmfc.CompiledModel]) -> None:
    """Batch and length are run-time arguments: the only compiled variants of a kernel are the
    launch schedules the runtime picks (rows per block, chunk, dots, warps: a few buckets), never
    one per size (Triton would specialize sizes equal to 1 or divisible by 16 if let)."""
    compiled = mmfc.compile(pair[0], target="triton")  # a fresh module: nothing compiled yet
    runner = compiled.runner
    schedules: dict[str, set[tuple[object, ...]]] = {}
    original = runner.schedule

    def recording(step: dict, rows: int) -> dict:
        chosen = original(step, rows)
        schedules.setdefault(step["kernel"], set()).add(tuple(sorted(chosen.items())))
        return chosen

    runner.schedule = recording  # type: ignore[method-assign]
    try:
        for b, t in ((1, 1), (1, 16), (1, 17), (2, 17), (3, 5), (4, 32), (16, 3), (3, 48)):
            ids = torch.randint(0, 97, (b, t), device="cuda")
            compiled(ids)
            compiled.decode_step(ids[:, -1], None)
    finally:
        runner.schedule = original  # type: ignore[method-assign]
    for entry in ("prefill", "decode_step"):
        for step in runner.plan["entries"][entry]["steps"]:
            name = step["kernel"]
            assert _compiled_variants(getattr(runner.kernels, name)) == len(schedules[name]), name
    # several sizes shared one schedule (the sizes themselves made no variant)
    assert any(len(s) < 8 for s in schedules.values())


def test_decode_replays_a_cuda_graph_and_allocates_nothing(pair: tuple[HGRNBitForCausalLM, mmfc.CompiledModel]) -> None:
    model, compiled = pair
    runner = compiled.runner
    ids = torch.tensor([[5, 6, 7], [8, 9, 10]], device="cuda")
    out = compiled(ids)
    logits, state = compiled.decode_step(ids[:, -1], out.state)  # builds and captures the workspace
    workspace = next(ws for key, ws in runner._workspaces.items() if key[0] == "decode_step")
    assert workspace.graph is not None
    nxt = logits.argmax(-1)
    torch.cuda.synchronize()
    before = torch.cuda.memory_stats()["allocation.all.allocated"]
    launches = runner.launch_count
    raw = runner.run("decode_step", nxt, *state.values)  # the state is the workspace's own: no copy
    torch.cuda.synchronize()
    assert torch.cuda.memory_stats()["allocation.all.allocated"] == before
    assert runner.launch_count - launches == len(runner.plan["entries"]["decode_step"]["steps"])
    assert [r.data_ptr() for r in raw[1:]] == [v.data_ptr() for v in state.values]
    # the replayed graph computes what the kernels launched one by one compute
    eager = mmfc.compile(model, target="triton", graphs=False)
    e_out = eager(ids)
    e_logits, e_state = eager.decode_step(ids[:, -1], e_out.state)
    e_next, _ = eager.decode_step(nxt, e_state)
    assert torch.equal(raw[0], e_next)


def test_generate_on_the_gpu_matches_pytorch(pair: tuple[HGRNBitForCausalLM, mmfc.CompiledModel]) -> None:
    model, compiled = pair
    prompt = torch.from_numpy(np.random.default_rng(1).integers(0, 97, (2, 6)))
    got = compiled.generate(prompt, max_new_tokens=8, eos_token_id=None)
    want = model.generate(prompt, max_new_tokens=8, eos_token_id=None)
    assert got.device == prompt.device and got.shape == want.shape
    from mmfc.testing import assert_generate_matches

    assert_generate_matches(got, want, model(want).logits[:, 5:-1], 6)


def test_generate_profile_times_every_kernel_of_a_decode_step(
    pair: tuple[HGRNBitForCausalLM, mmfc.CompiledModel], tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    import json
    from pathlib import Path

    from mmfc.cli import main

    out = Path(str(tmp_path)) / "art"
    mmfc.compile(pair[0], target="triton", out=out)
    capsys.readouterr()
    assert main(["generate", str(out), "--prompt-ids", "1,2", "--max-new-tokens", "2", "--json", "--profile"]) == 0
    rows = json.loads(capsys.readouterr().out)["profile"]
    launches = len(pair[1].runner.plan["entries"]["decode_step"]["steps"])
    assert sum(r["launches"] for r in rows) == launches
    assert all(r["ms"] > 0 for r in rows) and any(r["weight_bytes"] > 0 and r["gbps"] > 0 for r in rows)
    assert main(["generate", str(out), "--prompt-ids", "1,2", "--max-new-tokens", "2", "--profile"]) == 0
    assert "decode step, each kernel timed alone (CUDA graph replays)" in capsys.readouterr().err
