"""Python-level tests of the ternary dialect: building ops, verifier messages, dynamic shapes, the
kernel rule, traits, and registration for plain ``xdsl-opt``.

The IR-text side (printing, parsing, round trips, diagnostics) is in ``tests/filecheck/dialects``.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from xdsl.context import Context
from xdsl.dialects import builtin, func
from xdsl.dialects.builtin import DYNAMIC_INDEX as DYN
from xdsl.dialects.builtin import FloatAttr, IntegerType, ModuleOp, TensorType, bf16, f32, i32, i64
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.traits import IsTerminator, Pure, is_side_effect_free
from xdsl.utils.exceptions import VerifyException
from xdsl.utils.test_value import create_ssa_value

from mmfc.dialects import numerics
from mmfc.dialects import ternary as t

i8 = IntegerType(8)


def v(ty: Attribute) -> SSAValue:
    """A fresh SSA value of type ``ty``."""
    return create_ssa_value(ty)


def f32t(*shape: int) -> TensorType:
    return TensorType(f32, shape)


def verify_fails(op: Operation, message: str) -> None:
    with pytest.raises(VerifyException, match=message):
        op.verify()


def ctx() -> Context:
    c = Context()
    for d in (builtin.Builtin, func.Func, t.Ternary):
        c.load_dialect(d)
    return c


def print_op(op: Operation) -> str:
    import io

    out = io.StringIO()
    Printer(stream=out).print_op(op)
    return out.getvalue()


# --------------------------------------------------------------------------------------------------
# Types
# --------------------------------------------------------------------------------------------------


def test_trits_and_packed_types() -> None:
    tr = t.TritsType([32, 64])
    assert tr.get_shape() == (32, 64)
    assert t.TritsType([DYN, 64]).get_shape() == (DYN, 64)
    p = t.PackedType([32, 61], "base3")
    assert p.get_shape() == (32, 61)
    for k in (1, 4, 5, 61, 64):
        for fmt in numerics.PACK_FORMATS:
            assert t.PackedType([8, k], fmt).row_bytes() == numerics.packed_row_bytes(k, fmt)
    assert t.PackedType([8, DYN], "2bit").row_bytes() is None


def test_bad_types_are_rejected() -> None:
    with pytest.raises(VerifyException, match="trits: expected a 2-D weight shape NxK, got \\[64\\]"):
        t.TritsType([64])
    with pytest.raises(VerifyException, match='packed: unknown format "1bit"'):
        t.PackedType([32, 64], "1bit")
    with pytest.raises(VerifyException, match="a grid axis may split at most one dim"):
        t.TileMapAttr([0, 0])


def test_tile_type_makes_split_dims_dynamic() -> None:
    assert t.tile_type(f32t(8, 16, 64), t.TileMapAttr([0, 1, None])) == f32t(DYN, DYN, 64)
    assert t.tile_type(t.TritsType([32, 64]), t.TileMapAttr([0, None])) == t.TritsType([DYN, 64])
    assert t.tile_type(t.PackedType([32, 64], "2bit"), t.TileMapAttr([0, None])) == t.PackedType(
        [DYN, 64], "2bit"
    )
    assert t.tile_type(f32, t.TileMapAttr([])) == f32


# --------------------------------------------------------------------------------------------------
# Unfused ops: building, inferred result types, dynamic shapes
# --------------------------------------------------------------------------------------------------


def test_bitlinear_chain_builds_and_verifies_with_dynamic_dims() -> None:
    x = v(f32t(DYN, DYN, 64))
    gamma = v(TensorType(bf16, [64]))
    w = v(t.TritsType([32, 64]))
    ws = v(f32)
    n = t.RMSNormOp(x, gamma)
    q = t.QuantActOp(n.result)
    acc = t.AccumOp(q.q, w)
    y = t.DequantOp(acc.acc, q.scale, ws)
    for op in (n, q, acc, y):
        op.verify()
    assert q.q.type == TensorType(i8, [DYN, DYN, 64])
    assert q.scale.type == f32t(DYN, DYN, 1)
    assert acc.acc.type == TensorType(i32, [DYN, DYN, 32])
    assert y.result.type == f32t(DYN, DYN, 32)
    assert n.eps.value.data == pytest.approx(numerics.RMS_EPS)


def test_accum_accepts_packed_weights_and_dynamic_k() -> None:
    t.AccumOp(v(TensorType(i8, [DYN, 64])), v(t.PackedType([32, 64], "base3"))).verify()
    # A dynamic K (a tile) agrees with any static K.
    t.AccumOp(v(TensorType(i8, [4, DYN])), v(t.TritsType([32, 64]))).verify()


def test_accum_k_mismatch_message() -> None:
    op = t.AccumOp(v(TensorType(i8, [DYN, 64])), v(t.TritsType([32, 32])))
    verify_fails(op, "accum: activation K=64 does not match weight K=32")


def test_accum_rejects_a_float_weight() -> None:
    x = v(TensorType(i8, [4, 64]))
    op = t.AccumOp.create(operands=[x, v(f32t(32, 64))], result_types=[TensorType(i32, [4, 32])])
    verify_fails(op, "accum: weight must be !ternary.trits or !ternary.packed")


def test_rmsnorm_messages() -> None:
    verify_fails(
        t.RMSNormOp(v(f32t(DYN, 64)), v(f32t(32))), "rmsnorm: gamma has shape \\[32\\], expected \\[64\\]"
    )
    verify_fails(t.RMSNormOp(v(f32t(DYN, 64)), v(f32t(64)), eps=-1.0), "rmsnorm: eps must be >= 0")
    bad_x = t.RMSNormOp.create(
        operands=[v(TensorType(i32, [4, 64])), v(f32t(64))],
        result_types=[TensorType(i32, [4, 64])],
        properties={"eps": FloatAttr(1e-6, f32)},
    )
    verify_fails(bad_x, "rmsnorm: x must be a tensor of f32")


def test_quant_act_scale_shape_message() -> None:
    op = t.QuantActOp.create(operands=[v(f32t(4, 64))], result_types=[TensorType(i8, [4, 64]), f32t(4, 2)])
    verify_fails(op, "quant_act: scale has shape \\[4, 2\\], expected \\[4, 1\\]")


def test_dequant_checks_scales() -> None:
    acc = v(TensorType(i32, [DYN, 32]))
    t.DequantOp(acc, v(f32t(DYN, 1)), v(TensorType(f32, []))).verify()
    verify_fails(t.DequantOp(acc, v(f32t(DYN, 1)), v(i64)), "dequant: weight scale must be an f32 scale")
    verify_fails(t.DequantOp(acc, v(f32t(DYN, 32)), v(f32)), "dequant: activation scale has shape")


def test_weight_op_types() -> None:
    store_types = (
        TensorType(bf16, [32, 64]),
        t.TritsType([32, 64]),
        t.PackedType([32, 64], "2bit"),
        f32,
        f32t(),
    )
    for ty in store_types:
        t.WeightOp("model.layers.0.attn.i_proj.weight", ty).verify()
    verify_fails(t.WeightOp("w", TensorType(i32, [4])), "weight: @w has type tensor<4xi32>")
    verify_fails(t.WeightOp("w", t.TritsType([DYN, 4])), "weight: @w must have a static shape")


def test_quant_weight_and_unpack_build() -> None:
    qw = t.QuantWeightOp(v(TensorType(bf16, [32, 64])))
    qw.verify()
    assert qw.trits.type == t.TritsType([32, 64])
    up = t.UnpackOp(v(t.PackedType([32, 64], "2bit")))
    up.verify()
    assert up.trits.type == t.TritsType([32, 64])


def test_recurrence_and_gates_build_with_dynamic_batch_and_time() -> None:
    x = v(f32t(DYN, DYN, 64))
    lb = v(f32t(64))
    sig = t.SigmoidOp(x)
    f = t.LowerBoundOp(sig.result, lb)
    om = t.OneMinusOp(f.result)
    ip = t.SiluMulOp(x, om.result)
    masked = t.MaskOp(ip.result, v(TensorType(i64, [DYN, DYN])))
    scan = t.ScanOp(masked.result, f.result)
    scan_init = t.ScanOp(masked.result, f.result, v(f32t(DYN, 64)))
    out = t.GateNormOp(x, scan.h, v(f32t(64)))
    step = t.ScanStepOp(v(f32t(DYN, 64)), v(f32t(DYN, 64)), v(f32t(DYN, 64)))
    for op in (sig, f, om, ip, masked, scan, scan_init, out, step):
        op.verify()
    assert scan.h_last.type == f32t(DYN, 64)
    verify_fails(t.ScanOp(v(f32t(2, 5, 64)), v(f32t(2, 5, 64)), v(f32t(3, 64))), "expected from variable 'S'")


def test_embedding_lower_bounds_split_row() -> None:
    e = t.EmbeddingOp(v(TensorType(bf16, [100, 64])), v(TensorType(i64, [DYN, DYN])))
    e.verify()
    assert e.result.type == f32t(DYN, DYN, 64)
    lbs = t.LowerBoundsOp(v(TensorType(bf16, [4, 64])))
    lbs.verify()
    row = t.RowOp(lbs.result, 3)
    row.verify()
    assert row.result.type == f32t(64)
    verify_fails(t.RowOp(lbs.result, 4), "row: index 4 is out of range for 4 rows")
    sp = t.SplitOp(v(f32t(DYN, 256)))
    sp.verify()
    assert [p.type for p in sp.parts] == [f32t(DYN, 128)] * 2
    verify_fails(t.SplitOp(v(f32t(DYN, 255))), "split: last dim 255 does not split into 2 equal parts")


DIM = st.sampled_from([DYN, 1, 3, 4])


@given(x_rows=DIM, x_k=DIM, w_n=DIM, w_k=DIM, acc_n=DIM)
def test_accum_verifies_iff_static_dims_agree(x_rows: int, x_k: int, w_n: int, w_k: int, acc_n: int) -> None:
    """Dynamic dims agree with anything; static dims must be equal (K with K, N with N)."""
    weight = t.TritsType([w_n, w_k])
    op = t.AccumOp.create(
        operands=[v(TensorType(i8, [x_rows, x_k])), v(weight)],
        result_types=[TensorType(i32, [x_rows, acc_n])],
    )

    def agree(a: int, b: int) -> bool:
        return a == DYN or b == DYN or a == b

    if agree(x_k, w_k) and agree(acc_n, w_n):
        op.verify()
    else:
        with pytest.raises(VerifyException, match="accum: "):
            op.verify()


# --------------------------------------------------------------------------------------------------
# Every compute op can sit in a kernel; tiling rules match the op's ranks
# --------------------------------------------------------------------------------------------------


def _samples() -> dict[type[Operation], Callable[[], Operation]]:
    x3 = f32t(2, DYN, 64)
    return {
        t.QuantWeightOp: lambda: t.QuantWeightOp(v(f32t(32, 64))),
        t.UnpackOp: lambda: t.UnpackOp(v(t.PackedType([32, 64], "2bit"))),
        t.RMSNormOp: lambda: t.RMSNormOp(v(x3), v(f32t(64))),
        t.RMSNormalizeOp: lambda: t.RMSNormalizeOp(v(x3)),
        t.ScaleOp: lambda: t.ScaleOp(v(x3), v(f32t(64))),
        t.ResidualRMSNormOp: lambda: t.ResidualRMSNormOp(v(x3), v(x3), v(f32t(64))),
        t.QuantActOp: lambda: t.QuantActOp(v(x3)),
        t.AccumOp: lambda: t.AccumOp(v(TensorType(i8, [2, DYN, 64])), v(t.TritsType([32, 64]))),
        t.DequantOp: lambda: t.DequantOp(v(TensorType(i32, [2, DYN, 32])), v(f32t(2, DYN, 1)), v(f32)),
        t.SigmoidOp: lambda: t.SigmoidOp(v(x3)),
        t.SiluOp: lambda: t.SiluOp(v(x3)),
        t.OneMinusOp: lambda: t.OneMinusOp(v(x3)),
        t.SiluMulOp: lambda: t.SiluMulOp(v(x3), v(x3)),
        t.MulOp: lambda: t.MulOp(v(x3), v(x3)),
        t.AddOp: lambda: t.AddOp(v(x3), v(x3)),
        t.SubOp: lambda: t.SubOp(v(x3), v(x3)),
        t.ScanStepOp: lambda: t.ScanStepOp(v(f32t(2, 64)), v(f32t(2, 64)), v(f32t(2, 64))),
        t.LowerBoundOp: lambda: t.LowerBoundOp(v(x3), v(f32t(64))),
        t.GateNormOp: lambda: t.GateNormOp(v(x3), v(x3), v(f32t(64))),
        t.MaskOp: lambda: t.MaskOp(v(x3), v(TensorType(i64, [2, DYN]))),
        t.ScanOp: lambda: t.ScanOp(v(x3), v(x3), v(f32t(2, 64))),
        t.EmbeddingOp: lambda: t.EmbeddingOp(v(f32t(100, 64)), v(TensorType(i64, [2, DYN]))),
        t.LowerBoundsOp: lambda: t.LowerBoundsOp(v(f32t(4, 64))),
        t.SplitOp: lambda: t.SplitOp(v(x3)),
        t.RowOp: lambda: t.RowOp(v(f32t(4, 64)), 1),
    }


def test_every_compute_op_has_a_tiling_rule_and_a_sample() -> None:
    compute_ops = {op for op in t.Ternary.operations if op not in (t.WeightOp, t.KernelOp, t.YieldOp)}
    assert all(issubclass(op, t.TiledOp) for op in compute_ops)
    assert compute_ops == set(_samples())


@pytest.mark.parametrize("op_type", list(_samples()), ids=lambda c: c.name)
def test_tile_rule_matches_ranks(op_type: type[Operation]) -> None:
    op = _samples()[op_type]()
    op.verify()
    assert isinstance(op, t.TiledOp)
    rule = op.tile_rule()
    assert [len(labels) for labels in rule.operands] == [len(t.shape_of(o.type)) for o in op.operands]
    assert [len(labels) for labels in rule.results] == [len(t.shape_of(r.type)) for r in op.results]
    used = {label for labels in (*rule.operands, *rule.results) for label in labels}
    assert rule.whole <= used


def test_traits_let_xdsl_passes_work() -> None:
    for op in t.Ternary.operations:
        if op is t.KernelOp:
            continue
        assert op.has_trait(Pure), op.name
    assert t.YieldOp.has_trait(IsTerminator)


# --------------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------------


def _bitlinear_kernel(split_k: bool = False) -> t.KernelOp:
    """Rows split by grid axis 0 (blocks of 16); with split_k, the input's K axis too (invalid)."""
    x = v(f32t(DYN, 64))
    gamma = v(f32t(64))
    w = v(t.TritsType([32, 64]))
    ws = v(f32)
    x_tile = [None, 0] if split_k else [0, None]
    gamma_tile = [0] if split_k else [None]
    out_tile = [None, 0] if split_k else [0, None]
    kernel = t.KernelOp(
        grid=[16],
        inputs=[x, gamma, w, ws],
        input_tiles=[x_tile, gamma_tile, [None, None], []],
        result_types=[f32t(DYN, 64 if split_k else 32)],
        result_tiles=[out_tile],
    )
    block = kernel.body.block
    a, g, tr, s = block.args
    if split_k:
        body: list[Operation] = [t.RMSNormOp(a, g)]
        body.append(t.YieldOp(body[-1].results[0]))
    else:
        n = t.RMSNormOp(a, g)
        q = t.QuantActOp(n.result)
        acc = t.AccumOp(q.q, tr)
        y = t.DequantOp(acc.acc, q.scale, s)
        body = [n, q, acc, y, t.YieldOp(y.result)]
    block.add_ops(body)
    return kernel


def test_kernel_builds_verifies_and_round_trips() -> None:
    kernel = _bitlinear_kernel()
    kernel.verify()
    assert kernel.body.block.args[0].type == f32t(DYN, 64)
    assert kernel.grid_sizes() == (16,)
    assert is_side_effect_free(kernel)
    fn = func.FuncOp("f", ([a.type for a in kernel.inputs], [kernel.outputs[0].type]))
    # Rebuild with the function's arguments as operands, print, parse back and print again.
    fn_block = fn.body.block
    for old, new in zip(kernel.inputs, fn_block.args):
        old.replace_all_uses_with(new)
    fn_block.add_ops([kernel, func.ReturnOp(kernel.outputs[0])])
    module = ModuleOp([fn])
    module.verify()
    text = print_op(module)
    assert "ternary.kernel grid [16] (" in text and "tiled [0, *]" in text
    reparsed = Parser(ctx(), text).parse_module()
    reparsed.verify()
    assert print_op(reparsed) == text


def test_kernel_rejects_a_row_reduction_over_a_split_axis() -> None:
    verify_fails(_bitlinear_kernel(split_k=True), "kernel: ternary.rmsnorm needs operand 0 dim 1 whole")


def test_kernel_rejects_a_scan_over_split_time_and_accepts_split_channels() -> None:
    def scan_kernel(tile: list[int | None]) -> t.KernelOp:
        x = v(f32t(2, DYN, 64))
        k = t.KernelOp([1], [x], [tile], [x.type], [tile])
        a = k.body.block.args[0]
        scan = t.ScanOp(a, a)
        k.body.block.add_ops([scan, t.YieldOp(scan.h)])
        return k

    scan_kernel([None, None, 0]).verify()  # channels are independent
    scan_kernel([0, None, None]).verify()  # so are batch rows
    verify_fails(scan_kernel([None, 0, None]), "kernel: ternary.scan needs operand 0 dim 1 whole")


def test_kernel_rejects_values_from_outside() -> None:
    outside = v(f32t(64))
    x = v(f32t(DYN, 64))
    k = t.KernelOp([4], [x], [[0, None]], [x.type], [[0, None]])
    n = t.RMSNormOp(k.body.block.args[0], outside)
    k.body.block.add_ops([n, t.YieldOp(n.result)])
    verify_fails(k, "kernel: ternary.rmsnorm uses a value defined outside the kernel")


def test_kernel_canonicalization_drops_unused_values() -> None:
    from xdsl.transforms.canonicalize import CanonicalizePass

    x, u = v(f32t(DYN, 64)), v(f32t(DYN, 64))
    fn = func.FuncOp("f", ([x.type, u.type], [x.type]))
    xa, ua = fn.body.block.args
    k = t.KernelOp([4], [xa, ua], [[0, None]] * 2, [x.type, x.type], [[0, None]] * 2)
    a, b = k.body.block.args
    s1, s2 = t.SiluOp(a), t.SigmoidOp(b)
    k.body.block.add_ops([s1, s2, t.YieldOp(s1.result, s2.result)])
    fn.body.block.add_ops([k, func.ReturnOp(k.outputs[0])])
    module = ModuleOp([fn])
    module.verify()
    CanonicalizePass().apply(ctx(), module)
    module.verify()
    (kernel,) = [op for op in module.walk() if isinstance(op, t.KernelOp)]
    assert list(kernel.inputs) == [xa]
    assert len(kernel.outputs) == 1
    assert [op.name for op in kernel.body.block.ops] == ["ternary.silu", "ternary.yield"]


# --------------------------------------------------------------------------------------------------
# Registration and layering
# --------------------------------------------------------------------------------------------------


def test_dialect_is_in_the_xdsl_multiverse() -> None:
    from xdsl.universe import Universe

    dialects = Universe.get_multiverse().all_dialects
    assert dialects["ternary"]() is t.Ternary


MAX_MODULE_LINES = 800


def test_no_module_of_the_package_is_over_800_lines() -> None:
    package = Path(t.__file__).parent
    modules = sorted(package.glob("*.py"))
    assert len(modules) > 1
    too_long = {p.name: n for p in modules if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not too_long, f"split these modules of {package.name}/ (at most {MAX_MODULE_LINES} lines each)"


def test_the_package_reexports_every_public_name() -> None:
    for path in sorted(Path(t.__file__).parent.glob("*.py")):
        if path.stem == "__init__":
            continue
        module = importlib.import_module(f"mmfc.dialects.ternary.{path.stem}")
        missing = [name for name in module.__all__ if getattr(t, name, None) is not getattr(module, name)]
        assert not missing, f"{path.name}: not re-exported by mmfc.dialects.ternary: {missing}"
        assert set(module.__all__) <= set(t.__all__), path.name


def test_importing_the_dialect_does_not_import_torch() -> None:
    code = (
        "import mmfc.dialects.ternary, sys; "
        "assert 'torch' not in sys.modules and 'triton' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

