"""Closed-form action counts and energy: one N x K BitLinear costs N*K accumulate actions (zero trits
included; a zero-skipping design reports the skipped ones apart) and N*ceil(K/4) DRAM bytes of 2bit
weights (N*ceil(K/5) for base3), and the energy is those counts times the ``[energy]`` table."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mmfc.backends.sim.engine import Engine, nonzero_counter
from mmfc.backends.sim.report import summarize
from mmfc.dialects.accel import group_plan
from mmfc.dialects.arch import load_arch
from mmfc.dialects.context import mmfc_context
from mmfc.dialects.source import parse_module
from mmfc.dialects.accel_lowering import lower_function

BITLINEAR = """
func.func @decode_step(%x: tensor<?xKxf32>) -> tensor<?xNxf32> {
  %g = ternary.weight @g : tensor<Kxf32>
  %w = ternary.weight @w : !ternary.trits<NxK>
  %s = ternary.weight @s : f32
  %y = ternary.kernel grid [8] (%a = %x : tensor<?xKxf32>, %gg = %g : tensor<Kxf32>, %ww = %w : !ternary.trits<NxK> tiled [0, *], %ss = %s : f32) -> (tensor<?xNxf32> tiled [*, 0]) attributes {label = "proj"} {
    %n = ternary.rmsnorm %a, %gg : tensor<?xKxf32>, tensor<Kxf32>
    %q, %qs = ternary.quant_act %n : tensor<?xKxf32> -> tensor<?xKxi8>, tensor<?x1xf32>
    %acc = ternary.accum %q, %ww : tensor<?xKxi8>, !ternary.trits<?xK> -> tensor<?x?xi32>
    %r = ternary.dequant %acc, %qs, %ss : tensor<?x?xi32>, tensor<?x1xf32>, f32 -> tensor<?x?xf32>
    ternary.yield %r : tensor<?x?xf32>
  }
  func.return %y : tensor<?xNxf32>
}
"""


def bitlinear_engine(n: int, k: int, changes: dict, trits: np.ndarray) -> Engine:
    text = BITLINEAR.replace("xK", f"x{k}").replace("<K", f"<{k}").replace("xN", f"x{n}").replace("<N", f"<{n}")
    module, _ = parse_module(mmfc_context(), text, "bitlinear.mlir")
    arch = load_arch("edge-fpga").with_values(changes)
    fn = next(iter(module.ops))
    program = lower_function(fn, arch, "edge-fpga", 1, 1)  # type: ignore[arg-type]
    plans = [group_plan(g) for g in program.groups()]  # type: ignore[attr-defined]
    return Engine({"decode_step": plans}, arch, nonzero_counter(lambda sym: trits))


@settings(max_examples=12)
@given(
    n=st.integers(1, 300),
    k=st.integers(1, 300),
    fmt=st.sampled_from(["2bit", "base3"]),
    skip=st.booleans(),
    sram=st.sampled_from([8192, 65536, 2 << 20]),
    seed=st.integers(0, 100),
)
def test_bitlinear_actions_bytes_and_energy(n: int, k: int, fmt: str, skip: bool, sram: int, seed: int) -> None:
    trits = np.random.default_rng(seed).integers(-1, 2, (n, k)).astype(np.int8)
    engine = bitlinear_engine(n, k, {"weights.format": fmt, "tacc.skip_zeros": skip, "sram.capacity_bytes": sram}, trits)
    call = engine.time_call("decode_step", 1)
    c = call.counters
    zeros = int(np.count_nonzero(trits == 0))
    assert c.adds + c.skipped_adds == n * k
    assert c.skipped_adds == (zeros if skip else 0)
    assert c.dram_bytes["weight"] == n * math.ceil(k / (4 if fmt == "2bit" else 5))
    report = summarize(engine.arch, [call])
    assert report["actions_per_token"]["accumulate"] == n * k
    assert report["actions_per_token"]["accumulate_skipped"] == c.skipped_adds
    e = engine.arch.energy
    expected = {
        "tacc": c.adds * e.add_pj * 1e-12,
        "int8": c.int8_ops * e.int8_op_pj * 1e-12,
        "vector": c.vector_ops * e.vector_op_pj * 1e-12,
        "sram": c.sram_bytes * e.sram_byte_pj * 1e-12,
        "dram": sum(c.dram_bytes.values()) * e.dram_byte_pj * 1e-12,
        "static": e.static_w * call.cycles / (engine.arch.clock_mhz * 1e6),
    }
    got = report["energy_j_by_component_per_token"]
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert math.isclose(got[key], value, rel_tol=1e-12), key
    assert math.isclose(report["energy_j_per_token"], sum(expected.values()), rel_tol=1e-12)
    assert c.int8_ops == k  # one quantized activation row
