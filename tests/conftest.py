"""Shared test settings: the committed Hypothesis profiles and the Triton interpreter switch.

Hypothesis profiles (pick one with the environment variable ``HYPOTHESIS_PROFILE``; default ``ci``):

* ``ci``: 20 examples, derandomized (the same examples on every run, so CI failures reproduce), no
  deadline (the 2-core CI machine is slow and noisy), no example database, ``too_slow`` suppressed.
* ``dev``: 200 random examples, for hunting bugs locally (``HYPOTHESIS_PROFILE=dev make test``).

Tests that run the Triton interpreter, IREE or the simulator are slow per example: give them
``@settings(max_examples=5)`` up to ``max_examples=20`` (a decorator overrides the profile) so that the
whole suite stays under the CI budget of 15 minutes, and ``phases=(Phase.explicit, Phase.reuse,
Phase.generate)``: shrinking a failure there takes many minutes, and the derandomized example that
failed reproduces as it was drawn.
"""

from __future__ import annotations

import os

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


# Triton reads TRITON_INTERPRET when kernels are defined and launched, so it must be set before any test
# module imports a backend. Without a GPU, Triton kernels run in its interpreter (numpy on the CPU);
# an explicit setting by the user wins.
if "TRITON_INTERPRET" not in os.environ and not _cuda_available():
    os.environ["TRITON_INTERPRET"] = "1"
