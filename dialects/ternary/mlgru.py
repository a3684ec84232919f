"""The MLGRU token mixer's own ops: the forget gate's lower bounds (``lower_bounds``, ``lower_bound``),
the padding ``mask``, the recurrence (``scan`` for prefill, ``scan_step`` for decode) and the output
gate ``gate_norm``.

The forget gate is ``sigmoid`` -> ``lower_bound``; the input gate ``one_minus`` -> ``silu_mul``, then
``mask`` when padding is present. Each op means the function of :mod:`mmfc.dialects.numerics` its
docstring names.
"""

from __future__ import annotations

from typing import ClassVar

from xdsl.dialects.builtin import Float32Type, FloatAttr, TensorType, f32
from xdsl.ir import Operation, SSAValue
from xdsl.irdl import (
    VarConstraint,
    irdl_op_definition,
    operand_def,
    opt_operand_def,
    prop_def,
    result_def,
    traits_def,
)
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

from mmfc.dialects.numerics import RMS_EPS
from mmfc.dialects.ternary.constraints import (
    F32,
    MASK,
    STORE_FLOAT,
    PerFeatureOp,
    check_eps,
    eps_attr,
    expect_shape,
    require_rank,
    tensor_of,
)
from mmfc.dialects.ternary.elementwise import ElementwiseOp, same_f32_tensors
from mmfc.dialects.ternary.tiling import TiledOp, TileRule, lead_labels
from mmfc.dialects.ternary.types import rank, shape_of

# --------------------------------------------------------------------------------------------------
# Gates
# --------------------------------------------------------------------------------------------------


@irdl_op_definition
class LowerBoundsOp(TiledOp):
    """All layers' forget-gate lower bounds from ``model.lower_bounds``.

    Syntax::

        %lbs = ternary.lower_bounds %p : tensor<24x64xbf16> -> tensor<24x64xf32>

    Semantics: ``numerics.lower_bounds``: ``s = softmax(p, axis=0)``; ``lb = cumsum(s, axis=0) -
    s[0]`` in f32; ``p: [L, d]``, result ``[L, d]`` f32 (row l is layer l's bound; row 0 is 0).
    """

    name = "ternary.lower_bounds"

    param = operand_def(tensor_of("lower_bounds", "param", STORE_FLOAT))
    result = result_def(tensor_of("lower_bounds", "result", F32))

    traits = traits_def(Pure())
    assembly_format = "$param attr-dict `:` type($param) `->` type($result)"

    def __init__(self, param: SSAValue | Operation):
        shape = shape_of(SSAValue.get(param).type)
        super().__init__(operands=[param], result_types=[TensorType(f32, shape)])

    def verify_(self) -> None:
        p = shape_of(self.param.type)
        if len(p) != 2:
            raise VerifyException(f"lower_bounds: param must be 2-D [L, d], got {self.param.type}")
        expect_shape("lower_bounds", "result", shape_of(self.result.type), p, "the param's shape")

    def tile_rule(self) -> TileRule:
        # softmax and cumsum run along the layer axis.
        return TileRule((("l", "c"),), (("l", "c"),), frozenset({"l"}))


@irdl_op_definition
class LowerBoundOp(PerFeatureOp):
    """Apply a layer's forget-gate lower bound: ``lb + (1 - lb) * x``.

    Syntax::

        %f = ternary.lower_bound %sig, %lb : tensor<?x?x64xf32>, tensor<64xf32>

    Semantics: ``numerics.lower_bound(x, lb)``: ``lb + (1 - lb) * x`` in f32, ``lb: [d]`` broadcast
    over the rows of ``x: [..., d]``; with ``x = sigmoid(f~)`` this is ``numerics.forget_gate(f~, lb)``.
    """

    name = "ternary.lower_bound"
    VECTOR: ClassVar[str] = "lower bound"
    NORMALIZES: ClassVar[bool] = False  # elementwise over the channels

    T: ClassVar = VarConstraint("T", tensor_of("lower_bound", "x", F32))
    x = operand_def(T)
    lb = operand_def(tensor_of("lower_bound", "lower bound", F32))
    result = result_def(T)

    traits = traits_def(Pure())
    assembly_format = "$x `,` $lb attr-dict `:` type($x) `,` type($lb)"

    def __init__(self, x: SSAValue | Operation, lb: SSAValue | Operation):
        super().__init__(operands=[x, lb], result_types=[SSAValue.get(x).type])


@irdl_op_definition
class MaskOp(TiledOp):
    """Zero the rows of padded positions (left padding).

    Syntax::

        %y = ternary.mask %x, %mask : tensor<?x?x64xf32>, tensor<?x?xi64>

    Semantics: ``numerics.apply_mask(x, mask)``: ``x * float32(mask)[..., None]``, as
    ``numerics.input_gate`` applies its mask: ``x: [..., d] f32``, ``mask: [...]`` (the attention
    mask, 0 at padded positions and 1 elsewhere; integer or f32), result like x.
    """

    name = "ternary.mask"

    T: ClassVar = VarConstraint("T", tensor_of("mask", "x", F32))
    x = operand_def(T)
    mask = operand_def(tensor_of("mask", "mask", MASK))
    result = result_def(T)

    traits = traits_def(Pure())
    assembly_format = "$x `,` $mask attr-dict `:` type($x) `,` type($mask)"

    def __init__(self, x: SSAValue | Operation, mask: SSAValue | Operation):
        super().__init__(operands=[x, mask], result_types=[SSAValue.get(x).type])

    def verify_(self) -> None:
        x = require_rank("mask", "x", self.x.type, 1)
        expect_shape("mask", "mask", shape_of(self.mask.type), x[:-1], "the shape of x without its last dim")

    def tile_rule(self) -> TileRule:
        lead = lead_labels(rank(self.x) - 1)
        return TileRule(((*lead, "c"), lead), ((*lead, "c"),))


@irdl_op_definition
class GateNormOp(PerFeatureOp):
    """The MLGRU output gate: RMSNorm on g, SiLU on h.

    Syntax::

        %o = ternary.gate_norm %g, %h, %gamma : tensor<?x?x64xf32>, tensor<64xf32>

    Semantics: ``numerics.gate_norm(g, h, gamma, eps)``: ``rmsnorm(g, gamma, eps) * h * sigmoid(h)``
    in f32. ``g``, ``h`` and the result share one type ``[..., d]``; ``gamma: [d]``.
    """

    name = "ternary.gate_norm"
    ROWS: ClassVar[str] = "g"

    T: ClassVar = VarConstraint("T", tensor_of("gate_norm", "g", F32))
    g = operand_def(T)
    h = operand_def(T)
    gamma = operand_def(tensor_of("gate_norm", "gamma", STORE_FLOAT))
    result = result_def(T)
    eps = prop_def(FloatAttr[Float32Type], default_value=FloatAttr(RMS_EPS, f32))

    traits = traits_def(Pure())
    assembly_format = "$g `,` $h `,` $gamma (`eps` $eps^)? attr-dict `:` type($g) `,` type($gamma)"

    def __init__(
        self,
        g: SSAValue | Operation,
        h: SSAValue | Operation,
        gamma: SSAValue | Operation,
        eps: float | FloatAttr = RMS_EPS,
    ):
        super().__init__(
            operands=[g, h, gamma], result_types=[SSAValue.get(g).type], properties={"eps": eps_attr(eps)}
        )

    def verify_(self) -> None:
        super().verify_()
        check_eps("gate_norm", self.eps)


# --------------------------------------------------------------------------------------------------
# The recurrence
# --------------------------------------------------------------------------------------------------


@irdl_op_definition
class ScanOp(TiledOp):
    """The diagonal linear recurrence over time (prefill).

    Syntax::

        %h, %h_last = ternary.scan %x, %f : tensor<?x?x64xf32>, tensor<?x64xf32>
        %h, %h_last = ternary.scan %x, %f init %h0 : tensor<?x?x64xf32>, tensor<?x64xf32>

    Semantics: ``numerics.scan(x, f, h0)``: ``h_t = f_t * h_{t-1} + x_t`` in f32, ``h_{-1} = h0``
    (zeros without ``init``). ``x, f, h: [B, T, d]``; ``h0, h_last: [B, d]`` (the state after the
    last step). The types printed are those of x and h_last.
    """

    name = "ternary.scan"

    T: ClassVar = VarConstraint("T", tensor_of("scan", "x", F32))
    S: ClassVar = VarConstraint("S", tensor_of("scan", "state", F32))
    x = operand_def(T)
    f = operand_def(T)
    h0 = opt_operand_def(S)
    h = result_def(T)
    h_last = result_def(S)

    traits = traits_def(Pure())
    assembly_format = "$x `,` $f (`init` $h0^)? attr-dict `:` type($x) `,` type($h_last)"

    def __init__(
        self, x: SSAValue | Operation, f: SSAValue | Operation, h0: SSAValue | Operation | None = None
    ):
        xt = SSAValue.get(x).type
        b, _, d = shape_of(xt)
        super().__init__(
            operands=[x, f, [] if h0 is None else [h0]], result_types=[xt, TensorType(f32, (b, d))]
        )

    def verify_(self) -> None:
        x = require_rank("scan", "x", self.x.type, 3)
        if len(x) != 3:
            raise VerifyException(f"scan: x must be [B, T, d], got {self.x.type}")
        expect_shape("scan", "state", shape_of(self.h_last.type), (x[0], x[2]), "[B, d] of x")

    def tile_rule(self) -> TileRule:
        seq, state = ("b", "t", "c"), ("b", "c")
        ins = (seq, seq) + ((state,) if self.h0 is not None else ())
        # Step t needs step t-1: the time axis is never split.
        return TileRule(ins, (seq, state), frozenset({"t"}))


@irdl_op_definition
class ScanStepOp(ElementwiseOp):
    """One decode step of the MLGRU recurrence.

    Syntax::

        %h1 = ternary.scan_step %x, %f, %h : tensor<?x64xf32>

    Semantics: ``numerics.scan_step``: ``f * h + x`` in f32; all of type ``[B, d]``.
    """

    name = "ternary.scan_step"

    T: ClassVar = same_f32_tensors("scan_step")
    x = operand_def(T)
    f = operand_def(T)
    h = operand_def(T)
    result = result_def(T)

    traits = traits_def(Pure())
    assembly_format = "$x `,` $f `,` $h attr-dict `:` type($x)"

    def __init__(self, x: SSAValue | Operation, f: SSAValue | Operation, h: SSAValue | Operation):
        super().__init__(operands=[x, f, h], result_types=[SSAValue.get(x).type])


__all__ = ["GateNormOp", "LowerBoundOp", "LowerBoundsOp", "MaskOp", "ScanOp", "ScanStepOp"]
