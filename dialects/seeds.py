"""Seeds of mmfc's random generators (a preset's random weights, sampling in ``generate``): integers
in ``[0, 2**64)``, what torch's generators take (numpy's take these too). One check for the CLI's
flags and the Python API alike, so a seed out of range is one clear error, never an overflow deep
inside torch."""

from __future__ import annotations

import operator

#: seeds lie in ``[0, SEED_LIMIT)``
SEED_LIMIT = 2**64


def check_seed(seed: object, what: str = "seed") -> int:
    """``seed`` as an int when it is an integer in ``[0, 2**64)``; else a ``ValueError`` naming
    ``what`` (e.g. ``"--init-seed"``)."""
    if isinstance(seed, bool):
        raise ValueError(f"{what} must be an integer, got {seed!r}")
    try:
        value = operator.index(seed)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{what} must be an integer, got {seed!r}") from None
    if not 0 <= value < SEED_LIMIT:
        raise ValueError(f"{what} must lie in [0, 2**64), got {value}")
    return value


__all__ = ["SEED_LIMIT", "check_seed"]
