"""Compare two runs record by record: the first kernel whose outputs differ.

Every backend's debug mode writes the dump format of :mod:`mmfc.dialects.dump`; this module walks
two record lists (in memory, or loaded from dump folders) and names the first record where they
disagree. Records are matched by what they are (op, kernel label, function, position in a kernel
body, program) and by occurrence, not by index, so a backend that records only kernels can be
compared with the interpreter, which records every op: records the other run does not have are
skipped (:attr:`Comparison.unmatched` counts them).

:func:`first_kernel_difference` runs one entry point on two runners (two targets, see
:mod:`mmfc.targets`) with their debug dumps on and compares them.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmfc.dialects.dump import OpRecord, load_dump


@dataclass
class Difference:
    """The first pair of records that differ, and how (``why``)."""

    actual: OpRecord
    expected: OpRecord
    why: str
    max_abs: float = field(default=float("nan"))

    def __str__(self) -> str:
        return f"{self.actual.describe()} differs from {self.expected.describe()}: {self.why}"


def _keyed(records: Sequence[OpRecord]) -> dict[tuple[Any, ...], OpRecord]:
    """Each record under (its key, its occurrence number among records of that key)."""
    seen: dict[tuple[Any, ...], int] = defaultdict(int)
    out = {}
    for r in records:
        out[(*r.key, seen[r.key])] = r
        seen[r.key] += 1
    return out


def _results_differ(a: OpRecord, e: OpRecord, rtol: float, atol: float) -> Difference | None:
    if len(a.results) != len(e.results):
        return Difference(a, e, f"{len(a.results)} results vs {len(e.results)}")
    for i, (x, y) in enumerate(zip(a.results, e.results)):
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape or x.dtype != y.dtype:
            return Difference(a, e, f"result {i}: {x.dtype}{list(x.shape)} vs {y.dtype}{list(y.shape)}")
        if x.size == 0:
            continue
        xf, yf = x.astype(np.float64), y.astype(np.float64)
        diff = np.abs(xf - yf)
        both_nan = np.isnan(xf) & np.isnan(yf)
        bad = ~both_nan & ~(diff <= atol + rtol * np.abs(yf))
        if np.any(bad):
            worst = float(np.nanmax(np.where(both_nan, 0.0, diff)))
            where = tuple(int(j) for j in np.argwhere(bad)[0])
            return Difference(
                a, e, f"result {i} differs at {int(bad.sum())} elements (first at {where}, max |diff| {worst:.3g})", worst
            )
    return None


def first_difference(
    actual: Sequence[OpRecord], expected: Sequence[OpRecord], *, rtol: float = 0.0, atol: float = 0.0
) -> Difference | None:
    """The first record of ``expected`` (in its order) whose match in ``actual`` differs: another
    result count, shape or dtype, or values outside ``|a - e| <= atol + rtol * |e|`` (integers
    compared exactly when both tolerances are 0; NaN equals NaN). Records without a match on the
    other side are skipped. None when every matched pair agrees."""
    by_key = _keyed(actual)
    for key, e in _keyed(expected).items():
        a = by_key.get(key)
        if a is None:
            continue
        found = _results_differ(a, e, rtol, atol)
        if found is not None:
            return found
    return None


@dataclass
class Comparison:
    """What :func:`first_kernel_difference` found: the first difference (None when the runs agree),
    how many records were compared and how many had no match in the other run."""

    difference: Difference | None
    compared: int
    unmatched: int

    def __str__(self) -> str:
        if self.difference is None:
            return f"no difference in {self.compared} matched records ({self.unmatched} without a match)"
        return str(self.difference)


def compare_records(
    actual: Sequence[OpRecord], expected: Sequence[OpRecord], *, rtol: float = 0.0, atol: float = 0.0
) -> Comparison:
    """:func:`first_difference` plus the counts of :class:`Comparison`."""
    a, e = _keyed(actual), _keyed(expected)
    common = set(a) & set(e)
    return Comparison(first_difference(actual, expected, rtol=rtol, atol=atol), len(common), len(a) + len(e) - 2 * len(common))


def first_kernel_difference(
    actual: Any, expected: Any, entry: str, *inputs: Any, rtol: float = 0.0, atol: float = 0.0
) -> Comparison:
    """Run ``entry`` on two runners (``Runner`` of :mod:`mmfc.dialects.target`) with the same host
    inputs, each writing its debug dump, and compare the dumps (``expected`` is the reference, e.g.
    the interpreter)."""
    with tempfile.TemporaryDirectory(prefix="mmfc-compare-") as tmp:
        dumps = []
        for name, runner in (("actual", actual), ("expected", expected)):
            folder = Path(tmp) / name
            runner.run(entry, *inputs, dump_dir=folder)
            dumps.append(load_dump(folder))
    return compare_records(dumps[0], dumps[1], rtol=rtol, atol=atol)




# --------------------------------------------------------------------------------------------------
# Per-op exactness inside kernels
# --------------------------------------------------------------------------------------------------


@dataclass
class OpCheck:
    """One body op re-computed with the shared semantics on the backend's own inputs."""

    kernel: str | None
    func: str
    body: int
    op: str
    ties: int  # int8 activations allowed to differ by 1 because x * s lies within an ulp of a tie
    max_rel: float  # worst relative difference of float results (0 for integer results)


def _near_tie(x: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Where ``x * s`` (float32) lies within one ulp of a rounding tie (``k + 0.5``)."""
    t = np.abs(np.asarray(x, np.float32) * np.asarray(s, np.float32))
    return np.abs(t - np.floor(t) - np.float32(0.5)) <= np.spacing(t)


def check_kernel_ops(
    module: Any, store: Any, entry: str, inputs: Sequence[Any], records: Sequence[OpRecord], *, float_rtol: float = 1e-5
) -> list[OpCheck]:
    """Re-compute every body op a backend's debug dump recorded (whole values, ``program`` None)
    with the shared op semantics, fed the backend's own operands, and check its results: integers
    (int8 activations, int32 accumulators) exactly, except a ±1 in the int8 activations of
    ``quant_act`` where ``x * s`` lies within one ulp of a tie; floats within ``float_rtol`` of the
    largest magnitude (relative). Function-level values come from the backend's kernel records (and
    the semantics for ops it records at function level). Raises ``AssertionError`` naming the op
    that differs; returns what was checked."""
    from xdsl.dialects import func as func_d

    from mmfc.dialects import ternary as T
    from mmfc.dialects.target import function_of
    from mmfc.dialects.ternary.semantics import evaluate
    from mmfc.dialects.values import coerce_input

    fn = function_of(module, entry)
    kernels = [r for r in records if r.func == entry and r.body is None]
    bodies: dict[tuple[str | None, int], OpRecord] = {
        (r.label, r.body): r for r in records if r.func == entry and r.body is not None and r.program is None
    }
    env: dict[Any, Any] = {}
    for arg, value in zip(fn.body.block.args, inputs):
        env[arg] = coerce_input(value, arg.type)[0]
    done: list[OpCheck] = []
    position = 0
    for op in fn.body.block.ops:
        if isinstance(op, T.WeightOp):
            raw = store.get(op.sym.string_value())
            env[op.result] = coerce_input(np.asarray(raw) if not T.is_scale_type(op.result.type) else np.float32(raw), op.result.type)[0]
            continue
        if isinstance(op, func_d.ReturnOp):
            break
        if not isinstance(op, T.KernelOp):
            # recorded by the backend (it launched it), else computed by the shared semantics
            record = _find_record(kernels, position, op.name, None)
            if record is None:
                env.update(zip(op.results, evaluate(op, *(env[v] for v in op.operands))))
            else:
                position = kernels.index(record) + 1
                env.update(zip(op.results, record.results))
            continue
        label = op.attributes["label"].data if "label" in op.attributes else None  # type: ignore[union-attr]
        record = _next_record(kernels, position, "ternary.kernel", label)
        position = kernels.index(record) + 1
        inner: dict[Any, Any] = {arg: env[v] for arg, v in zip(op.body.block.args, op.inputs)}
        for index, body_op in enumerate(op.body.block.ops):
            if isinstance(body_op, T.YieldOp):
                break
            got = bodies.get((label, index))
            if got is None:  # not recorded (a view, or a weight unpacked in registers): the semantics
                inner.update(zip(body_op.results, evaluate(body_op, *(inner[v] for v in body_op.operands))))
                continue
            want = evaluate(body_op, *(inner[v] for v in body_op.operands))
            done.append(_check_op(label, entry, index, body_op, [inner[v] for v in body_op.operands], got.results, want, float_rtol))
            inner.update(zip(body_op.results, got.results))
        env.update(zip(op.results, record.results))
    return done


def _find_record(records: Sequence[OpRecord], start: int, name: str, label: str | None) -> OpRecord | None:
    for r in records[start:]:
        if r.name == name and r.label == label:
            return r
    return None


def _next_record(records: Sequence[OpRecord], start: int, name: str, label: str | None) -> OpRecord:
    found = _find_record(records, start, name, label)
    if found is None:
        raise AssertionError(f"the dump has no record of {name} ({label}) after record {start}")
    return found


def _check_op(
    label: str | None, entry: str, index: int, op: Any, operands: list[Any], got: Sequence[Any], want: Sequence[Any], rtol: float
) -> OpCheck:
    from mmfc.dialects import ternary as T

    where = f"{op.name} (body op {index} of kernel {label} in @{entry})"
    ties, worst = 0, 0.0
    for i, (g, w) in enumerate(zip(got, want)):
        g, w = np.asarray(g), np.asarray(w)
        if g.shape != w.shape:
            raise AssertionError(f"{where}: result {i} has shape {g.shape}, the semantics give {w.shape}")
        if w.dtype.kind in "iu":
            diff = g.astype(np.int64) - w.astype(np.int64)
            bad = diff != 0
            if isinstance(op, T.QuantActOp) and i == 0:
                allowed = (np.abs(diff) == 1) & _near_tie(operands[0], np.asarray(want[1]))
                ties += int(np.sum(bad & allowed))
                bad &= ~allowed
            if np.any(bad):
                at = tuple(int(j) for j in np.argwhere(bad)[0])
                raise AssertionError(f"{where}: integer result {i} differs at {int(bad.sum())} elements (first at {at}: {g[at]} vs {w[at]})")
        else:
            scale = float(np.max(np.abs(w))) if w.size else 0.0
            err = float(np.max(np.abs(g.astype(np.float64) - w.astype(np.float64)))) if w.size else 0.0
            rel = err / scale if scale > 0 else err
            if not rel <= rtol:
                raise AssertionError(f"{where}: float result {i} differs by {rel:.3g} relative (allowed {rtol})")
            worst = max(worst, rel)
    return OpCheck(label, entry, index, op.name, ties, worst)


__all__ = [
    "Comparison",
    "Difference",
    "OpCheck",
    "check_kernel_ops",
    "compare_records",
    "first_difference",
    "first_kernel_difference",
]
