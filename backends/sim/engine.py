"""The timing engine: a lowered program run on an accelerator, group after group.

A function's ``accel.program`` is a list of groups (:class:`~mmfc.dialects.accel_schedule.GroupPlan`).
:class:`Engine` runs one call of a function on ``batch`` sequences of ``seq`` tokens: each group's
passes through the event-driven schedule of :mod:`mmfc.dialects.accel_schedule` (tile granularity,
exact start and end cycles), the groups one after another (a group starts when the previous one has
finished: its results are the next one's inputs). A call's timing depends only on the program, the
accelerator and ``(batch, seq)`` (and, with ``tacc.skip_zeros``, on the weights, which do not change),
so it is computed once per shape and reused: a decode loop of N tokens schedules one step.

:class:`CallTiming` holds the totals and, when asked, the trace events of one call: every
instruction's ``(name, lane, start, end)`` in cycles from the call's start.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from mmfc.dialects.accel_schedule import Counters, GroupPlan, NonzeroCount, schedule_group
from mmfc.dialects.arch import Accelerator


@dataclass
class GroupRecord:
    """One group of a call: where it ran and what it cost."""

    label: str
    start: int
    cycles: int
    passes: int
    counters: Counters


@dataclass
class CallTiming:
    """One call of a function: total cycles, the counters added up, each group's record, and (when
    traced) the events ``(name, lane, group label, start, end)`` in cycles from the call's start."""

    entry: str
    batch: int
    seq: int
    cycles: int
    counters: Counters
    groups: list[GroupRecord]
    events: list[tuple[str, str, str, int, int]] = field(default_factory=list)


class Engine:
    """Times calls of a lowered model's functions on ``arch`` (module docstring).

    ``programs``: function name -> its groups in order. ``nonzeros``: counts nonzero trits of weight
    rows (needed only when ``arch.tacc.skip_zeros``). ``trace``: keep every instruction's events.
    """

    def __init__(
        self,
        programs: Mapping[str, Sequence[GroupPlan]],
        arch: Accelerator,
        nonzeros: NonzeroCount | None = None,
        trace: bool = False,
    ) -> None:
        self.programs = dict(programs)
        self.arch = arch
        self.nonzeros = nonzeros
        self.trace = trace
        self._cache: dict[tuple[str, int, int], CallTiming] = {}

    def time_call(self, entry: str, batch: int, seq: int = 1) -> CallTiming:
        """The timing of one call of ``entry`` on ``batch`` sequences of ``seq`` tokens (cached)."""
        key = (entry, batch, seq)
        if key not in self._cache:
            self._cache[key] = self._time(entry, batch, seq)
        return self._cache[key]

    def _time(self, entry: str, batch: int, seq: int) -> CallTiming:
        rows = max(batch, 1) * max(seq, 1)
        total = Counters()
        groups = []
        events: list[tuple[str, str, str, int, int]] = []
        clock = 0
        for plan in self.programs[entry]:
            start = clock
            counters = Counters()
            passes = schedule_group(plan, self.arch, rows, seq, self.nonzeros)
            for _, timing in passes:
                if self.trace:
                    events += [
                        (ins.name, lane, plan.label, clock + s, clock + e)
                        for ins, lane, s, e in zip(plan.instrs, timing.lane, timing.start, timing.end)
                        if lane != "barrier"
                    ]
                clock += timing.counters.cycles
                counters.add(timing.counters)
            groups.append(GroupRecord(plan.label, start, clock - start, len(passes), counters))
            total.add(counters)
        total.cycles = clock
        return CallTiming(entry, batch, seq, clock, total, groups, events)


def nonzero_counter(read_trits: Callable[[str], np.ndarray]) -> NonzeroCount:
    """A :data:`NonzeroCount` over weights given as trits by ``read_trits(symbol)`` (each weight's
    per-row counts computed once)."""
    per_row: dict[str, np.ndarray] = {}

    def count(sym: str, start: int, stop: int) -> int:
        if sym not in per_row:
            trits = read_trits(sym)
            per_row[sym] = np.concatenate([[0], np.cumsum(np.count_nonzero(trits, axis=1))])
        cum = per_row[sym]
        return int(cum[stop] - cum[start])

    return count


__all__ = ["CallTiming", "Engine", "GroupRecord", "nonzero_counter"]
