"""Golden tests of the schedule with closed-form cycle counts.

Each test builds a small instruction list (the patterns the lowering emits), times it with
``schedule_pass`` on an accelerator whose figures make the arithmetic exact, and compares with the
formula written next to it: a DRAM-bound stream is bytes / bytes-per-cycle + latency; a compute-bound
accumulate is adds / lanes plus the pipeline latency once; double buffering overlaps DMA and compute
(the max per tile, plus the first transfer and the last compute); a dependency chain is the sum.
"""

from __future__ import annotations

import math

import pytest

from mmfc.dialects.accel_schedule import GroupPlan, Instr, instr_cost, packed_bytes, schedule_group, schedule_pass
from mmfc.dialects.arch import load_arch

BASE = load_arch("edge-fpga").to_dict()


def arch(**changes: object):  # noqa: ANN201
    """edge-fpga with dotted changes; DMA setup 0 so the formulas hold exactly."""
    return load_arch("edge-fpga").with_values({"dma.setup_cycles": 0, **changes})


def weight_dma(t: int, n: int, k: int, deps: tuple[int, ...] = ()) -> Instr:
    return Instr("dma_in", deps, what="weight", weight="w", rows=(t * n, (t + 1) * n), k=k, buffer=t % 2)


def tacc(t: int, n: int, k: int, deps: tuple[int, ...]) -> Instr:
    return Instr("tacc", deps, weight="w", rows=(t * n, (t + 1) * n), k=k, tile=t)


def stream(tiles: int, n: int, k: int, buffers: int) -> list[Instr]:
    """The lowering's weight stream: DMA of tile t waits for the accumulate of tile t - buffers."""
    instrs: list[Instr] = []
    accs: list[int] = []
    for t in range(tiles):
        deps = (accs[t - buffers],) if t >= buffers else ()
        instrs.append(weight_dma(t, n, k, deps))
        instrs.append(tacc(t, n, k, (len(instrs) - 1,)))
        accs.append(len(instrs) - 1)
    return instrs


def test_one_transfer_is_bytes_over_bandwidth_plus_latency() -> None:
    a = arch(**{"dram.gbps": 19.2, "dram.latency_ns": 100})  # 96 B/cycle at 200 MHz, 20 cycles
    assert a.dram_bytes_per_cycle == 96 and a.dram_latency_cycles == 20
    t = schedule_pass([Instr("dma_in", what="act", bytes=96 * 1000)], a, 1)
    assert t.counters.cycles == 1000 + 20
    odd = schedule_pass([Instr("dma_in", what="act", bytes=96 * 1000 + 1)], a, 1)
    assert odd.counters.cycles == 1001 + 20  # a partial cycle ends at the next whole one


@pytest.mark.parametrize("tiles", [1, 4, 9])
def test_dram_bound_weight_stream(tiles: int) -> None:
    """Compute is ~free (lanes huge): the stream takes its bytes over the bandwidth, plus the DRAM
    latency once (two engines overlap it) and the last accumulate's drain."""
    a = arch(**{"dram.gbps": 19.2, "dram.latency_ns": 100, "tacc.lanes": 1 << 30, "tacc.latency_cycles": 3,
                "sram.bytes_per_cycle": 1 << 20})
    n, k = 64, 1536  # 64 x 384 bytes = 24576 bytes = 256 cycles per tile at 96 B/cycle
    per_tile = packed_bytes(n, k, "2bit") // 96
    assert per_tile == 256
    drain = instr_cost(tacc(0, n, k, ()), a, 1).occupancy + 3
    t = schedule_pass(stream(tiles, n, k, 2), a, 1)
    assert t.counters.cycles == tiles * per_tile + 20 + drain
    assert t.counters.dram_bytes["weight"] == tiles * n * math.ceil(k / 4)


def test_one_engine_pays_the_latency_per_transfer() -> None:
    a = arch(**{"dram.gbps": 19.2, "dram.latency_ns": 100, "dma.engines": 1, "tacc.lanes": 1 << 30,
                "tacc.latency_cycles": 0, "sram.bytes_per_cycle": 1 << 20})
    t = schedule_pass([weight_dma(i, 64, 1536) for i in range(5)], a, 1)
    assert t.counters.cycles == 5 * (256 + 20)


@pytest.mark.parametrize("rows", [1, 3])
def test_compute_bound_accumulate(rows: int) -> None:
    """DRAM is ~free: back-to-back accumulates take adds / lanes each (pipelined), and the pipeline
    latency once at the end (fill and drain)."""
    a = arch(**{"dram.gbps": 1e6, "dram.latency_ns": 0, "tacc.lanes": 512, "tacc.latency_cycles": 7,
                "sram.bytes_per_cycle": 1 << 20})
    n, k, tiles = 32, 1024, 6
    instrs = [Instr("dma_in", what="weight", weight="w", rows=(0, n * tiles), k=k)]
    instrs += [tacc(t, n, k, (0,)) for t in range(tiles)]
    t = schedule_pass(instrs, a, rows)
    dma_end = t.end[0]
    assert t.counters.cycles == dma_end + tiles * (rows * n * k // 512) + 7
    assert t.counters.adds == rows * n * k * tiles


@pytest.mark.parametrize("dma_cycles,compute_cycles", [(256, 64), (64, 256), (128, 128)])
def test_double_buffering_overlaps_dma_and_compute(dma_cycles: int, compute_cycles: int) -> None:
    """Two buffers: fill (the first transfer), then max(DMA, compute) per tile, then the drain (the
    last accumulate); one buffer: DMA and compute take turns, the sum per tile."""
    n, k, tiles = 64, 1536, 8  # 24576 bytes per tile
    gbps = 24576 / dma_cycles * 200 / 1000  # bytes per cycle -> GB/s at 200 MHz
    lanes = n * k // compute_cycles
    a = arch(**{"dram.gbps": gbps, "dram.latency_ns": 0, "tacc.lanes": lanes, "tacc.latency_cycles": 0,
                "sram.bytes_per_cycle": 1 << 20})
    assert a.dram_bytes_per_cycle * dma_cycles == 24576
    double = schedule_pass(stream(tiles, n, k, 2), a, 1).counters.cycles
    assert double == dma_cycles + (tiles - 1) * max(dma_cycles, compute_cycles) + compute_cycles
    single = schedule_pass(stream(tiles, n, k, 1), a, 1).counters.cycles
    assert single == tiles * (dma_cycles + compute_cycles)


def test_dependency_chain_is_the_sum() -> None:
    """Each vector op waits for the previous one: the chain takes the sum of occupancy + latency."""
    a = arch(**{"vector.lanes": 16, "sram.bytes_per_cycle": 1 << 20})
    lat = a.vector.latency_cycles
    ops = [("add", 64), ("mul", 128), ("one_minus", 32), ("dequant", 256)]
    instrs = [Instr("vector", (i - 1,) if i else (), ops=(kind,), elements=e) for i, (kind, e) in enumerate(ops)]
    t = schedule_pass(instrs, a, 1)
    expected = sum(math.ceil(e / 16) + lat["add" if kind in ("add", "one_minus") else "mul"] for kind, e in ops)
    assert t.counters.cycles == expected
    assert t.counters.vector_ops == sum(e for _, e in ops)


def test_rows_that_do_not_fit_run_in_passes() -> None:
    a = arch(**{"vector.lanes": 16})
    plan = GroupPlan("g", 0, -1, 1, act_bytes_per_row=100, act_capacity_bytes=250,
                     instrs=(Instr("vector", ops=("add",), elements=32),))
    passes = schedule_group(plan, a, rows=7)
    assert [m for m, _ in passes] == [2, 2, 2, 1]
    assert sum(t.counters.vector_ops for _, t in passes) == 7 * 32


def test_stall_causes() -> None:
    """An accumulate idle until its weights arrive stalls on DRAM; one waiting for the quantize (a
    vector result) stalls on a dependency."""
    a = arch(**{"dram.gbps": 19.2, "dram.latency_ns": 100})
    instrs = [weight_dma(0, 64, 1536), tacc(0, 64, 1536, (0,)), Instr("vector", ops=("add",), elements=1 << 16),
              tacc(1, 64, 1536, (2,))]
    stalls = schedule_pass(instrs, a, 1).counters.stalls["tacc"]
    assert stalls["dram"] == 256 + 20
    assert stalls["dependency"] > 0
