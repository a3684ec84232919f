"""Shared test settings: the committed Hypothesis profiles, the Triton interpreter switch, and the
reference implementation's outputs as a fixture.

Hypothesis profiles (pick one with the environment variable ``HYPOTHESIS_PROFILE``; default ``ci``):

* ``ci``: 20 examples, derandomized (the same examples on every run, so CI failures reproduce), no
  deadline (the 2-core CI machine is slow and noisy), no example database, ``too_slow`` suppressed.
* ``dev``: 200 random examples, for hunting bugs locally (``HYPOTHESIS_PROFILE=dev make test``).

Tests that run the Triton interpreter, IREE or the simulator are slow per example: give them
``@settings(max_examples=5)`` up to ``max_examples=20`` (a decorator overrides the profile) so that the
whole suite stays under the CI budget of 15 minutes, and ``phases=(Phase.explicit, Phase.reuse,
Phase.generate)``: shrinking a failure there takes many minutes, and the derandomized example that
failed reproduces as it was drawn.

Fixtures:

* ``ref_tiny``: the reference implementation's outputs on the tiny random checkpoint of
  ``tests/data/ref_tiny`` (``mmfc.testing.Reference``; its checkpoint folder is ``ref_tiny.path``, and
  ``NOTES.md`` there says how it was made). Any target checks itself with
  ``mmfc.testing.check_against_reference(model, ref_tiny).raise_for_problems()``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=20,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # the Triton backend needs torch as well; without it there is nothing to run
        return False
    return bool(torch.cuda.is_available())


# One CPU thread per process for torch (and OpenMP in child processes), unless the user chose: the
# models here are tiny, and on a busy 2-core machine two threads per op spin against each other and
# other processes (the whole suite measured 183-205 s with two threads, 82-88 s with one, same load).
if "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass

# Triton reads TRITON_INTERPRET when kernels are defined and launched, so it must be set before any test
# module imports a backend. Without a GPU, Triton kernels run in its interpreter (numpy on the CPU);
# an explicit setting by the user wins.
if "TRITON_INTERPRET" not in os.environ and not _cuda_available():
    os.environ["TRITON_INTERPRET"] = "1"


REF_TINY = Path(__file__).resolve().parent / "data" / "ref_tiny"


@pytest.fixture(scope="session")
def ref_tiny() -> Any:
    """The outputs of the reference implementation on ``tests/data/ref_tiny`` (loaded once)."""
    from mmfc.testing import load_reference

    return load_reference(REF_TINY)
