"""xDSL interpreter implementations of every ``ternary`` op: the golden model's semantics.

Every value is computed through the dialect's semantics table (``mmfc.dialects.ternary.evaluate``:
each op calls the function of :mod:`mmfc.dialects.numerics` its docstring names); nothing here
computes. Values are numpy objects (see :mod:`mmfc.dialects.values`). ``ternary.weight`` reads the
weight store.

The interpreter adds run-time checks around the table: operands are checked against each other
(dynamic dims: e.g. a mask whose batch differs from the activations'), so numpy never broadcasts
silently; a mismatch is an :class:`InterpError`.

``ternary.kernel`` runs its body tile-wise (:meth:`TernaryFunctions.run_kernel`): once per program of
the grid, on numpy slices of its operands, never per element.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.dialects.builtin import TensorType
from xdsl.interpreter import (
    Interpreter,
    InterpreterFunctions,
    PythonValues,
    ReturnedValues,
    TerminatorValue,
    impl,
    impl_terminator,
    register_impls,
)
from xdsl.ir import Attribute, Operation

from mmfc.dialects import dtypes
from mmfc.dialects import numerics as nm
from mmfc.dialects import ternary as T
from mmfc.dialects.weights import WeightStore
from mmfc.backends.interp.errors import InterpError
from mmfc.dialects.values import describe_value, value_problem

# safetensors dtype code a float tensor type must be stored with (the one table: dialects/dtypes.py)
_STORED_FLOAT = {type(d.element_type): d.code for d in dtypes.DTYPES if d.is_float}


def _require(op: Operation, ok: bool, message: str) -> None:
    if not ok:
        raise InterpError(f"{op.name}: {message}", op)


def _same_shape(op: Operation, what: str, got: Any, want: Sequence[int], why: str) -> None:
    _require(
        op,
        tuple(np.shape(got)) == tuple(want),
        f"{what} has shape {tuple(np.shape(got))} at run time, expected {tuple(want)} ({why})",
    )


def _gamma(op: Operation, gamma: np.ndarray, x: np.ndarray) -> None:
    _same_shape(op, "gamma", gamma, (x.shape[-1],), "the last dim of the normalized input")


@dataclass
class KernelProgram:
    """Where a kernel's body is running: the kernel op and the program's grid point."""

    kernel: T.KernelOp
    point: tuple[int, ...]


@register_impls
@dataclass
class TernaryFunctions(InterpreterFunctions):
    """The ``ternary`` dialect for xDSL's :class:`~xdsl.interpreter.Interpreter`.

    ``store``: the weight store ``ternary.weight`` reads (None: a module without weights; reading
    one is an error). ``check_coverage``: after each kernel, check that every result element was
    written by exactly one program (results start poisoned with NaN / the dtype's minimum either way).

    Weights read from the store, and ``quant_weight`` of an unchanged master, are cached for the life
    of this object (a decode loop reads each weight once).
    """

    store: WeightStore | None = None
    check_coverage: bool = True
    #: the kernel programs running now, innermost last (read by the tracer)
    programs: list[KernelProgram] = field(default_factory=list)
    _weights: dict[tuple[str, Attribute], Any] = field(default_factory=dict)
    _quantized: dict[Operation, tuple[np.ndarray, tuple[Any, Any]]] = field(default_factory=dict)

    # ------------------------------------------------------------------------------------ weights

    @impl(T.WeightOp)
    def run_weight(self, interpreter: Interpreter, op: T.WeightOp, args: PythonValues) -> PythonValues:
        name = op.sym.string_value()
        t = op.result.type
        key = (name, t)
        if key not in self._weights:
            self._weights[key] = self._read_weight(op, name, t)
        return (self._weights[key],)

    def _read_weight(self, op: T.WeightOp, name: str, t: Attribute) -> Any:
        """Read ``name`` from the store and check it against the IR type ``t``."""
        if self.store is None:
            raise InterpError(f"ternary.weight: @{name} needs a weight store, but none was given", op)
        info = self.store.info(name)  # TensorNotFoundError (a UserError) names the store and tensor
        if isinstance(t, T.TritsType):
            want_code, want_shape = "I8", t.get_shape()
        elif isinstance(t, T.PackedType):
            n, k = t.get_shape()
            want_code, want_shape = "U8", (n, nm.packed_row_bytes(k, t.format.data))
        elif T.is_scale_type(t):
            want_code, want_shape = "F32", ()
        else:
            assert isinstance(t, TensorType)
            want_code, want_shape = _STORED_FLOAT[type(t.get_element_type())], t.get_shape()
        shape_ok = len(info.shape) == len(want_shape) and all(
            w == T.DYN or g == w for g, w in zip(info.shape, want_shape)
        )
        if info.stored != want_code or not shape_ok:
            dims = "x".join(str(d) for d in info.shape) or "scalar"
            raise InterpError(
                f"ternary.weight: @{name} is a {info.stored} tensor of shape [{dims}] in the weight store "
                f"{self.store.describe()}, but the IR reads it as {t} (expected {want_code} of shape "
                f"{list(want_shape)})",
                op,
            )
        raw = self.store.get(name)
        if isinstance(t, T.TritsType):
            if raw.size and (raw.min() < -1 or raw.max() > 1):
                raise InterpError(f"ternary.weight: @{name} is read as trits but holds values outside {{-1, 0, 1}}", op)
            return np.asarray(raw, dtype=np.int8)
        if isinstance(t, T.PackedType):
            return np.asarray(raw, dtype=np.uint8)
        if T.is_scale_type(t):
            return T.weight_scale_value(raw, t)
        return np.asarray(raw, dtype=np.float32)  # bf16 is already f32 (store.get); f16/f64 computed in f32

    @impl(T.QuantWeightOp)
    def run_quant_weight(self, interpreter: Interpreter, op: T.QuantWeightOp, args: PythonValues) -> PythonValues:
        (master,) = args
        cached = self._quantized.get(op)
        if cached is not None and cached[0] is master:  # the same (cached, read-only) weight array
            return cached[1]
        out = _evaluate(op, master)
        self._quantized[op] = (master, out)
        return out

    @impl(T.UnpackOp)
    def run_unpack(self, interpreter: Interpreter, op: T.UnpackOp, args: PythonValues) -> PythonValues:
        return _evaluate(op, *args)

    # ------------------------------------------------------------------------------ BitLinear steps

    @impl(T.RMSNormOp)
    def run_rmsnorm(self, interpreter: Interpreter, op: T.RMSNormOp, args: PythonValues) -> PythonValues:
        x, gamma = args
        _gamma(op, gamma, x)
        return _evaluate(op, x, gamma)

    @impl(T.RMSNormalizeOp)
    def run_rms_normalize(
        self, interpreter: Interpreter, op: T.RMSNormalizeOp, args: PythonValues
    ) -> PythonValues:
        return _evaluate(op, *args)

    @impl(T.ScaleOp)
    def run_scale(self, interpreter: Interpreter, op: T.ScaleOp, args: PythonValues) -> PythonValues:
        x, gamma = args
        _gamma(op, gamma, x)
        return _evaluate(op, x, gamma)

    @impl(T.ResidualRMSNormOp)
    def run_residual_rmsnorm(
        self, interpreter: Interpreter, op: T.ResidualRMSNormOp, args: PythonValues
    ) -> PythonValues:
        x, residual, gamma = args
        _same_shape(op, "residual", residual, x.shape, "the shape of x")
        _gamma(op, gamma, x)
        return _evaluate(op, x, residual, gamma)

    @impl(T.QuantActOp)
    def run_quant_act(self, interpreter: Interpreter, op: T.QuantActOp, args: PythonValues) -> PythonValues:
        return _evaluate(op, *args)

    @impl(T.AccumOp)
    def run_accum(self, interpreter: Interpreter, op: T.AccumOp, args: PythonValues) -> PythonValues:
        x, w = args
        wt = op.weight.type
        if isinstance(wt, T.PackedType):  # the trits' shape: N rows of K (the activation's K when dynamic)
            k = T.shape_of(wt)[1]
            trits_shape: tuple[int, ...] = (w.shape[0], x.shape[-1] if k == T.DYN else k)
        else:
            trits_shape = w.shape
        _require(
            op,
            len(trits_shape) == 2 and x.shape[-1] == trits_shape[1],
            f"activation K={x.shape[-1]} does not match the weight's K (weight shape {trits_shape}) at run time",
        )
        return _evaluate(op, x, w)

    @impl(T.DequantOp)
    def run_dequant(self, interpreter: Interpreter, op: T.DequantOp, args: PythonValues) -> PythonValues:
        acc, s, ws = args
        _same_shape(op, "activation scale", s, (*acc.shape[:-1], 1), "one scale per row of the accumulator")
        return _evaluate(op, acc, s, ws)

    # --------------------------------------------------------------------------------- elementwise

    @impl(T.SigmoidOp)
    def run_sigmoid(self, interpreter: Interpreter, op: T.SigmoidOp, args: PythonValues) -> PythonValues:
        return _evaluate(op, *args)

    @impl(T.SiluOp)
    def run_silu(self, interpreter: Interpreter, op: T.SiluOp, args: PythonValues) -> PythonValues:
        return _evaluate(op, *args)

    @impl(T.OneMinusOp)
    def run_one_minus(self, interpreter: Interpreter, op: T.OneMinusOp, args: PythonValues) -> PythonValues:
        return _evaluate(op, *args)

    @impl(T.SiluMulOp)
    def run_silu_mul(self, interpreter: Interpreter, op: T.SiluMulOp, args: PythonValues) -> PythonValues:
        return _evaluate(op, *_same_shapes(op, args))

    @impl(T.MulOp)
    def run_mul(self, interpreter: Interpreter, op: T.MulOp, args: PythonValues) -> PythonValues:
        return _evaluate(op, *_same_shapes(op, args))

    @impl(T.AddOp)
    def run_add(self, interpreter: Interpreter, op: T.AddOp, args: PythonValues) -> PythonValues:
        return _evaluate(op, *_same_shapes(op, args))

    @impl(T.SubOp)
    def run_sub(self, interpreter: Interpreter, op: T.SubOp, args: PythonValues) -> PythonValues:
        return _evaluate(op, *_same_shapes(op, args))

    @impl(T.ScanStepOp)
    def run_scan_step(self, interpreter: Interpreter, op: T.ScanStepOp, args: PythonValues) -> PythonValues:
        return _evaluate(op, *_same_shapes(op, args))

    @impl(T.LowerBoundOp)
    def run_lower_bound(self, interpreter: Interpreter, op: T.LowerBoundOp, args: PythonValues) -> PythonValues:
        x, lb = args
        _same_shape(op, "lower bound", lb, (x.shape[-1],), "the last dim of x")
        return _evaluate(op, x, lb)

    @impl(T.GateNormOp)
    def run_gate_norm(self, interpreter: Interpreter, op: T.GateNormOp, args: PythonValues) -> PythonValues:
        g, h, gamma = args
        _same_shape(op, "h", h, g.shape, "the shape of g")
        _gamma(op, gamma, g)
        return _evaluate(op, g, h, gamma)

    @impl(T.MaskOp)
    def run_mask(self, interpreter: Interpreter, op: T.MaskOp, args: PythonValues) -> PythonValues:
        x, mask = args
        _same_shape(op, "mask", mask, x.shape[:-1], "the shape of x without its last dim")
        return _evaluate(op, x, mask)

    # -------------------------------------------------------------------------------- recurrence

    @impl(T.ScanOp)
    def run_scan(self, interpreter: Interpreter, op: T.ScanOp, args: PythonValues) -> PythonValues:
        x, f = args[0], args[1]
        _same_shape(op, "f", f, x.shape, "the shape of x")
        if len(args) > 2:
            _same_shape(op, "initial state", args[2], (x.shape[0], x.shape[2]), "[B, d] of x")
        return _evaluate(op, *args)

    # -------------------------------------------------------------------- embedding, bounds, slicing

    @impl(T.EmbeddingOp)
    def run_embedding(self, interpreter: Interpreter, op: T.EmbeddingOp, args: PythonValues) -> PythonValues:
        table, ids = args
        v = table.shape[0]
        if ids.size and (ids.min() < 0 or ids.max() >= v):
            bad = ids[(ids < 0) | (ids >= v)].flat[0]
            raise InterpError(f"ternary.embedding: token id {int(bad)} is out of range [0, {v})", op)
        return _evaluate(op, table, ids)

    @impl(T.LowerBoundsOp)
    def run_lower_bounds(self, interpreter: Interpreter, op: T.LowerBoundsOp, args: PythonValues) -> PythonValues:
        return _evaluate(op, *args)

    @impl(T.SplitOp)
    def run_split(self, interpreter: Interpreter, op: T.SplitOp, args: PythonValues) -> PythonValues:
        (x,) = args
        n = len(op.parts)
        _require(op, x.shape[-1] % n == 0, f"last dim {x.shape[-1]} does not split into {n} equal parts at run time")
        return _evaluate(op, x)

    @impl(T.RowOp)
    def run_row(self, interpreter: Interpreter, op: T.RowOp, args: PythonValues) -> PythonValues:
        (x,) = args
        i = op.index.value.data
        _require(op, i < x.shape[0], f"index {i} is out of range for {x.shape[0]} rows at run time")
        return _evaluate(op, x)

    # ---------------------------------------------------------------------------------- kernels

    @impl_terminator(T.YieldOp)
    def run_yield(
        self, interpreter: Interpreter, op: T.YieldOp, args: PythonValues
    ) -> tuple[TerminatorValue, PythonValues]:
        return ReturnedValues(args), ()

    @impl(T.KernelOp)
    def run_kernel(self, interpreter: Interpreter, op: T.KernelOp, args: PythonValues) -> PythonValues:
        """Run the body once per program of the grid, on the program's tiles (numpy slices).

        The grid arithmetic is the dialect's (:mod:`mmfc.dialects.ternary.tiling`): the extent of each
        axis from the operands' shapes (checked equal at run time), ``ceil(extent / block)`` programs
        per axis, and for program p the block ``[p_g * b_g, min((p_g + 1) * b_g, extent_g))`` of each
        dim split by axis g (the last block is clipped) and all of each whole dim. The tiles it yields
        are written into results allocated after the first program, at the same positions. An axis of
        extent 0 runs one program on empty tiles (so that the results' whole dims are known).
        """
        grid = op.grid_sizes()
        in_axes = [tile.axes() for tile in op.input_tiles.data]
        out_axes = [tile.axes() for tile in op.result_tiles.data]
        try:
            extents = T.grid_extents(op, [np.shape(v) for v in args])
        except T.GridError as exc:
            raise InterpError(f"{op.name}: {exc}", op) from None
        results: list[np.ndarray] | None = None
        written: list[np.ndarray] | None = None
        for point in T.program_points(grid, extents):
            bounds = T.program_bounds(point, grid, extents)
            tiles = tuple(_tile(v, axes, bounds) for v, axes in zip(args, in_axes))
            self.programs.append(KernelProgram(op, point))
            try:
                outs = interpreter.run_ssacfg_region(op.body, tiles, f"{op.name} program {point}")
            finally:
                self.programs.pop()
            if not grid:  # a single program: its tiles are the results
                return outs
            if results is None:
                results, written = self._allocate(op, outs, out_axes, extents)
            for i, (tile, axes) in enumerate(zip(outs, out_axes)):
                index = T.tile_index(axes, bounds)
                target = results[i][index]
                _require(
                    op,
                    isinstance(tile, np.ndarray) and tile.shape == target.shape and tile.dtype == results[i].dtype,
                    f"program {point} yields {describe_value(tile)} for result {i}, but its tile is "
                    f"{results[i].dtype} of shape {target.shape}",
                )
                results[i][index] = tile
                if written is not None:
                    written[i][index] += 1
        assert results is not None
        if written is not None:
            for i, w in enumerate(written):
                if not np.all(w == 1):
                    raise AssertionError(
                        f"{op.name}: result {i}: {int(np.sum(w == 0))} elements written by no program, "
                        f"{int(np.sum(w > 1))} by several (interpreter bug)"
                    )
        return tuple(results)

    def _allocate(
        self,
        op: T.KernelOp,
        outs: PythonValues,
        out_axes: list[T.Axes],
        extents: tuple[int, ...],
    ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """Results (poisoned: NaN for floats, the minimum for integers) and, when checking coverage,
        per-element write counts."""
        results, written = [], []
        for i, (tile, axes) in enumerate(zip(outs, out_axes)):
            _require(
                op,
                isinstance(tile, np.ndarray) and tile.ndim == len(axes),
                f"the body yields {describe_value(tile)} for result {i}, tiled with {len(axes)} dims",
            )
            shape = T.full_shape(axes, tile.shape, extents)
            poison = np.nan if tile.dtype.kind == "f" else np.iinfo(tile.dtype).min
            results.append(np.full(shape, poison, dtype=tile.dtype))
            written.append(np.zeros(shape, dtype=np.uint8))
        return results, written if self.check_coverage else None


# ---------------------------------------------------------------------------------------- helpers


def _same_shapes(op: Operation, args: PythonValues) -> PythonValues:
    """Check that the operands of an elementwise op have one shape (no silent broadcasting)."""
    first = np.shape(args[0])
    for i, a in enumerate(args[1:], 1):
        _same_shape(op, f"operand {i}", a, first, "the shape of operand 0")
    return args


def _evaluate(op: Operation, *args: Any) -> PythonValues:
    """``op``'s results from the semantics table; a ``ValueError`` there (e.g. bytes that are no packed
    trits) is a problem of the run's inputs."""
    try:
        return T.evaluate(op, *args)
    except ValueError as exc:
        raise InterpError(f"{op.name}: {exc}", op) from None


def _tile(v: Any, axes: T.Axes, bounds: T.Bounds) -> Any:
    """Program's view of operand ``v``: a numpy slice (no copy); scalars and whole operands as they are."""
    if not any(a is not None for a in axes):
        return v
    return v[T.tile_index(axes, bounds)]


def check_results(op: Operation, results: PythonValues) -> None:
    """Check an op's results against its result types (an interpreter bug if they disagree)."""
    for i, (r, v) in enumerate(zip(op.results, results)):
        problem = value_problem(v, r.type)
        if problem is not None:
            raise AssertionError(f"{op.name}: result {i} of type {r.type}: {problem} (interpreter bug)")


def supported_op_types() -> frozenset[type[Operation]]:
    """Op classes the interpreter runs: every ternary op here, plus ``func.return`` / ``func.call``
    (xDSL's own implementations)."""
    from xdsl.dialects import func

    ours = {op_type for op_type, _ in TernaryFunctions._impls()}  # noqa: SLF001 -- xDSL's registry
    return frozenset(ours | {func.ReturnOp, func.CallOp})


__all__ = ["KernelProgram", "TernaryFunctions", "check_results", "supported_op_types"]
