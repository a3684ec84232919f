"""The model on CUDA: same integers as on the CPU, whole-model logits by the flip-aware rule.

Skips cleanly without a GPU (CI has none); run on the GPU machine (see benchmarks/RESULTS.md)."""

from __future__ import annotations

import pytest
import torch

from mmfc.frontends.torch import numerics as tn
from mmfc.frontends.torch.modeling import init_random_
from mmfc.models import HGRNBitConfig, HGRNBitForCausalLM
from mmfc.testing import assert_logits_close, assert_teacher_forced

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_accum_exact_on_cuda_even_with_tf32() -> None:
    gen = torch.Generator().manual_seed(0)
    x_q = torch.randint(-128, 128, (64, 4096), generator=gen).to(torch.int8)
    trits = torch.randint(-1, 2, (512, 4096), generator=gen).to(torch.int8)
    ref = tn.accum(x_q, trits)
    old = torch.backends.cuda.matmul.allow_tf32
    try:
        for tf32 in (False, True):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            assert torch.equal(tn.accum(x_q.cuda(), trits.cuda()).cpu(), ref)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def test_model_cuda_matches_cpu() -> None:
    config = HGRNBitConfig(vocab_size=256, hidden_size=128, num_hidden_layers=2, intermediate_size=256)
    cpu = init_random_(HGRNBitForCausalLM.from_config(config, seed=1), 1)
    gpu = init_random_(HGRNBitForCausalLM.from_config(config, seed=1), 1).to("cuda")
    ids = torch.randint(0, 256, (2, 48), generator=torch.Generator().manual_seed(1))
    ref = cpu(ids).logits
    out = gpu(ids.cuda()).logits.cpu()
    assert_logits_close(out, ref)
    assert_teacher_forced(out, ref)
    generated = gpu.generate(ids[:, :8].cuda(), max_new_tokens=8, eos_token_id=None)
    assert generated.shape == (2, 16) and generated.device.type == "cuda"
