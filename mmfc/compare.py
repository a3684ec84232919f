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


__all__ = ["Comparison", "Difference", "compare_records", "first_difference", "first_kernel_difference"]
