"""Monotonicity: more DRAM bandwidth or more lanes never increase cycles at fixed tiling and issue
order; more SRAM never increases them at all (the tiler chooses among a superset of tilings)."""

from __future__ import annotations

import functools

from hypothesis import given, settings
from hypothesis import strategies as st

from mmfc.backends.sim.engine import Engine
from mmfc.backends.sim.target import lower_module
from mmfc.dialects.arch import Accelerator, load_arch
from mmfc.models import HGRNBitConfig

CONFIG = HGRNBitConfig(vocab_size=300, hidden_size=96, num_hidden_layers=2, intermediate_size=160)


@functools.cache
def fused_module():  # noqa: ANN201
    """The model's fused IR from its config alone (timing needs shapes, not weights)."""
    from mmfc.api import run_pipeline
    from mmfc.dialects.builder import WeightForm, build_model

    module = build_model(CONFIG, WeightForm.TRITS, store="(not read)")
    run_pipeline(module, "fuse-bitlinear,fuse-recurrence,fuse-glu,canonicalize,cse,dce")
    return module


def arch(gbps: float, lanes: int, vlanes: int, sram: int, banks: int = 8) -> Accelerator:
    return load_arch("edge-fpga").with_values({"dram.gbps": gbps, "tacc.lanes": lanes, "vector.lanes": vlanes,
                                               "sram.capacity_bytes": sram, "sram.banks": banks})


def cycles(programs: dict, a: Accelerator, batch: int = 1, seq: int = 1) -> tuple[int, int]:
    e = Engine(programs, a)
    return e.time_call("decode_step", batch).cycles, e.time_call("prefill", batch, seq).cycles


@settings(max_examples=15)
@given(
    gbps=st.floats(0.5, 200), more_gbps=st.floats(1.0, 8.0),
    lanes=st.integers(8, 8192), more_lanes=st.integers(1, 8),
    vlanes=st.integers(1, 256), more_vlanes=st.integers(1, 8),
    sram=st.sampled_from([40_000, 200_000, 2 << 20]), banks=st.sampled_from([1, 4]),
    batch=st.integers(1, 3), seq=st.integers(1, 9),
)
def test_more_bandwidth_or_lanes_never_slower_at_fixed_tiling(
    gbps: float, more_gbps: float, lanes: int, more_lanes: int, vlanes: int, more_vlanes: int, sram: int, banks: int,
    batch: int, seq: int,
) -> None:
    base = arch(gbps, lanes, vlanes, sram, banks)
    programs = lower_module(fused_module(), base)  # tiling and issue order fixed from here on
    before = cycles(programs, base, batch, seq)
    for faster in (arch(gbps * more_gbps, lanes, vlanes, sram, banks), arch(gbps, lanes * more_lanes, vlanes, sram, banks),
                   arch(gbps, lanes, vlanes * more_vlanes, sram, banks),
                   arch(gbps * more_gbps, lanes * more_lanes, vlanes * more_vlanes, sram, banks)):
        after = cycles(programs, faster, batch, seq)
        assert after[0] <= before[0] and after[1] <= before[1], (before, after)


@settings(max_examples=12)
@given(
    gbps=st.floats(0.5, 100), lanes=st.integers(8, 4096), vlanes=st.integers(4, 128),
    sram=st.integers(30_000, 400_000), more=st.floats(1.0, 20.0), banks=st.sampled_from([1, 2, 8]),
)
def test_more_sram_never_slower(gbps: float, lanes: int, vlanes: int, sram: int, more: float, banks: int) -> None:
    """Re-lowered (the tiler runs again) at the design rows: one sequence decoding, a 64-token prompt."""
    small, large = arch(gbps, lanes, vlanes, sram, banks), arch(gbps, lanes, vlanes, int(sram * more), banks)
    a = cycles(lower_module(fused_module(), small), small, 1, 64)
    b = cycles(lower_module(fused_module(), large), large, 1, 64)
    assert b[0] <= a[0] and b[1] <= a[1], (a, b)


def test_a_larger_sram_picks_larger_tiles() -> None:
    """Not a tautology: the SRAM size changes the tiling the tests above compare."""
    small, large = arch(19.2, 4096, 64, 10_000), arch(19.2, 4096, 64, 2 << 20)
    tiles = [[g.tile_rows for g in lower_module(fused_module(), a)["decode_step"]] for a in (small, large)]
    assert all(s <= b for s, b in zip(*tiles)) and sum(tiles[0]) < sum(tiles[1])
