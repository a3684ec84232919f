"""The PyTorch frontend: imported IR, run by the interpreter, gives the PyTorch module's outputs and
states (flip-aware rule, mmfc.testing) for batch sizes, lengths and padding chosen after import."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from torch import nn

from mmfc.backends.interp import InterpRunner
from mmfc.dialects import ternary as T
from mmfc.frontends.torch.importer import ImportError_, import_checkpoint, import_model
from mmfc.frontends.torch.modeling import init_random_
from mmfc.models import GLU, MLGRU, BitLinear, HGRNBitBlock, HGRNBitConfig, HGRNBitForCausalLM, RMSNorm
from mmfc.testing import assert_generate_matches, assert_logits_close, assert_teacher_forced

#: Hypothesis's explain phase re-runs a failing example under a line tracer, which takes minutes for an
#: example that builds and runs a model; without it a failure is reported in seconds.
NO_EXPLAIN = [p for p in Phase if p is not Phase.explain]

STATE_TOL = dict(rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------ arrangements


class TwoMixers(nn.Module):
    """Hidden states in and out; a different residual pattern; a lower bound held as a buffer."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.n1, self.m1 = RMSNorm(d), MLGRU(d)
        self.n2, self.m2 = RMSNorm(d), MLGRU(d)
        self.glu = GLU(d, 2 * d)
        self.register_buffer("lb", torch.linspace(0.1, 0.6, d))

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        a, _ = self.m1(self.n1(x), None, attention_mask)
        b, _ = self.m2(self.n2(x + a), self.lb, attention_mask)
        return x + self.glu(a * b)


class TwoBlocksLM(nn.Module):
    """Embedding, two HGRNBit blocks with an extra skip from the embedding, a norm and a ternary head."""

    def __init__(self, vocab: int, d: int, inter: int) -> None:
        super().__init__()
        config = HGRNBitConfig(vocab_size=vocab, hidden_size=d, num_hidden_layers=2, intermediate_size=inter)
        self.embed = nn.Embedding(vocab, d)
        self.block0 = HGRNBitBlock(config, 0)
        self.block1 = HGRNBitBlock(config, 1)
        self.norm = RMSNorm(d)
        self.head = BitLinear(d, vocab)
        self.register_buffer("lb1", torch.full((d,), 0.3))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        e = self.embed(input_ids)
        x, _ = self.block0(e, None, attention_mask)
        y, _ = self.block1(x, self.lb1, attention_mask)
        return self.head(self.norm(y + e))


def randomize(module: nn.Module, seed: int) -> nn.Module:
    init_random_(module, seed)
    return module.eval()


def torch_states(module: nn.Module, *args: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run a user module and collect each MLGRU/block call's final state (forward hooks), in call order."""
    states: list[torch.Tensor] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: states.append(out[1]))
        for m in module.modules()
        if isinstance(m, (MLGRU, HGRNBitBlock))
        and not any(isinstance(p, HGRNBitBlock) and m is p.attn for p in module.modules())
    ]
    try:
        with torch.no_grad():
            out = module(*args)
    finally:
        for h in hooks:
            h.remove()
    return out, states


def padded_batch(lengths: list[int], vocab: int | None, d: int | None, gen: torch.Generator):
    t = max(lengths)
    mask = torch.zeros(len(lengths), t, dtype=torch.long)
    for r, n in enumerate(lengths):
        mask[r, t - n :] = 1
    if vocab is not None:
        x = torch.randint(0, vocab, (len(lengths), t), generator=gen)
    else:
        x = torch.randn(len(lengths), t, d, generator=gen)
    return x, mask


# ------------------------------------------------------------------------------------------ causal LM


@settings(max_examples=8, phases=NO_EXPLAIN)
@given(
    d=st.sampled_from([16, 32]),
    layers=st.integers(1, 2),
    inter=st.sampled_from([16, 40]),
    vocab=st.integers(20, 70),
    quantized=st.booleans(),
    seed=st.integers(0, 1000),
    data=st.data(),
)
def test_causal_lm_import(d: int, layers: int, inter: int, vocab: int, quantized: bool, seed: int, data) -> None:
    """Flip-aware rule: interpreter(imported IR) == HGRNBitForCausalLM for shapes drawn after import."""
    config = HGRNBitConfig(vocab_size=vocab, hidden_size=d, num_hidden_layers=layers, intermediate_size=inter)
    model = randomize(HGRNBitForCausalLM.from_config(config), seed)
    if quantized:
        model.quantize_()
    imported = import_model(model)
    runner = InterpRunner(imported.module, imported.store)
    lengths = data.draw(st.lists(st.integers(1, 8), min_size=1, max_size=3))  # after import
    gen = torch.Generator().manual_seed(seed)
    ids, mask = padded_batch(lengths, vocab, None, gen)
    ref = model(ids, attention_mask=mask)
    logits, state = runner.prefill(ids.numpy(), mask.numpy())
    t = ids.shape[1]
    for r, n in enumerate(lengths):  # padded positions have no meaning: compare the real ones
        assert_logits_close(logits[r, t - n :], ref.logits[r, t - n :])
    for got, want in zip(state, ref.state):
        np.testing.assert_allclose(got, want.numpy(), **STATE_TOL)
    # greedy decoding through decode_step matches model.generate
    prompt = ids[:1, t - lengths[0] :]
    want_ids = model.generate(prompt, max_new_tokens=6, eos_token_id=None)
    _, st_ = runner.prefill(prompt.numpy(), np.ones(prompt.shape, np.int64))
    tokens = prompt.numpy()
    step_logits = runner.prefill(prompt.numpy(), np.ones(prompt.shape, np.int64))[0][:, -1]
    got = []
    for _ in range(6):
        nxt = step_logits.argmax(-1)
        got.append(int(nxt[0]))
        step_logits, st_ = runner.decode_step(nxt.astype(np.int64), st_)
    tokens = np.concatenate([tokens, np.array([got])], 1)
    ref_steps = model(want_ids).logits[:, prompt.shape[1] - 1 : -1]
    assert_generate_matches(tokens, want_ids, ref_steps, prompt.shape[1])


def test_causal_lm_teacher_forced_decode() -> None:
    config = HGRNBitConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, intermediate_size=48)
    model = randomize(HGRNBitForCausalLM.from_config(config), 5)
    imported = import_model(model)
    runner = InterpRunner(imported.module, imported.store)
    ids = torch.randint(0, 64, (2, 14), generator=torch.Generator().manual_seed(5))
    ref = model(ids).logits
    state = None
    steps = []
    for t in range(ids.shape[1]):
        logits, state = runner.decode_step(ids[:, t].numpy(), state)
        steps.append(logits)
    decoded = np.stack(steps, 1)
    assert_logits_close(decoded, ref)
    assert_teacher_forced(decoded, ref)


def test_one_import_serves_every_shape() -> None:
    config = HGRNBitConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1, intermediate_size=16)
    model = randomize(HGRNBitForCausalLM.from_config(config), 9)
    runner = InterpRunner(import_model(model).module, import_model(model).store)
    for b, t in [(1, 1), (3, 5), (2, 9)]:
        ids = torch.randint(0, 30, (b, t), generator=torch.Generator().manual_seed(b * t))
        logits, _ = runner.prefill(ids.numpy())
        assert logits.shape == (b, t, 30)
        assert_logits_close(logits, model(ids).logits)


def test_backbone_import_has_no_head() -> None:
    config = HGRNBitConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, intermediate_size=24)
    lm = randomize(HGRNBitForCausalLM.from_config(config), 3)
    imported = import_model(lm.model)
    assert not any(isinstance(o, T.WeightOp) and "lm_head" in o.sym.string_value() for o in imported.module.walk())
    runner = InterpRunner(imported.module, imported.store)
    ids = torch.randint(0, 40, (2, 6), generator=torch.Generator().manual_seed(3))
    hidden, state = runner.prefill(ids.numpy())
    ref_hidden, ref_state = lm.model(ids)
    assert_logits_close(hidden, ref_hidden, what="hidden states")


# ------------------------------------------------------------------------------------------ user modules


@settings(max_examples=6, phases=NO_EXPLAIN)
@given(d=st.sampled_from([8, 16, 24]), seed=st.integers(0, 1000), data=st.data())
def test_user_module_over_hidden_states(d: int, seed: int, data) -> None:
    net = randomize(TwoMixers(d), seed)
    imported = import_model(net)
    assert imported.num_states == 2
    fn_types = {f.sym_name.data: f.function_type for f in imported.module.ops}
    assert fn_types["prefill"].inputs.data[0].get_shape() == (T.DYN, T.DYN, d)
    runner = InterpRunner(imported.module, imported.store)
    lengths = data.draw(st.lists(st.integers(1, 7), min_size=1, max_size=3))
    x, mask = padded_batch(lengths, None, d, torch.Generator().manual_seed(seed))
    ref, ref_states = torch_states(net, x, mask)
    zeros = [np.zeros((x.shape[0], d), np.float32)] * 2
    out, *states = runner.run("prefill", x.numpy(), mask.numpy(), *zeros)
    t = x.shape[1]
    for r, n in enumerate(lengths):
        assert_logits_close(out[r, t - n :], ref[r, t - n :], what="hidden states")
    for got, want in zip(states, ref_states):
        np.testing.assert_allclose(got, want.numpy(), **STATE_TOL)
    # decode_step over the unpadded first row equals the module run on each prefix
    row = x[:1, t - lengths[0] :]
    state = [np.zeros((1, d), np.float32)] * 2
    for step in range(row.shape[1]):
        y, *state = runner.run("decode_step", row[:, step].numpy(), *state)
        want, want_states = torch_states(net, row[:, : step + 1])
        assert_logits_close(y, want[:, -1], what=f"decode step {step}")
    for got, want in zip(state, want_states):
        np.testing.assert_allclose(got, want.numpy(), **STATE_TOL)


@settings(max_examples=5, phases=NO_EXPLAIN)
@given(seed=st.integers(0, 1000), data=st.data())
def test_user_lm_with_embedding_and_head(seed: int, data) -> None:
    net = randomize(TwoBlocksLM(48, 16, 24), seed)
    imported = import_model(net)
    runner = InterpRunner(imported.module, imported.store)
    lengths = data.draw(st.lists(st.integers(1, 7), min_size=1, max_size=3))
    ids, mask = padded_batch(lengths, 48, None, torch.Generator().manual_seed(seed))
    ref, ref_states = torch_states(net, ids, mask)
    zeros = [np.zeros((ids.shape[0], 16), np.float32)] * 2
    logits, *states = runner.run("prefill", ids.numpy(), mask.numpy(), *zeros)
    t = ids.shape[1]
    for r, n in enumerate(lengths):
        assert_logits_close(logits[r, t - n :], ref[r, t - n :])
    for got, want in zip(states, ref_states):
        np.testing.assert_allclose(got, want.numpy(), **STATE_TOL)
    # greedy decoding through decode_step == greedy decoding of the PyTorch module
    prompt = ids[:1, t - lengths[0] :]
    seq = prompt.clone()
    for _ in range(5):
        seq = torch.cat([seq, net(seq)[:, -1].argmax(-1, keepdim=True)], 1)
    state = [np.zeros((1, 16), np.float32)] * 2
    for step in range(prompt.shape[1]):
        step_logits, *state = runner.run("decode_step", prompt[:, step].numpy(), *state)
    got = []
    for _ in range(5):
        nxt = step_logits.argmax(-1).astype(np.int64)
        got.append(int(nxt[0]))
        step_logits, *state = runner.run("decode_step", nxt, *state)
    tokens = np.concatenate([prompt.numpy(), np.array([got])], 1)
    ref_steps = net(seq)[:, prompt.shape[1] - 1 : -1]
    assert_generate_matches(tokens, seq, ref_steps, prompt.shape[1])


# ------------------------------------------------------------------------------------------ diagnostics


class WithLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = RMSNorm(8)
        self.proj = nn.Linear(8, 8)

    def forward(self, x):
        return self.proj(self.norm(x))


class FloatProjection(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(8, 8))

    def forward(self, x):
        return torch.matmul(x, self.w)


class WithMatmul(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mix = MLGRU(8)
        self.inner = FloatProjection()

    def forward(self, x):
        a, _ = self.mix(x)
        return self.inner(a)


class WithState(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mix = MLGRU(8)

    def forward(self, x, h):
        return self.mix(x, None, None, h)[0]


@pytest.mark.parametrize(
    "module, expected",
    [
        (WithLinear(), r"module proj \(Linear\)"),
        (WithMatmul(), r"matmul.*from inner"),
        (WithState(), r"(input 'h'|pass no state)"),
    ],
)
def test_unmappable_modules_name_the_module_and_op(module: nn.Module, expected: str) -> None:
    with pytest.raises(ImportError_, match=expected):
        import_model(module)


# ------------------------------------------------------------------------------------------ checkpoints


def test_import_checkpoint_reads_the_store_in_place(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    config = HGRNBitConfig(vocab_size=32, hidden_size=16, num_hidden_layers=1, intermediate_size=16)
    model = randomize(HGRNBitForCausalLM.from_config(config), 2)
    model.save_pretrained(tmp_path / "ckpt")
    save_file({k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}, str(tmp_path / "ckpt" / "model.safetensors"))
    imported = import_checkpoint(tmp_path / "ckpt")
    text = str(imported.module)
    assert "tensor<32x16xbf16>" in text  # stored dtype kept, nothing converted or copied
    assert imported.store.path is not None and Path(imported.store.path).resolve() == (tmp_path / "ckpt").resolve()
    runner = InterpRunner(imported.module, imported.store)
    ids = torch.randint(0, 32, (2, 5), generator=torch.Generator().manual_seed(2))
    reloaded = HGRNBitForCausalLM.from_pretrained(tmp_path / "ckpt")
    assert_logits_close(runner.prefill(ids.numpy())[0], reloaded(ids).logits)


def test_bf16_user_module_imports_as_stored() -> None:
    """bf16 parameters and buffers (get_attr) are stored upcast to f32, and the IR says so."""
    net = randomize(TwoMixers(8), 3).to(torch.bfloat16)
    imported = import_model(net)
    assert "bf16" not in str(imported.module)
    runner = InterpRunner(imported.module, imported.store)
    x = torch.randn(1, 4, 8, generator=torch.Generator().manual_seed(3))
    zeros = [np.zeros((1, 8), np.float32)] * 2
    out, *_ = runner.run("prefill", x.numpy(), np.ones((1, 4), np.int64), *zeros)
    ref, _ = torch_states(net.float(), x)
    assert_logits_close(out, ref, what="hidden states")
