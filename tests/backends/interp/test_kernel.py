"""``ternary.kernel`` in the interpreter: tile-wise execution equals the unfused ops, and the debug mode.

Kernels are built by hand (a fused BitLinear splitting rows, one splitting accum's N over a packed
weight, a 2-D grid over [B, T], the MLGRU recurrence splitting batch and channels, a single program)
with block sizes that do not divide the extents, and compared bit for bit with the same ops unfused:
each program runs the same numpy functions on whole rows (reductions never cross a tile), so no
tolerance is needed.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from xdsl.builder import Builder
from xdsl.dialects import func
from xdsl.dialects.builtin import IntegerType, ModuleOp, TensorType, f32
from xdsl.ir import Attribute, Block, Region, SSAValue
from xdsl.rewriter import InsertPoint

from mmfc.backends.interp import InterpError, InterpRunner
from mmfc.compare import first_difference
from mmfc.dialects.dump import TraceRecorder, load_dump
from mmfc.dialects import numerics as nm
from mmfc.dialects import ternary as T
from mmfc.dialects.context import mmfc_context
from mmfc.dialects.source import parse_module, verify_module
from mmfc.dialects.ternary import tiling
from mmfc.dialects.weights import MemoryStore

F32 = np.float32
DYN = T.DYN
TileMap = Sequence[int | None]


def module_of(arg_types: Sequence[Attribute], build: Any, name: str = "f") -> ModuleOp:
    block = Block(arg_types=arg_types)
    builder = Builder(InsertPoint.at_end(block))
    results = list(build(builder, block.args))
    builder.insert(func.ReturnOp(*results))
    module = ModuleOp([func.FuncOp(name, (list(arg_types), [r.type for r in results]), Region(block))])
    module.verify()
    return module


def kernel(
    b: Builder,
    grid: Sequence[int],
    inputs: Sequence[SSAValue],
    in_tiles: Sequence[TileMap],
    result_types: Sequence[Attribute],
    out_tiles: Sequence[TileMap],
    body: Any,
    label: str | None = None,
) -> T.KernelOp:
    """A kernel whose body ``body(builder, block_args) -> yielded values`` is built in place."""
    op = T.KernelOp(grid, inputs, in_tiles, result_types, out_tiles)
    inner = Builder(InsertPoint.at_end(op.body.block))
    inner.insert(T.YieldOp(*body(inner, op.body.block.args)))
    if label is not None:
        from xdsl.dialects.builtin import StringAttr

        op.attributes["label"] = StringAttr(label)
    return b.insert(op)


def bitlinear_body(packed: bool = False) -> Any:
    def body(b: Builder, args: Sequence[SSAValue]) -> list[SSAValue]:
        x, gamma, w, ws = args
        q = b.insert(T.QuantActOp(b.insert(T.RMSNormOp(x, gamma)).result))
        if packed:
            w = b.insert(T.UnpackOp(w)).trits
        acc = b.insert(T.AccumOp(q.q, w)).acc
        return [b.insert(T.DequantOp(acc, q.scale, ws)).result]

    return body


def unfused_bitlinear(x: np.ndarray, gamma: np.ndarray, w: np.ndarray, ws: np.float32) -> np.ndarray:
    """The unfused ops, in numerics (the op-level tests hold each op equal to these functions)."""
    q, s = nm.quant_act(nm.rmsnorm(x, gamma))
    return nm.dequant(nm.accum(q, w), s, ws)


@st.composite
def blocked(draw: st.DrawFn, max_blocks: int = 3) -> tuple[int, int]:
    """``(extent, block)`` with a block size that does not divide the extent (last block clipped)."""
    block = draw(st.integers(2, 5))
    return draw(st.integers(0, max_blocks)) * block + draw(st.integers(1, block - 1)), block


def random_inputs(seed: int, m: int, k: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.float32]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k)).astype(F32)
    gamma = rng.uniform(0.5, 1.5, k).astype(F32)
    w = rng.integers(-1, 2, (n, k)).astype(np.int8)
    return x, gamma, w, F32(rng.uniform(0.01, 0.1))


@settings(max_examples=10)
@given(mb=blocked(), k=st.integers(1, 33), n=st.integers(1, 9), dynamic=st.booleans(), seed=st.integers(0, 99))
def test_fused_bitlinear_splitting_rows(mb: tuple[int, int], k: int, n: int, dynamic: bool, seed: int) -> None:
    m, block = mb
    x, gamma, w, ws = random_inputs(seed, m, k, n)
    x_t = TensorType(f32, (DYN if dynamic else m, k))
    out_t = TensorType(f32, (DYN if dynamic else m, n))
    module = module_of(
        [x_t, TensorType(f32, (k,)), T.TritsType((n, k)), f32],
        lambda b, a: kernel(b, [block], a, [[0, None], [None], [None, None], []], [out_t], [[0, None]], bitlinear_body()).results,
    )
    (y,) = InterpRunner(module).run("f", x, gamma, w, ws)
    np.testing.assert_array_equal(y, unfused_bitlinear(x, gamma, w, ws), strict=True)
    np.testing.assert_array_equal(y, nm.bitlinear(x, gamma, w, ws), strict=True)


@settings(max_examples=10)
@given(nb=blocked(), k=st.integers(1, 33), m=st.integers(1, 4), fmt=st.sampled_from(["2bit", "base3", None]), seed=st.integers(0, 99))
def test_fused_gemv_splitting_n(nb: tuple[int, int], k: int, m: int, fmt: str | None, seed: int) -> None:
    n, block = nb
    x, gamma, w, ws = random_inputs(seed, m, k, n)
    w_t: Attribute = T.TritsType((n, k)) if fmt is None else T.PackedType((n, k), fmt)
    w_v = w if fmt is None else nm.pack(w, fmt)
    out_t = TensorType(f32, (m, n))
    module = module_of(
        [TensorType(f32, (m, k)), TensorType(f32, (k,)), w_t, TensorType(f32, ())],
        lambda b, a: kernel(
            b, [block], a, [[None, None], [None], [0, None], []], [out_t], [[None, 0]], bitlinear_body(fmt is not None)
        ).results,
    )
    (y,) = InterpRunner(module).run("f", x, gamma, w_v, np.asarray(ws))
    np.testing.assert_array_equal(y, unfused_bitlinear(x, gamma, w, ws), strict=True)


@settings(max_examples=10)
@given(bb=blocked(2), tb=blocked(2), k=st.integers(1, 17), n=st.integers(1, 6), seed=st.integers(0, 99))
def test_fused_bitlinear_on_a_2d_grid(bb: tuple[int, int], tb: tuple[int, int], k: int, n: int, seed: int) -> None:
    (b_ext, b_blk), (t_ext, t_blk) = bb, tb
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b_ext, t_ext, k)).astype(F32)
    _, gamma, w, ws = random_inputs(seed, 1, k, n)
    out_t = TensorType(f32, (DYN, DYN, n))
    module = module_of(
        [TensorType(f32, (DYN, DYN, k)), TensorType(f32, (k,)), T.TritsType((n, k)), f32],
        lambda b, a: kernel(
            b, [b_blk, t_blk], a, [[0, 1, None], [None], [None, None], []], [out_t], [[0, 1, None]], bitlinear_body()
        ).results,
    )
    (y,) = InterpRunner(module).run("f", x, gamma, w, ws)
    np.testing.assert_array_equal(y, unfused_bitlinear(x, gamma, w, ws), strict=True)


def recurrence_module(b_blk: int, d_blk: int, d: int) -> ModuleOp:
    seq, state, vec = TensorType(f32, (DYN, DYN, d)), TensorType(f32, (DYN, d)), TensorType(f32, (d,))

    def body(b: Builder, args: Sequence[SSAValue]) -> list[SSAValue]:
        xi, xf, lb, h0 = args
        f = b.insert(T.LowerBoundOp(b.insert(T.SigmoidOp(xf)).result, lb)).result
        ip = b.insert(T.SiluMulOp(xi, b.insert(T.OneMinusOp(f)).result)).result
        scan = b.insert(T.ScanOp(ip, f, h0))
        return [scan.h, scan.h_last]

    return module_of(
        [seq, seq, vec, state],
        lambda b, a: kernel(
            b, [b_blk, d_blk], a, [[0, None, 1], [0, None, 1], [1], [0, 1]], [seq, state], [[0, None, 1], [0, 1]], body,
            label="mlgru",
        ).results,
    )


@settings(max_examples=10)
@given(bb=blocked(2), db=blocked(3), t=st.integers(1, 6), seed=st.integers(0, 99))
def test_recurrence_kernel_splitting_batch_and_channels(bb: tuple[int, int], db: tuple[int, int], t: int, seed: int) -> None:
    (b, b_blk), (d, d_blk) = bb, db
    rng = np.random.default_rng(seed)
    i, ft = rng.standard_normal((2, b, t, d)).astype(F32)
    lb, h0 = rng.uniform(0, 1, d).astype(F32), rng.standard_normal((b, d)).astype(F32)
    h, last = InterpRunner(recurrence_module(b_blk, d_blk, d)).run("f", i, ft, lb, h0)
    f = nm.forget_gate(ft, lb)
    want_h, want_last = nm.scan(nm.input_gate(i, f), f, h0)
    np.testing.assert_array_equal(h, want_h, strict=True)
    np.testing.assert_array_equal(last, want_last, strict=True)


def test_single_program_kernel() -> None:
    p = np.random.default_rng(0).standard_normal((4, 6)).astype(F32)
    module = module_of(
        [TensorType(f32, (4, 6))],
        lambda b, a: kernel(
            b, [], a, [[None, None]], [TensorType(f32, (6,))], [[None]],
            lambda bb, args: [bb.insert(T.RowOp(bb.insert(T.LowerBoundsOp(args[0])).result, 2)).result],
        ).results,
    )
    (y,) = InterpRunner(module).run("f", p)
    np.testing.assert_array_equal(y, nm.lower_bounds(p)[2], strict=True)


def test_empty_extent_gives_empty_results() -> None:
    x, gamma, w, ws = random_inputs(0, 0, 8, 3)
    out_t = TensorType(f32, (DYN, 3))
    module = module_of(
        [TensorType(f32, (DYN, 8)), TensorType(f32, (8,)), T.TritsType((3, 8)), f32],
        lambda b, a: kernel(b, [4], a, [[0, None], [None], [None, None], []], [out_t], [[0, None]], bitlinear_body()).results,
    )
    (y,) = InterpRunner(module).run("f", x, gamma, w, ws)
    assert y.shape == (0, 3) and y.dtype == F32


def test_operands_split_by_one_axis_must_agree_at_run_time() -> None:
    t = TensorType(f32, (DYN, 4))
    module = module_of(
        [t, t],
        lambda b, a: kernel(
            b, [2], a, [[0, None], [0, None]], [t], [[0, None]], lambda bb, args: [bb.insert(T.AddOp(*args)).result]
        ).results,
    )
    with pytest.raises(InterpError, match="grid axis 0 splits dims of different sizes at run time"):
        InterpRunner(module).run("f", np.zeros((3, 4), F32), np.zeros((5, 4), F32))


def test_coverage_check_catches_programs_that_miss_a_tile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Break the dialect's program count (floor instead of ceil): the last, partial block is never run."""
    x, gamma, w, ws = random_inputs(0, 7, 8, 3)
    out_t = TensorType(f32, (DYN, 3))
    module = module_of(
        [TensorType(f32, (DYN, 8)), TensorType(f32, (8,)), T.TritsType((3, 8)), f32],
        lambda b, a: kernel(b, [2], a, [[0, None], [None], [None, None], []], [out_t], [[0, None]], bitlinear_body()).results,
    )
    InterpRunner(module).run("f", x, gamma, w, ws)  # sound as it is
    monkeypatch.setattr(tiling, "math", types.SimpleNamespace(ceil=lambda v: int(v)))
    with pytest.raises(AssertionError, match="result 0: 3 elements written by no program"):
        InterpRunner(module).run("f", x, gamma, w, ws)
    (y,) = InterpRunner(module, check_coverage=False).run("f", x, gamma, w, ws)
    assert np.isnan(y[6]).all() and not np.isnan(y[:6]).any()  # the unwritten row stays poisoned


# ------------------------------------------------------------------------------------ from text

KERNEL_TEXT = """
builtin.module attributes {mmfc.weights = "w.safetensors"} {
  func.func @bitlinear(%x: tensor<?x?x16xf32>) -> tensor<?x?x8xf32> {
    %gamma = ternary.weight @gamma : tensor<16xf32>
    %w = ternary.weight @w : !ternary.packed<8x16, "base3">
    %ws = ternary.weight @ws : f32
    %y = ternary.kernel grid [1, 3] (%a = %x : tensor<?x?x16xf32> tiled [0, 1, *], %g = %gamma : tensor<16xf32>,
                                     %p = %w : !ternary.packed<8x16, "base3">, %s = %ws : f32)
                                 -> (tensor<?x?x8xf32> tiled [0, 1, *]) attributes {label = "i_proj"} {
      %n = ternary.rmsnorm %a, %g : tensor<?x?x16xf32>, tensor<16xf32>
      %q, %qs = ternary.quant_act %n : tensor<?x?x16xf32> -> tensor<?x?x16xi8>, tensor<?x?x1xf32>
      %t = ternary.unpack %p : !ternary.packed<8x16, "base3"> -> !ternary.trits<8x16>
      %acc = ternary.accum %q, %t : tensor<?x?x16xi8>, !ternary.trits<8x16> -> tensor<?x?x8xi32>
      %r = ternary.dequant %acc, %qs, %s : tensor<?x?x8xi32>, tensor<?x?x1xf32>, f32 -> tensor<?x?x8xf32>
      ternary.yield %r : tensor<?x?x8xf32>
    }
    %z = ternary.silu %y : tensor<?x?x8xf32>
    func.return %z : tensor<?x?x8xf32>
  }
}
"""


@pytest.fixture
def text_kernel(tmp_path: Path) -> tuple[InterpRunner, dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(3)
    w = rng.integers(-1, 2, (8, 16)).astype(np.int8)
    tensors = {"gamma": rng.uniform(0.5, 1.5, 16).astype(F32), "w": nm.pack(w, "base3"), "ws": np.asarray(F32(0.03))}
    MemoryStore(tensors).save(tmp_path / "w.safetensors")
    (tmp_path / "k.mlir").write_text(KERNEL_TEXT)
    module, source = parse_module(mmfc_context(), KERNEL_TEXT, "k.mlir")
    verify_module(module, source)
    return InterpRunner(module, mlir_path=tmp_path / "k.mlir"), tensors, w


def test_kernel_parsed_from_text_with_store_weights(text_kernel: Any) -> None:
    runner, tensors, w = text_kernel
    x = np.random.default_rng(4).standard_normal((2, 5, 16)).astype(F32)
    (z,) = runner.run("bitlinear", x)
    want = nm.silu(unfused_bitlinear(x, tensors["gamma"], w, tensors["ws"][()]))
    np.testing.assert_array_equal(z, want, strict=True)


# ------------------------------------------------------------------------------------ debug mode


def test_trace_records_each_kernel_as_one_op(text_kernel: Any) -> None:
    runner, _, _ = text_kernel
    x = np.random.default_rng(5).standard_normal((2, 5, 16)).astype(F32)
    rec = TraceRecorder()
    (z,) = runner.run("bitlinear", x, trace=rec)
    assert [(r.index, r.name, r.label) for r in rec.records] == [
        (0, "ternary.kernel", "i_proj"),
        (1, "ternary.silu", None),
    ]
    assert rec.records[0].result_names == ("y",) and rec.records[0].program is None
    np.testing.assert_array_equal(rec.records[1].results[0], z)
    np.testing.assert_array_equal(nm.silu(rec.records[0].results[0]), z)


def test_trace_kernel_bodies_records_every_program(text_kernel: Any) -> None:
    runner, _, _ = text_kernel
    runner.monitor.trace_kernel_bodies = True
    rec = TraceRecorder()
    x = np.random.default_rng(5).standard_normal((2, 5, 16)).astype(F32)
    runner.run("bitlinear", x, trace=rec)
    body = [r for r in rec.records if r.program is not None]
    # grid [1, 3] over [B=2, T=5]: 2 batch blocks x 2 time blocks (3 + a clipped 2)
    assert sorted({r.program for r in body}) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert {r.name for r in body} == {
        "ternary.rmsnorm", "ternary.quant_act", "ternary.unpack", "ternary.accum", "ternary.dequant"
    }
    last_tile = next(r for r in body if r.name == "ternary.dequant" and r.program == (1, 1))
    assert last_tile.results[0].shape == (1, 2, 8)  # the clipped block of the time axis
    assert [r.name for r in rec.records if r.program is None] == ["ternary.kernel", "ternary.silu"]


def test_dump_dir_and_first_difference(text_kernel: Any, tmp_path: Path) -> None:
    runner, _, _ = text_kernel
    x = np.random.default_rng(6).standard_normal((1, 4, 16)).astype(F32)
    rec = TraceRecorder()
    runner.run("bitlinear", x, trace=rec, dump_dir=tmp_path / "dump")
    files = sorted(p.name for p in (tmp_path / "dump").iterdir())
    assert files == ["000_kernel_i_proj.npy", "001_silu.npy", "trace.jsonl"]
    loaded = load_dump(tmp_path / "dump")
    assert first_difference(loaded, rec.records) is None
    # another backend whose kernel is one ulp off: the kernel is the first difference, not the silu
    other = load_dump(tmp_path / "dump")
    bumped = other[0].results[0].copy()
    bumped[0, 1, 2] = np.nextafter(bumped[0, 1, 2], F32(np.inf))
    other[0] = type(other[0])(**{**other[0].__dict__, "results": (bumped,)})
    diff = first_difference(other, loaded)
    assert diff is not None and diff.actual.index == 0 and "(0, 1, 2)" in diff.why
    assert first_difference(other, loaded, rtol=1e-6) is None


def test_trace_weights_records_the_weight_reads(text_kernel: Any) -> None:
    runner, tensors, _ = text_kernel
    runner.monitor.trace_weights = True
    rec = TraceRecorder()
    runner.run("bitlinear", np.zeros((1, 1, 16), F32), trace=rec)
    assert [r.name for r in rec.records] == ["ternary.weight"] * 3 + ["ternary.kernel", "ternary.silu"]
    np.testing.assert_array_equal(rec.records[0].results[0], tensors["gamma"])


def test_runner_debug_dump_dir_makes_one_folder_per_run(text_kernel: Any, tmp_path: Path) -> None:
    runner, _, _ = text_kernel
    runner.debug_dump_dir = tmp_path / "dbg"
    x = np.zeros((1, 2, 16), F32)
    runner.run("bitlinear", x)
    runner.run("bitlinear", x)
    assert sorted(p.name for p in (tmp_path / "dbg").iterdir()) == ["000_bitlinear", "001_bitlinear"]


def test_failing_op_is_named(text_kernel: Any) -> None:
    runner, _, _ = text_kernel
    with pytest.raises(InterpError) as info:
        runner.run("bitlinear", np.zeros((1, 2, 16), np.float64))
    assert info.value.input_index == 0 and "expected a float32 array" in str(info.value)
    t = TensorType(f32, (DYN, 4))
    module = module_of(
        [t, TensorType(IntegerType(64), (DYN,))],
        lambda b, a: [
            *kernel(
                b, [2], [a[0]], [[0, None]], [t], [[0, None]], lambda bb, args: [bb.insert(T.SigmoidOp(args[0])).result]
            ).results,
            b.insert(T.MaskOp(a[0], a[1])).result,
        ],
    )
    with pytest.raises(InterpError, match="ternary.mask: mask has shape") as info:
        InterpRunner(module).run("f", np.zeros((3, 4), F32), np.zeros((2,), np.int64))
    assert isinstance(info.value.op, T.MaskOp)
