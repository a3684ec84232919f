"""The thresholds of the flip-aware rule (``mmfc.testing``), pinned one by one.

Each bound is tested from both sides with synthetic logits built to land 0.1 % inside and 0.1 % outside
it: loosening a constant lets the "outside" case through, tightening it rejects the "inside" case. The
bounds are written here as numbers (not read from ``mmfc.testing``), so that a changed constant fails
a test instead of moving it along:

* relative RMS error of the logits <= 5e-2;
* max |diff| of the logits <= 0.1;
* a step is decisive when its reference top-2 margin is >= 1e-2;
* teacher-forced argmax agreement >= 98 % of the decisive steps;
* at least 16 decisive steps.

Then ``load_reference`` on a broken folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from mmfc.testing import (
    Reference,
    assert_generate_matches,
    assert_logits_close,
    assert_teacher_forced,
    compare_logits,
    generate_agreement,
    load_reference,
    teacher_forced,
    top2_margin,
)

INSIDE, OUTSIDE = 1 - 1e-3, 1 + 1e-3


def reference_logits(shape: tuple[int, ...] = (2, 8, 64), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


# ------------------------------------------------------------------------------------------ logits


def with_rel_rms(ref: np.ndarray, rel: float) -> np.ndarray:
    """``ref`` plus a difference of equal magnitude everywhere (random signs) whose norm is
    ``rel * ||ref||``; each entry then moves by ``rel * ||ref|| / sqrt(n)`` (~0.05 here, under 0.1)."""
    signs = np.where(np.random.default_rng(1).random(ref.shape) < 0.5, -1.0, 1.0)
    step = rel * np.linalg.norm(ref) / np.sqrt(ref.size)
    return ref + signs * step


def test_relative_rms_bound_is_5e_2() -> None:
    ref = reference_logits()
    inside, outside = with_rel_rms(ref, 5e-2 * INSIDE), with_rel_rms(ref, 5e-2 * OUTSIDE)
    assert np.max(np.abs(outside - ref)) < 0.09  # only the RMS part of the rule is at stake
    assert compare_logits(inside, ref).rel_rms == pytest.approx(5e-2 * INSIDE, rel=1e-9)
    assert compare_logits(inside, ref).ok
    assert_logits_close(inside, ref)
    assert not compare_logits(outside, ref).ok
    with pytest.raises(AssertionError, match="rel RMS"):
        assert_logits_close(outside, ref)


def test_max_abs_bound_is_0_1() -> None:
    ref = reference_logits(seed=2) * 100  # a large norm: one moved entry barely changes the RMS error
    for scale, ok in [(INSIDE, True), (OUTSIDE, False)]:
        actual = ref.copy()
        actual[1, 3, 7] += 0.1 * scale
        rep = compare_logits(actual, ref)
        assert rep.rel_rms < 1e-4
        assert rep.max_abs == pytest.approx(0.1 * scale, rel=1e-9)
        assert rep.ok is ok
    actual = ref.copy()
    actual[0, 0, 0] -= 0.1 * OUTSIDE  # either sign
    with pytest.raises(AssertionError, match="max \\|diff\\|"):
        assert_logits_close(actual, ref)


def test_logits_with_nan_or_another_shape_fail() -> None:
    ref = reference_logits()
    bad = ref.copy()
    bad[0, 0, 0] = np.nan
    assert not compare_logits(bad, ref).ok
    with pytest.raises(AssertionError, match="shape"):
        compare_logits(ref[:, :-1], ref)


# ------------------------------------------------------------------------------------------ greedy


def steps_with_margins(margins: np.ndarray, vocab: int = 16, seed: int = 3) -> np.ndarray:
    """Reference logits ``[B, N, vocab]`` whose step ``(b, n)`` has top token ``(b + n) % vocab`` ahead
    of the runner-up by exactly ``margins[b, n]`` (all other logits lower by more than 1)."""
    rng = np.random.default_rng(seed)
    b, n = margins.shape
    logits = rng.uniform(-3.0, -2.0, (b, n, vocab))
    for i in range(b):
        for j in range(n):
            top = (i + j) % vocab
            logits[i, j, top] = 1.0 + margins[i, j]
            logits[i, j, (top + 1) % vocab] = 1.0
    return logits


def actual_for(ref: np.ndarray, disagree: np.ndarray) -> np.ndarray:
    """Logits that pick the reference's argmax, except at the steps where ``disagree`` is set (there
    the reference's runner-up, clearly)."""
    actual = ref.copy()
    top = ref.argmax(-1)
    vocab = ref.shape[-1]
    for i, j in zip(*np.nonzero(disagree)):
        actual[i, j, (top[i, j] + 1) % vocab] = actual[i, j, top[i, j]] + 0.5
    return actual


def test_margin_bound_is_1e_2() -> None:
    """Steps with margin just over 1e-2 count as decisive, just under do not."""
    margins = np.array([[1e-2 * OUTSIDE] * 20 + [1e-2 * INSIDE] * 12])
    ref = steps_with_margins(margins)
    np.testing.assert_allclose(top2_margin(ref), margins, rtol=1e-9)
    rep = teacher_forced(ref, ref)
    assert (rep.decisive_steps, rep.agreeing_steps) == (20, 20)
    # a wrong argmax at every non-decisive step changes nothing
    disagree = np.zeros(margins.shape, bool)
    disagree[0, 20:] = True
    assert teacher_forced(actual_for(ref, disagree), ref).agreeing_steps == 20
    assert_teacher_forced(actual_for(ref, disagree), ref)


def test_generate_compares_up_to_the_first_step_under_the_margin() -> None:
    """Free-running tokens are compared while the reference margin is >= 1e-2: a different token at a
    step just over it fails, at the first step just under it (and after) passes."""
    margins = np.array([[0.5, 1e-2 * OUTSIDE, 1e-2 * INSIDE, 0.5], [0.5, 0.5, 0.5, 0.5]])
    step_logits = steps_with_margins(margins)
    prompt = np.array([[5, 6], [7, 8]])
    ref_ids = np.concatenate([prompt, step_logits.argmax(-1)], axis=1)
    assert assert_generate_matches(ref_ids, ref_ids, step_logits, 2) == 2 + 4
    late = ref_ids.copy()
    late[0, 2 + 2] += 1  # row 0, new token 2: margin just under 1e-2, not compared
    late[0, 2 + 3] += 1
    assert generate_agreement(late, ref_ids, step_logits, 2).ok
    early = ref_ids.copy()
    early[0, 2 + 1] += 1  # row 0, new token 1: margin just over 1e-2
    rep = generate_agreement(early, ref_ids, step_logits, 2)
    assert rep.mismatch == (0, 1)
    with pytest.raises(AssertionError, match="row 0: generated token 1"):
        assert_generate_matches(early, ref_ids, step_logits, 2)
    # a row that stopped early differs at its first missing token
    assert generate_agreement(ref_ids[:, :4], ref_ids, step_logits, 2).mismatch == (1, 2)


def test_agreement_bound_is_98_percent() -> None:
    """100 decisive steps: 98 agreeing pass, 97 fail."""
    ref = steps_with_margins(np.full((4, 25), 0.5))
    for wrong, ok in [(2, True), (3, False)]:
        disagree = np.zeros((4, 25), bool)
        disagree[1, :wrong] = True
        rep = teacher_forced(actual_for(ref, disagree), ref)
        assert (rep.decisive_steps, rep.agreeing_steps) == (100, 100 - wrong)
        assert (rep.problem() is None) is ok
    with pytest.raises(AssertionError, match="agreement 0.970 over 100 decisive steps"):
        assert_teacher_forced(actual_for(ref, disagree), ref)


def test_at_least_16_decisive_steps() -> None:
    """16 decisive steps (the rest under the margin) pass, 15 fail, even with every argmax right."""
    for decisive, ok in [(16, True), (15, False)]:
        margins = np.array([[0.5] * decisive + [1e-3] * (24 - decisive)])
        ref = steps_with_margins(margins)
        rep = teacher_forced(ref, ref)
        assert rep.decisive_steps == decisive and rep.agreement == 1.0
        assert (rep.problem() is None) is ok
    with pytest.raises(AssertionError, match="only 15 decisive steps"):
        assert_teacher_forced(ref, ref)


# ------------------------------------------------------------------------------------------ reference folders


def test_load_reference_reads_the_fixture(ref_tiny: Reference) -> None:
    assert ref_tiny.input_ids.shape == (2, 48) and ref_tiny.logits.shape == (2, 48, 512)
    assert (ref_tiny.prompt_len, ref_tiny.new_tokens) == (16, 32)
    np.testing.assert_array_equal(ref_tiny.prompt, ref_tiny.input_ids[:, :16])
    # greedy tokens are the argmax of the logits they were taken from
    np.testing.assert_array_equal(ref_tiny.greedy_ids[:, 16:], ref_tiny.greedy_step_logits.argmax(-1))


def test_load_reference_names_a_missing_or_misshapen_file(ref_tiny: Reference, tmp_path: Path) -> None:
    folder = tmp_path / "ref"
    shutil.copytree(ref_tiny.path, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    (folder / "decode_logits_fp32.npy").unlink()
    with pytest.raises(ValueError, match="decode_logits_fp32.npy: missing"):
        load_reference(folder)
    np.save(folder / "decode_logits_fp32.npy", ref_tiny.decode_logits[:, :-1])
    with pytest.raises(ValueError, match="decode_logits_fp32.npy: shape"):
        load_reference(folder)
