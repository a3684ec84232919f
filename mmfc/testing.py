"""Whole-model comparison by the flip-aware rule of ``shared/docs/architecture.md``.

Activations are re-quantized to 8 bits at every BitLinear, so a one-ulp difference upstream can flip a
rounding step and the recurrence carries it along; two faithful implementations differ by up to a few
1e-2 in the logits. The rule:

* logits: relative RMS error ``||a - r|| / ||r|| <= 5e-2`` and ``max |a - r| <= 0.1``;
* teacher-forced greedy decoding: at the steps whose reference top-2 margin is >= 1e-2 (at least 16 of
  them), ``argmax(actual) == argmax(reference)`` at >= 98 % of them;
* free-running ``generate``: equal to the reference up to each row's first step with margin < 1e-2.

numpy only (accepts torch tensors through ``np.asarray``), so every backend's tests can use it.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    if not rep.ok:
        raise AssertionError(
            f"{what} differ beyond the flip-aware rule: rel RMS {rep.rel_rms:.3e} (max {REL_RMS_MAX}), "
            f"max |diff| {rep.max_abs:.3e} (max {ABS_MAX})"
        )
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


def teacher_forced(actual_logits: Any, reference_logits: Any) -> TeacherForcedReport:
    """Compare argmaxes at each position of teacher-forced logits ``[B, T, V]`` (both computed on the same
    reference prefix), counting only steps whose reference top-2 margin is >= 1e-2."""
    a, r = _np(actual_logits), _np(reference_logits)
    decisive = top2_margin(r) >= MARGIN
    agree = (np.argmax(a, axis=-1) == np.argmax(r, axis=-1)) & decisive
    return TeacherForcedReport(int(decisive.sum()), int(agree.sum()))


def assert_teacher_forced(actual_logits: Any, reference_logits: Any, min_steps: int = MIN_DECISIVE_STEPS) -> TeacherForcedReport:
    rep = teacher_forced(actual_logits, reference_logits)
    if rep.decisive_steps < min_steps:
        raise AssertionError(f"only {rep.decisive_steps} decisive steps (margin >= {MARGIN}); need {min_steps}")
    if rep.agreement < AGREEMENT_MIN:
        raise AssertionError(
            f"teacher-forced greedy agreement {rep.agreement:.3f} over {rep.decisive_steps} decisive steps "
            f"< {AGREEMENT_MIN}"
        )
    return rep


def assert_generate_matches(actual_ids: Any, reference_ids: Any, reference_step_logits: Any, prompt_len: int) -> int:
    """Free-running generation: rows must agree up to each row's first new step whose reference top-2
    margin is < 1e-2 (``reference_step_logits [B, n, V]`` are the logits each new token was chosen from).
    Returns the number of compared tokens."""
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
                raise AssertionError(f"row {row}: generated token {step} differs from the reference")
            compared += 1
    return compared
