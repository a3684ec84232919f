"""Every ternary op, lowered to upstream MLIR and run by IREE alone, computes what the shared op
semantics (``dialects.ternary.semantics``) compute on the same inputs: integer results (int8
activations, int32 accumulators, trits) exactly, float results within ``FLOAT_RTOL`` of the largest
magnitude (exp is a polynomial in MLIR and reductions add in another order than numpy).

One module holds one function per op (dims that are not multiples of 4 or 5, rows and lengths
dynamic); it is compiled once and run on drawn inputs. Activation quantization is also fed rows
whose products land exactly on rounding ties (``±0.5``, ``±1.5``, ``±2.5``, ``0.49999997``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from xdsl.dialects.builtin import BFloat16Type, ModuleOp, TensorType, f32, i8, i32, i64
from xdsl.ir import Attribute, SSAValue

from mmfc.dialects import numerics as nm
from mmfc.dialects import ternary as T
from mmfc.dialects.builder import FuncBuilder, build_function
from mmfc.dialects.ternary.semantics import evaluate
from mmfc.dialects.target import function_of
from mmfc.dialects.values import coerce_input

FLOAT_RTOL = 1e-5
NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)
K, N, L, V = 23, 7, 3, 11  # feature dim, weight rows, layers, vocabulary
# wide rows: whole blocks of 64 packed bytes and a rest (2bit: 138 bytes; base3: 110), and whole blocks only
WIDE, WHOLE = 549, 1024
D = T.DYN


def t(*shape: int, elem: Attribute = f32) -> TensorType:
    return TensorType(elem, list(shape))




OpMaker = Callable[[FuncBuilder, Sequence[SSAValue]], Any]

# name -> (input types, the op made from the function's arguments)
FUNCTIONS: dict[str, tuple[list[Attribute], OpMaker]] = {
    "rmsnorm": ([t(D, K), t(K)], lambda fb, a: T.RMSNormOp(a[0], a[1])),
    "rmsnorm_bf16_gamma": ([t(D, K), t(K, elem=BFloat16Type())], lambda fb, a: T.RMSNormOp(a[0], a[1], 1e-5)),
    "rms_normalize": ([t(D, D, K)], lambda fb, a: T.RMSNormalizeOp(a[0])),
    "scale": ([t(D, K), t(K)], lambda fb, a: T.ScaleOp(a[0], a[1])),
    "residual_rmsnorm": ([t(D, K), t(D, K), t(K)], lambda fb, a: T.ResidualRMSNormOp(a[0], a[1], a[2])),
    "quant_act": ([t(D, K)], lambda fb, a: T.QuantActOp(a[0])),
    "quant_act_3d": ([t(D, D, K)], lambda fb, a: T.QuantActOp(a[0])),
    "accum_trits": ([t(D, K, elem=i8), T.TritsType((N, K))], lambda fb, a: T.AccumOp(a[0], a[1])),
    "accum_2bit": ([t(D, K, elem=i8), T.PackedType((N, K), "2bit")], lambda fb, a: T.AccumOp(a[0], a[1])),
    "accum_base3": ([t(D, K, elem=i8), T.PackedType((N, K), "base3")], lambda fb, a: T.AccumOp(a[0], a[1])),
    "accum_2bit_3d": ([t(D, D, K, elem=i8), T.PackedType((N, K), "2bit")], lambda fb, a: T.AccumOp(a[0], a[1])),
    "accum_base3_3d": ([t(D, D, K, elem=i8), T.PackedType((N, K), "base3")], lambda fb, a: T.AccumOp(a[0], a[1])),
    "accum_2bit_wide": ([t(D, WIDE, elem=i8), T.PackedType((N, WIDE), "2bit")], lambda fb, a: T.AccumOp(a[0], a[1])),
    "accum_base3_wide": ([t(D, WIDE, elem=i8), T.PackedType((N, WIDE), "base3")], lambda fb, a: T.AccumOp(a[0], a[1])),
    "accum_2bit_wide_3d": ([t(D, D, WIDE, elem=i8), T.PackedType((N, WIDE), "2bit")], lambda fb, a: T.AccumOp(a[0], a[1])),
    "accum_2bit_whole": ([t(D, WHOLE, elem=i8), T.PackedType((N, WHOLE), "2bit")], lambda fb, a: T.AccumOp(a[0], a[1])),
    "accum_trits_wide": ([t(D, WIDE, elem=i8), T.TritsType((N, WIDE))], lambda fb, a: T.AccumOp(a[0], a[1])),
    "unpack_2bit": ([T.PackedType((N, K), "2bit")], lambda fb, a: T.UnpackOp(a[0])),
    "unpack_base3": ([T.PackedType((N, K), "base3")], lambda fb, a: T.UnpackOp(a[0])),
    "dequant": ([t(D, N, elem=i32), t(D, 1), f32], lambda fb, a: T.DequantOp(a[0], a[1], a[2])),
    "dequant_tensor_scale": ([t(D, D, N, elem=i32), t(D, D, 1), t()], lambda fb, a: T.DequantOp(a[0], a[1], a[2])),
    "sigmoid": ([t(D, K)], lambda fb, a: T.SigmoidOp(a[0])),
    "silu": ([t(D, K)], lambda fb, a: T.SiluOp(a[0])),
    "one_minus": ([t(D, K)], lambda fb, a: T.OneMinusOp(a[0])),
    "silu_mul": ([t(D, K), t(D, K)], lambda fb, a: T.SiluMulOp(a[0], a[1])),
    "mul": ([t(D, K), t(D, K)], lambda fb, a: T.MulOp(a[0], a[1])),
    "add": ([t(D, K), t(D, K)], lambda fb, a: T.AddOp(a[0], a[1])),
    "sub": ([t(D, K), t(D, K)], lambda fb, a: T.SubOp(a[0], a[1])),
    "lower_bound": ([t(D, K), t(K)], lambda fb, a: T.LowerBoundOp(a[0], a[1])),
    "mask": ([t(D, D, K), t(D, D, elem=i64)], lambda fb, a: T.MaskOp(a[0], a[1])),
    "scan_step": ([t(D, K), t(D, K), t(D, K)], lambda fb, a: T.ScanStepOp(a[0], a[1], a[2])),
    "gate_norm": ([t(D, K), t(D, K), t(K)], lambda fb, a: T.GateNormOp(a[0], a[1], a[2])),
    "scan": ([t(D, D, K), t(D, D, K), t(D, K)], lambda fb, a: T.ScanOp(a[0], a[1], a[2])),
    "scan_from_zero": ([t(D, D, K), t(D, D, K)], lambda fb, a: T.ScanOp(a[0], a[1])),
    "embedding": ([t(V, K), t(D, D, elem=i64)], lambda fb, a: T.EmbeddingOp(a[0], a[1])),
    "split": ([t(D, 2 * K)], lambda fb, a: T.SplitOp(a[0], 2)),
    "row": ([t(L, K)], lambda fb, a: T.RowOp(a[0], 2)),
    "lower_bounds": ([t(L, K)], lambda fb, a: T.LowerBoundsOp(a[0])),
}


def _quantize_and_accumulate(fb: FuncBuilder, args: Sequence[SSAValue]) -> list[SSAValue]:
    quant = fb.insert(T.QuantActOp(args[0]))
    return [fb.insert(T.AccumOp(quant.q, args[1])).acc]


def _module() -> ModuleOp:
    funcs = []
    for name, (types, make) in FUNCTIONS.items():
        funcs.append(build_function(name, types, lambda fb, args, make=make: list(fb.insert(make(fb, args)).results)))
    # quant_act feeding accum: the lowering quantizes again where it gathers the activation planes
    funcs.append(build_function("quant_accum_2bit", [t(D, WIDE), T.PackedType((N, WIDE), "2bit")], _quantize_and_accumulate))
    return ModuleOp(funcs)


class Compiled(tuple):  # (module, runner), with a short repr for Hypothesis's failure reports
    def __repr__(self) -> str:
        return f"<{len(FUNCTIONS)} single-op functions on iree-cpu>"


@pytest.fixture(scope="module")
def ops() -> tuple[ModuleOp, Any]:
    from mmfc.api import run_ir

    module = _module()
    module.verify()
    return Compiled((module, run_ir(module, None, target="iree-cpu")))


def check(module: ModuleOp, runner: Any, name: str, inputs: Sequence[Any]) -> list[np.ndarray]:
    """Run ``name`` on IREE and compare with the semantics of its op; returns IREE's results."""
    from mmfc.backends.mlir.arguments import from_host_array

    fn = function_of(module, name)
    op = next(iter(fn.body.block.ops))
    want = evaluate(op, *(coerce_input(v, a.type)[0] for v, a in zip(inputs, fn.body.block.args)))
    got = [from_host_array(runner.download(v), r.type) for v, r in zip(runner.run(name, *inputs), op.results)]
    for i, (g, w) in enumerate(zip(got, want)):
        w = np.asarray(w)
        assert g.shape == w.shape, f"{name} result {i}: shape {g.shape} vs {w.shape}"
        if w.dtype.kind in "iu":
            assert g.dtype == w.dtype and np.array_equal(g, w), f"{name} result {i}: integers differ"
        else:
            scale = max(float(np.max(np.abs(w))), 1e-30) if w.size else 1.0
            err = float(np.max(np.abs(g.astype(np.float64) - w))) if w.size else 0.0
            assert err <= FLOAT_RTOL * scale, f"{name} result {i}: {err / scale:.3g} relative"
    return got


def floats(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def bf16(x: np.ndarray) -> np.ndarray:
    """Values a bf16 tensor can hold (so the store's f32 view of them is exact)."""
    return (x.astype(np.float32).view(np.uint32) & 0xFFFF0000).view(np.float32)


@settings(max_examples=8, phases=NO_SHRINK)
@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(1, 4), steps=st.integers(1, 5))
def test_float_ops_match_the_semantics(ops: tuple[ModuleOp, Any], seed: int, rows: int, steps: int) -> None:
    module, runner = ops
    rng = np.random.default_rng(seed)
    x, y, z = floats(rng, rows, K, scale=3), floats(rng, rows, K), floats(rng, rows, K)
    gamma = floats(rng, K) + 1
    cases: dict[str, list[Any]] = {
        "rmsnorm": [x, gamma],
        "rmsnorm_bf16_gamma": [x, bf16(gamma)],
        "rms_normalize": [floats(rng, rows, steps, K)],
        "scale": [x, gamma],
        "residual_rmsnorm": [x, y, gamma],
        "sigmoid": [x * 10],
        "silu": [x],
        "one_minus": [y],
        "silu_mul": [x, y],
        "mul": [x, y],
        "add": [x, y],
        "sub": [x, y],
        "lower_bound": [nm.sigmoid(x), rng.random(K).astype(np.float32)],
        "mask": [floats(rng, rows, steps, K), rng.integers(0, 2, (rows, steps))],
        "scan_step": [x, nm.sigmoid(y), z],
        "gate_norm": [x, y, gamma],
        "scan": [floats(rng, rows, steps, K), nm.sigmoid(floats(rng, rows, steps, K)), z],
        "scan_from_zero": [floats(rng, rows, steps, K), nm.sigmoid(floats(rng, rows, steps, K))],
        "embedding": [floats(rng, V, K), rng.integers(0, V, (rows, steps))],
        "split": [floats(rng, rows, 2 * K)],
        "row": [floats(rng, L, K)],
        "lower_bounds": [floats(rng, L, K)],
    }
    for name, inputs in cases.items():
        check(module, runner, name, inputs)


def tie_rows(rng: np.random.Generator, rows: int) -> np.ndarray:
    """Rows whose largest magnitude is 127, so that s_x = 1 and x * s_x = x: the other entries are
    halves (exact rounding ties), 0.49999997 and random values."""
    halves = np.array([0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.49999997, -0.49999997, 126.5, -126.5], np.float32)
    x = rng.choice(np.concatenate([halves, floats(rng, 8, scale=40)]), size=(rows, K)).astype(np.float32)
    x[:, rng.integers(0, K)] = rng.choice([127.0, -127.0])
    return x


@settings(max_examples=8, phases=NO_SHRINK)
@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(1, 4), steps=st.integers(1, 3))
def test_integer_ops_are_exact(ops: tuple[ModuleOp, Any], seed: int, rows: int, steps: int) -> None:
    module, runner = ops
    rng = np.random.default_rng(seed)
    q, s = check(module, runner, "quant_act", [tie_rows(rng, rows)])
    assert np.all(s == 1.0)  # the tie rows really were scaled by 1
    check(module, runner, "quant_act", [floats(rng, rows, K, scale=float(rng.choice([1e-7, 1.0, 1e4])))])
    check(module, runner, "quant_act_3d", [floats(rng, rows, steps, K)])
    trits = rng.integers(-1, 2, (N, K)).astype(np.int8)
    x8 = rng.integers(-128, 128, (rows, K)).astype(np.int8)  # the whole int8 range, -128 included
    x8_3d = rng.integers(-128, 128, (rows, steps, K)).astype(np.int8)
    check(module, runner, "accum_trits", [x8, trits])
    for fmt in ("2bit", "base3"):
        packed = nm.pack(trits, fmt)
        check(module, runner, f"accum_{fmt}", [x8, packed])
        check(module, runner, f"accum_{fmt}_3d", [x8_3d, packed])
        check(module, runner, f"unpack_{fmt}", [packed])
    for width, suffix in ((WIDE, "wide"), (WHOLE, "whole")):
        wide = rng.integers(-1, 2, (N, width)).astype(np.int8)
        x_wide = rng.integers(-128, 128, (rows, width)).astype(np.int8)
        check(module, runner, f"accum_2bit_{suffix}", [x_wide, nm.pack(wide, "2bit")])
        if width == WIDE:
            check(module, runner, "accum_base3_wide", [x_wide, nm.pack(wide, "base3")])
            check(module, runner, "accum_trits_wide", [x_wide, wide])
            x3 = rng.integers(-128, 128, (rows, steps, width)).astype(np.int8)
            check(module, runner, "accum_2bit_wide_3d", [x3, nm.pack(wide, "2bit")])
    acc = rng.integers(-127 * K, 127 * K, (rows, N)).astype(np.int32)
    scale = (127 / np.abs(floats(rng, rows, 1)).clip(1e-3)).astype(np.float32)
    check(module, runner, "dequant", [acc, scale, np.float32(rng.random() + 0.01)])
    acc3 = rng.integers(-127 * K, 127 * K, (rows, steps, N)).astype(np.int32)
    check(module, runner, "dequant_tensor_scale", [acc3, np.ones((rows, steps, 1), np.float32) * 3, np.asarray(0.7, np.float32)])


def test_extreme_accumulations_are_exact(ops: tuple[ModuleOp, Any]) -> None:
    """Every activation -128 against every trit -1 (and +1): the largest sums, signs included (the
    16-bit block sums of wide rows are at their bound)."""
    module, runner = ops
    for k, suffix in ((K, ""), (WIDE, "_wide")):
        x8 = np.full((2, k), -128, np.int8)
        x8[1] = 127
        for trit in (-1, 1):
            trits = np.full((N, k), trit, np.int8)
            for fmt in ("2bit", "base3"):
                (acc,) = check(module, runner, f"accum_{fmt}{suffix}", [x8, nm.pack(trits, fmt)])
                assert acc[0, 0] == -128 * k * trit and acc[1, 0] == 127 * k * trit


def test_rounding_is_half_away_from_zero(ops: tuple[ModuleOp, Any]) -> None:
    """The spec's examples, by hand: ±0.5 -> ±1, ±1.5 -> ±2, ±2.5 -> ±3, 0.49999997 -> 0."""
    module, runner = ops
    x = np.zeros((1, K), np.float32)
    values = [0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.49999997, -0.49999997, 127.0]
    x[0, : len(values)] = values
    (q, _) = check(module, runner, "quant_act", [x])
    assert q[0, : len(values)].tolist() == [1, -1, 2, -2, 3, -3, 0, 0, 127]


def near_tie_rows(rng: np.random.Generator, rows: int, k: int) -> np.ndarray:
    """Rows holding an x whose product x * s_x rounds to k + 0.5 in f32 while the exact product does
    not: a fused multiply-add in the rounding (which skips the product's rounding) would round the
    other way, so these pin the f32 product the spec rounds."""
    found = []
    while len(found) < rows:
        amax = np.float32(rng.uniform(1, 100))
        s = np.float32(127) / amax
        tie = np.float32(rng.integers(-120, 120) + 0.5)
        for x in (np.float32(tie / s), *(np.nextafter(np.float32(tie / s), np.float32(d)) for d in (1e9, -1e9))):
            if np.float32(x * s) == tie and float(x) * float(s) != float(tie):
                row = rng.uniform(-1, 1, k).astype(np.float32)
                row[0], row[1] = amax, x
                found.append(row)
                break
    return np.stack(found)


def test_products_that_round_to_a_tie_round_as_the_spec_says(ops: tuple[ModuleOp, Any]) -> None:
    module, runner = ops
    rng = np.random.default_rng(7)
    (q, s) = check(module, runner, "quant_act", [near_tie_rows(rng, 8, K)])
    x = near_tie_rows(rng, 6, WIDE)
    trits = rng.integers(-1, 2, (N, WIDE)).astype(np.int8)
    (acc,) = [runner.download(v) for v in runner.run("quant_accum_2bit", x, nm.pack(trits, "2bit"))]
    assert np.array_equal(acc, nm.accum(nm.quant_act(x)[0], trits))
