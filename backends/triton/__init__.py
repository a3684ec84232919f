"""The Triton backend: a code generator from the fused ``ternary`` IR to Triton kernels, and the
runtime that launches them (the ``triton`` target).

* :mod:`.legalize`: weight-only ops folded at build time, other function-level ops wrapped in kernels;
* :mod:`.analysis`: the index spaces of a kernel (rows the program loops over, features it holds);
* :mod:`.kernelgen` and :mod:`.emitters`: one ``@triton.jit`` function per kernel op, from one emitter
  per body op;
* :mod:`.codegen`: the generated module (``kernels.py``) and its launch plan;
* :mod:`.runtime`: weights uploaded once, decode steps in a workspace (a CUDA graph on a GPU);
* :mod:`.target`: the ``triton`` target of the backend interface.
"""
