"""A whole tiny model in the interpreter equals the PyTorch model (flip-aware rule).

The module comes from ``dialects.builder.build_model`` (one module for every batch size and length);
the weights are the PyTorch model's state dict in a ``MemoryStore`` (float32 masters for the FLOAT
form, int8 trits + ``weight_scale`` after ``model.quantize_()`` for the TRITS form).

Whole-model comparisons use the flip-aware rule of ``docs/model.md`` (``mmfc.testing``): logits (and the
recurrent states) by relative RMS <= 5e-2 and max |diff| <= 0.1, teacher-forced greedy agreement >= 98 %,
and free-running ``generate`` equal up to the reference's first low-margin step. The interpreter's own
prefill and step-by-step decode are compared exactly (the same numpy functions on the same rows).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from mmfc.api import CompiledModel
from mmfc.backends.interp import InterpRunner
from mmfc.dialects.builder import WeightForm, build_model
from mmfc.dialects.weights import MemoryStore
from mmfc.frontends.torch.config import HGRNBitConfig
from mmfc.frontends.torch.modeling import HGRNBitForCausalLM, init_random_
from mmfc.testing import assert_generate_matches, assert_logits_close, assert_teacher_forced

#: Hypothesis's explain phase re-runs a failing example under a line tracer, which takes minutes for an
#: example that builds and runs a model; without it a failure is reported in seconds.
NO_EXPLAIN = [p for p in Phase if p is not Phase.explain]

V, D, L, I = 61, 32, 2, 48
FORMS = [WeightForm.FLOAT, WeightForm.TRITS]


def config() -> HGRNBitConfig:
    return HGRNBitConfig(vocab_size=V, hidden_size=D, num_hidden_layers=L, intermediate_size=I)


@functools.cache
def model_and_runner(form: WeightForm, seed: int = 0) -> tuple[HGRNBitForCausalLM, InterpRunner]:
    """The reference model and an interpreter over ``build_model(config, form)`` with its weights."""
    model = init_random_(HGRNBitForCausalLM.from_config(config(), seed=seed), seed)
    if form is WeightForm.TRITS:
        model.quantize_()
    store = MemoryStore({name: t.detach().cpu().numpy() for name, t in model.state_dict().items()})
    if form is WeightForm.FLOAT:
        assert all(store.get(n).dtype == np.float32 for n in store.names())
    else:
        assert store.get("lm_head.weight").dtype == np.int8 and store.get("lm_head.weight_scale").shape == ()
    return model, InterpRunner(build_model(config(), form), store)


def generate(runner: InterpRunner, ids: np.ndarray, mask: np.ndarray | None = None, **kwargs: object) -> np.ndarray:
    """Generation on the interpreter goes through the one generation loop of every target."""
    attention = None if mask is None else torch.from_numpy(mask)
    return CompiledModel(runner).generate(torch.from_numpy(ids), attention, **kwargs).numpy()


def left_padded(seed: int, b: int, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Random ids ``[b, t]`` and a left-padding mask (each row 1..t real tokens; garbage ids under the
    padding, which the mask must neutralize)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, (b, t))
    lengths = rng.integers(1, t + 1, b)
    mask = (np.arange(t)[None, :] >= (t - lengths)[:, None]).astype(np.int64)
    return ids, mask


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.value)
@settings(max_examples=8, phases=NO_EXPLAIN)
@given(b=st.integers(1, 3), t=st.integers(1, 10), seed=st.integers(0, 10_000))
def test_prefill_matches_pytorch(form: WeightForm, b: int, t: int, seed: int) -> None:
    """Flip-aware rule on logits and states; B and T chosen at run time, left padding."""
    model, runner = model_and_runner(form)
    ids, mask = left_padded(seed, b, t)
    logits, state = runner.prefill(ids, mask)
    ref = model(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    assert logits.shape == (b, t, V) and logits.dtype == np.float32
    assert_logits_close(logits, ref.logits)
    assert len(state) == L
    for layer, (h, h_ref) in enumerate(zip(state, ref.state)):
        assert h.shape == (b, D)
        assert_logits_close(h, h_ref, what=f"state of layer {layer}")


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.value)
def test_teacher_forced_greedy_agrees(form: WeightForm) -> None:
    """Flip-aware rule: argmax at >= 98 % of the decisive steps (48 positions here)."""
    model, runner = model_and_runner(form)
    ids, mask = left_padded(7, 4, 12)
    logits, _ = runner.prefill(ids, mask)
    ref = model(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits
    assert_teacher_forced(logits, ref)


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.value)
@settings(max_examples=5, phases=NO_EXPLAIN)
@given(b=st.integers(1, 3), t=st.integers(1, 8), seed=st.integers(0, 10_000))
def test_decode_steps_equal_prefill(form: WeightForm, b: int, t: int, seed: int) -> None:
    """decode_step over T tokens from the zero state gives prefill's logits and state, bit for bit."""
    _, runner = model_and_runner(form)
    ids = np.random.default_rng(seed).integers(0, V, (b, t))
    logits, state = runner.prefill(ids)
    step_state = None
    for pos in range(t):
        step_logits, step_state = runner.decode_step(ids[:, pos], step_state)
        np.testing.assert_array_equal(step_logits, logits[:, pos], strict=True)
    assert step_state is not None
    for h, h_step in zip(state, step_state):
        np.testing.assert_array_equal(h_step, h, strict=True)


@pytest.mark.parametrize("form", FORMS, ids=lambda f: f.value)
@settings(max_examples=4, phases=NO_EXPLAIN)
@given(b=st.integers(1, 3), t=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_greedy_generation_matches_pytorch(form: WeightForm, b: int, t: int, seed: int) -> None:
    """Flip-aware rule for free-running generation (equal up to each row's first low-margin step)."""
    model, runner = model_and_runner(form)
    ids, mask = left_padded(seed, b, t)
    new = 6
    out = generate(runner, ids, mask, max_new_tokens=new)
    ref = model.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), max_new_tokens=new, eos_token_id=None)
    assert out.shape == (b, t + new)
    np.testing.assert_array_equal(out[:, :t], ids)
    full_mask = torch.cat([torch.from_numpy(mask), torch.ones(b, new, dtype=torch.long)], dim=1)
    step_logits = model(ref, attention_mask=full_mask).logits[:, t - 1 : t + new - 1]
    assert_generate_matches(out, ref, step_logits, t)


def test_decode_continues_prefill_state() -> None:
    """A prompt's prefill state, then decode steps: the logits of prefill over the whole sequence."""
    model, runner = model_and_runner(WeightForm.TRITS)
    ids = np.random.default_rng(1).integers(0, V, (2, 9))
    _, state = runner.prefill(ids[:, :5])
    for pos in range(5, 9):
        step_logits, state = runner.decode_step(ids[:, pos], state)
    ref = model(torch.from_numpy(ids)).logits[:, -1]
    assert_logits_close(step_logits, ref)


def test_inputs_are_checked_against_the_signature() -> None:
    _, runner = model_and_runner(WeightForm.FLOAT)
    from mmfc.backends.interp import InterpError

    ids = np.zeros((1, 3), np.int64)
    zeros = [np.zeros((1, D), np.float32)] * L
    with pytest.raises(InterpError, match="@prefill takes 4 inputs"):
        runner.run("prefill", ids, ids)
    with pytest.raises(InterpError, match=r"input 0 \(input_ids\).*expected an int64 array, got int32"):
        runner.run("prefill", ids.astype(np.int32), ids, *zeros)
    with pytest.raises(InterpError, match=r"input 2 \(h0\).*expected shape \[\?, 32\]"):
        runner.run("prefill", ids, ids, np.zeros((1, 31), np.float32), zeros[1])
    with pytest.raises(InterpError, match=r"expected 2 dims"):
        runner.run("prefill", ids[0], ids, *zeros)
    with pytest.raises(InterpError, match=r"no function @forward in the module \(functions: @prefill, @decode_step\)"):
        runner.run("forward", ids)
    with pytest.raises(InterpError, match=r"ternary.mask: mask has shape \(1, 2\) at run time, expected \(1, 3\)"):
        runner.run("prefill", ids, ids[:, :2], *zeros)


def test_generate_stops_at_eos_and_pads_like_pytorch() -> None:
    """EOS ends a row (padded with ``pad_token_id`` afterwards), as PyTorch's ``generate`` does."""
    model, runner = model_and_runner(WeightForm.FLOAT)
    ids = np.random.default_rng(2).integers(0, V, (2, 4))
    free = generate(runner, ids, max_new_tokens=5)
    eos = int(free[0, 5])  # row 0's second new token: it finishes there, row 1 may go on
    out = generate(runner, ids, max_new_tokens=5, eos_token_id=eos, pad_token_id=0)
    ref = model.generate(torch.from_numpy(ids), max_new_tokens=5, eos_token_id=eos, pad_token_id=0)
    # flip-aware rule: tokens equal up to each row's first low-margin step (padding compares as equal)
    step_logits = model(ref).logits[:, 3:-1]
    assert assert_generate_matches(out, ref, step_logits, 4) > 0
    assert out.shape == tuple(ref.shape)
    assert out[0, 5] == eos and np.all(out[0, 6:] == 0)
