"""What stored weight values must be: the one value check of every reader of weights.

Loading a checkpoint into PyTorch (``from_pretrained``), importing one as IR (``mmfc import``,
``mmfc compile``) and the weight passes (``fold-weight-quant``, ``pack-weights``) check values with
these functions, so every path refuses the same tensors in the same words:

==================  ===========================================================================
role                rule
==================  ===========================================================================
``float``           finite (no NaN, no Inf): embeddings, norm weights, lower bounds
``master``          finite, and not already ternary-valued (``numerics.looks_ternary``): a float
                    weight that a BitLinear quantizes (absmean quantization is not idempotent)
``trits``           int8 in {-1, 0, +1}: a pre-quantized BitLinear weight
``scale``           one float32 value, finite and > 0 (shape ``[]``): a pre-quantized
                    ``X.weight_scale``
==================  ===========================================================================

Each check streams the tensor through ``WeightStore.blocks`` (one block of rows in memory at a
time) and then releases it (``WeightStore.release``), so checking a 2.7B checkpoint never holds it
in memory. A failure is a :class:`WeightValueError` whose message is the predicate only ("holds
non-finite values (NaN or Inf)"): the caller puts the place in front (a checkpoint file and tensor,
``@symbol`` at an op). Names and shapes are not checked here: they depend on the model
(``frontends/torch/checkpoint.py`` checks them against the config).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from mmfc.dialects import numerics as nm
from mmfc.dialects.weights import WeightStore

Role = Literal["float", "master", "trits", "scale"]

NON_FINITE = "holds non-finite values (NaN or Inf)"

#: why a ternary-valued float master is refused (the end of the message; the caller says what to do)
ALREADY_TERNARY = (
    "is already ternary-valued (at most 3 distinct values): absmean weight quantization is not "
    "idempotent, so re-quantizing ternary weights keeps the signs but shrinks the scale by the fraction "
    "of non-zeros (about 0.69x), silently changing every output"
)


class WeightValueError(ValueError):
    """A tensor whose values break its role's rule; the message is the predicate ("holds ...")."""


def check_float(store: WeightStore, name: str) -> None:
    """Every value of the float tensor ``name`` is finite."""
    try:
        for block in store.blocks(name):
            if not np.isfinite(block).all():
                raise WeightValueError(NON_FINITE)
    finally:
        store.release(name)


def check_master(store: WeightStore, name: str) -> None:
    """The float master ``name`` is finite and not already ternary-valued."""
    check_float(store, name)
    try:
        if nm.looks_ternary(store.blocks(name)):
            raise WeightValueError(ALREADY_TERNARY)
    finally:
        store.release(name)


def check_trits(store: WeightStore, name: str) -> None:
    """The int8 trits ``name`` lie in {-1, 0, +1} (the message lists up to three values found)."""
    bad: set[int] = set()
    try:
        for block in store.blocks(name):
            if block.size and (block.min() < -1 or block.max() > 1):
                bad.update(np.unique(block[(block < -1) | (block > 1)]).tolist())
    finally:
        store.release(name)
    if bad:
        raise WeightValueError(f"holds trits outside {{-1, 0, +1}}: found {sorted(bad)[:3]}")


def check_scale(store: WeightStore, name: str) -> None:
    """The scale ``name`` is one finite float32 value > 0 of shape ``[]``."""
    shape, dtype = store.shape_dtype(name)
    if dtype != np.dtype(np.float32):
        raise WeightValueError(f"has dtype {dtype}; a weight scale is float32")
    if shape != ():
        raise WeightValueError(f"has shape {list(shape)}; a weight scale is one value (shape [])")
    value = float(store.get(name))
    if not np.isfinite(value):
        raise WeightValueError(NON_FINITE)
    if not value > 0:
        raise WeightValueError(f"must be a positive scale, got {value}")


CHECKS = {"float": check_float, "master": check_master, "trits": check_trits, "scale": check_scale}


def check_values(store: WeightStore, name: str, role: Role) -> None:
    """The check of ``role`` on tensor ``name`` (see the module docstring)."""
    CHECKS[role](store, name)


__all__ = [
    "ALREADY_TERNARY",
    "CHECKS",
    "NON_FINITE",
    "Role",
    "WeightValueError",
    "check_float",
    "check_master",
    "check_scale",
    "check_trits",
    "check_values",
]
