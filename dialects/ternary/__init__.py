"""The ``ternary`` dialect: the MatMul-free LM as IR, unfused and fused.

Every computation of the model (``docs/model.md``) is expressed at two levels:

* **unfused**: one op per step of the model (``rmsnorm``, ``quant_act``, ``accum``, ``dequant``,
  ``scan``, elementwise gates, ...), each with the meaning of one function of
  :mod:`mmfc.dialects.numerics` (named in its docstring; :mod:`.semantics` holds the table). Weights
  are symbols into a weight store (``ternary.weight @name``), never inline constants.
* **fused**: ``ternary.kernel`` runs a body of unfused ops over an explicit grid of programs; its
  verifier rejects a body that would need a value produced by another program of the same launch
  (the rule is in :mod:`.tiling`; see also ``docs/dialect.md``).

Verifiers check types and shapes only: they never open the weight store.

The package has one concept per module, and this module re-exports every public name
(``from mmfc.dialects import ternary as T; T.KernelOp, T.DYN, T.shape_of, T.TileRule, ...``):

=========================  ============================================================================
``types``                  ``!ternary.trits``, ``!ternary.packed``, ``#ternary.tile``; ``DYN``, ``WHOLE``;
                           shape helpers (``shape_of``, ``is_scale_type``, ...)
``constraints``            declarative operand/result constraints with one-line messages, the verifiers'
                           shape checks, and ``PerFeatureOp`` (rows ``x[..., K]`` with a vector ``v[K]``)
``tiling``                 ``TileRule`` / ``TiledOp``, the rule of split legality (``index_spaces``,
                           ``result_splits``, ``body_splits``) and the grid arithmetic of a launch
                           (``grid_extents``, ``program_counts``, ``program_bounds``, ``tile_index``, ...)
``bitlinear``              ``weight``, ``quant_weight``, ``unpack``, ``rmsnorm``, ``rms_normalize``,
                           ``scale``, ``residual_rmsnorm``, ``quant_act``, ``accum``, ``dequant``
``elementwise``            ``sigmoid``, ``silu``, ``one_minus``, ``silu_mul``, ``mul``, ``add``, ``sub``
``mlgru``                  ``lower_bounds``, ``lower_bound``, ``mask``, ``gate_norm``, ``scan``,
                           ``scan_step``
``indexing``               ``embedding``, ``split``, ``row``
``kernel``                 ``kernel``, ``yield``
``canonicalization``       ``DropUnusedKernelValues`` (the kernel's canonicalization pattern)
``semantics``              ``SEMANTICS``: op -> numerics; ``evaluate``, ``has_semantics``
=========================  ============================================================================

Imports inside the package point one way: types <- tiling <- constraints <- op modules <- kernel <-
canonicalization; semantics reads the op modules.
"""

from __future__ import annotations

from xdsl.ir import Dialect

from mmfc.dialects.ternary.bitlinear import (
    AccumOp,
    DequantOp,
    QuantActOp,
    QuantWeightOp,
    ResidualRMSNormOp,
    RMSNormalizeOp,
    RMSNormOp,
    ScaleOp,
    UnpackOp,
    WeightOp,
)
from mmfc.dialects.ternary.canonicalization import DropUnusedKernelValues
from mmfc.dialects.ternary.constraints import Elements, Expect, PerFeatureOp
from mmfc.dialects.ternary.elementwise import AddOp, MulOp, OneMinusOp, SigmoidOp, SiluMulOp, SiluOp, SubOp
from mmfc.dialects.ternary.indexing import EmbeddingOp, RowOp, SplitOp
from mmfc.dialects.ternary.kernel import KernelOp, YieldOp
from mmfc.dialects.ternary.mlgru import GateNormOp, LowerBoundOp, LowerBoundsOp, MaskOp, ScanOp, ScanStepOp
from mmfc.dialects.ternary.semantics import SEMANTICS, Semantics, evaluate, has_semantics, weight_scale_value
from mmfc.dialects.ternary.tiling import (
    CREATES,
    REDUCES,
    Axes,
    Bounds,
    GridError,
    IndexSpace,
    IndexSpaces,
    TiledOp,
    TileRule,
    UnionFind,
    body_splits,
    full_shape,
    grid_extents,
    index_spaces,
    lead_labels,
    program_bounds,
    program_counts,
    program_points,
    result_splits,
    tile_index,
    tile_type,
)
from mmfc.dialects.ternary.types import (
    DYN,
    STORE_FLOATS,
    WHOLE,
    PackedType,
    TileMapAttr,
    TritsType,
    dim_str,
    dims_agree,
    is_scale_type,
    rank,
    shape_of,
    shape_str,
    shapes_agree,
)

Ternary = Dialect(
    "ternary",
    [
        WeightOp,
        QuantWeightOp,
        UnpackOp,
        RMSNormOp,
        RMSNormalizeOp,
        ScaleOp,
        ResidualRMSNormOp,
        QuantActOp,
        AccumOp,
        DequantOp,
        SigmoidOp,
        SiluOp,
        OneMinusOp,
        SiluMulOp,
        MulOp,
        AddOp,
        SubOp,
        ScanStepOp,
        LowerBoundOp,
        GateNormOp,
        MaskOp,
        ScanOp,
        EmbeddingOp,
        LowerBoundsOp,
        SplitOp,
        RowOp,
        KernelOp,
        YieldOp,
    ],
    [TritsType, PackedType, TileMapAttr],
)
"""The ``ternary`` dialect: every op and attribute of this package."""

__all__ = [
    "CREATES",
    "DYN",
    "REDUCES",
    "SEMANTICS",
    "STORE_FLOATS",
    "WHOLE",
    "AccumOp",
    "AddOp",
    "Axes",
    "Bounds",
    "DequantOp",
    "DropUnusedKernelValues",
    "Elements",
    "Elements",
    "EmbeddingOp",
    "Expect",
    "Expect",
    "GateNormOp",
    "GridError",
    "IndexSpace",
    "IndexSpaces",
    "KernelOp",
    "LowerBoundOp",
    "LowerBoundsOp",
    "MaskOp",
    "MulOp",
    "OneMinusOp",
    "PackedType",
    "PerFeatureOp",
    "QuantActOp",
    "QuantWeightOp",
    "RMSNormOp",
    "RMSNormalizeOp",
    "ResidualRMSNormOp",
    "RowOp",
    "ScaleOp",
    "ScanOp",
    "ScanStepOp",
    "Semantics",
    "SigmoidOp",
    "SiluMulOp",
    "SiluOp",
    "SplitOp",
    "SubOp",
    "Ternary",
    "TileMapAttr",
    "TileRule",
    "UnionFind",
    "TiledOp",
    "TritsType",
    "UnpackOp",
    "WeightOp",
    "YieldOp",
    "body_splits",
    "dim_str",
    "dims_agree",
    "evaluate",
    "full_shape",
    "grid_extents",
    "has_semantics",
    "index_spaces",
    "is_scale_type",
    "lead_labels",
    "program_bounds",
    "program_counts",
    "program_points",
    "rank",
    "result_splits",
    "shape_of",
    "shape_str",
    "shapes_agree",
    "tile_index",
    "tile_type",
    "weight_scale_value",
]
