"""Whole-model comparison by the flip-aware rule (``docs/model.md``, "Comparing implementations").

Activations are re-quantized to 8 bits at every BitLinear, so a one-ulp difference upstream can flip a
rounding step and the recurrence carries it along; two faithful implementations differ by up to a few
1e-2 in the logits. The rule:

* logits: relative RMS error ``||a - r|| / ||r|| <= 5e-2`` and ``max |a - r| <= 0.1``;
* teacher-forced greedy decoding: at the steps whose reference top-2 margin is >= 1e-2 (at least 16 of
  them), ``argmax(actual) == argmax(reference)`` at >= 98 % of them;
* free-running ``generate``: equal to the reference up to each row's first step with margin < 1e-2.

Besides the pieces of the rule (``compare_logits``, ``teacher_forced``, ``generate_agreement`` and
their ``assert_*`` forms), :func:`load_reference` reads a folder of outputs of the reference
implementation (``tests/data/ref_tiny``: a checkpoint plus the reference code's logits, decode logits
and greedy tokens on it) and :func:`check_against_reference` runs anything with the
``HGRNBitForCausalLM`` API (``mmfc.CompiledModel`` has it, on every target) through all of it.

numpy only at import (torch tensors are accepted through ``np.asarray``; the model checker imports
torch when it runs, to build the models' inputs), so every backend's tests can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REL_RMS_MAX = 5e-2
ABS_MAX = 0.1
MARGIN = 1e-2
AGREEMENT_MIN = 0.98
MIN_DECISIVE_STEPS = 16


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


@dataclass
class LogitsReport:
    rel_rms: float
    max_abs: float

    @property
    def ok(self) -> bool:
        return self.rel_rms <= REL_RMS_MAX and self.max_abs <= ABS_MAX

    def problem(self, what: str = "logits") -> str | None:
        """None when the logits part of the rule holds, else one line saying what broke it."""
        if self.ok:
            return None
        return (
            f"{what} differ beyond the flip-aware rule: rel RMS {self.rel_rms:.3e} (max {REL_RMS_MAX}), "
            f"max |diff| {self.max_abs:.3e} (max {ABS_MAX})"
        )


def compare_logits(actual: Any, reference: Any) -> LogitsReport:
    """Relative RMS error and max abs difference over all rows and positions."""
    a, r = _np(actual), _np(reference)
    if a.shape != r.shape:
        raise AssertionError(f"logits shape {a.shape} != reference shape {r.shape}")
    if not np.all(np.isfinite(a)):
        return LogitsReport(float("inf"), float("inf"))
    diff = a - r
    norm = float(np.linalg.norm(r))
    rel = float(np.linalg.norm(diff)) / norm if norm > 0 else float(np.linalg.norm(diff))
    return LogitsReport(rel, float(np.max(np.abs(diff))) if diff.size else 0.0)


def assert_logits_close(actual: Any, reference: Any, what: str = "logits") -> LogitsReport:
    """Assert the logits part of the flip-aware rule; returns the measured figures."""
    rep = compare_logits(actual, reference)
    problem = rep.problem(what)
    if problem is not None:
        raise AssertionError(problem)
    return rep


def top2_margin(logits: np.ndarray) -> np.ndarray:
    """Difference between the largest and second-largest logit along the last axis."""
    part = np.partition(logits, -2, axis=-1)
    return part[..., -1] - part[..., -2]


@dataclass
class TeacherForcedReport:
    decisive_steps: int
    agreeing_steps: int

    @property
    def agreement(self) -> float:
        return self.agreeing_steps / self.decisive_steps if self.decisive_steps else float("nan")

    def problem(self, min_steps: int = MIN_DECISIVE_STEPS) -> str | None:
        """None when the teacher-forced part of the rule holds, else one line saying what broke it."""
        if self.decisive_steps < min_steps:
            return f"only {self.decisive_steps} decisive steps (margin >= {MARGIN}); need {min_steps}"
        if self.agreement < AGREEMENT_MIN:
            return (
                f"teacher-forced greedy agreement {self.agreement:.3f} over {self.decisive_steps} decisive "
                f"steps < {AGREEMENT_MIN}"
            )
        return None


def teacher_forced(actual_logits: Any, reference_logits: Any) -> TeacherForcedReport:
    """Compare argmaxes at each position of teacher-forced logits ``[B, T, V]`` (both computed on the same
    reference prefix), counting only steps whose reference top-2 margin is >= 1e-2."""
    a, r = _np(actual_logits), _np(reference_logits)
    if a.shape != r.shape:
        raise AssertionError(f"logits shape {a.shape} != reference shape {r.shape}")
    decisive = top2_margin(r) >= MARGIN
    agree = (np.argmax(a, axis=-1) == np.argmax(r, axis=-1)) & decisive
    return TeacherForcedReport(int(decisive.sum()), int(agree.sum()))


def assert_teacher_forced(actual_logits: Any, reference_logits: Any, min_steps: int = MIN_DECISIVE_STEPS) -> TeacherForcedReport:
    rep = teacher_forced(actual_logits, reference_logits)
    problem = rep.problem(min_steps)
    if problem is not None:
        raise AssertionError(problem)
    return rep


@dataclass
class GenerateReport:
    """Free-running generation against the reference: ``compared`` tokens were equal; ``mismatch`` is the
    first ``(row, new-token index)`` that differed before the row's first low-margin step (or None)."""

    compared: int
    mismatch: tuple[int, int] | None = None

    @property
    def ok(self) -> bool:
        return self.mismatch is None

    def problem(self) -> str | None:
        if self.mismatch is None:
            return None
        row, step = self.mismatch
        return f"row {row}: generated token {step} differs from the reference (its top-2 margin is >= {MARGIN})"


def generate_agreement(
    actual_ids: Any, reference_ids: Any, reference_step_logits: Any, prompt_len: int
) -> GenerateReport:
    """Free-running generation: rows must agree up to each row's first new step whose reference top-2
    margin is < 1e-2 (``reference_step_logits [B, n, V]`` are the logits each new token was chosen from;
    ids are ``[B, prompt_len + n]``). A row that stops early differs at its first missing token."""
    a = np.asarray(_np(actual_ids), dtype=np.int64)
    r = np.asarray(_np(reference_ids), dtype=np.int64)
    margins = top2_margin(_np(reference_step_logits))
    compared = 0
    for row in range(r.shape[0]):
        new_a, new_r = a[row, prompt_len:], r[row, prompt_len:]
        for step in range(min(len(new_r), margins.shape[1])):
            if margins[row, step] < MARGIN:
                break
            if step >= len(new_a) or new_a[step] != new_r[step]:
                return GenerateReport(compared, (row, step))
            compared += 1
    return GenerateReport(compared)


def assert_generate_matches(actual_ids: Any, reference_ids: Any, reference_step_logits: Any, prompt_len: int) -> int:
    """:func:`generate_agreement` as an assertion; returns the number of compared tokens."""
    rep = generate_agreement(actual_ids, reference_ids, reference_step_logits, prompt_len)
    problem = rep.problem()
    if problem is not None:
        raise AssertionError(problem)
    return rep.compared


# ------------------------------------------------------------------------------ a model against PyTorch


def left_padded_batch(rng: np.random.Generator, vocab: int, b: int, t: int) -> tuple[Any, Any]:
    """Random token ids ``[b, t]`` and a left-padding attention mask (each row has 1 to t real
    tokens; random ids under the padding, which the mask must neutralize), as int64 tensors."""
    import torch

    ids = torch.from_numpy(rng.integers(0, vocab, (b, t)))
    lengths = rng.integers(1, t + 1, b)
    mask = torch.from_numpy((np.arange(t)[None, :] >= (t - lengths)[:, None]).astype(np.int64))
    return ids, mask


def assert_matches_pytorch(compiled: Any, model: Any, ids: Any, attention_mask: Any = None, new_tokens: int = 4) -> None:
    """A compiled model against the PyTorch model it came from, by the rule: prompt logits at the real
    positions, the recurrent state after the prompt, teacher-forced argmax at the decisive steps
    (a tiny model may have none), and ``new_tokens`` of free-running greedy ``generate``."""
    import torch

    b, t = ids.shape
    mask = attention_mask if attention_mask is not None else torch.ones(b, t, dtype=torch.long)
    out = compiled(ids, attention_mask=attention_mask)
    ref = model(ids, attention_mask=attention_mask)
    real = mask.bool()
    assert_logits_close(out.logits[real], ref.logits[real])
    for got, want in zip(out.state, ref.state, strict=True):
        assert_logits_close(got, want, "state")
    assert_teacher_forced(out.logits[real], ref.logits[real], min_steps=0)
    got = compiled.generate(ids, attention_mask=attention_mask, max_new_tokens=new_tokens, eos_token_id=None)
    want = model.generate(ids, attention_mask=attention_mask, max_new_tokens=new_tokens, eos_token_id=None)
    full_mask = torch.cat([mask, torch.ones(b, new_tokens, dtype=torch.long)], dim=1)
    step_logits = model(want, attention_mask=full_mask).logits[:, t - 1 : t + new_tokens - 1]
    assert_generate_matches(got, want, step_logits, t)


# ------------------------------------------------------------------------------ reference outputs

#: the files of a reference folder (beside its checkpoint: config.json + model.safetensors)
REFERENCE_FILES = {
    "input_ids": "inputs.npy",
    "logits": "logits_fp32.npy",
    "decode_logits": "decode_logits_fp32.npy",
    "greedy_ids": "greedy_fp32.npy",
    "greedy_step_logits": "greedy_step_logits_fp32.npy",
}


@dataclass(frozen=True)
class Reference:
    """Outputs of the reference implementation on one checkpoint (see the folder's ``NOTES.md``).

    * ``input_ids [B, T]``: the prompt of the logits checks;
    * ``logits [B, T, V]``: one prefill over ``input_ids``;
    * ``decode_logits [B, T, V]``: ``input_ids`` fed one token at a time from the zero state; row t is
      the logits after token t;
    * ``greedy_ids [B, P + N]``: a prompt of P tokens, then N greedy (argmax) tokens;
    * ``greedy_step_logits [B, N, V]``: the logits each greedy token was taken from.
    """

    path: Path
    input_ids: np.ndarray
    logits: np.ndarray
    decode_logits: np.ndarray
    greedy_ids: np.ndarray
    greedy_step_logits: np.ndarray

    @property
    def new_tokens(self) -> int:
        """N, the number of greedy tokens."""
        return int(self.greedy_step_logits.shape[1])

    @property
    def prompt_len(self) -> int:
        """P, the greedy prompt's length."""
        return int(self.greedy_ids.shape[1]) - self.new_tokens

    @property
    def prompt(self) -> np.ndarray:
        return self.greedy_ids[:, : self.prompt_len]


def load_reference(directory: str | Path) -> Reference:
    """Read a reference folder (:data:`REFERENCE_FILES`); the model itself is the folder's checkpoint
    (``HGRNBitForCausalLM.from_pretrained(directory)``, ``mmfc.compile(directory)``). Raises
    ``ValueError`` naming the file when one is missing or the shapes do not fit together."""
    path = Path(directory)
    arrays: dict[str, np.ndarray] = {}
    for field, name in REFERENCE_FILES.items():
        file = path / name
        if not file.is_file():
            raise ValueError(f"{file}: missing (a reference folder holds {', '.join(REFERENCE_FILES.values())})")
        arrays[field] = np.load(file, allow_pickle=False)
    ref = Reference(path, **arrays)
    b, t = ref.input_ids.shape
    v = ref.logits.shape[-1]
    want = {
        "logits": (b, t, v),
        "decode_logits": (b, t, v),
        "greedy_step_logits": (b, ref.new_tokens, v),
    }
    for field, shape in want.items():
        if getattr(ref, field).shape != shape:
            raise ValueError(f"{path / REFERENCE_FILES[field]}: shape {getattr(ref, field).shape}, expected {shape}")
    if ref.greedy_ids.shape[0] != b or ref.prompt_len < 1:
        raise ValueError(f"{path / REFERENCE_FILES['greedy_ids']}: shape {ref.greedy_ids.shape} does not fit "
                         f"{ref.new_tokens} greedy steps of {b} rows")
    return ref


@dataclass
class ReferenceReport:
    """What :func:`check_against_reference` measured; ``ok`` when every part of the rule holds."""

    prefill: LogitsReport
    decode: LogitsReport
    teacher_forced_logits: LogitsReport
    teacher_forced: TeacherForcedReport
    generate: GenerateReport

    def problems(self) -> list[str]:
        found = [
            self.prefill.problem("prefill logits"),
            self.decode.problem("step-by-step decode logits"),
            self.teacher_forced_logits.problem("teacher-forced greedy step logits"),
            self.teacher_forced.problem(),
            self.generate.problem(),
        ]
        return [p for p in found if p is not None]

    @property
    def ok(self) -> bool:
        return not self.problems()

    def __str__(self) -> str:
        lines = [
            f"prefill logits: rel RMS {self.prefill.rel_rms:.3e}, max |diff| {self.prefill.max_abs:.3e}",
            f"decode logits: rel RMS {self.decode.rel_rms:.3e}, max |diff| {self.decode.max_abs:.3e}",
            f"teacher-forced greedy: {self.teacher_forced.agreeing_steps}/{self.teacher_forced.decisive_steps} "
            f"decisive steps agree; step logits rel RMS {self.teacher_forced_logits.rel_rms:.3e}, "
            f"max |diff| {self.teacher_forced_logits.max_abs:.3e}",
            f"free-running generate: {self.generate.compared} tokens compared",
        ]
        lines += [f"FAIL: {p}" for p in self.problems()]
        return "\n".join(lines)

    def raise_for_problems(self) -> ReferenceReport:
        """Raise ``AssertionError`` listing every broken part (with the figures); else return self."""
        if not self.ok:
            raise AssertionError(f"the model differs from the reference outputs:\n{self}")
        return self


def check_against_reference(model: Any, ref: Reference) -> ReferenceReport:
    """Run ``model`` on the reference's inputs and compare it by the flip-aware rule.

    ``model`` is anything with the ``HGRNBitForCausalLM`` API: ``model(ids).logits``,
    ``prefill(ids) -> .logits, .state``, ``decode_step(ids [B], state) -> (logits [B, V], state)`` and
    ``generate(ids, max_new_tokens=, eos_token_id=None)``; ``mmfc.CompiledModel`` has it on every
    target. Checks:

    * prefill: ``model(input_ids).logits`` against ``logits`` (logits rule);
    * decode: ``input_ids`` fed one token at a time through ``decode_step`` from a zero state against
      ``decode_logits`` (logits rule);
    * teacher-forced greedy: the reference's greedy prompt through ``prefill``, then its greedy tokens
      through ``decode_step``; the logits of the N steps against ``greedy_step_logits`` (argmax
      agreement at the decisive steps, and the logits rule);
    * free-running ``generate`` of N tokens from the greedy prompt against ``greedy_ids`` up to each
      row's first low-margin step.

    Returns the report without raising (``report.ok``, ``report.raise_for_problems()``).
    """
    import torch

    ids = torch.as_tensor(ref.input_ids, dtype=torch.int64)
    prefill = compare_logits(model(ids).logits, ref.logits)

    # decode from a zero state; its shape (one [B, d] tensor per layer) from a one-token prefill
    state = [torch.zeros_like(torch.as_tensor(s)) for s in model.prefill(ids[:, :1]).state]
    steps = []
    for t in range(ids.shape[1]):
        logits, state = model.decode_step(ids[:, t], state)
        steps.append(_np(logits))
    decode = compare_logits(np.stack(steps, axis=1), ref.decode_logits)

    greedy = torch.as_tensor(ref.greedy_ids, dtype=torch.int64)
    p, n = ref.prompt_len, ref.new_tokens
    out = model.prefill(greedy[:, :p])
    steps = [_np(out.logits)[:, -1]]
    state = out.state
    for k in range(n - 1):
        logits, state = model.decode_step(greedy[:, p + k], state)
        steps.append(_np(logits))
    forced = np.stack(steps, axis=1)

    generated = model.generate(greedy[:, :p], max_new_tokens=n, eos_token_id=None)
    return ReferenceReport(
        prefill=prefill,
        decode=decode,
        teacher_forced_logits=compare_logits(forced, ref.greedy_step_logits),
        teacher_forced=teacher_forced(forced, ref.greedy_step_logits),
        generate=generate_agreement(generated, ref.greedy_ids, ref.greedy_step_logits, p),
    )
