"""xDSL interpreter implementations of every ``ternary`` op: the golden model's semantics.

Each op calls the function of :mod:`mmfc.dialects.numerics` its docstring names; nothing here
re-implements the arithmetic (the only inline arithmetic is ``mul``/``add``/``sub``: one f32 numpy
operator each). Values are numpy objects (see :mod:`mmfc.dialects.values`).

Operands are checked against each other at run time (dynamic dims: e.g. a mask whose batch differs
from the activations'), so numpy never broadcasts silently; a mismatch is an :class:`InterpError`.

``ternary.kernel`` runs its body tile-wise (:meth:`TernaryFunctions.run_kernel`): once per program of
the grid, on numpy slices of its operands, never per element.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.dialects.builtin import (
    BFloat16Type,
    Float16Type,
    Float32Type,
    Float64Type,
    TensorType,
)
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
from mmfc.dialects.values import F32, describe_value, value_problem

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


def _scale_value(scale: Any, t: Attribute) -> Any:
    """A weight scale as its type wants it: ``f32`` -> np.float32, ``tensor<f32>`` -> 0-d array."""
    return np.asarray(scale, dtype=np.float32) if isinstance(t, TensorType) else np.float32(scale)


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
            return _scale_value(raw, t)
        return np.asarray(raw, dtype=np.float32)  # bf16 is already f32 (store.get); f16/f64 computed in f32

    @impl(T.QuantWeightOp)
    def run_quant_weight(self, interpreter: Interpreter, op: T.QuantWeightOp, args: PythonValues) -> PythonValues:
        (master,) = args
        cached = self._quantized.get(op)
        if cached is not None and cached[0] is master:  # the same (cached, read-only) weight array
            return cached[1]
        trits, scale = nm.quant_weight(master)
        out = (trits, _scale_value(scale, op.scale.type))
        self._quantized[op] = (master, out)
        return out

    @impl(T.UnpackOp)
    def run_unpack(self, interpreter: Interpreter, op: T.UnpackOp, args: PythonValues) -> PythonValues:
        (packed,) = args
        k = _packed_k(op, op.packed.type, op.trits.type)
        return (_unpack(op, packed, k, op.packed.type),)

    # ------------------------------------------------------------------------------ BitLinear steps

    @impl(T.RMSNormOp)
    def run_rmsnorm(self, interpreter: Interpreter, op: T.RMSNormOp, args: PythonValues) -> PythonValues:
        x, gamma = args
        _gamma(op, gamma, x)
        return (nm.rmsnorm(x, gamma, op.eps.value.data),)

    @impl(T.RMSNormalizeOp)
    def run_rms_normalize(
        self, interpreter: Interpreter, op: T.RMSNormalizeOp, args: PythonValues
    ) -> PythonValues:
        (x,) = args
        return (nm.rms_normalize(x, op.eps.value.data),)

    @impl(T.ScaleOp)
    def run_scale(self, interpreter: Interpreter, op: T.ScaleOp, args: PythonValues) -> PythonValues:
        x, gamma = args
        _gamma(op, gamma, x)
        return (nm.scale(x, gamma),)

    @impl(T.ResidualRMSNormOp)
    def run_residual_rmsnorm(
        self, interpreter: Interpreter, op: T.ResidualRMSNormOp, args: PythonValues
    ) -> PythonValues:
        x, residual, gamma = args
        _same_shape(op, "residual", residual, x.shape, "the shape of x")
        _gamma(op, gamma, x)
        return nm.residual_rmsnorm(x, residual, gamma, op.eps.value.data)

    @impl(T.QuantActOp)
    def run_quant_act(self, interpreter: Interpreter, op: T.QuantActOp, args: PythonValues) -> PythonValues:
        (x,) = args
        return nm.quant_act(x)

    @impl(T.AccumOp)
    def run_accum(self, interpreter: Interpreter, op: T.AccumOp, args: PythonValues) -> PythonValues:
        x, w = args
        wt = op.weight.type
        if isinstance(wt, T.PackedType):
            w = _unpack(op, w, _packed_k(op, wt, None, fallback=x.shape[-1]), wt)
        _require(
            op,
            w.ndim == 2 and x.shape[-1] == w.shape[1],
            f"activation K={x.shape[-1]} does not match the weight's K (weight shape {w.shape}) at run time",
        )
        return (nm.accum(x, w),)

    @impl(T.DequantOp)
    def run_dequant(self, interpreter: Interpreter, op: T.DequantOp, args: PythonValues) -> PythonValues:
        acc, s, ws = args
        _same_shape(op, "activation scale", s, (*acc.shape[:-1], 1), "one scale per row of the accumulator")
        return (nm.dequant(acc, s, ws),)

    # --------------------------------------------------------------------------------- elementwise

    @impl(T.SigmoidOp)
    def run_sigmoid(self, interpreter: Interpreter, op: T.SigmoidOp, args: PythonValues) -> PythonValues:
        return (nm.sigmoid(args[0]),)

    @impl(T.SiluOp)
    def run_silu(self, interpreter: Interpreter, op: T.SiluOp, args: PythonValues) -> PythonValues:
        return (nm.silu(args[0]),)

    @impl(T.OneMinusOp)
    def run_one_minus(self, interpreter: Interpreter, op: T.OneMinusOp, args: PythonValues) -> PythonValues:
        return (nm.one_minus(args[0]),)

    @impl(T.SiluMulOp)
    def run_silu_mul(self, interpreter: Interpreter, op: T.SiluMulOp, args: PythonValues) -> PythonValues:
        return (nm.silu_mul(*_same_shapes(op, args)),)

    @impl(T.MulOp)
    def run_mul(self, interpreter: Interpreter, op: T.MulOp, args: PythonValues) -> PythonValues:
        a, b = _same_shapes(op, args)
        return (np.multiply(a, b, dtype=F32),)

    @impl(T.AddOp)
    def run_add(self, interpreter: Interpreter, op: T.AddOp, args: PythonValues) -> PythonValues:
        a, b = _same_shapes(op, args)
        return (np.add(a, b, dtype=F32),)

    @impl(T.SubOp)
    def run_sub(self, interpreter: Interpreter, op: T.SubOp, args: PythonValues) -> PythonValues:
        a, b = _same_shapes(op, args)
        return (np.subtract(a, b, dtype=F32),)

    @impl(T.ScanStepOp)
    def run_scan_step(self, interpreter: Interpreter, op: T.ScanStepOp, args: PythonValues) -> PythonValues:
        return (nm.scan_step(*_same_shapes(op, args)),)

    @impl(T.LowerBoundOp)
    def run_lower_bound(self, interpreter: Interpreter, op: T.LowerBoundOp, args: PythonValues) -> PythonValues:
        x, lb = args
        _same_shape(op, "lower bound", lb, (x.shape[-1],), "the last dim of x")
        return (nm.lower_bound(x, lb),)

    @impl(T.GateNormOp)
    def run_gate_norm(self, interpreter: Interpreter, op: T.GateNormOp, args: PythonValues) -> PythonValues:
        g, h, gamma = args
        _same_shape(op, "h", h, g.shape, "the shape of g")
        _gamma(op, gamma, g)
        return (nm.gate_norm(g, h, gamma, op.eps.value.data),)

    @impl(T.MaskOp)
    def run_mask(self, interpreter: Interpreter, op: T.MaskOp, args: PythonValues) -> PythonValues:
        x, mask = args
        _same_shape(op, "mask", mask, x.shape[:-1], "the shape of x without its last dim")
        return (nm.apply_mask(x, mask),)

    # -------------------------------------------------------------------------------- recurrence

    @impl(T.ScanOp)
    def run_scan(self, interpreter: Interpreter, op: T.ScanOp, args: PythonValues) -> PythonValues:
        x, f = args[0], args[1]
        h0 = args[2] if len(args) > 2 else None
        _same_shape(op, "f", f, x.shape, "the shape of x")
        if h0 is not None:
            _same_shape(op, "initial state", h0, (x.shape[0], x.shape[2]), "[B, d] of x")
        return nm.scan(x, f, h0)

    # -------------------------------------------------------------------- embedding, bounds, slicing

    @impl(T.EmbeddingOp)
    def run_embedding(self, interpreter: Interpreter, op: T.EmbeddingOp, args: PythonValues) -> PythonValues:
        table, ids = args
        v = table.shape[0]
        if ids.size and (ids.min() < 0 or ids.max() >= v):
            bad = ids[(ids < 0) | (ids >= v)].flat[0]
            raise InterpError(f"ternary.embedding: token id {int(bad)} is out of range [0, {v})", op)
        return (nm.embedding(table, ids),)

    @impl(T.LowerBoundsOp)
    def run_lower_bounds(self, interpreter: Interpreter, op: T.LowerBoundsOp, args: PythonValues) -> PythonValues:
        return (nm.lower_bounds(args[0]),)

    @impl(T.SplitOp)
    def run_split(self, interpreter: Interpreter, op: T.SplitOp, args: PythonValues) -> PythonValues:
        (x,) = args
        n = len(op.parts)
        _require(op, x.shape[-1] % n == 0, f"last dim {x.shape[-1]} does not split into {n} equal parts at run time")
        return tuple(np.split(x, n, axis=-1))

    @impl(T.RowOp)
    def run_row(self, interpreter: Interpreter, op: T.RowOp, args: PythonValues) -> PythonValues:
        (x,) = args
        i = op.index.value.data
        _require(op, i < x.shape[0], f"index {i} is out of range for {x.shape[0]} rows at run time")
        return (x[i],)

    # ---------------------------------------------------------------------------------- kernels

    @impl_terminator(T.YieldOp)
    def run_yield(
        self, interpreter: Interpreter, op: T.YieldOp, args: PythonValues
    ) -> tuple[TerminatorValue, PythonValues]:
        return ReturnedValues(args), ()

    @impl(T.KernelOp)
    def run_kernel(self, interpreter: Interpreter, op: T.KernelOp, args: PythonValues) -> PythonValues:
        """Run the body once per program of the grid, on the program's tiles (numpy slices).

        Grid axis g with block size b_g and extent E_g (the size of the dims it splits, checked equal
        at run time) has ``ceil(E_g / b_g)`` programs; program p sees ``[p_g * b_g, min((p_g + 1) * b_g,
        E_g))`` of each dim split by g (the last block is clipped) and all of each whole dim. The tiles
        it yields are written into results allocated after the first program, at the same positions.
        An axis of extent 0 runs one program on empty tiles (so that the results' whole dims are known).
        """
        grid = op.grid_sizes()
        in_axes = [tile.axes() for tile in op.input_tiles.data]
        out_axes = [tile.axes() for tile in op.result_tiles.data]
        extents = self._kernel_extents(op, args, in_axes, len(grid))
        counts = [max(1, math.ceil(extents[g] / b)) for g, b in enumerate(grid)]
        results: list[np.ndarray] | None = None
        written: list[np.ndarray] | None = None
        for point in itertools.product(*(range(c) for c in counts)):
            bounds = [(p * b, min((p + 1) * b, extents[g])) for g, (p, b) in enumerate(zip(point, grid))]
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
                index = _index(axes, bounds)
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

    def _kernel_extents(
        self, op: T.KernelOp, args: PythonValues, in_axes: list[tuple[int | None, ...]], n_axes: int
    ) -> list[int]:
        """Extent of each grid axis: the size of the operand dims it splits (all equal)."""
        seen: dict[int, tuple[int, str]] = {}
        for i, (v, axes, operand) in enumerate(zip(args, in_axes, op.inputs)):
            shape = np.shape(v)
            _require(op, len(shape) == len(axes), f"operand {i} is a {describe_value(v)}, but its tile map has {len(axes)} dims")
            for d, a in enumerate(axes):
                if a is None:
                    continue
                _require(
                    op,
                    not (isinstance(operand.type, T.PackedType) and d == 1),
                    f"operand {i} is a packed weight split along K (bytes hold several trits)",
                )
                first = seen.setdefault(a, (shape[d], f"operand {i} dim {d}"))
                _require(
                    op,
                    first[0] == shape[d],
                    f"grid axis {a} splits dims of different sizes at run time: {first[1]} has {first[0]}, "
                    f"operand {i} dim {d} has {shape[d]}",
                )
        missing = [g for g in range(n_axes) if g not in seen]
        _require(op, not missing, f"grid axis {missing[0] if missing else 0} splits no operand: its extent is unknown")
        return [seen[g][0] for g in range(n_axes)]

    def _allocate(
        self,
        op: T.KernelOp,
        outs: PythonValues,
        out_axes: list[tuple[int | None, ...]],
        extents: list[int],
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
            shape = tuple(tile.shape[d] if a is None else extents[a] for d, a in enumerate(axes))
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


def _packed_k(op: Operation, packed_t: Attribute, trits_t: Attribute | None, fallback: int | None = None) -> int:
    """K (in trits) of a packed weight: from the types where static, else ``fallback``."""
    for t in (trits_t, packed_t):
        if t is not None and T.shape_of(t)[1] != T.DYN:
            return T.shape_of(t)[1]
    _require(op, fallback is not None, "cannot unpack a packed weight whose K is dynamic")
    assert fallback is not None
    return fallback


def _unpack(op: Operation, packed: np.ndarray, k: int, packed_t: Attribute) -> np.ndarray:
    assert isinstance(packed_t, T.PackedType)
    fmt = packed_t.format.data
    try:
        return nm.unpack(packed, k, fmt)
    except ValueError as exc:  # invalid codes or a byte count that does not fit K: bad weights
        raise InterpError(f"{op.name}: {exc}", op) from None


def _index(axes: tuple[int | None, ...], bounds: list[tuple[int, int]]) -> tuple[slice, ...]:
    return tuple(slice(None) if a is None else slice(*bounds[a]) for a in axes)


def _tile(v: Any, axes: tuple[int | None, ...], bounds: list[tuple[int, int]]) -> Any:
    """Program's view of operand ``v``: a numpy slice (no copy); scalars and whole operands as they are."""
    if not any(a is not None for a in axes):
        return v
    return v[_index(axes, bounds)]


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
