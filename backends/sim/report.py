"""What a simulation reports: cycles, time, tokens/s, utilization, stalls, bytes, actions, energy.

:func:`summarize` turns the timed calls of a run (prefill and decode steps) into one JSON-ready dict;
:func:`format_table` prints it for people; :func:`chrome_trace` writes the timeline for Perfetto
(``ui.perfetto.dev``) or ``chrome://tracing``. ``docs/simulator.md`` explains every figure.

* ``cycles``: every simulated cycle of the run; ``prefill`` / ``decode``: per phase (a decode call
  of batch B makes B tokens);
* ``seconds_per_token``, ``tokens_per_s``: decode, at the clock (prefill's when there is no decode);
* ``utilization``: the share of the phase's cycles each unit is busy (``dma``: of all engines'
  cycles; ``dram``: the DRAM bus);
* ``stalls``: per unit, cycles idle waiting for data from DRAM (``dram``), for another unit's result
  (``dependency``), and cycles instructions waited, ready, for their busy unit (``unit``); the
  ternary array's shares of the phase's cycles are under ``stalls.tacc_share``;
* ``dram_bytes_per_token`` (by payload: ``weight``, ``act``, ``param``, ``table``),
  ``sram_bytes_per_token``, ``actions_per_token`` (``accumulate`` counts every trit, zeros included;
  ``accumulate_skipped`` the zeros a ``skip_zeros`` design did not add);
* ``energy_j_per_token`` and ``energy_j_by_component`` per token: each count times its
  ``[energy]`` entry, plus ``static_w`` times the time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mmfc.dialects.accel_schedule import Counters
from mmfc.dialects.arch import Accelerator

PJ = 1e-12


def energy_j(arch: Accelerator, c: Counters) -> dict[str, float]:
    """Energy of counters ``c`` by component, joules: dynamic (count x picojoules) and static."""
    e = arch.energy
    return {
        "tacc": c.adds * e.add_pj * PJ,
        "int8": c.int8_ops * e.int8_op_pj * PJ,
        "vector": c.vector_ops * e.vector_op_pj * PJ,
        "sram": c.sram_bytes * e.sram_byte_pj * PJ,
        "dram": c.total_dram_bytes * e.dram_byte_pj * PJ,
        "static": e.static_w * arch.seconds(c.cycles),
    }


def _phase(arch: Accelerator, calls: Sequence[Any]) -> dict[str, Any] | None:
    if not calls:
        return None
    c = Counters()
    tokens = 0
    for call in calls:
        c.add(call.counters)
        tokens += call.batch * call.seq
    cycles = max(c.cycles, 1)
    seconds = arch.seconds(c.cycles)
    energy = energy_j(arch, c)
    per = max(tokens, 1)
    util = {u: c.busy.get(u, 0) / cycles for u in ("tacc", "vector")}
    util["dma"] = c.busy.get("dma", 0) / (cycles * arch.dma.engines)
    util["dram"] = c.busy.get("dram", 0) / cycles
    tacc_stalls = c.stalls.get("tacc", {})
    return {
        "calls": len(calls),
        "tokens": tokens,
        "cycles": c.cycles,
        "cycles_per_token": c.cycles / per,
        "seconds": seconds,
        "seconds_per_token": seconds / per,
        "tokens_per_s": per / seconds if seconds > 0 else float("inf"),
        "utilization": util,
        "stalls": {
            "by_unit": {u: dict(v) for u, v in c.stalls.items()},
            "tacc_share": {k: v / cycles for k, v in tacc_stalls.items()},
        },
        "dram_bytes_per_token": c.total_dram_bytes / per,
        "dram_bytes_by_payload_per_token": {k: v / per for k, v in c.dram_bytes.items()},
        "sram_bytes_per_token": c.sram_bytes / per,
        "actions_per_token": {
            "accumulate": (c.adds + c.skipped_adds) / per,
            "accumulate_skipped": c.skipped_adds / per,
            "int8_ops": c.int8_ops / per,
            "vector_ops": c.vector_ops / per,
            "instructions": c.instructions / per,
        },
        "energy_j": sum(energy.values()),
        "energy_j_per_token": sum(energy.values()) / per,
        "energy_j_by_component_per_token": {k: v / per for k, v in energy.items()},
    }


def summarize(arch: Accelerator, calls: Sequence[Any]) -> dict[str, Any]:
    """The report of the timed ``calls`` (engine ``CallTiming`` objects; module docstring)."""
    decode = [c for c in calls if c.entry == "decode_step"]
    prefill = [c for c in calls if c.entry != "decode_step"]
    main = _phase(arch, decode) or _phase(arch, prefill)
    assert main is not None
    report: dict[str, Any] = {
        "arch": arch.to_dict(),
        "clock_mhz": arch.clock_mhz,
        "cycles": sum(c.cycles for c in calls),
        "seconds": arch.seconds(sum(c.cycles for c in calls)),
        "prefill": _phase(arch, prefill),
        "decode": _phase(arch, decode),
    }
    for key in ("seconds_per_token", "tokens_per_s", "dram_bytes_per_token", "sram_bytes_per_token",
                "energy_j_per_token", "utilization", "stalls", "actions_per_token"):
        report[key] = main[key]
    report["cycles_per_token"] = main["cycles_per_token"]
    report["energy_j_by_component_per_token"] = main["energy_j_by_component_per_token"]
    report["dram_bytes_by_payload_per_token"] = main["dram_bytes_by_payload_per_token"]
    return report


def _si(x: float, unit: str) -> str:
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n"), (1e-12, "p")):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def format_table(report: dict[str, Any], name: str = "") -> str:
    """The report for people: a few lines (the JSON has everything)."""
    a = report["arch"]
    lines = []
    mib = a["sram"]["capacity_bytes"] / 2**20
    lines.append(
        f"arch {name or a.get('name') or '?'}: {a['clock_mhz']:g} MHz, {a['tacc']['lanes']} ternary lanes, "
        f"{mib:g} MiB SRAM, {a['dram']['kind'] + ' ' if a['dram']['kind'] else ''}{a['dram']['gbps']:g} GB/s, "
        f"{a['weights']['format']} weights"
    )
    for phase in ("prefill", "decode"):
        p = report.get(phase)
        if not p:
            continue
        what = "token" if phase == "decode" else "prompt token"
        lines.append(
            f"{phase}: {p['cycles_per_token']:,.0f} cycles/{what}  ->  {p['tokens_per_s']:,.1f} tok/s   "
            f"energy {_si(p['energy_j_per_token'], 'J')}/{what}   ({p['calls']} call{'s' if p['calls'] > 1 else ''}, "
            f"{p['tokens']} tokens, {p['cycles']:,} cycles)"
        )
    u = report["utilization"]
    lines.append("units: " + " | ".join(f"{k} {100 * v:.0f}% busy" for k, v in u.items()))
    share = report["stalls"]["tacc_share"]
    lines.append(
        f"ternary array stalls: waiting on DRAM {100 * share.get('dram', 0):.0f}% | dependency "
        f"{100 * share.get('dependency', 0):.0f}% | unit {100 * share.get('unit', 0):.0f}%"
    )
    by = report["dram_bytes_by_payload_per_token"]
    lines.append(
        f"DRAM {_si(report['dram_bytes_per_token'], 'B')}/token ("
        + ", ".join(f"{k} {_si(v, 'B')}" for k, v in sorted(by.items(), key=lambda kv: -kv[1])) + f")   SRAM "
        f"{_si(report['sram_bytes_per_token'], 'B')}/token"
    )
    act = report["actions_per_token"]
    lines.append(
        f"actions/token: {act['accumulate']:,.0f} accumulate ({act['accumulate_skipped']:,.0f} skipped), "
        f"{act['int8_ops']:,.0f} int8, {act['vector_ops']:,.0f} vector"
    )
    e = report["energy_j_by_component_per_token"]
    lines.append("energy/token: " + " | ".join(f"{k} {_si(v, 'J')}" for k, v in e.items()))
    return "\n".join(lines)


def chrome_trace(events: Sequence[tuple[str, str, str, int, int]], clock_mhz: float) -> dict[str, Any]:
    """A Chrome / Perfetto trace of instruction events ``(name, lane, group, start, end)`` (cycles):
    one track per unit lane, times in microseconds at the clock."""
    lanes: dict[str, int] = {}
    out: list[dict[str, Any]] = []
    us = 1.0 / clock_mhz
    for name, lane, group, start, end in events:
        tid = lanes.setdefault(lane, len(lanes) + 1)
        out.append({"name": name, "cat": group, "ph": "X", "pid": 1, "tid": tid, "ts": start * us,
                    "dur": max(end - start, 0) * us, "args": {"group": group, "start_cycle": start, "end_cycle": end}})
    meta = [{"name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": {"name": lane}} for lane, tid in lanes.items()]
    meta.append({"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "accelerator"}})
    return {"traceEvents": meta + out, "displayTimeUnit": "ns"}


__all__ = ["chrome_trace", "energy_j", "format_table", "summarize"]
