"""Scalar arithmetic the lowering rules share, emitted inside ``linalg.generic`` bodies, in f32,
operation by operation as :mod:`mmfc.dialects.numerics` computes it."""

from __future__ import annotations

from xdsl.dialects.builtin import i8
from xdsl.ir import SSAValue

from mmfc.backends.mlir.emit import Emitter


def sigmoid(b: Emitter, x: SSAValue) -> SSAValue:
    """``1 / (1 + exp(-x))``."""
    one = b.f32(1.0)
    return b.divf(one, b.addf(one, b.exp(b.negf(x))))


def round_half_away(b: Emitter, v: SSAValue) -> SSAValue:
    """``t = trunc(v); t + sign(v) * (|v - t| >= 0.5)`` (exact; the spec's formula)."""
    t = b.trunc(v)
    bump = b.cmpf("oge", b.absf(b.subf(v, t)), b.f32(0.5))
    sign = b.select(b.cmpf("olt", v, b.f32(0.0)), b.f32(-1.0), b.f32(1.0))
    return b.select(bump, b.addf(t, sign), t)


def quantize(b: Emitter, v: SSAValue, s: SSAValue) -> SSAValue:
    """One activation quantized: ``clamp(round_half_away(v * s), -128, 127)`` as i8."""
    r = round_half_away(b, b.mulf(v, s))
    return b.fptosi(b.minimumf(b.maximumf(r, b.f32(-128.0)), b.f32(127.0)), i8)


__all__ = ["quantize", "round_half_away", "sigmoid"]
