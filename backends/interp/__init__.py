"""The reference interpreter: numpy semantics of every ``ternary`` op through xDSL's interpreter.

* :class:`InterpRunner` runs a module's functions on numpy inputs (``run``, and ``prefill`` /
  ``decode_step`` / ``generate`` for modules made by ``dialects.builder.build_model``);
* :class:`TernaryFunctions` are the op implementations (each computes through the dialect's semantics
  table, ``mmfc.dialects.ternary.evaluate``, and adds run-time checks);
  :func:`make_interpreter` registers them on an xDSL ``Interpreter``;
* the debug mode (:mod:`.trace`): ``trace=`` callbacks receive an ``OpRecord`` per op / kernel, and
  ``debug_dump_dir=`` / ``dump_dir=`` write the shared dump format of :mod:`mmfc.dialects.dump`
  (``mmfc.compare`` finds the first kernel where two backends' dumps differ).

``mmfc run FILE.mlir --entry NAME --input a.npy ...`` is the command-line face of this package.
"""

from mmfc.backends.interp.errors import InterpError
from mmfc.backends.interp.functions import KernelProgram, TernaryFunctions, supported_op_types
from mmfc.backends.interp.runner import InterpRunner, make_interpreter, run_module
from mmfc.backends.interp.trace import Monitor

__all__ = [
    "InterpError",
    "InterpRunner",
    "KernelProgram",
    "Monitor",
    "TernaryFunctions",
    "make_interpreter",
    "run_module",
    "supported_op_types",
]
