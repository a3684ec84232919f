"""The block-level IR builder emits verified, weight-by-symbol IR with dynamic batch and length."""

from __future__ import annotations

from collections import Counter

import pytest
from xdsl.dialects import func
from xdsl.dialects.builtin import TensorType, i64

from mmfc.dialects import ternary as T
from mmfc.dialects.builder import (
    WeightForm,
    build_function,
    build_glu,
    build_mlgru,
    build_model,
    hidden_type,
)
from mmfc.frontends.torch.config import HGRNBitConfig


def small_config(**kw) -> HGRNBitConfig:
    return HGRNBitConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, intermediate_size=24, **kw)


def op_counts(op) -> Counter:
    return Counter(o.name for o in op.walk())


@pytest.mark.parametrize("form", list(WeightForm))
def test_model_verifies_and_is_dynamic(form: WeightForm) -> None:
    module = build_model(small_config(), form=form, store="m.weights.safetensors")
    module.verify()
    funcs = {f.sym_name.data: f for f in module.ops if isinstance(f, func.FuncOp)}
    assert set(funcs) == {"prefill", "decode_step"}
    prefill = funcs["prefill"].function_type
    assert [t.get_shape() for t in prefill.inputs.data[:2]] == [(T.DYN, T.DYN), (T.DYN, T.DYN)]
    assert prefill.outputs.data[0].get_shape() == (T.DYN, T.DYN, 50)
    assert len(prefill.outputs.data) == 1 + 2  # logits + one state per layer
    decode = funcs["decode_step"].function_type
    assert decode.inputs.data[0].get_shape() == (T.DYN,)
    assert decode.outputs.data[0].get_shape() == (T.DYN, 50)


def test_op_sequence_per_layer() -> None:
    module = build_model(small_config(), form=WeightForm.TRITS, entries=("decode_step",))
    counts = op_counts(module)
    layers, bitlinears = 2, 2 * 6 + 1  # i, f, g, o, gate, down per layer + head
    assert counts["ternary.accum"] == bitlinears
    assert counts["ternary.quant_act"] == bitlinears
    assert counts["ternary.quant_weight"] == 0  # trits form: stored trits + scales
    assert counts["ternary.scan_step"] == layers and counts["ternary.scan"] == 0
    assert counts["ternary.mask"] == 0  # decode tokens are never padding
    assert counts["ternary.lower_bounds"] == 1 and counts["ternary.row"] == layers
    # every weight is a symbol, referenced once per function
    syms = [o.sym.string_value() for o in module.walk() if isinstance(o, T.WeightOp)]
    assert len(syms) == len(set(syms))
    assert "model.layers.1.mlp.gate_proj.weight_scale" in syms
    assert "lm_head.weight" in syms


def test_float_form_quantizes_every_bitlinear_and_masks_prefill() -> None:
    module = build_model(small_config(), entries=("prefill",))
    counts = op_counts(module)
    assert counts["ternary.quant_weight"] == 13
    assert counts["ternary.scan"] == 2 and counts["ternary.mask"] == 2


def test_without_lower_bound() -> None:
    counts = op_counts(build_model(small_config(use_lower_bound=False)))
    assert counts["ternary.lower_bound"] == 0 and counts["ternary.lower_bounds"] == 0


def test_bf16_weights_keep_their_stored_type() -> None:
    dtypes = {"model.layers.0.attn.i_proj.weight": "bf16", "model.embeddings.weight": "BF16"}
    module = build_model(small_config(), dtypes=dtypes, entries=("decode_step",))
    module.verify()
    types = {o.sym.string_value(): o.result.type for o in module.walk() if isinstance(o, T.WeightOp)}
    assert str(types["model.layers.0.attn.i_proj.weight"]) == "tensor<16x16xbf16>"
    assert str(types["model.embeddings.weight"]) == "tensor<50x16xbf16>"


def test_user_arrangement_over_hidden_states() -> None:
    """A module without embedding/head: two mixers and a GLU over hidden states [B, T, d]."""

    def body(fb, args):
        x, mask, h_a, h_b = args
        a, ha = build_mlgru(fb, x, "mix1", None, mask, h_a)
        b, hb = build_mlgru(fb, a, "mix2", None, mask, h_b)
        return [build_glu(fb, b, "glu", 32), ha, hb]

    f = build_function(
        "prefill",
        [hidden_type(16, False), TensorType(i64, (T.DYN, T.DYN)), hidden_type(16, True), hidden_type(16, True)],
        body,
    )
    f.verify()
    assert op_counts(f)["ternary.scan"] == 2


def test_decode_mlgru_needs_state() -> None:
    with pytest.raises(ValueError, match="h0"):
        build_function("f", [hidden_type(16, True)], lambda fb, a: [build_mlgru(fb, a[0], "m", None, None, None)[0]])
