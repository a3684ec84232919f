"""No generated kernel reads or writes outside its buffers.

In Triton's interpreter a masked load or store touches real host memory: an address outside every
buffer of the launch is a bug that a GPU would hide (or crash on) and the interpreter may survive by
luck. Each launch here runs with the interpreter's memory access checked against the launch's own
tensors (its operands, results, debug buffers and scratch). CPU only: on a GPU the kernels are
compiled (compute-sanitizer is the tool there)."""

from __future__ import annotations

import tempfile
from typing import Any

import numpy as np
import pytest
import torch

import mmfc
from mmfc.backends.triton import runtime
from mmfc.frontends.torch.modeling import init_random_
from mmfc.models import HGRNBitConfig, HGRNBitForCausalLM

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the interpreter's memory accesses")


class _CheckedMemory:
    """Stands in for the interpreter's native memory module: every address a masked load or store
    touches must lie inside one of the current launch's tensors."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.ranges: list[tuple[int, int]] = []
        self.kernel = ""

    def _check(self, ptrs: np.ndarray, mask: np.ndarray, what: str) -> None:
        touched = np.unique(ptrs[mask.astype(bool)])
        lo = np.array([r[0] for r in self.ranges])
        hi = np.array([r[1] for r in self.ranges])
        inside = ((touched[:, None] >= lo[None, :]) & (touched[:, None] < hi[None, :])).any(axis=1)
        if not inside.all():
            raise AssertionError(f"{self.kernel}: {what} outside every buffer of the launch")

    def load(self, ptrs: Any, mask: Any, other: Any, dtype: Any) -> Any:
        self._check(ptrs, mask, "load")
        return self.real.load(ptrs, mask, other, dtype)

    def store(self, ptrs: Any, value: Any, mask: Any) -> Any:
        self._check(ptrs, mask, "store")
        return self.real.store(ptrs, value, mask)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.mark.parametrize(("fmt", "block", "batch", "length"), [("2bit", 4, 3, 7), ("base3", 8, 1, 1), ("base3", 4, 2, 5)])
def test_every_access_stays_inside_the_launchs_buffers(
    monkeypatch: pytest.MonkeyPatch, fmt: str, block: int, batch: int, length: int
) -> None:
    from triton.runtime import interpreter

    checked = _CheckedMemory(interpreter._interpreter)
    monkeypatch.setattr(interpreter, "_interpreter", checked)
    launch = runtime._Launch.__call__

    def call(self: Any) -> None:
        checked.kernel = self.step.get("kernel", "?")
        checked.ranges = [
            (a.data_ptr(), a.data_ptr() + a.numel() * a.element_size()) for a in self.args if isinstance(a, torch.Tensor)
        ]
        launch(self)

    monkeypatch.setattr(runtime._Launch, "__call__", call)
    pipeline = (
        f"fold-weight-quant,pack-weights{{format={fmt}}},fuse-bitlinear{{block-n={block}}},"
        f"fuse-recurrence{{block-d={block}}},fuse-glu{{block-n={block}}},canonicalize,cse,dce,check-matmul-free"
    )
    config = HGRNBitConfig(vocab_size=37, hidden_size=13, num_hidden_layers=2, intermediate_size=11)
    compiled = mmfc.compile(init_random_(HGRNBitForCausalLM.from_config(config), 0), target="triton", pipeline=pipeline)
    ids = np.random.default_rng(0).integers(0, 37, (batch, length))
    h = [np.zeros((batch, 13), np.float32)] * 2
    with tempfile.TemporaryDirectory() as dump:
        compiled.runner.run("prefill", ids, np.ones_like(ids), *h, dump_dir=dump)
    compiled.runner.run("prefill", ids, np.ones_like(ids), *h)
    compiled.runner.run("decode_step", ids[:, -1], *h)
