"""Weights and the BitLinear steps: ``weight``, ``quant_weight``, ``unpack``, ``rmsnorm``,
``rms_normalize``, ``scale``, ``residual_rmsnorm``, ``quant_act``, ``accum``, ``dequant``.

A BitLinear is ``rmsnorm`` -> ``quant_act`` -> ``accum`` -> ``dequant``. Each op means the function
of :mod:`mmfc.dialects.numerics` its docstring names (:mod:`.semantics` holds the table).
"""

from __future__ import annotations

from typing import ClassVar

from xdsl.dialects.builtin import (
    FlatSymbolRefAttrConstr,
    Float32Type,
    FloatAttr,
    IntegerType,
    SymbolRefAttr,
    TensorType,
    f32,
)
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    VarConstraint,
    irdl_op_definition,
    operand_def,
    prop_def,
    result_def,
    traits_def,
)
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

from mmfc.dialects.numerics import RMS_EPS
from mmfc.dialects.ternary.constraints import (
    F32,
    I8,
    I32,
    STORE_FLOAT,
    PerFeatureOp,
    check_eps,
    eps_attr,
    expect_one_per_row,
    expect_shape,
    packed_of,
    require_rank,
    scale_of,
    tensor_of,
    ternary_weight_of,
    trits_of,
)
from mmfc.dialects.ternary.tiling import TiledOp, TileRule, lead_labels
from mmfc.dialects.ternary.types import (
    DYN,
    STORE_FLOATS,
    PackedType,
    TritsType,
    dim_str,
    dims_agree,
    is_scale_type,
    rank,
    shape_of,
)

# --------------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------------


@irdl_op_definition
class WeightOp(IRDLOperation):
    """A named weight of the weight store.

    Syntax::

        %w = ternary.weight @model.layers.0.attn.i_proj.weight : tensor<64x64xbf16>
        %t = ternary.weight @model.layers.0.attn.i_proj.weight : !ternary.trits<64x64>
        %s = ternary.weight @model.layers.0.attn.i_proj.weight_scale : f32

    The result is the stored tensor: a float master, a norm weight or table (any store float), a
    trits or packed ternary weight, or a weight scale (``f32`` / ``tensor<f32>``, holding 1/s_w as
    ``numerics.quant_weight`` returns it). The module names the store; the verifier never opens it.
    """

    name = "ternary.weight"

    sym = prop_def(FlatSymbolRefAttrConstr)
    result = result_def()

    traits = traits_def(Pure())
    assembly_format = "$sym attr-dict `:` type($result)"

    def __init__(self, sym: str | SymbolRefAttr, result_type: Attribute):
        super().__init__(
            properties={"sym": SymbolRefAttr(sym) if isinstance(sym, str) else sym},
            result_types=[result_type],
        )

    def verify_(self) -> None:
        # by hand, not declaratively: the message names the weight
        t = self.result.type
        ok = (
            isinstance(t, TritsType | PackedType)
            or is_scale_type(t)
            or (isinstance(t, TensorType) and isinstance(t.get_element_type(), STORE_FLOATS))
        )
        if not ok:
            raise VerifyException(
                f"weight: {self.sym} has type {t}; expected a float tensor, !ternary.trits, "
                "!ternary.packed or an f32 scale"
            )
        if isinstance(t, TritsType | PackedType) and DYN in t.get_shape():
            raise VerifyException(f"weight: {self.sym} must have a static shape, got {t}")


@irdl_op_definition
class QuantWeightOp(TiledOp):
    """Per-tensor absmean ternary quantization of a float master weight (offline).

    Syntax::

        %trits, %scale = ternary.quant_weight %w : tensor<64x32xbf16> -> !ternary.trits<64x32>, f32

    Semantics: ``numerics.quant_weight``: ``scale = max(mean|W|, 1e-5)`` (= 1/s_w) and
    ``trits = clamp(round_half_even(W / scale), -1, 1)``. The fold-weight-quant pass replaces it by
    weight refs; never apply it to trits (not idempotent).
    """

    name = "ternary.quant_weight"

    master = operand_def(tensor_of("quant_weight", "master weight", STORE_FLOAT))
    trits = result_def(trits_of("quant_weight", "trits"))
    scale = result_def(scale_of("quant_weight", "scale"))

    traits = traits_def(Pure())
    assembly_format = "$master attr-dict `:` type($master) `->` type($trits) `,` type($scale)"

    def __init__(self, master: SSAValue | Operation, scale_type: Attribute = f32):
        shape = shape_of(SSAValue.get(master).type)
        super().__init__(operands=[master], result_types=[TritsType(shape), scale_type])

    def verify_(self) -> None:
        w = shape_of(self.master.type)
        if len(w) != 2:
            raise VerifyException(f"quant_weight: master weight must be 2-D [N, K], got {self.master.type}")
        expect_shape("quant_weight", "trits", shape_of(self.trits.type), w, "the master's shape")

    def tile_rule(self) -> TileRule:
        return TileRule((("n", "k"),), (("n", "k"), ()), frozenset({"n", "k"}))


@irdl_op_definition
class UnpackOp(TiledOp):
    """Unpack a packed ternary weight into trits.

    Syntax::

        %t = ternary.unpack %p : !ternary.packed<32x64, "2bit"> -> !ternary.trits<32x64>

    Semantics: ``numerics.unpack(packed, K, format)``.
    """

    name = "ternary.unpack"

    packed = operand_def(packed_of("unpack", "packed"))
    trits = result_def(trits_of("unpack", "trits"))

    traits = traits_def(Pure())
    assembly_format = "$packed attr-dict `:` type($packed) `->` type($trits)"

    def __init__(self, packed: SSAValue | Operation):
        shape = shape_of(SSAValue.get(packed).type)
        super().__init__(operands=[packed], result_types=[TritsType(shape)])

    def verify_(self) -> None:
        trits, packed = shape_of(self.trits.type), shape_of(self.packed.type)
        expect_shape("unpack", "trits", trits, packed, "the packed shape")

    def tile_rule(self) -> TileRule:
        # Trits of one row share bytes: the K axis is never split.
        return TileRule((("n", "k"),), (("n", "k"),), frozenset({"k"}))


# --------------------------------------------------------------------------------------------------
# Norms
# --------------------------------------------------------------------------------------------------


@irdl_op_definition
class RMSNormOp(PerFeatureOp):
    """RMSNorm over the last axis.

    Syntax::

        %y = ternary.rmsnorm %x, %gamma : tensor<?x?x64xf32>, tensor<64xf32>
        %y = ternary.rmsnorm %x, %gamma eps 1.000000e-05 : tensor<?x64xf32>, tensor<64xf32>

    Semantics: ``numerics.rmsnorm(x, gamma, eps)`` in f32; ``x: [..., K]``, ``gamma: [K]``,
    result like x. ``eps`` defaults to 1e-6 (printed only when different).
    """

    name = "ternary.rmsnorm"

    T: ClassVar = VarConstraint("T", tensor_of("rmsnorm", "x", F32))
    x = operand_def(T)
    gamma = operand_def(tensor_of("rmsnorm", "gamma", STORE_FLOAT))
    result = result_def(T)
    eps = prop_def(FloatAttr[Float32Type], default_value=FloatAttr(RMS_EPS, f32))

    traits = traits_def(Pure())
    assembly_format = "$x `,` $gamma (`eps` $eps^)? attr-dict `:` type($x) `,` type($gamma)"

    def __init__(
        self, x: SSAValue | Operation, gamma: SSAValue | Operation, eps: float | FloatAttr = RMS_EPS
    ):
        super().__init__(
            operands=[x, gamma], result_types=[SSAValue.get(x).type], properties={"eps": eps_attr(eps)}
        )

    def verify_(self) -> None:
        super().verify_()
        check_eps("rmsnorm", self.eps)


@irdl_op_definition
class RMSNormalizeOp(TiledOp):
    """RMSNorm without gamma: each row divided by its root mean square, over the last axis.

    Syntax::

        %n = ternary.rms_normalize %x : tensor<?x?x64xf32>
        %n = ternary.rms_normalize %x eps 1.000000e-05 : tensor<?x64xf32>

    Semantics: ``numerics.rms_normalize(x, eps)``: ``x * (1 / sqrt(mean(x^2) + eps))`` in f32;
    ``x: [..., K]``, result like x. ``eps`` defaults to 1e-6 (printed only when different).
    ``ternary.scale`` by gamma after it is bit-identical to ``ternary.rmsnorm``: fuse-bitlinear uses
    the pair so that projections reading one input compute the row statistics once.
    """

    name = "ternary.rms_normalize"

    T: ClassVar = VarConstraint("T", tensor_of("rms_normalize", "x", F32))
    x = operand_def(T)
    result = result_def(T)
    eps = prop_def(FloatAttr[Float32Type], default_value=FloatAttr(RMS_EPS, f32))

    traits = traits_def(Pure())
    assembly_format = "$x (`eps` $eps^)? attr-dict `:` type($x)"

    def __init__(self, x: SSAValue | Operation, eps: float | FloatAttr = RMS_EPS):
        super().__init__(
            operands=[x], result_types=[SSAValue.get(x).type], properties={"eps": eps_attr(eps)}
        )

    def verify_(self) -> None:
        require_rank("rms_normalize", "x", self.x.type, 1)
        check_eps("rms_normalize", self.eps)

    def tile_rule(self) -> TileRule:
        # the row statistics reduce over K: K whole, rows split freely
        row = (*lead_labels(rank(self.x) - 1), "k")
        return TileRule((row,), (row,), frozenset({"k"}))


@irdl_op_definition
class ScaleOp(PerFeatureOp):
    """Scale each row by a per-feature weight (RMSNorm's gamma after ``rms_normalize``).

    Syntax::

        %y = ternary.scale %n, %gamma : tensor<?x?x64xf32>, tensor<64xf32>

    Semantics: ``numerics.scale(x, gamma)``: ``x * gamma`` in f32, ``gamma: [K]`` (any float type,
    read as f32) broadcast over the rows of ``x: [..., K]``; result like x.
    """

    name = "ternary.scale"
    NORMALIZES: ClassVar[bool] = False  # elementwise: gamma's K is the rows' K, split (if ever) the same way

    T: ClassVar = VarConstraint("T", tensor_of("scale", "x", F32))
    x = operand_def(T)
    gamma = operand_def(tensor_of("scale", "gamma", STORE_FLOAT))
    result = result_def(T)

    traits = traits_def(Pure())
    assembly_format = "$x `,` $gamma attr-dict `:` type($x) `,` type($gamma)"

    def __init__(self, x: SSAValue | Operation, gamma: SSAValue | Operation):
        super().__init__(operands=[x, gamma], result_types=[SSAValue.get(x).type])


@irdl_op_definition
class ResidualRMSNormOp(PerFeatureOp):
    """Fused residual add + RMSNorm (block step 3).

    Syntax::

        %normed, %sum = ternary.residual_rmsnorm %x, %residual, %gamma : tensor<?x64xf32>, tensor<64xf32>

    Semantics: ``numerics.residual_rmsnorm``: ``sum = x + residual``; ``normed = rmsnorm(sum, gamma,
    eps)``. ``x``, ``residual`` and both results share one type ``[..., K]``; ``gamma: [K]``.
    """

    name = "ternary.residual_rmsnorm"

    T: ClassVar = VarConstraint("T", tensor_of("residual_rmsnorm", "x", F32))
    x = operand_def(T)
    residual = operand_def(T)
    gamma = operand_def(tensor_of("residual_rmsnorm", "gamma", STORE_FLOAT))
    normed = result_def(T)
    sum = result_def(T)
    eps = prop_def(FloatAttr[Float32Type], default_value=FloatAttr(RMS_EPS, f32))

    traits = traits_def(Pure())
    assembly_format = (
        "$x `,` $residual `,` $gamma (`eps` $eps^)? attr-dict `:` type($x) `,` type($gamma)"
    )

    def __init__(
        self,
        x: SSAValue | Operation,
        residual: SSAValue | Operation,
        gamma: SSAValue | Operation,
        eps: float | FloatAttr = RMS_EPS,
    ):
        t = SSAValue.get(x).type
        super().__init__(
            operands=[x, residual, gamma], result_types=[t, t], properties={"eps": eps_attr(eps)}
        )

    def verify_(self) -> None:
        super().verify_()
        check_eps("residual_rmsnorm", self.eps)


# --------------------------------------------------------------------------------------------------
# Quantize, accumulate, dequantize
# --------------------------------------------------------------------------------------------------


@irdl_op_definition
class QuantActOp(TiledOp):
    """Per-token absmax int8 activation quantization.

    Syntax::

        %q, %s = ternary.quant_act %x : tensor<?x64xf32> -> tensor<?x64xi8>, tensor<?x1xf32>

    Semantics: ``numerics.quant_act``: ``s = 127 / max(max|x|, 1e-5)`` per row,
    ``q = clamp(round_half_away(x * s), -128, 127)``. ``x: [..., K] f32`` gives ``q: [..., K] i8``
    and ``s: [..., 1] f32``.
    """

    name = "ternary.quant_act"

    x = operand_def(tensor_of("quant_act", "x", F32))
    q = result_def(tensor_of("quant_act", "q", I8))
    scale = result_def(tensor_of("quant_act", "scale", F32))

    traits = traits_def(Pure())
    assembly_format = "$x attr-dict `:` type($x) `->` type($q) `,` type($scale)"

    def __init__(self, x: SSAValue | Operation):
        shape = shape_of(SSAValue.get(x).type)
        super().__init__(
            operands=[x],
            result_types=[TensorType(IntegerType(8), shape), TensorType(f32, (*shape[:-1], 1))],
        )

    def verify_(self) -> None:
        x = require_rank("quant_act", "x", self.x.type, 1)
        expect_shape("quant_act", "q", shape_of(self.q.type), x, "the shape of x")
        expect_one_per_row("quant_act", "scale", shape_of(self.scale.type), x, "one scale per row of x")

    def tile_rule(self) -> TileRule:
        lead = lead_labels(rank(self.x) - 1)
        row = (*lead, "k")
        return TileRule((row,), (row, (*lead, "one")), frozenset({"k"}))


@irdl_op_definition
class AccumOp(TiledOp):
    """Ternary accumulation: int8 activations times trits, exactly, in int32.

    Syntax::

        %acc = ternary.accum %q, %w : tensor<?x64xi8>, !ternary.trits<32x64> -> tensor<?x32xi32>
        %acc = ternary.accum %q, %p : tensor<?x64xi8>, !ternary.packed<32x64, "base3"> -> tensor<?x32xi32>

    Semantics: ``numerics.accum``: ``acc[..., n] = sum_k q[..., k] * trits[n, k]`` (additions and
    subtractions only); a packed weight means ``accum(q, unpack(w))``. ``q: [..., K] i8``,
    ``w: [N, K]``, ``acc: [..., N] i32``. Never a float matrix product.
    """

    name = "ternary.accum"

    x = operand_def(tensor_of("accum", "activation", I8))
    weight = operand_def(ternary_weight_of("accum", "weight"))
    acc = result_def(tensor_of("accum", "result", I32))

    traits = traits_def(Pure())
    assembly_format = "$x `,` $weight attr-dict `:` type($x) `,` type($weight) `->` type($acc)"

    def __init__(self, x: SSAValue | Operation, weight: SSAValue | Operation):
        xs = shape_of(SSAValue.get(x).type)
        n = shape_of(SSAValue.get(weight).type)[0]
        super().__init__(operands=[x, weight], result_types=[TensorType(IntegerType(32), (*xs[:-1], n))])

    def verify_(self) -> None:
        x = require_rank("accum", "activation", self.x.type, 1)
        n, k = shape_of(self.weight.type)
        if not dims_agree(x[-1], k):
            raise VerifyException(
                f"accum: activation K={dim_str(x[-1])} does not match weight K={dim_str(k)}"
            )
        acc = shape_of(self.acc.type)
        expect_shape("accum", "result", acc, (*x[:-1], n), "[..., N]: the activation's rows, the weight's N")

    def tile_rule(self) -> TileRule:
        lead = lead_labels(rank(self.x) - 1)
        return TileRule(((*lead, "k"), ("n", "k")), ((*lead, "n"),), frozenset({"k"}))


@irdl_op_definition
class DequantOp(TiledOp):
    """Dequantize an int32 accumulator back to f32.

    Syntax::

        %y = ternary.dequant %acc, %s, %ws : tensor<?x32xi32>, tensor<?x1xf32>, f32 -> tensor<?x32xf32>

    Semantics: ``numerics.dequant(acc, s, weight_scale)``: ``y = acc / (s * (1 / weight_scale))`` in
    f32. ``acc: [..., N] i32``, ``s: [..., 1] f32`` (from quant_act), ``weight_scale``: the weight's
    f32 scale (1/s_w), ``y: [..., N] f32``.
    """

    name = "ternary.dequant"

    acc = operand_def(tensor_of("dequant", "accumulator", I32))
    x_scale = operand_def(tensor_of("dequant", "activation scale", F32))
    weight_scale = operand_def(scale_of("dequant", "weight scale"))
    result = result_def(tensor_of("dequant", "result", F32))

    traits = traits_def(Pure())
    assembly_format = (
        "$acc `,` $x_scale `,` $weight_scale attr-dict `:` type($acc) `,` type($x_scale) `,` "
        "type($weight_scale) `->` type($result)"
    )

    def __init__(
        self, acc: SSAValue | Operation, x_scale: SSAValue | Operation, weight_scale: SSAValue | Operation
    ):
        shape = shape_of(SSAValue.get(acc).type)
        super().__init__(operands=[acc, x_scale, weight_scale], result_types=[TensorType(f32, shape)])

    def verify_(self) -> None:
        acc = require_rank("dequant", "accumulator", self.acc.type, 1)
        scale = shape_of(self.x_scale.type)
        expect_one_per_row("dequant", "activation scale", scale, acc, "one scale per row")
        expect_shape("dequant", "result", shape_of(self.result.type), acc, "the accumulator's shape")

    def tile_rule(self) -> TileRule:
        lead = lead_labels(rank(self.acc) - 1)
        row = (*lead, "n")
        # The per-row scale's last dim (size 1) is broadcast along N: it must be whole.
        return TileRule((row, (*lead, "one"), ()), (row,), frozenset({"one"}))


__all__ = [
    "AccumOp",
    "DequantOp",
    "QuantActOp",
    "QuantWeightOp",
    "RMSNormOp",
    "RMSNormalizeOp",
    "ResidualRMSNormOp",
    "ScaleOp",
    "UnpackOp",
    "WeightOp",
]
