"""Every ternary op in the interpreter: its dispatch, its run-time checks, and the semantics table.

Each test builds a one-op ``func.func`` in Python (argument types with dynamic ``?`` dims where drawn)
and runs it through xDSL's Interpreter with mmfc's implementations. Tolerance: none; integers and
floats are compared bit for bit.

* ``test_dispatch_*`` compare an op with the very function of ``mmfc.dialects.numerics`` it calls
  (through the semantics table, ``mmfc.dialects.ternary.evaluate``): they check that the interpreter
  reaches the right function with the right properties, dtypes and dynamic dims. They are not tests
  of the semantics; those are in ``tests/dialects/test_numerics.py`` and the PyTorch twins.
* ``test_interpreter_equals_the_semantics_table`` runs every op with a table entry and compares with
  ``evaluate`` on the same inputs.
* the others check what the interpreter adds: run-time checks (:class:`InterpError`), weights read
  from a store, and ops whose meaning is indexing (``split``, ``row``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from xdsl.builder import Builder
from xdsl.dialects import func
from xdsl.dialects.builtin import (
    BFloat16Type,
    Float16Type,
    Float64Type,
    IntegerType,
    ModuleOp,
    TensorType,
    f32,
)
from xdsl.ir import Attribute, Block, Region, SSAValue
from xdsl.rewriter import InsertPoint

from mmfc.backends.interp import InterpError, make_interpreter, supported_op_types
from mmfc.dialects import numerics as nm
from mmfc.dialects import ternary as T
from mmfc.dialects.weights import MemoryStore, TensorNotFoundError, WeightStore

F32 = np.float32
DYN = T.DYN
i8, i32, i64 = IntegerType(8), IntegerType(32), IntegerType(64)

Build = Callable[[Builder, Sequence[SSAValue]], Sequence[SSAValue]]


def module_of(arg_types: Sequence[Attribute], build: Build) -> ModuleOp:
    """``func.func @f(args) { build(...); return }``, verified."""
    block = Block(arg_types=arg_types)
    builder = Builder(InsertPoint.at_end(block))
    results = list(build(builder, block.args))
    builder.insert(func.ReturnOp(*results))
    module = ModuleOp([func.FuncOp("f", (list(arg_types), [r.type for r in results]), Region(block))])
    module.verify()
    return module


def run_op(arg_types: Sequence[Attribute], build: Build, inputs: Sequence[Any], store: WeightStore | None = None) -> tuple:
    """Build ``func.func @f(args) { build(...); return }``, verify it and interpret it on ``inputs``."""
    interpreter, _, _ = make_interpreter(module_of(arg_types, build), store)
    return interpreter.call_op("f", tuple(inputs))


def one(op_cls: type, *extra: Any) -> Build:
    """Build one op ``op_cls(*args, *extra)`` and return all its results."""
    return lambda b, args: list(b.insert(op_cls(*args, *extra)).results)


def ttype(elem: Attribute, shape: Sequence[int], dynamic: Sequence[bool] | None = None) -> TensorType:
    """A tensor type with the dims flagged in ``dynamic`` made ``?``."""
    dyn = dynamic or [False] * len(shape)
    return TensorType(elem, [DYN if d else n for n, d in zip(shape, dyn)])


def equal(actual: Any, expected: Any) -> None:
    """Bit-exact equality, dtype included (scalars compared as 0-d arrays)."""
    a, e = np.asarray(actual), np.asarray(expected)
    assert a.dtype == e.dtype, (a.dtype, e.dtype)
    np.testing.assert_array_equal(a, e, strict=True)


# ------------------------------------------------------------------------------------ strategies


@st.composite
def row_shapes(draw: st.DrawFn, min_lead: int = 0, max_lead: int = 2, max_k: int = 24) -> tuple[tuple[int, ...], list[bool]]:
    """``(shape [..., K], dynamic flags)``: up to ``max_lead`` leading dims (sizes 1..4), then K."""
    lead = draw(st.lists(st.integers(1, 4), min_size=min_lead, max_size=max_lead))
    k = draw(st.integers(1, max_k))
    shape = (*lead, k)
    return shape, draw(st.lists(st.booleans(), min_size=len(shape), max_size=len(shape)))


def floats(shape: Sequence[int], lo: float = -20, hi: float = 20) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(F32, tuple(shape), elements=st.floats(lo, hi, width=32, allow_subnormal=False))


def int8s(shape: Sequence[int]) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.int8, tuple(shape), elements=st.integers(-128, 127))


def trits(shape: Sequence[int]) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.int8, tuple(shape), elements=st.integers(-1, 1))


def test_every_ternary_op_has_an_implementation() -> None:
    missing = [op.name for op in T.Ternary.operations if op not in supported_op_types()]
    assert not missing


# ------------------------------------------------------------------------ the semantics table


def _samples() -> dict[type, tuple[list[Attribute], tuple[Any, ...], list[Any]]]:
    """Per op with a table entry: argument types (some dims dynamic), extra constructor arguments
    (eps, parts, row index), inputs."""
    rng = np.random.default_rng(7)
    x, x2 = rng.standard_normal((2, 2, 3, 4)).astype(F32)
    seq = TensorType(f32, (DYN, 3, 4))
    vec, state = TensorType(f32, (4,)), TensorType(f32, (DYN, 4))
    gamma, h = rng.uniform(0.5, 1.5, 4).astype(F32), rng.standard_normal((2, 4)).astype(F32)
    w = rng.integers(-1, 2, (4, 5)).astype(np.int8)
    p, master = rng.standard_normal((5, 4)).astype(F32), rng.standard_normal((4, 5)).astype(F32)
    acc = rng.integers(-500, 500, (2, 3, 4)).astype(np.int32)
    ids = np.array([[0, 4, 2], [1, 1, 3]])
    return {
        T.QuantWeightOp: ([TensorType(f32, (4, 5))], (TensorType(f32, ()),), [master]),
        T.UnpackOp: ([T.PackedType((4, 5), "2bit")], (), [nm.pack(w, "2bit")]),
        T.RMSNormOp: ([seq, vec], (1e-5,), [x, gamma]),
        T.RMSNormalizeOp: ([seq], (1e-3,), [x]),
        T.ScaleOp: ([seq, vec], (), [x, gamma]),
        T.ResidualRMSNormOp: ([seq, seq, vec], (), [x, x2, gamma]),
        T.QuantActOp: ([seq], (), [x]),
        T.AccumOp: (
            [TensorType(i8, (DYN, 3, 5)), T.PackedType((4, 5), "base3")],
            (),
            [rng.integers(-128, 128, (2, 3, 5)).astype(np.int8), nm.pack(w, "base3")],
        ),
        T.DequantOp: (
            [TensorType(i32, (DYN, 3, 4)), TensorType(f32, (DYN, 3, 1)), f32],
            (),
            [acc, rng.uniform(1, 9, (2, 3, 1)).astype(F32), F32(0.03)],
        ),
        T.SigmoidOp: ([seq], (), [x]),
        T.SiluOp: ([seq], (), [x]),
        T.OneMinusOp: ([seq], (), [x]),
        T.SiluMulOp: ([seq, seq], (), [x, x2]),
        T.MulOp: ([seq, seq], (), [x, x2]),
        T.AddOp: ([seq, seq], (), [x, x2]),
        T.SubOp: ([seq, seq], (), [x, x2]),
        T.ScanStepOp: ([state, state, state], (), [x[:, 0], nm.sigmoid(x2[:, 0]), h]),
        T.LowerBoundOp: ([seq, vec], (), [nm.sigmoid(x), gamma - 0.5]),
        T.GateNormOp: ([seq, seq, vec], (), [x, x2, gamma]),
        T.MaskOp: ([seq, TensorType(i64, (DYN, 3))], (), [x, np.array([[0, 1, 1], [1, 1, 1]], np.int64)]),
        T.ScanOp: ([seq, seq, state], (), [x, nm.sigmoid(x2), h]),
        T.EmbeddingOp: ([TensorType(f32, (5, 4)), TensorType(i64, (DYN, 3))], (), [p, ids]),
        T.LowerBoundsOp: ([TensorType(f32, (5, 4))], (), [p]),
        T.SplitOp: ([TensorType(f32, (DYN, 6))], (3,), [rng.standard_normal((2, 6)).astype(F32)]),
        T.RowOp: ([TensorType(f32, (5, 4))], (2,), [p]),
    }


def test_every_op_with_semantics_has_a_sample() -> None:
    assert set(_samples()) == set(T.SEMANTICS)


@pytest.mark.parametrize("op_type", sorted(T.SEMANTICS, key=lambda c: c.name), ids=lambda c: c.name)
def test_interpreter_equals_the_semantics_table(op_type: type) -> None:
    arg_types, extra, inputs = _samples()[op_type]
    module = module_of(arg_types, one(op_type, *extra))
    interpreter, _, _ = make_interpreter(module, None)
    actual = interpreter.call_op("f", tuple(inputs))
    (op,) = [o for o in module.walk() if isinstance(o, op_type)]
    expected = T.evaluate(op, *inputs)
    assert len(actual) == len(expected) == len(op.results)
    for a, e in zip(actual, expected):
        equal(a, e)


# ------------------------------------------------------------------------------- BitLinear steps


@given(data=st.data(), eps=st.sampled_from([1e-6, 1e-5, 1e-3]))
def test_dispatch_rmsnorm(data: st.DataObject, eps: float) -> None:
    """Dispatch: ternary.rmsnorm runs numerics.rmsnorm (not a semantics test)."""
    shape, dyn = data.draw(row_shapes())
    x, gamma = data.draw(floats(shape)), data.draw(floats(shape[-1:], 0.5, 1.5))
    (y,) = run_op([ttype(f32, shape, dyn), ttype(f32, shape[-1:])], one(T.RMSNormOp, eps), [x, gamma])
    equal(y, nm.rmsnorm(x, gamma, eps))  # the f32 attribute rounds eps; numerics rounds it to f32 too


@given(data=st.data(), eps=st.sampled_from([1e-6, 1e-5, 1e-3]))
def test_dispatch_rms_normalize(data: st.DataObject, eps: float) -> None:
    """Dispatch: ternary.rms_normalize runs numerics.rms_normalize (not a semantics test)."""
    shape, dyn = data.draw(row_shapes())
    x = data.draw(floats(shape))
    (y,) = run_op([ttype(f32, shape, dyn)], one(T.RMSNormalizeOp, eps), [x])
    equal(y, nm.rms_normalize(x, eps))


@given(data=st.data())
def test_dispatch_scale(data: st.DataObject) -> None:
    """Dispatch: ternary.scale runs numerics.scale (not a semantics test)."""
    shape, dyn = data.draw(row_shapes())
    x, gamma = data.draw(floats(shape)), data.draw(floats(shape[-1:], 0.5, 1.5))
    (y,) = run_op([ttype(f32, shape, dyn), ttype(f32, shape[-1:])], one(T.ScaleOp), [x, gamma])
    equal(y, nm.scale(x, gamma))


@given(data=st.data(), eps=st.sampled_from([1e-6, 1e-3]))
def test_scale_after_rms_normalize_is_rmsnorm(data: st.DataObject, eps: float) -> None:
    """The split fuse-bitlinear makes (statistics once, one gamma per projection) is bit-identical."""
    shape, dyn = data.draw(row_shapes())
    x = data.draw(floats(shape))
    g1, g2 = data.draw(floats(shape[-1:], 0.5, 1.5)), data.draw(floats(shape[-1:], 0.5, 1.5))

    def build(b: Builder, args: Sequence[SSAValue]) -> list[SSAValue]:
        n = b.insert(T.RMSNormalizeOp(args[0], eps)).result
        return [b.insert(T.ScaleOp(n, g)).result for g in args[1:]]

    gt = ttype(f32, shape[-1:])
    y1, y2 = run_op([ttype(f32, shape, dyn), gt, gt], build, [x, g1, g2])
    equal(y1, nm.rmsnorm(x, g1, eps))
    equal(y2, nm.rmsnorm(x, g2, eps))


def test_scale_gamma_that_disagrees_at_run_time_is_caught() -> None:
    with pytest.raises(InterpError, match=r"gamma has shape \(3,\) at run time, expected \(4,\)"):
        run_op(
            [TensorType(f32, (2, DYN)), TensorType(f32, (DYN,))],
            one(T.ScaleOp),
            [np.ones((2, 4), F32), np.ones(3, F32)],
        )


@given(data=st.data())
def test_dispatch_residual_rmsnorm(data: st.DataObject) -> None:
    """Dispatch: ternary.residual_rmsnorm runs numerics.residual_rmsnorm (not a semantics test)."""
    shape, dyn = data.draw(row_shapes(min_lead=1))
    x, r, gamma = data.draw(floats(shape)), data.draw(floats(shape)), data.draw(floats(shape[-1:], 0.5, 1.5))
    t = ttype(f32, shape, dyn)
    normed, total = run_op([t, t, ttype(f32, shape[-1:])], one(T.ResidualRMSNormOp), [x, r, gamma])
    want_normed, want_total = nm.residual_rmsnorm(x, r, gamma)
    equal(normed, want_normed)
    equal(total, want_total)


@st.composite
def activations_with_ties(draw: st.DrawFn, shape: Sequence[int]) -> np.ndarray:
    """Rows whose scaled values include exact .5 ties: max 127 (s_x = 1) and values k + 0.5."""
    x = draw(floats(shape, -127, 127))
    ties = draw(hnp.arrays(np.bool_, tuple(shape)))
    halves = draw(hnp.arrays(F32, tuple(shape), elements=st.integers(-126, 126).map(lambda k: F32(k + 0.5))))
    x = np.where(ties, halves, x).astype(F32)
    x[..., 0] = F32(127.0)
    return x


@given(data=st.data())
def test_dispatch_quant_act(data: st.DataObject) -> None:
    """Dispatch: ternary.quant_act runs numerics.quant_act (not a semantics test)."""
    shape, dyn = data.draw(row_shapes())
    x = data.draw(st.one_of(floats(shape), activations_with_ties(shape), floats(shape, -(2.0**-20), 2.0**-20)))
    (q, s) = run_op([ttype(f32, shape, dyn)], one(T.QuantActOp), [x])
    want_q, want_s = nm.quant_act(x)
    equal(q, want_q)
    equal(s, want_s)


@given(data=st.data(), form=st.sampled_from(["trits", "2bit", "base3"]), dyn_n=st.booleans())
def test_dispatch_accum(data: st.DataObject, form: str, dyn_n: bool) -> None:
    """Dispatch: ternary.accum runs numerics.accum (not a semantics test)."""
    shape, dyn = data.draw(row_shapes(max_k=23))
    n = data.draw(st.integers(1, 9))
    k = shape[-1]
    x, w = data.draw(int8s(shape)), data.draw(trits((n, k)))
    if form == "trits":
        wt, wv = T.TritsType((DYN if dyn_n else n, k)), w
    else:
        wt, wv = T.PackedType((DYN if dyn_n else n, k), form), nm.pack(w, form)
    (acc,) = run_op([ttype(i8, shape, dyn), wt], one(T.AccumOp), [x, wv])
    equal(acc, nm.accum(x, w))
    assert acc.dtype == np.int32


@given(data=st.data(), tensor_scale=st.booleans())
def test_dispatch_dequant(data: st.DataObject, tensor_scale: bool) -> None:
    """Dispatch: ternary.dequant runs numerics.dequant (not a semantics test)."""
    shape, dyn = data.draw(row_shapes())
    acc = data.draw(hnp.arrays(np.int32, shape, elements=st.integers(-(2**20), 2**20)))
    s = data.draw(floats((*shape[:-1], 1), 0.0625, 256))
    ws = F32(data.draw(st.floats(2.0**-16, 1.0, width=32)))
    st_type: Attribute = TensorType(f32, ()) if tensor_scale else f32
    ws_value = np.asarray(ws) if tensor_scale else ws
    (y,) = run_op(
        [ttype(i32, shape, dyn), ttype(f32, (*shape[:-1], 1), dyn[:-1] + [False]), st_type],
        one(T.DequantOp),
        [acc, s, ws_value],
    )
    equal(y, nm.dequant(acc, s, ws))


@settings(max_examples=10)
@given(data=st.data(), fmt=st.sampled_from(["2bit", "base3"]))
def test_dispatch_unpack(data: st.DataObject, fmt: str) -> None:
    """Dispatch: ternary.unpack runs numerics.unpack (not a semantics test)."""
    n, k = data.draw(st.integers(1, 7)), data.draw(st.integers(1, 23))
    w = data.draw(trits((n, k)))
    (t,) = run_op([T.PackedType((n, k), fmt)], one(T.UnpackOp), [nm.pack(w, fmt)])
    equal(t, nm.unpack(nm.pack(w, fmt), k, fmt))
    equal(t, w)


@settings(max_examples=10)
@given(data=st.data(), tensor_scale=st.booleans())
def test_dispatch_quant_weight(data: st.DataObject, tensor_scale: bool) -> None:
    """Dispatch: ternary.quant_weight runs numerics.quant_weight (not a semantics test)."""
    n, k = data.draw(st.integers(1, 7)), data.draw(st.integers(1, 23))
    w = data.draw(floats((n, k), -0.25, 0.25))
    scale_type: Attribute = TensorType(f32, ()) if tensor_scale else f32
    trits_v, scale = run_op([TensorType(f32, (n, k))], one(T.QuantWeightOp, scale_type), [w])
    want_trits, want_scale = nm.quant_weight(w)
    equal(trits_v, want_trits)
    equal(scale, want_scale)
    assert isinstance(scale, np.ndarray) == tensor_scale  # f32 -> np.float32, tensor<f32> -> 0-d array


# ----------------------------------------------------------------------------------- elementwise

UNARY = {T.SigmoidOp: nm.sigmoid, T.SiluOp: nm.silu, T.OneMinusOp: nm.one_minus}
BINARY = {T.SiluMulOp: nm.silu_mul, T.MulOp: nm.mul, T.AddOp: nm.add, T.SubOp: nm.sub}


@given(data=st.data(), op=st.sampled_from(sorted(UNARY, key=lambda c: c.name)))
def test_dispatch_unary(data: st.DataObject, op: type) -> None:
    """Dispatch: each unary elementwise op runs its numerics function (not a semantics test)."""
    shape, dyn = data.draw(row_shapes(max_lead=3))
    x = data.draw(floats(shape, -100, 100))
    (y,) = run_op([ttype(f32, shape, dyn)], one(op), [x])
    equal(y, UNARY[op](x))


@given(data=st.data(), op=st.sampled_from(sorted(BINARY, key=lambda c: c.name)))
def test_dispatch_binary(data: st.DataObject, op: type) -> None:
    """Dispatch: each binary elementwise op runs its numerics function (not a semantics test)."""
    shape, dyn = data.draw(row_shapes(max_lead=3))
    a, b = data.draw(floats(shape, -100, 100)), data.draw(floats(shape))
    t = ttype(f32, shape, dyn)
    (y,) = run_op([t, t], one(op), [a, b])
    equal(y, BINARY[op](a, b))


@given(data=st.data())
def test_dispatch_scan_step(data: st.DataObject) -> None:
    """Dispatch: ternary.scan_step runs numerics.scan_step (not a semantics test)."""
    shape, dyn = data.draw(row_shapes(min_lead=1, max_lead=1))
    x, f, h = data.draw(floats(shape)), data.draw(floats(shape, 0, 1)), data.draw(floats(shape))
    t = ttype(f32, shape, dyn)
    (y,) = run_op([t, t, t], one(T.ScanStepOp), [x, f, h])
    equal(y, nm.scan_step(x, f, h))


@given(data=st.data())
def test_dispatch_lower_bound(data: st.DataObject) -> None:
    """Dispatch: ternary.lower_bound runs numerics.lower_bound (not a semantics test)."""
    shape, dyn = data.draw(row_shapes())
    f_tilde, lb = data.draw(floats(shape)), data.draw(floats(shape[-1:], 0, 1))
    x = nm.sigmoid(f_tilde)
    (y,) = run_op([ttype(f32, shape, dyn), ttype(f32, shape[-1:])], one(T.LowerBoundOp), [x, lb])
    equal(y, nm.lower_bound(x, lb))
    equal(y, nm.forget_gate(f_tilde, lb))  # sigmoid then lower_bound is the model's forget gate


@given(data=st.data())
def test_dispatch_gate_norm(data: st.DataObject) -> None:
    """Dispatch: ternary.gate_norm runs numerics.gate_norm (not a semantics test)."""
    shape, dyn = data.draw(row_shapes())
    g, h, gamma = data.draw(floats(shape)), data.draw(floats(shape)), data.draw(floats(shape[-1:], 0.5, 1.5))
    t = ttype(f32, shape, dyn)
    (y,) = run_op([t, t, ttype(f32, shape[-1:])], one(T.GateNormOp), [g, h, gamma])
    equal(y, nm.gate_norm(g, h, gamma))


@given(data=st.data(), mask_elem=st.sampled_from(["i64", "i32", "f32"]))
def test_dispatch_mask(data: st.DataObject, mask_elem: str) -> None:
    """Dispatch: ternary.mask runs numerics.apply_mask (not a semantics test)."""
    shape, dyn = data.draw(row_shapes(min_lead=1))
    x = data.draw(floats(shape))
    elem, dtype = {"i64": (i64, np.int64), "i32": (i32, np.int32), "f32": (f32, F32)}[mask_elem]
    mask = data.draw(hnp.arrays(np.int64, shape[:-1], elements=st.integers(0, 1))).astype(dtype)
    (y,) = run_op([ttype(f32, shape, dyn), ttype(elem, shape[:-1], dyn[:-1])], one(T.MaskOp), [x, mask])
    equal(y, nm.apply_mask(x, mask))
    assert np.all(y[mask == 0] == 0)


# ------------------------------------------------------------------------------------ recurrence


@given(data=st.data(), with_init=st.booleans())
def test_dispatch_scan(data: st.DataObject, with_init: bool) -> None:
    """Dispatch: ternary.scan runs numerics.scan (not a semantics test)."""
    b, t, d = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 8)), data.draw(st.integers(1, 9))
    dyn = data.draw(st.lists(st.booleans(), min_size=3, max_size=3))
    x, f, h0 = data.draw(floats((b, t, d))), data.draw(floats((b, t, d), 0, 1)), data.draw(floats((b, d)))
    seq, state = ttype(f32, (b, t, d), dyn), ttype(f32, (b, d), [dyn[0], dyn[2]])
    if with_init:
        h, last = run_op([seq, seq, state], one(T.ScanOp), [x, f, h0])
        want_h, want_last = nm.scan(x, f, h0)
    else:
        h, last = run_op([seq, seq], one(T.ScanOp), [x, f])
        want_h, want_last = nm.scan(x, f)
    equal(h, want_h)
    equal(last, want_last)


# ---------------------------------------------------------------------- embedding, bounds, slicing


@given(data=st.data(), ids_elem=st.sampled_from(["i64", "i32"]))
def test_dispatch_embedding(data: st.DataObject, ids_elem: str) -> None:
    """Dispatch: ternary.embedding runs numerics.embedding (not a semantics test)."""
    v, d = data.draw(st.integers(1, 12)), data.draw(st.integers(1, 8))
    lead = data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=2))
    dyn = data.draw(st.lists(st.booleans(), min_size=len(lead), max_size=len(lead)))
    elem, dtype = (i64, np.int64) if ids_elem == "i64" else (i32, np.int32)
    table = data.draw(floats((v, d)))
    ids = data.draw(hnp.arrays(dtype, tuple(lead), elements=st.integers(0, v - 1)))
    (y,) = run_op([TensorType(f32, (v, d)), ttype(elem, lead, dyn)], one(T.EmbeddingOp), [table, ids])
    equal(y, nm.embedding(table, ids))


def test_embedding_rejects_ids_out_of_range() -> None:
    table = np.zeros((5, 2), F32)
    with pytest.raises(InterpError, match=r"token id 5 is out of range \[0, 5\)"):
        run_op([TensorType(f32, (5, 2)), TensorType(i64, (DYN,))], one(T.EmbeddingOp), [table, np.array([0, 5])])


@given(data=st.data())
def test_dispatch_lower_bounds(data: st.DataObject) -> None:
    """Dispatch: ternary.lower_bounds runs numerics.lower_bounds (not a semantics test)."""
    n, d = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 9))
    p = data.draw(floats((n, d), -4, 4))
    (y,) = run_op([TensorType(f32, (n, d))], one(T.LowerBoundsOp), [p])
    equal(y, nm.lower_bounds(p))


@given(data=st.data(), parts=st.integers(2, 3))
def test_split(data: st.DataObject, parts: int) -> None:
    shape, dyn = data.draw(row_shapes(max_k=6))
    shape = (*shape[:-1], shape[-1] * parts)
    x = data.draw(floats(shape))
    outs = run_op([ttype(f32, shape, dyn)], one(T.SplitOp, parts), [x])
    m = shape[-1] // parts
    assert len(outs) == parts
    for i, out in enumerate(outs):
        equal(out, x[..., i * m : (i + 1) * m])


@given(data=st.data())
def test_row(data: st.DataObject) -> None:
    n, d = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 9))
    index = data.draw(st.integers(0, n - 1))
    x = data.draw(floats((n, d)))
    (y,) = run_op([TensorType(f32, (n, d))], one(T.RowOp, index), [x])
    equal(y, x[index])


def test_row_index_out_of_range_at_run_time() -> None:
    with pytest.raises(InterpError, match="index 2 is out of range for 2 rows"):
        run_op([TensorType(f32, (DYN, 3))], one(T.RowOp, 2), [np.zeros((2, 3), F32)])


# ------------------------------------------------------------------------------------ weights


def weight_build(sym: str, t: Attribute) -> Build:
    return lambda b, args: [b.insert(T.WeightOp(sym, t)).result]


@settings(max_examples=10)
@given(data=st.data(), dtype=st.sampled_from([np.float32, np.float16, np.float64]))
def test_weight_float_tensors_read_as_f32(data: st.DataObject, dtype: type) -> None:
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=2, max_side=6))
    w = data.draw(floats(shape, -3, 3)).astype(dtype)
    elem = {np.float32: f32, np.float16: Float16Type(), np.float64: Float64Type()}[dtype]
    (y,) = run_op([], weight_build("w", TensorType(elem, shape)), [], MemoryStore({"w": w}))
    equal(y, w.astype(F32))


def test_weight_bf16_from_a_store_file(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    w = torch.randn(3, 5).bfloat16()
    save_file({"w": w}, str(tmp_path / "s.safetensors"))
    store = WeightStore.open(tmp_path / "s.safetensors")
    (y,) = run_op([], weight_build("w", TensorType(BFloat16Type(), (3, 5))), [], store)
    equal(y, w.float().numpy())


@settings(max_examples=10)
@given(data=st.data(), fmt=st.sampled_from(["2bit", "base3"]))
def test_weight_ternary_forms_and_scales(data: st.DataObject, fmt: str) -> None:
    n, k = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 21))
    w = data.draw(trits((n, k)))
    scale = F32(data.draw(st.floats(2.0**-16, 1.0, width=32)))
    store = MemoryStore({"t": w, "p": nm.pack(w, fmt), "s": np.asarray(scale)})

    def build(b: Builder, args: Sequence[SSAValue]) -> list[SSAValue]:
        return [
            b.insert(T.WeightOp("t", T.TritsType((n, k)))).result,
            b.insert(T.WeightOp("p", T.PackedType((n, k), fmt))).result,
            b.insert(T.WeightOp("s", f32)).result,
            b.insert(T.WeightOp("s", TensorType(f32, ()))).result,
        ]

    t, p, s, s_tensor = run_op([], build, [], store)
    equal(t, w)
    equal(p, nm.pack(w, fmt))
    assert isinstance(s, np.float32) and s == scale
    assert isinstance(s_tensor, np.ndarray) and s_tensor.shape == () and s_tensor == scale


@pytest.mark.parametrize(
    ("stored", "t", "message"),
    [
        (np.zeros((3, 4), F32), TensorType(f32, (4, 3)), r"@w is a F32 tensor of shape \[3x4\].*tensor<4x3xf32>"),
        (np.zeros((3, 4), F32), TensorType(BFloat16Type(), (3, 4)), r"@w is a F32 tensor.*expected BF16"),
        (np.zeros((3, 4), np.int8), T.PackedType((3, 4), "2bit"), r"@w is a I8 tensor.*expected U8 of shape \[3, 1\]"),
        (np.zeros((3, 4), np.uint8), T.TritsType((3, 4)), r"@w is a U8 tensor.*expected I8"),
        (np.zeros((1,), F32), f32, r"@w is a F32 tensor of shape \[1\].*expected F32 of shape \[\]"),
        (np.full((2, 2), 2, np.int8), T.TritsType((2, 2)), r"@w is read as trits but holds values outside"),
    ],
)
def test_weight_mismatch_is_a_user_error(stored: np.ndarray, t: Attribute, message: str) -> None:
    with pytest.raises(InterpError, match=message):
        run_op([], weight_build("w", t), [], MemoryStore({"w": stored}))


def test_weight_missing_tensor_or_store() -> None:
    with pytest.raises(TensorNotFoundError, match="no tensor w"):
        run_op([], weight_build("w", f32), [], MemoryStore({"v": np.zeros((), F32)}))
    with pytest.raises(InterpError, match="@w needs a weight store"):
        run_op([], weight_build("w", f32), [], None)


def test_packed_weight_with_invalid_codes_is_a_user_error() -> None:
    bad = np.full((2, 1), 0xFF, np.uint8)  # code 0b11 never written by pack_2bit
    x = np.zeros((1, 4), np.int8)
    with pytest.raises(InterpError, match="invalid code"):
        run_op([TensorType(i8, (1, 4)), T.PackedType((2, 4), "2bit")], one(T.AccumOp), [x, bad])


# ---------------------------------------------------------------------------- run-time shapes


def test_dynamic_dims_that_disagree_are_caught_not_broadcast() -> None:
    x = np.ones((2, 3, 4), F32)
    t = TensorType(f32, (DYN, DYN, 4))
    with pytest.raises(InterpError, match=r"mask has shape \(1, 3\) at run time, expected \(2, 3\)"):
        run_op([t, TensorType(i64, (DYN, DYN))], one(T.MaskOp), [x, np.ones((1, 3), np.int64)])
    with pytest.raises(InterpError, match=r"operand 1 has shape \(1, 3, 4\) at run time"):
        run_op([t, t], one(T.AddOp), [x, np.ones((1, 3, 4), F32)])
    with pytest.raises(InterpError, match="initial state"):
        run_op(
            [t, t, TensorType(f32, (DYN, 4))],
            one(T.ScanOp),
            [x, x, np.zeros((3, 4), F32)],
        )
