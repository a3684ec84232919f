"""Compiled targets against the reference implementation's own outputs (``tests/data/ref_tiny``).

``mmfc.compile`` of the fixture's checkpoint folder, run by each target (the triton target in Triton's
interpreter on a CPU, compiled on a GPU), checked by the flip-aware
rule with ``mmfc.testing.check_against_reference`` (prefill and decode logits, teacher-forced greedy,
free-running generate). Other targets join by adding their name to ``TARGETS``.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import mmfc
from mmfc.dialects import numerics as nm
from mmfc.testing import Reference, check_against_reference

TARGETS = ["interp", "triton", "iree-cpu"]
# every target at -O2; the interpreter and iree-cpu also unfused (the triton target's unfused path, one kernel per
# op, is checked against PyTorch in tests/backends/triton: the fixture in Triton's interpreter takes
# over a minute per pipeline on the 2-core CI machine)
CASES = [(target, "-O2") for target in TARGETS] + [("interp", "-O0"), ("iree-cpu", "-O0")]


@pytest.mark.parametrize(("target", "pipeline"), CASES)
def test_compiled_model_matches_the_reference(ref_tiny: Reference, target: str, pipeline: str) -> None:
    if target == "iree-cpu" and importlib.util.find_spec("iree") is None:  # CI pins them; the GPU machine lacks them
        pytest.skip("the iree-base-compiler and iree-base-runtime packages are not installed")
    compiled = mmfc.compile(ref_tiny.path, target=target, pipeline=pipeline)
    report = check_against_reference(compiled, ref_tiny).raise_for_problems()
    assert report.teacher_forced.decisive_steps >= 16


def test_checker_rejects_a_swapped_gate_order_in_the_interpreter(
    ref_tiny: Reference, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interpreter runs ``dialects.numerics``: with its gate_norm swapped (norm on h, SiLU on g), the
    compiled model must fail the check."""

    def swapped(g: np.ndarray, h: np.ndarray, gamma: np.ndarray, eps: float = nm.RMS_EPS) -> np.ndarray:
        return nm.rmsnorm(h, gamma, eps) * nm.silu(g)

    compiled = mmfc.compile(ref_tiny.path, target="interp")
    monkeypatch.setattr(nm, "gate_norm", swapped)
    report = check_against_reference(compiled, ref_tiny)
    assert not report.prefill.ok and not report.decode.ok, str(report)
    assert report.teacher_forced.agreement < 0.98, str(report)
