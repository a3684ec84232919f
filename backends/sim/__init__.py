"""The ``sim`` target: a cycle-level simulator of ternary accelerators described in TOML.

See ``docs/simulator.md``. Modules: :mod:`.target` (the backend interface), :mod:`.runner` (values per
tile through the shared semantics, and the timing), :mod:`.report` (cycles, utilization, stalls,
energy; table, JSON, Perfetto trace), :mod:`.sweep` (design sweeps on local processes or Ray).
"""
