"""The PyTorch model family: parameter counts, BitLinear storage paths, prefill vs decode, left padding,
generation, user-built models. Whole-model comparisons use the flip-aware rule (mmfc.testing)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from mmfc.frontends.torch import numerics as tn
from mmfc.frontends.torch.modeling import init_random_
from mmfc.models import (
    GLU,
    MLGRU,
    BitLinear,
    HGRNBitConfig,
    HGRNBitForCausalLM,
    RMSNorm,
    preset_config,
)
from mmfc.testing import (
    assert_generate_matches,
    assert_logits_close,
    assert_teacher_forced,
    compare_logits,
    teacher_forced,
)

#: Hypothesis's explain phase re-runs a failing example under a line tracer, which takes minutes for an
#: example that builds and runs a model; without it a failure is reported in seconds.
NO_EXPLAIN = [p for p in Phase if p is not Phase.explain]

SPEC_PARAMETERS = {"370m": 374_108_160, "1.3b": 1_364_779_008, "2.7b": 2_702_357_504}
SPEC_TERNARY = {"370m": 341_049_344, "1.3b": 1_298_661_376, "2.7b": 2_619_473_920}


def tiny_config(d: int = 32, layers: int = 2, inter: int = 48, vocab: int = 97, **kw) -> HGRNBitConfig:
    return HGRNBitConfig(
        vocab_size=vocab, hidden_size=d, num_hidden_layers=layers, intermediate_size=inter, **kw
    )


def random_model(config: HGRNBitConfig, seed: int = 0) -> HGRNBitForCausalLM:
    model = HGRNBitForCausalLM.from_config(config, seed=seed)
    return init_random_(model, seed)


# ------------------------------------------------------------------------------------------ sizes


@pytest.mark.parametrize("name", sorted(SPEC_PARAMETERS))
def test_preset_parameter_counts(name: str) -> None:
    config = preset_config(name)
    model = HGRNBitForCausalLM.from_config(config, device="meta")  # shapes only, no memory
    counted = sum(p.numel() for p in model.parameters())
    assert counted == SPEC_PARAMETERS[name]
    assert config.num_parameters == SPEC_PARAMETERS[name]
    assert config.ternary_parameters == SPEC_TERNARY[name]
    ternary = sum(m.weight.numel() for m in model.modules() if isinstance(m, BitLinear))
    assert ternary == SPEC_TERNARY[name]


def test_released_intermediate_sizes() -> None:
    assert [preset_config(n).intermediate_size for n in ("370m", "1.3b", "2.7b")] == [2816, 5632, 6912]


# ------------------------------------------------------------------------------------------ BitLinear


def test_bitlinear_float_and_trits_bit_identical() -> None:
    gen = torch.Generator().manual_seed(0)
    layer = BitLinear(40, 24)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(24, 40, generator=gen) * 0.03)
        layer.norm.weight.copy_(0.5 + torch.rand(40, generator=gen))
    x = torch.randn(3, 5, 40, generator=gen)
    y_float = layer(x)
    trits, scale = tn.quant_weight(layer.weight)
    stored = BitLinear.from_trits(trits, scale)
    with torch.no_grad():
        stored.norm.weight.copy_(layer.norm.weight)
    assert torch.equal(stored(x), y_float)
    layer.quantize_()
    assert layer.weight.dtype == torch.int8 and layer.weight_scale.dtype == torch.float32
    assert torch.equal(layer(x), y_float)


def test_bitlinear_matches_reference_formula() -> None:
    """y = (x_q . W_q^T) / (s_x * s_w), written out independently in float64."""
    gen = torch.Generator().manual_seed(1)
    layer = BitLinear(16, 8)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(8, 16, generator=gen) * 0.1)
    x = torch.randn(4, 16, generator=gen)
    xh = x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6)
    s_x = 127.0 / xh.abs().amax(-1, keepdim=True)
    x_q = torch.clamp(torch.sign(xh * s_x) * torch.floor(torch.abs(xh * s_x) + 0.5), -128, 127)
    w = layer.weight.detach()
    s_w = 1.0 / w.abs().double().mean()
    w_q = torch.clamp(torch.round(w.double() * s_w), -1, 1)
    ref = (x_q.double() @ w_q.T) / (s_x.double() * s_w)
    torch.testing.assert_close(layer(x).double(), ref, rtol=1e-5, atol=1e-5)


def test_bitlinear_cache_follows_weight_updates() -> None:
    layer = BitLinear(8, 4)
    x = torch.randn(2, 8)
    y1 = layer(x)
    with torch.no_grad():
        layer.weight.mul_(-1)
    assert torch.equal(layer(x), -y1)


# ------------------------------------------------------------------------------------------ prefill/decode


def decode_all(model: HGRNBitForCausalLM, ids: torch.Tensor) -> torch.Tensor:
    state = None
    steps = []
    for t in range(ids.shape[1]):
        if state is None:
            out = model(ids[:, : 1])
            logits, state = out.logits[:, 0], out.state
        else:
            logits, state = model.decode_step(ids[:, t], state)
        steps.append(logits)
    return torch.stack(steps, dim=1)


@settings(max_examples=12, phases=NO_EXPLAIN)
@given(
    d=st.sampled_from([8, 16, 24, 32]),
    layers=st.integers(1, 3),
    inter=st.sampled_from([8, 16, 40]),
    vocab=st.integers(8, 64),
    batch=st.integers(1, 3),
    length=st.integers(1, 12),
    seed=st.integers(0, 10_000),
)
def test_prefill_equals_decode(d: int, layers: int, inter: int, vocab: int, batch: int, length: int, seed: int) -> None:
    """Flip-aware rule: prefill logits == step-by-step decode logits on random tiny configs."""
    model = random_model(tiny_config(d, layers, inter, vocab), seed)
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, length), generator=gen)
    prefill = model(ids)
    decoded = decode_all(model, ids)
    assert_logits_close(decoded, prefill.logits)
    # the final recurrent states agree too
    _, state = model.decode_step(ids[:, -1], model(ids[:, :-1]).state if length > 1 else None)
    for a, b in zip(state, prefill.state):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_prefill_decode_teacher_forced_on_longer_sequence() -> None:
    model = random_model(tiny_config(64, 2, 96, 128), 7)
    ids = torch.randint(0, 128, (2, 40), generator=torch.Generator().manual_seed(7))
    prefill = model(ids).logits
    decoded = decode_all(model, ids)
    assert_logits_close(decoded, prefill)
    assert_teacher_forced(decoded, prefill)


def test_split_prefill_continues_state() -> None:
    model = random_model(tiny_config(), 3)
    ids = torch.randint(0, 97, (2, 10), generator=torch.Generator().manual_seed(3))
    whole = model(ids)
    first = model(ids[:, :6])
    second = model(ids[:, 6:], state=first.state)
    assert_logits_close(torch.cat([first.logits, second.logits], 1), whole.logits)


# ------------------------------------------------------------------------------------------ padding


@settings(max_examples=10, phases=NO_EXPLAIN)
@given(lengths=st.lists(st.integers(1, 9), min_size=2, max_size=4), seed=st.integers(0, 1000))
def test_left_padded_batch_equals_rows_alone(lengths: list[int], seed: int) -> None:
    model = random_model(tiny_config(24, 2, 32, 50), seed)
    gen = torch.Generator().manual_seed(seed)
    t = max(lengths)
    ids = torch.zeros(len(lengths), t, dtype=torch.long)
    mask = torch.zeros(len(lengths), t, dtype=torch.long)
    rows = []
    for r, n in enumerate(lengths):
        row = torch.randint(1, 50, (n,), generator=gen)
        rows.append(row)
        ids[r, t - n :] = row
        ids[r, : t - n] = torch.randint(0, 50, (t - n,), generator=gen)  # garbage under the padding
        mask[r, t - n :] = 1
    batch = model(ids, attention_mask=mask)
    for r, row in enumerate(rows):
        alone = model(row[None])
        n = len(row)
        assert_logits_close(batch.logits[r : r + 1, t - n :], alone.logits, what=f"row {r}")
        torch.testing.assert_close(
            torch.stack([s[r] for s in batch.state]), torch.stack([s[0] for s in alone.state]), rtol=1e-4, atol=1e-4
        )
    gen_batch = model.generate(ids, attention_mask=mask, max_new_tokens=5, eos_token_id=None)
    for r, row in enumerate(rows):
        alone = model.generate(row[None], max_new_tokens=5, eos_token_id=None)
        # flip-aware generate rule: equal up to the first low-margin step of the reference
        step_logits = _step_logits(model, alone, len(row))
        assert_generate_matches(gen_batch[r : r + 1, t:], alone[:, len(row) :], step_logits, 0)


def _step_logits(model: HGRNBitForCausalLM, ids: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """Teacher-forced logits from which each new token of ``ids`` was chosen: [B, n, V]."""
    logits = model(ids).logits
    return logits[:, prompt_len - 1 : ids.shape[1] - 1]


def test_padded_positions_zero_the_input_gate() -> None:
    model = random_model(tiny_config(16, 1, 16, 30), 5)
    ids = torch.tensor([[3, 4, 5, 6]])
    mask = torch.tensor([[0, 0, 1, 1]])
    attn = model.model.layers[0].attn
    x = model.model.embeddings(ids)
    a = model.model.layers[0].attn_norm(x)
    i_prime, _, _ = attn.gates(a, model.model.layer_lower_bounds()[0], mask)
    assert torch.all(i_prime[0, :2] == 0) and torch.any(i_prime[0, 2:] != 0)
    _, h = attn(a[:, :2], model.model.layer_lower_bounds()[0], mask[:, :2])
    assert torch.all(h == 0)


# ------------------------------------------------------------------------------------------ generate


def test_generate_greedy_is_argmax_loop() -> None:
    model = random_model(tiny_config(), 11)
    prompt = torch.tensor([[5, 9, 2 + 10, 33], [1, 7, 8, 44]])
    out = model.generate(prompt, max_new_tokens=6, eos_token_id=None)
    assert out.shape == (2, 10) and torch.equal(out[:, :4], prompt)
    ids = prompt
    for _ in range(6):
        nxt = model(ids).logits[:, -1].argmax(-1)
        ids = torch.cat([ids, nxt[:, None]], 1)
    logits = _step_logits(model, ids, 4)
    assert assert_generate_matches(out, ids, logits, 4) > 0


def test_generate_stops_at_eos_and_pads() -> None:
    model = random_model(tiny_config(), 12)
    prompt = torch.tensor([[5, 9, 12, 33], [1, 7, 8, 44]])
    free = model.generate(prompt, max_new_tokens=8, eos_token_id=None)
    eos = int(free[0, 4 + 2])  # make row 0's third new token the EOS
    out = model.generate(prompt, max_new_tokens=8, eos_token_id=eos, pad_token_id=0)
    row0 = out[0, 4:].tolist()
    first = row0.index(eos)
    assert all(t == 0 for t in row0[first + 1 :])
    if eos not in free[1, 4:].tolist():
        assert out.shape[1] == 12  # row 1 never finishes: full length
    # config default EOS, and None disables stopping
    model.config.eos_token_id = int(free[0, 4])
    stopped = model.generate(prompt[:1], max_new_tokens=8)
    assert stopped.shape[1] == 5
    assert model.generate(prompt[:1], max_new_tokens=8, eos_token_id=None).shape[1] == 12


def test_sampling_is_seeded_and_topk1_is_greedy() -> None:
    model = random_model(tiny_config(), 13)
    prompt = torch.tensor([[5, 9, 12]])
    kw = dict(max_new_tokens=10, do_sample=True, temperature=1.3, eos_token_id=None)
    a = model.generate(prompt, seed=1, **kw)
    b = model.generate(prompt, seed=1, **kw)
    c = model.generate(prompt, seed=2, **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)
    greedy = model.generate(prompt, max_new_tokens=10, eos_token_id=None)
    assert torch.equal(model.generate(prompt, seed=3, top_k=1, **{**kw, "temperature": 0.7}), greedy)
    assert torch.equal(model.generate(prompt, seed=3, top_p=1e-6, **kw), greedy)


def test_generate_rejects_bad_arguments() -> None:
    model = random_model(tiny_config(), 14)
    with pytest.raises(ValueError, match="top_p"):
        model.generate(torch.tensor([[1]]), do_sample=True, top_p=1.5)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(torch.tensor([[1]]), do_sample=True, temperature=0)
    with pytest.raises(ValueError, match="out of range"):
        model(torch.tensor([[97]]))


# ------------------------------------------------------------------------------------------ blocks


def test_user_built_model_from_blocks() -> None:
    """A different arrangement: two MLGRU mixers sharing one GLU, no embedding or head."""

    class TwoMixers(torch.nn.Module):
        def __init__(self, d: int) -> None:
            super().__init__()
            self.norm1, self.mix1 = RMSNorm(d), MLGRU(d)
            self.norm2, self.mix2 = RMSNorm(d), MLGRU(d)
            self.glu = GLU(d, 2 * d)

        def forward(self, x, state=(None, None)):
            a, h1 = self.mix1(self.norm1(x), None, None, state[0])
            b, h2 = self.mix2(self.norm2(x + a), torch.full((x.shape[-1],), 0.25), None, state[1])
            return x + self.glu(a + b), (h1, h2)

    torch.manual_seed(0)
    net = TwoMixers(16)
    x = torch.randn(2, 7, 16)
    full, _ = net(x)
    st_ = (None, None)
    outs = []
    for t in range(7):
        y, st_ = net(x[:, t : t + 1], st_)
        outs.append(y)
    assert_logits_close(torch.cat(outs, 1), full, what="hidden states")


def test_quantized_model_equals_float_model() -> None:
    model = random_model(tiny_config(), 21)
    ids = torch.randint(0, 97, (2, 6), generator=torch.Generator().manual_seed(21))
    ref = model(ids).logits
    model.quantize_()
    assert torch.equal(model(ids).logits, ref)
    assert model.config.quantization_config == {"quant_method": "mmfc-ternary", "weights": "int8-trits"}


def test_flip_aware_rule_catches_plausible_bugs() -> None:
    """The rule is not vacuous: a missing lower bound or per-row weight scales fail it."""
    config = tiny_config(64, 3, 96, 128)
    model = random_model(config, 31)
    ids = torch.randint(0, 128, (2, 24), generator=torch.Generator().manual_seed(31))
    ref = model(ids).logits
    no_lb = random_model(config.replace(use_lower_bound=False), 31)
    state = {k: v for k, v in model.state_dict().items() if k != "model.lower_bounds"}
    no_lb.load_state_dict(state)
    rep = compare_logits(no_lb(ids).logits, ref)
    assert not rep.ok and rep.rel_rms > 0.1
    assert teacher_forced(no_lb(ids).logits, ref).agreement < 0.95
