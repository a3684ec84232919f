"""How fast the simulator runs: one decode token of a preset, with values and timing-only.

    python benchmarks/sim_speed.py --preset 370m --arch edge-fpga [--json out.json]

Compiles the preset for the ``sim`` target (not timed), prefills one token, then times on the host:
one decode step with values (every tile's values through the shared semantics, plus the timing) and
one timing-only decode step (the schedule alone, from a cold cache). Prints both in seconds and the
simulated cycles per host second. The issue's bars on a 2-core machine: values <= 60 s, timing-only
<= 5 s for ``370m``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="370m")
    parser.add_argument("--arch", default="edge-fpga")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()

    from mmfc.api import _compile
    from mmfc.backends.sim.engine import Engine
    from mmfc.backends.sim.runner import SimRunner
    from mmfc.backends.sim.target import lower_module
    from mmfc.dialects.arch import load_arch
    from mmfc.source import preset_source

    arch = load_arch(args.arch)
    t0 = time.perf_counter()
    c = _compile(preset_source(args.preset), "sim", "-O2", 0, {"arch": arch.to_dict()})
    programs = lower_module(c.module, arch)
    compile_s = time.perf_counter() - t0

    runner = SimRunner(c.module, c.store, programs, arch)
    d = [t.get_shape()[-1] for t in runner.input_types("decode_step")[1:]]
    state = [np.zeros((1, n), np.float32) for n in d]
    ids = np.array([1], np.int64)
    runner.run("decode_step", ids, *state)  # warm: weights read from the store once
    runner.reset()
    runner.engine._cache.clear()
    t1 = time.perf_counter()
    logits, *state = runner.run("decode_step", ids, *state)
    values_s = time.perf_counter() - t1
    cycles = runner.history[-1].cycles

    engine = Engine(programs, arch)
    t2 = time.perf_counter()
    timing = engine.time_call("decode_step", 1, 1)
    timing_s = time.perf_counter() - t2
    assert timing.cycles == cycles

    out = {
        "preset": args.preset,
        "arch": arch.name,
        "compile_s": round(compile_s, 2),
        "values_s": round(values_s, 3),
        "timing_only_s": round(timing_s, 3),
        "simulated_cycles": cycles,
        "simulated_tokens_per_s": arch.clock_mhz * 1e6 / cycles,
        "cycles_per_host_s_values": cycles / values_s,
        "cycles_per_host_s_timing_only": cycles / timing_s,
        "instructions": timing.counters.instructions,
        "load_average": os.getloadavg(),
    }
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
