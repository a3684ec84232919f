"""The ``iree-cpu`` target: ternary IR lowered to upstream MLIR, verified and run on CPUs by IREE.

``lower`` (with ``ops``, ``accum`` and the ``emit`` vocabulary) turns a ternary module into upstream
``func``/``arith``/``math``/``tensor``/``linalg.generic``/``scf``; ``mlir`` prints and verifies it
with real MLIR; ``iree`` compiles it for the host CPU; ``runtime`` runs it; ``target`` plugs it into
the backend interface. Nothing here imports IREE at module level.
"""
