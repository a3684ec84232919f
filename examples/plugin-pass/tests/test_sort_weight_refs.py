"""Tests of ``sort-weight-refs``, the way mmfc tests its own passes:

* the filecheck test ``sort_weight_refs.mlir`` (its ``// RUN:`` lines run ``mmfc opt ... | filecheck``;
  this needs the plugin installed, so that ``mmfc opt -p sort-weight-refs`` finds it);
* a property test: on random small models built with ``mmfc.dialects.builder`` and random weights, the
  reference interpreter (``mmfc.backends.interp``) gives bit-identical results before and after;
* the option and diagnostic contracts.

Run with the plugin installed next to mmfc: ``pip install -e examples/plugin-pass`` then
``pytest examples/plugin-pass``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType

from mmfc.backends.interp import InterpRunner
from mmfc.dialects import ternary as T
from mmfc.dialects.builder import WeightForm, build_model
from mmfc.dialects.context import mmfc_context
from mmfc.dialects.source import OpError, parse_module
from mmfc.dialects.weights import MemoryStore, bind
from mmfc_reorder_example.sort_weight_refs import SortWeightRefs

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent


# ------------------------------------------------------------------------------------- filecheck


def run_lines(path: Path) -> list[str]:
    """The ``// RUN:`` commands of a filecheck test, ``%s`` replaced by its path."""
    lines = re.findall(r"^// RUN: (.*)$", path.read_text(), re.MULTILINE)
    return [line.replace("%s", str(path)) for line in lines]


@pytest.mark.parametrize("command", run_lines(HERE / "sort_weight_refs.mlir"))
def test_filecheck(command: str) -> None:
    env = {**os.environ, "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")])}
    proc = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"


# ------------------------------------------------------------------------------- property test


@dataclass
class SmallConfig:
    """The config fields ``build_model`` reads."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    intermediate_size: int
    rms_norm_eps: float = 1e-6
    use_lower_bound: bool = True


def random_store(module: ModuleOp, rng: np.random.Generator) -> MemoryStore:
    """Random weights for every ``ternary.weight`` of ``module``: trits, positive scales, floats."""
    tensors: dict[str, np.ndarray] = {}
    for op in module.walk():
        if not isinstance(op, T.WeightOp):
            continue
        t = op.result.type
        if isinstance(t, T.TritsType):
            array = rng.integers(-1, 2, t.get_shape()).astype(np.int8)
        elif T.is_scale_type(t):
            array = np.asarray(rng.uniform(0.5, 2.0), np.float32)
        else:
            assert isinstance(t, TensorType)
            array = rng.standard_normal(t.get_shape()).astype(np.float32)
        tensors[op.sym.string_value()] = array
    return MemoryStore(tensors)


def weight_refs(module: ModuleOp) -> dict[str, list[str]]:
    return {
        f.sym_name.data: [o.sym.string_value() for o in f.body.ops if isinstance(o, T.WeightOp)]
        for f in module.ops
        if isinstance(f, func.FuncOp)
    }


@settings(max_examples=6, deadline=None, derandomize=True)
@given(
    d=st.sampled_from([4, 8]),
    layers=st.integers(1, 2),
    order=st.sampled_from(["symbol", "first-use"]),
    seed=st.integers(0, 2**16),
)
def test_interpreter_results_are_unchanged(d: int, layers: int, order: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    config = SmallConfig(vocab_size=11, hidden_size=d, num_hidden_layers=layers, intermediate_size=2 * d)
    module = build_model(config, WeightForm.TRITS)
    store = random_store(module, rng)
    ids = rng.integers(0, 11, (2, 3))
    mask = np.ones((2, 3), np.int64)
    states = [rng.standard_normal((2, d)).astype(np.float32) for _ in range(layers)]
    before = InterpRunner(module, store).run("prefill", ids, mask, *states)

    SortWeightRefs(order=order).apply(mmfc_context(), module)
    module.verify()
    after = InterpRunner(module, store).run("prefill", ids, mask, *states)
    for got, want in zip(after, before, strict=True):
        np.testing.assert_array_equal(got, want, strict=True)

    for entry, refs in weight_refs(module).items():
        body = list(next(f for f in module.ops if f.sym_name.data == entry).body.ops)
        assert all(isinstance(o, T.WeightOp) for o in body[: len(refs)]), "weights are not all on top"
        assert len(refs) == len(set(refs))
        if order == "symbol":
            assert refs == sorted(refs)


# ------------------------------------------------------------------------------------ contracts


DUPLICATES = """\
func.func @f(%x: tensor<?x8xf32>) -> tensor<?x8xf32> {
  %a = ternary.weight @z.norm.weight : tensor<8xf32>
  %y = ternary.rmsnorm %x, %a : tensor<?x8xf32>, tensor<8xf32>
  %b = ternary.weight @z.norm.weight : tensor<8xf32>
  %w = ternary.rmsnorm %y, %b : tensor<?x8xf32>, tensor<8xf32>
  func.return %w : tensor<?x8xf32>
}
"""


def test_duplicate_refs_are_merged_and_a_missing_tensor_is_reported_at_its_op() -> None:
    ctx = mmfc_context()
    module, _ = parse_module(ctx, DUPLICATES, "dup.mlir")
    SortWeightRefs().apply(ctx, module)
    module.verify()
    assert weight_refs(module) == {"f": ["z.norm.weight"]}

    module, _ = parse_module(ctx, DUPLICATES, "dup.mlir")
    bind(module, MemoryStore({"other": np.zeros(8, np.float32)}))
    with pytest.raises(OpError, match="no tensor z.norm.weight in the weight store") as info:
        SortWeightRefs(check_store=True).apply(ctx, module)
    assert isinstance(info.value.op, T.WeightOp)


def test_unknown_order_is_rejected() -> None:
    with pytest.raises(ValueError, match="order must be one of symbol, first-use"):
        SortWeightRefs(order="random")
