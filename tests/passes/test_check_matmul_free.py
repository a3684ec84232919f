"""check-matmul-free: mmfc's own models pass unchanged at every stage; float products of every kind and
element type are reported, integer ones are not (the IR-level cases live in
``tests/filecheck/passes/check_matmul_free.mlir``)."""

from __future__ import annotations

import pytest

from mmfc.dialects.context import mmfc_context
from mmfc.dialects.source import OpError, parse_module
from mmfc.frontends.torch.importer import import_model
from mmfc.frontends.torch.modeling import init_random_
from mmfc.models import HGRNBitConfig, HGRNBitForCausalLM
from mmfc.passes.check_matmul_free import CheckMatmulFree, float_product
from mmfc.passes.fold_weight_quant import FoldWeightQuant
from mmfc.passes.pack_weights import PackWeights


def test_imported_model_passes_unchanged_before_and_after_the_weight_passes() -> None:
    config = HGRNBitConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2, intermediate_size=24)
    module = import_model(init_random_(HGRNBitForCausalLM.from_config(config), 0)).module
    ctx = mmfc_context()
    for stage in (None, FoldWeightQuant(), PackWeights(format="base3")):
        if stage is not None:
            stage.apply(ctx, module)
        text = str(module)
        CheckMatmulFree().apply(ctx, module)
        assert str(module) == text


def _parse(text: str, verify: bool = True):
    module, _ = parse_module(mmfc_context(allow_unregistered=True), text)
    if verify:
        module.verify()
    return module


@pytest.mark.parametrize("elem", ["f16", "bf16", "f32", "f64", "i8", "i32"])
def test_linalg_matmul_by_element_type(elem: str) -> None:
    module = _parse(
        f"""func.func @f(%a: tensor<2x3x{elem}>, %b: tensor<3x4x{elem}>, %c: tensor<2x4x{elem}>)
            -> tensor<2x4x{elem}> {{
          %r = linalg.matmul ins(%a, %b : tensor<2x3x{elem}>, tensor<3x4x{elem}>)
                             outs(%c : tensor<2x4x{elem}>) -> tensor<2x4x{elem}>
          func.return %r : tensor<2x4x{elem}>
        }}"""
    )
    matmul = next(op for op in module.walk() if op.name == "linalg.matmul")
    if elem.startswith(("f", "bf")):
        assert float_product(matmul) == f"{elem} x {elem}"
        with pytest.raises(OpError) as info:
            CheckMatmulFree().apply(mmfc_context(), module)
        assert info.value.op is matmul and "the model must be matmul-free after -O2" in info.value.message
    else:
        assert float_product(matmul) is None
        CheckMatmulFree().apply(mmfc_context(), module)


@pytest.mark.parametrize(
    ("name", "flagged"),
    [
        ("linalg.batch_matmul", True),
        ("linalg.matmul_transpose_b", True),
        ("linalg.matvec", True),
        ("linalg.vecmat", True),
        ("linalg.dot", True),
        ("linalg.batch_reduce_matmul", True),
        ("linalg.depthwise_conv_1d_nwc_wc", True),
        ("tosa.matmul", True),
        ("vector.contract", True),
        ("torch.aten.mm", True),
        ("mhlo.dot", True),
        ("stablehlo.convert", False),
        ("linalg.add", False),
        ("foo.dotted_add", False),
        ("arith.mulf", False),
    ],
)
def test_named_contractions_of_any_dialect(name: str, flagged: bool) -> None:
    module = _parse(
        f"""func.func @f(%a: tensor<2x3xf32>, %b: tensor<3x4xf32>) -> tensor<2x4xf32> {{
          %r = "{name}"(%a, %b) : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>
          func.return %r : tensor<2x4xf32>
        }}""",
        verify=False,  # the judgement is by name and operand types; registered ops need not verify here
    )
    op = next(op for op in module.walk() if op.name == "builtin.unregistered" or op.name == name)
    assert (float_product(op) is not None) == flagged
