"""The iree-cpu target means what the interpreter means: per op exactly, whole models by the
flip-aware rule (mmfc.testing).

Random tiny models with dims that are not multiples of 4 or 5 and both packings, compiled once per
test module (an IREE compile takes seconds):

* per op: every body op's results in the debug dump equal the shared semantics fed the kernel's own
  operands (integers exactly, ±1 in int8 activations only at a rounding tie; floats within 1e-5
  relative: exp, the summation order of reductions and fused multiply-adds are the only sources);
* the roof's first-difference search names the kernel whose weights were changed;
* whole model: prefill logits, state and greedy tokens (teacher-forced included) against
  ``HGRNBitForCausalLM``; prefill against step-by-step decode; left-padded batches against rows run
  alone; batch sizes and lengths never seen when compiling; unfused IR;
* the recurrent state stays on the device between decode steps and weights are uploaded once.
"""

from __future__ import annotations

import functools
from pathlib import Path
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
from mmfc.testing import assert_logits_close, assert_matches_pytorch, left_padded_batch

FLOAT_RTOL = 1e-5
NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)
VOCAB = 37
# (d, intermediate size, seed, packing): the models compiled here
MODELS = [(22, 27, 3, "2bit"), (13, 21, 5, "base3")]


def pipeline(fmt: str) -> str:
    return f"fold-weight-quant,pack-weights{{format={fmt}}},fuse-bitlinear,fuse-recurrence,fuse-glu,canonicalize,cse,dce,check-matmul-free"


def torch_model(d: int, inter: int, seed: int) -> HGRNBitForCausalLM:
    config = HGRNBitConfig(vocab_size=VOCAB, hidden_size=d, num_hidden_layers=2, intermediate_size=inter)
    return init_random_(HGRNBitForCausalLM.from_config(config), seed)


@functools.cache
def model_pair(index: int) -> tuple[HGRNBitForCausalLM, mmfc.CompiledModel]:
    d, inter, seed, fmt = MODELS[index]
    model = torch_model(d, inter, seed)
    return model, mmfc.compile(model, target="iree-cpu", pipeline=pipeline(fmt))


@settings(max_examples=4, phases=NO_SHRINK)
@given(index=st.sampled_from([0, 1]), seed=st.integers(0, 1000), b=st.integers(1, 3), t=st.integers(1, 7))
def test_every_kernel_op_equals_the_semantics_on_its_own_inputs(index: int, seed: int, b: int, t: int) -> None:
    _, compiled = model_pair(index)
    d = MODELS[index][0]
    rng = np.random.default_rng(seed)
    ids, mask = left_padded_batch(rng, VOCAB, b, t)
    h = [rng.standard_normal((b, d)).astype(np.float32)] * 2
    checked = 0
    for entry, inputs in (("prefill", [ids.numpy(), mask.numpy(), *h]), ("decode_step", [ids.numpy()[:, -1], *h])):
        with tempfile.TemporaryDirectory() as dump:
            compiled.runner.run(entry, *inputs, dump_dir=dump)
            records = load_dump(dump)
            checks = check_kernel_ops(compiled.module, compiled.runner.store, entry, inputs, records, float_rtol=FLOAT_RTOL)
        ops = {c.op for c in checks}
        assert {"ternary.quant_act", "ternary.accum", "ternary.dequant", "ternary.rmsnorm", "ternary.gate_norm"} <= ops, ops
        assert ("ternary.scan" if entry == "prefill" else "ternary.scan_step") in ops
        assert sum(r.body is None and r.name == "ternary.kernel" for r in records) == 2 * 4 + 1
        checked += len(checks)
    assert checked >= 80


def test_first_kernel_difference_names_the_changed_kernel() -> None:
    """A model whose layer-1 down projection was changed, against the interpreter of the original:
    the roof's search over the debug dumps names that kernel first (every earlier one agrees)."""
    original = torch_model(22, 27, 3)
    changed = torch_model(22, 27, 3)
    with torch.no_grad():
        changed.model.layers[1].mlp.down_proj.weight.neg_()
    interp = mmfc.compile(original, target="interp", pipeline=pipeline("2bit"))
    iree = mmfc.compile(changed, target="iree-cpu", pipeline=pipeline("2bit"))
    ids = np.array([[3, 1, 4, 1, 5]])
    h = [np.zeros((1, 22), np.float32)] * 2
    found = first_kernel_difference(iree.runner, interp.runner, "prefill", ids, np.ones_like(ids), *h, rtol=1e-4, atol=1e-5)
    assert found.difference is not None, str(found)
    assert found.difference.actual.label == "model.layers.1.mlp.down_proj", str(found)
    same = first_kernel_difference(model_pair(0)[1].runner, interp.runner, "prefill", ids, np.ones_like(ids), *h, rtol=1e-4, atol=1e-5)
    assert same.difference is None and same.compared >= 2 * 4 + 1, str(same)


@settings(max_examples=4, phases=NO_SHRINK)
@given(index=st.sampled_from([0, 1]), seed=st.integers(0, 1000), b=st.integers(1, 3), t=st.integers(2, 9))
def test_logits_state_and_greedy_tokens_match_pytorch(index: int, seed: int, b: int, t: int) -> None:
    """By the flip-aware rule of mmfc.testing."""
    model, compiled = model_pair(index)
    rng = np.random.default_rng(seed + 1)
    ids, mask = left_padded_batch(rng, VOCAB, b, t)
    assert_matches_pytorch(compiled, model, ids, mask)


def test_sampling_is_seeded_like_pytorch() -> None:
    model, compiled = model_pair(0)
    ids = torch.tensor([[3, 1, 4, 1, 5]])
    kwargs = dict(max_new_tokens=6, do_sample=True, top_k=5, top_p=0.9, temperature=0.8, seed=7, eos_token_id=None)
    assert torch.equal(compiled.generate(ids, **kwargs), compiled.generate(ids, **kwargs))
    assert compiled.generate(ids, **kwargs).shape == (1, 11)


def test_prefill_equals_step_by_step_decode() -> None:
    _, compiled = model_pair(0)
    ids = torch.from_numpy(np.random.default_rng(3).integers(0, VOCAB, (2, 9)))
    logits = compiled(ids).logits
    state = None
    steps = []
    for pos in range(ids.shape[1]):
        step, state = compiled.decode_step(ids[:, pos], state)
        steps.append(step)
    assert_logits_close(torch.stack(steps, dim=1), logits, "decode vs prefill")


def test_left_padded_rows_equal_rows_run_alone() -> None:
    _, compiled = model_pair(1)
    ids, mask = left_padded_batch(np.random.default_rng(5), VOCAB, 3, 7)
    batched = compiled(ids, attention_mask=mask).logits
    for row in range(3):
        n = int(mask[row].sum())
        alone = compiled(ids[row : row + 1, -n:]).logits
        assert_logits_close(batched[row : row + 1, -n:], alone, f"row {row}")


def test_shapes_never_seen_at_compile_time() -> None:
    """One compiled module serves every batch size and length (dynamic dims of the upstream functions)."""
    model, compiled = model_pair(1)
    for b, t in ((1, 1), (4, 3), (2, 12)):
        ids = torch.from_numpy(np.random.default_rng(b * 10 + t).integers(0, VOCAB, (b, t)))
        assert_logits_close(compiled(ids).logits, model(ids).logits, f"B={b} T={t}")


def test_unfused_ir_runs() -> None:
    """-O0 (no pass): every op lowered on its own, float masters quantized once when lowering."""
    config = HGRNBitConfig(vocab_size=29, hidden_size=10, num_hidden_layers=1, intermediate_size=9)
    model = init_random_(HGRNBitForCausalLM.from_config(config), 11)
    compiled = mmfc.compile(model, target="iree-cpu", pipeline="-O0")
    ids = torch.tensor([[3, 1, 4, 1, 5], [2, 7, 1, 8, 2]])
    assert_logits_close(compiled(ids).logits, model(ids).logits)


def test_state_stays_on_the_device_and_weights_are_uploaded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    _, compiled = model_pair(0)
    runner = compiled.runner
    weights = list(runner.weights)
    uploads: list[tuple[int, ...]] = []
    upload = runner._device_array

    def counting(array: np.ndarray, t: object = None) -> object:
        uploads.append(tuple(array.shape))
        return upload(array, t)

    monkeypatch.setattr(runner, "_device_array", counting)
    out = compiled.prefill(torch.tensor([[1, 2, 3]]))
    state = out.state
    for token in (4, 5, 6):
        logits, state = compiled.decode_step(torch.tensor([token]), state)
        assert all(isinstance(v, runner.rt.DeviceArray) for v in state.values)
    # prefill: ids, mask and the zero states; each step: its ids only (the state is handed back as is)
    assert sorted(uploads) == sorted([(1, 3), (1, 3), (1, 22), (1, 22), (1,), (1,), (1,)])
    assert runner.weights == weights and runner.weight_bytes > 0


def test_a_bf16_checkpoint_keeps_its_bf16_tensors(tmp_path: Path) -> None:
    """Norms and the embedding stored in bf16 are passed as bf16 arguments (converted in the
    kernels, exactly), in the artifact and in ``--emit mlir``'s weights file."""
    from safetensors.torch import save_file

    from mmfc.backends.mlir.export import export_upstream
    from mmfc.dialects.weights import WeightStore

    model = torch_model(13, 21, 9)
    model.save_pretrained(tmp_path / "ckpt")
    save_file({k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}, str(tmp_path / "ckpt" / "model.safetensors"))
    reloaded = HGRNBitForCausalLM.from_pretrained(tmp_path / "ckpt")
    compiled = mmfc.compile(tmp_path / "ckpt", target="iree-cpu")
    ids = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    assert_logits_close(compiled(ids).logits, reloaded(ids).logits)
    export_upstream(compiled.module, compiled.runner.store, tmp_path / "m.mlir")
    stored = WeightStore.open(tmp_path / "m.weights.safetensors")
    assert stored.info("model.embeddings.weight").stored == "BF16"
    assert "tensor<37x13xbf16>" in (tmp_path / "m.mlir").read_text()


def test_inputs_that_do_not_fit_are_refused_in_one_line() -> None:
    from mmfc.dialects.diagnostics import UserError

    _, compiled = model_pair(0)
    runner = compiled.runner
    h = runner.upload(np.zeros((1, 22), np.float32))
    with pytest.raises(UserError, match="token id 37 is out of range"):
        runner.run("decode_step", np.array([37]), h, h)
    with pytest.raises(UserError, match="dtype float64 does not fit"):
        runner.run("decode_step", np.array([3]), h, runner.upload(np.zeros((1, 22))))
    with pytest.raises(UserError, match=r"shape \(1, 21\) does not fit"):
        runner.run("decode_step", np.array([3]), h, runner.upload(np.zeros((1, 21), np.float32)))
    with pytest.raises(UserError, match="takes 3 inputs, got 2"):
        runner.run("decode_step", np.array([3]), h)
