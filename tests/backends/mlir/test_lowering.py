"""The upstream export: ternary IR of random tiny models (dims not multiples of 4 or 5, both packings,
fused and unfused) lowered to upstream MLIR parses and verifies in real MLIR (``iree.compiler.ir``),
uses the upstream dialects only, and takes the weights as function arguments, never as constants."""

from __future__ import annotations

import functools

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from xdsl.dialects import arith, func
from xdsl.dialects.builtin import ModuleOp, TensorType

from mmfc.backends.mlir.compiler import MLIRVerifyError, module_text, verify_text
from mmfc.backends.mlir.lower import Lowered, check_lowerable, lower_module
from mmfc.dialects import ternary as T
from mmfc.dialects.diagnostics import UserError
from mmfc.dialects.numerics import packed_row_bytes

UPSTREAM = {"builtin", "func", "arith", "math", "tensor", "linalg", "scf"}
LINALG = {"linalg.generic", "linalg.yield", "linalg.index", "linalg.fill"}


def pipeline(fmt: str, fused: bool) -> str:
    passes = f"fold-weight-quant,pack-weights{{format={fmt}}}"
    if fused:
        passes += ",fuse-bitlinear,fuse-recurrence,fuse-glu,canonicalize,cse,dce"
    return passes


@functools.cache
def ternary_module(d: int, inter: int, seed: int, spec: str) -> tuple[ModuleOp, object]:
    from mmfc.api import run_pipeline
    from mmfc.frontends.torch.modeling import init_random_
    from mmfc.models import HGRNBitConfig, HGRNBitForCausalLM
    from mmfc.source import import_ir, source_of

    config = HGRNBitConfig(vocab_size=29, hidden_size=d, num_hidden_layers=2, intermediate_size=inter)
    imported = import_ir(source_of(init_random_(HGRNBitForCausalLM.from_config(config), seed)))
    run_pipeline(imported.module, spec)
    from mmfc.dialects.weights import resolve_store

    return imported.module, resolve_store(imported.module)


def check_upstream(lowered: Lowered, module: ModuleOp) -> None:
    verify_text(module_text(lowered.module))
    for op in lowered.module.walk():
        assert op.name.split(".")[0] in UPSTREAM, op.name
        if op.name.startswith("linalg."):
            assert op.name in LINALG, f"{op.name}: only linalg.generic (and its yield/index, fill) is used"
        if isinstance(op, arith.ConstantOp):
            assert not isinstance(op.result.type, TensorType), "a tensor constant: weights must be arguments"
    names = [w.name for w in lowered.weights]
    assert len(names) == len(set(names))
    for fn in lowered.module.ops:
        assert isinstance(fn, func.FuncOp)
        plan = lowered.entries[fn.sym_name.data]
        args = list(fn.function_type.inputs.data)
        assert len(args) == len(plan.inputs) + len(lowered.weights)  # inputs..., then every weight
        for arg, w in zip(args[len(plan.inputs) :], lowered.weights):
            assert arg == w.arg_type
            if isinstance(w.type, T.PackedType):
                n, k = w.type.get_shape()
                assert arg.get_shape() == (n, packed_row_bytes(k, w.type.format.data))
    stored = {op.sym.string_value() for op in module.walk() if isinstance(op, T.WeightOp)}
    assert {w.name for w in lowered.weights if not w.folded} <= stored


@settings(max_examples=6, phases=(Phase.explicit, Phase.reuse, Phase.generate))
@given(
    d=st.sampled_from([13, 18, 22]),
    inter=st.sampled_from([11, 21, 27]),
    seed=st.integers(0, 3),
    fmt=st.sampled_from(["2bit", "base3"]),
    fused=st.booleans(),
)
def test_exported_modules_verify_in_mlir(d: int, inter: int, seed: int, fmt: str, fused: bool) -> None:
    module, store = ternary_module(d, inter, seed, pipeline(fmt, fused))
    lowered = lower_module(module, store)
    check_upstream(lowered, module)
    packed = [w for w in lowered.weights if isinstance(w.type, T.PackedType)]
    assert len(packed) == 2 * 6 + 1 and {w.type.format.data for w in packed} == {fmt}
    # the debug variant returns every recorded value after the results, and verifies too
    debug = lower_module(module, store, debug=True)
    check_upstream(debug, module)
    for fn in debug.module.ops:
        plan = debug.entries[fn.sym_name.data]
        extra = sum(len(r.types) for r in plan.records)
        assert len(fn.function_type.outputs.data) == len(plan.outputs) + extra
        kernels = [r for r in plan.records if r.op == "ternary.kernel"]
        assert (len(kernels) == 2 * 4 + 1) if fused else not kernels


def test_unfused_float_masters_are_quantized_once_when_lowering() -> None:
    """-O0 IR quantizes float masters with ``quant_weight``: the lowering folds it (offline, with the
    shared semantics) into trits and scale arguments, and no master is passed."""
    module, store = ternary_module(13, 11, 0, "")
    lowered = lower_module(module, store)
    check_upstream(lowered, module)
    folded = [w for w in lowered.weights if w.folded]
    assert any(isinstance(w.type, T.TritsType) for w in folded)
    assert not any(w.name.endswith("proj.weight") and not w.folded for w in lowered.weights)


def test_mlir_rejects_what_it_should() -> None:
    """The verification is real: MLIR refuses a module whose types do not agree."""
    bad = "func.func @f(%x: tensor<4xf32>) -> tensor<5xf32> {\n  func.return %x : tensor<4xf32>\n}\n"
    with pytest.raises(MLIRVerifyError):
        verify_text(bad)


def test_ops_the_lowering_does_not_know_are_refused_in_one_line() -> None:
    from xdsl.dialects import test

    module, _ = ternary_module(13, 11, 0, pipeline("2bit", True))
    clone = module.clone()
    fn = next(op for op in clone.ops if isinstance(op, func.FuncOp))
    fn.body.block.insert_op_before(test.TestOp(), fn.body.block.first_op)
    with pytest.raises(UserError, match="cannot lower test.op"):
        check_lowerable(clone)
