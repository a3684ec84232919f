"""Token generation over any (prefill, decode_step) pair: the PyTorch model and every compiled target.

Semantics follow Hugging Face ``generate``: the result is prompt + new tokens ``[B, T + n]``; greedy by
default; sampling applies temperature, then top-k, then top-p (nucleus) to the logits and draws from
the softmax with a ``torch.Generator`` seeded by ``seed`` on the device of the ids (so a sampled run
is reproducible on one device, and a GPU step copies only the token ids to the host); rows that produced EOS are padded afterwards,
and the loop ends when every row has finished or ``max_new_tokens`` tokens were made.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch

from mmfc.dialects.seeds import check_seed

Prefill = Callable[[torch.Tensor, "torch.Tensor | None"], Any]  # -> object with .logits [B,T,V], .state
DecodeStep = Callable[[torch.Tensor, Any], "tuple[torch.Tensor, Any]"]  # ids [B] -> (logits [B,V], state)


def process_logits(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """Apply temperature, top-k and top-p to ``logits [B, V]`` (filtered entries become -inf)."""
    scores = logits.to(torch.float32)
    if temperature is not None and temperature != 1.0:
        # shifted by the row's maximum first (softmax does not change): a tiny temperature then
        # sends the other scores to -inf instead of every score to +-inf (NaN probabilities)
        scores = (scores - scores.amax(dim=-1, keepdim=True)) / temperature
    if top_k is not None and top_k > 0:
        k = min(top_k, scores.shape[-1])
        kth = torch.topk(scores, k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_scores, sorted_idx = torch.sort(scores, dim=-1, descending=False)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cumulative <= (1 - top_p)
        remove_sorted[..., -1:] = False  # always keep the most likely token
        remove = remove_sorted.scatter(-1, sorted_idx, remove_sorted)
        scores = scores.masked_fill(remove, float("-inf"))
    return scores


def validate_sampling(
    max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None, seed: int | None = None
) -> None:
    """A ``ValueError`` for a sampling argument out of its range (temperature finite and > 0, top-k
    >= 0, top-p in (0, 1], seed in [0, 2**64))."""
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
    if temperature is not None and not 0 < temperature < math.inf:
        raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")
    if seed is not None:
        check_seed(seed)
    if top_k is not None and top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {top_k!r}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")


def generate_loop(
    prefill: Prefill,
    decode_step: DecodeStep,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    max_new_tokens: int = 20,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
) -> torch.Tensor:
    """Prefill once, then one ``decode_step`` per new token; see the module docstring."""
    validate_sampling(max_new_tokens, temperature, top_k, top_p, seed)
    input_ids = torch.as_tensor(input_ids)
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    if input_ids.dim() != 2 or input_ids.shape[1] == 0:
        raise ValueError(f"input_ids must be a non-empty [B, T] tensor, got shape {tuple(input_ids.shape)}")
    if attention_mask is not None:
        attention_mask = torch.as_tensor(attention_mask, device=input_ids.device)
    eos = [] if eos_token_id is None else ([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id))
    pad = pad_token_id if pad_token_id is not None else (eos[0] if eos else 0)
    generator = None
    if do_sample:  # on the model's device: a step copies nothing to the host but the token ids
        generator = torch.Generator(device=input_ids.device)
        generator.manual_seed(0 if seed is None else int(seed))

    out = prefill(input_ids, attention_mask)
    logits, state = out.logits[:, -1], out.state
    tokens = [input_ids]
    finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    eos_t = torch.tensor(eos, dtype=input_ids.dtype, device=input_ids.device)
    for step in range(max_new_tokens):
        if do_sample:
            scores = process_logits(logits, temperature, top_k, top_p)
            probs = torch.softmax(scores, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator)[:, 0]
        else:
            nxt = torch.argmax(logits, dim=-1)
        nxt = torch.where(finished, torch.full_like(nxt, pad), nxt.to(input_ids.dtype))
        tokens.append(nxt[:, None])
        if eos:
            finished |= torch.isin(nxt, eos_t)
            if bool(finished.all()):
                break
        if step + 1 < max_new_tokens:
            logits, state = decode_step(nxt, state)
    return torch.cat(tokens, dim=1)
