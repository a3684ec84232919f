"""The simulated machine computes what the interpreter computes.

* per op: the sim's debug dump (kernels + every body op's whole value, assembled over tiles) checked
  by ``check_kernel_ops``: integers exactly (±1 in int8 activations only at a rounding tie), floats
  within 1e-6 relative (the same numpy semantics on other tile shapes);
* per kernel: the whole dump equals the interpreter's record for record (bit-identical: the same
  semantics, and the tile shapes change no reduction);
* whole model, by the flip-aware rule (``mmfc.testing``): logits and greedy tokens against
  ``HGRNBitForCausalLM`` on random models with odd sizes and both packings, and every check of the
  reference implementation's own outputs in ``tests/data/ref_tiny``.
"""

from __future__ import annotations

import functools
import tempfile

import numpy as np
import pytest
import torch
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import mmfc
from mmfc.compare import check_kernel_ops, first_kernel_difference
from mmfc.dialects.dump import load_dump
from mmfc.frontends.torch.modeling import init_random_
from mmfc.models import HGRNBitConfig, HGRNBitForCausalLM
from mmfc.testing import Reference, assert_matches_pytorch, check_against_reference

NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)

#: a small SRAM, so that kernels stream several tiles (a clipped last one included)
SMALL = {"sram.capacity_bytes": 12000, "tacc.lanes": 64}


def small_arch(fmt: str) -> dict:
    from mmfc.dialects.arch import load_arch

    return load_arch("edge-fpga").with_values({**SMALL, "weights.format": fmt}).to_dict()


@functools.cache
def model_pair(d: int, inter: int, vocab: int, seed: int, fmt: str) -> tuple[HGRNBitForCausalLM, mmfc.CompiledModel]:
    config = HGRNBitConfig(vocab_size=vocab, hidden_size=d, num_hidden_layers=2, intermediate_size=inter)
    model = init_random_(HGRNBitForCausalLM.from_config(config), seed)
    return model, mmfc.compile(model, target="sim", arch=small_arch(fmt))


def test_kernels_stream_several_tiles() -> None:
    _, compiled = model_pair(22, 27, 37, 3, "2bit")
    rows = {g.tile_rows for groups in compiled.runner.programs.values() for g in groups if g.stream_axis >= 0}
    assert min(rows) < 22  # the SRAM is small enough that no weight is one tile


@settings(max_examples=4, phases=NO_SHRINK)
@given(
    d=st.sampled_from([13, 22]),
    inter=st.sampled_from([21, 27]),
    seed=st.integers(0, 1000),
    fmt=st.sampled_from(["2bit", "base3"]),
    b=st.integers(1, 3),
    t=st.integers(1, 6),
)
def test_every_kernel_op_equals_the_semantics_and_the_interpreter(
    d: int, inter: int, seed: int, fmt: str, b: int, t: int
) -> None:
    model, compiled = model_pair(d, inter, 37, seed, fmt)
    interp = mmfc.compile(model, target="interp", pipeline=f"fold-weight-quant,pack-weights{{format={fmt}}},"
                          "fuse-bitlinear,fuse-recurrence,fuse-glu,canonicalize,cse,dce")
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 37, (b, t))
    h = [np.zeros((b, d), np.float32)] * 2
    for entry, inputs in (("prefill", [ids, np.ones_like(ids), *h]), ("decode_step", [ids[:, -1], *h])):
        with tempfile.TemporaryDirectory() as dump:
            compiled.runner.run(entry, *inputs, dump_dir=dump)
            records = load_dump(dump)
            checks = check_kernel_ops(compiled.module, compiled.runner.store, entry, inputs, records, float_rtol=1e-6)
        assert {"ternary.quant_act", "ternary.accum", "ternary.dequant"} <= {c.op for c in checks}
        assert any(r.name == "ternary.kernel" and r.label for r in records)
        comparison = first_kernel_difference(compiled.runner, interp.runner, entry, *inputs)
        assert comparison.difference is None, str(comparison)
        assert comparison.compared >= 9


@settings(max_examples=4, phases=NO_SHRINK)
@given(
    d=st.sampled_from([13, 22]),
    inter=st.sampled_from([21, 27]),
    seed=st.integers(0, 1000),
    fmt=st.sampled_from(["2bit", "base3"]),
    b=st.integers(1, 2),
    t=st.integers(2, 8),
)
def test_logits_and_greedy_tokens_match_pytorch(d: int, inter: int, seed: int, fmt: str, b: int, t: int) -> None:
    """Flip-aware rule: logits, state, teacher-forced argmax, free-running generate."""
    model, compiled = model_pair(d, inter, 37, seed, fmt)
    compiled.runner.reset()
    ids = torch.from_numpy(np.random.default_rng(seed + 1).integers(0, 37, (b, t)))
    new = 4
    assert_matches_pytorch(compiled, model, ids, new_tokens=new)  # one prefill, then generate's prefill and steps
    report = compiled.report()
    assert report is not None and report["decode"]["calls"] == new - 1 and report["prefill"]["calls"] == 2


def test_matches_the_reference_outputs(ref_tiny: Reference) -> None:
    """The simulated tiny checkpoint against the reference implementation's own outputs (flip-aware
    rule, every part: prefill, decode, teacher-forced greedy, generate)."""
    compiled = mmfc.compile(ref_tiny.path, target="sim", arch="edge-fpga")
    report = check_against_reference(compiled, ref_tiny).raise_for_problems()
    assert report.teacher_forced.decisive_steps >= 16


def test_timing_only_values_are_the_same() -> None:
    """timing_only computes each kernel once instead of per tile: the same values, the same cycles."""
    model, compiled = model_pair(22, 27, 37, 5, "2bit")
    from mmfc.backends.sim.runner import SimRunner

    runner = SimRunner(compiled.module, compiled.runner.store, compiled.runner.programs, compiled.runner.arch,
                       timing_only=True)
    ids = np.array([[3, 1, 4, 1, 5]])
    h = [np.zeros((1, 22), np.float32)] * 2
    a = compiled.runner.run("prefill", ids, np.ones_like(ids), *h)
    b = runner.run("prefill", ids, np.ones_like(ids), *h)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert runner.history[-1].cycles == compiled.runner.history[-1].cycles


def test_artifact_round_trip(tmp_path) -> None:  # noqa: ANN001
    model, _ = model_pair(13, 21, 37, 9, "base3")
    compiled = mmfc.compile(model, target="sim", arch=small_arch("base3"), out=tmp_path / "m.sim")
    assert (tmp_path / "m.sim" / "program.accel.mlir").is_file()
    again = mmfc.load(tmp_path / "m.sim")
    ids = torch.tensor([[1, 2, 3]])
    np.testing.assert_array_equal(compiled(ids).logits.numpy(), again(ids).logits.numpy())
    assert again.runner.arch == compiled.runner.arch
    assert again.report()["cycles"] == compiled.report()["cycles"]


def test_unfused_ir_is_refused() -> None:
    config = HGRNBitConfig(vocab_size=29, hidden_size=10, num_hidden_layers=1, intermediate_size=9)
    model = init_random_(HGRNBitForCausalLM.from_config(config), 11)
    from mmfc.dialects.diagnostics import UserError

    with pytest.raises(UserError, match="fused IR"):
        mmfc.compile(model, target="sim", pipeline="-O0")
