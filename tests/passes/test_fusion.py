"""The fusion passes (fuse-bitlinear, fuse-recurrence, fuse-glu) and their outlining machinery.

Semantics: for random tiny models (imported from PyTorch; float masters with ``quant_weight``, stored
trits, and packed weights), the interpreter gives the same results before and after each fusion pass
and after the whole fusion chain. The comparison is **exact** (``assert_array_equal``, logits and
recurrent states, prefill and decode): each program of a fused kernel runs the same numpy functions
of ``dialects/numerics.py`` as the unfused ops, on whole rows wherever an op reduces (norm, absmax,
accum's K) and on slices elsewhere, so no float result can differ; the int8 activations and int32
accumulators inside the kernels are then equal too, or the logits would differ. Block sizes are
chosen not to divide the extents, so many programs run and the last block of each axis is clipped.

Structure: a decode step needs 4 kernels per layer after fusion (see ``KERNELS_PER_LAYER``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from torch import nn
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.ir import Operation, SSAValue

from mmfc.backends.interp import InterpRunner
from mmfc.dialects import numerics as nm
from mmfc.dialects import ternary as T
from mmfc.dialects.context import mmfc_context
from mmfc.dialects.source import parse_module
from mmfc.dialects.weights import WeightStore, bind, resolve_store
from mmfc.frontends.torch.importer import ImportedModule, import_model
from mmfc.frontends.torch.modeling import init_random_
from mmfc.models import GLU, MLGRU, HGRNBitConfig, HGRNBitForCausalLM, RMSNorm
from mmfc.passes.kernel_outlining import (
    FusionError,
    absorb_consumer,
    absorb_producer,
    outline,
    propagate_splits,
)
from mmfc.pipeline import named_pipeline, parse_pipeline
from mmfc.testing import assert_logits_close

KERNELS_PER_LAYER = 4
"""Kernels per layer of a fused decode step (and prefill), each ending where a later op needs whole rows
of a value the kernel computes split over N: (1) attn_norm + i/f/g + gates + scan_step (g and h are
split over d; gate_norm's RMSNorm needs whole rows of g); (2) gate_norm + o_proj (residual_rmsnorm
needs whole rows of o); (3) residual_rmsnorm + gate_proj (split + silu_mul feed down_proj's RMSNorm,
which needs whole rows of [gate | up]); (4) split + silu_mul + down_proj + residual add (the next
layer's attn_norm, or the final norm, needs whole rows of x)."""

MAX_KERNELS_PER_LAYER = 6
"""The most kernels per layer a fused decode step may have (the bound the fusion passes were built to)."""

FUSION_CHAIN = "fuse-bitlinear,fuse-recurrence,fuse-glu,canonicalize,cse,dce"

# ------------------------------------------------------------------------------------------ helpers


def tiny_model(d: int, inter: int, vocab: int, layers: int, quantized: bool, seed: int) -> ImportedModule:
    config = HGRNBitConfig(vocab_size=vocab, hidden_size=d, num_hidden_layers=layers, intermediate_size=inter)
    model = HGRNBitForCausalLM.from_config(config)
    init_random_(model, seed)
    model.eval()
    if quantized:
        model.quantize_()
    return import_model(model)


def transformed(module: ModuleOp, store: WeightStore, pipeline: str) -> ModuleOp:
    """A copy of ``module`` (bound to ``store``) after ``pipeline``, verified after every pass."""
    copy = module.clone()
    bind(copy, store)
    ctx = mmfc_context()
    for p in parse_pipeline(pipeline):
        p.apply(ctx, copy)
        copy.verify()
    return copy


def run_both(runner: InterpRunner, ids: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
    """Prefill logits and states, then one decode step's logits and states."""
    logits, state = runner.prefill(ids, mask)
    step_logits, step_state = runner.decode_step(ids[:, -1], state)
    return [logits, *state, step_logits, *step_state]


def assert_same(actual: Sequence[np.ndarray], expected: Sequence[np.ndarray], what: str) -> None:
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected)):
        np.testing.assert_array_equal(a, e, strict=True, err_msg=f"{what}: output {i}")


def kernels(module: ModuleOp, entry: str | None = None) -> list[T.KernelOp]:
    ops = module.walk() if entry is None else function(module, entry).walk()
    return [op for op in ops if isinstance(op, T.KernelOp)]


def function(module: ModuleOp, name: str) -> func.FuncOp:
    return next(op for op in module.ops if isinstance(op, func.FuncOp) and op.sym_name.data == name)


def weight_symbols(value: SSAValue) -> set[str]:
    """Store symbols a kernel operand reads (through quant_weight and unpack)."""
    owner = value.owner
    if isinstance(owner, T.WeightOp):
        return {owner.sym.string_value()}
    if isinstance(owner, T.QuantWeightOp | T.UnpackOp):
        return weight_symbols(owner.operands[0])
    return set()


def kernels_by_owner(module: ModuleOp, entry: str) -> dict[str, int]:
    """Kernels of ``entry`` counted by whose weights they read: ``layer 3``, ``head`` or ``none``."""
    counts: dict[str, int] = {}
    for k in kernels(module, entry):
        syms = set().union(*(weight_symbols(v) for v in k.inputs))
        layers = {m.group(1) for s in syms if (m := re.match(r"model\.layers\.(\d+)\.", s))}
        assert len(layers) <= 1, f"a kernel reads weights of several layers: {sorted(syms)}"
        if layers:
            owner = f"layer {layers.pop()}"
        else:
            owner = "head" if any(s.startswith("lm_head") for s in syms) else "none"
        counts[owner] = counts.get(owner, 0) + 1
    return counts


#: unfused ops that may stay outside kernels: weight reads, offline work on weights, and the embedding
#: and lower bounds ahead of the first layer
OUTSIDE_OK = (T.WeightOp, T.QuantWeightOp, T.UnpackOp, T.EmbeddingOp, T.LowerBoundsOp, T.RowOp)


def unfused_compute(module: ModuleOp, entry: str) -> list[str]:
    fn = function(module, entry)
    ops = fn.body.block.ops
    return [op.name for op in ops if isinstance(op, T.TiledOp) and not isinstance(op, OUTSIDE_OK)]


def padded_inputs(
    rng: np.random.Generator, vocab: int, lengths: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids ``[B, T]`` and a left-padding mask (row r has ``lengths[r]`` real tokens)."""
    t = max(lengths)
    ids = rng.integers(0, vocab, (len(lengths), t)).astype(np.int64)
    mask = np.zeros_like(ids)
    for r, n in enumerate(lengths):
        mask[r, t - n :] = 1
    return ids, mask


def packed_form(module: ModuleOp, store: WeightStore, fmt: str) -> tuple[ModuleOp, WeightStore]:
    """The module with every trits weight read packed (``fmt``) and unpacked by ``ternary.unpack``
    before use, and a store holding the packed bytes under ``NAME.packed`` (the PACKED form, as an
    unpack-before-accum pipeline would make it)."""
    copy = module.clone()
    derived = store.derive()
    for op in list(copy.walk()):
        if isinstance(op, T.WeightOp) and isinstance(op.result.type, T.TritsType):
            name = op.sym.string_value()
            if f"{name}.packed" not in derived:
                derived.put(f"{name}.packed", nm.pack(store.get(name), fmt))
            packed = T.WeightOp(f"{name}.packed", T.PackedType(op.result.type.get_shape(), fmt))
            unpack = T.UnpackOp(packed.result)
            block = op.parent_block()
            assert block is not None
            block.insert_ops_before([packed, unpack], op)
            op.result.replace_all_uses_with(unpack.trits)
            op.detach()
            op.erase()
    copy.verify()
    bind(copy, derived)
    return copy, derived


# ------------------------------------------------------------------------------------------ semantics


#: Hypothesis's explain phase re-runs a failing example under a line tracer, which takes minutes for an
#: example that builds and runs a model; without it a failure is reported in seconds.
NO_EXPLAIN = [p for p in Phase if p is not Phase.explain]

#: the model a semantics test draws: the arguments of :func:`tiny_model` (sizes, a flag, a seed) only.
#: The model and its IR are built inside the test, so that a failing example is a line of integers
#: (Hypothesis prints and shrinks what it draws; an IR module drawn through a strategy took minutes).
TINY_MODELS = st.fixed_dictionaries(
    {
        "d": st.integers(8, 32),
        "inter": st.integers(8, 40),
        "vocab": st.integers(10, 40),
        "layers": st.integers(1, 2),
        "quantized": st.booleans(),
        "seed": st.integers(0, 10_000),
    }
)


def fusion_pipelines(bn: int, bd: int, bb: int) -> list[str]:
    """Each fusion pass alone, two orders of all three, and the full chain with cleanups, with block
    sizes ``bn`` (over N) and ``bd`` (over d) and a batch split ``bb`` (0: none)."""
    bitlinear = f"fuse-bitlinear{{block-n={bn} block-batch={bb}}}"
    recurrence = f"fuse-recurrence{{block-d={bd} block-batch={bb}}}"
    glu = f"fuse-glu{{block-n={bn} block-batch={bb}}}"
    own = f"fuse-recurrence{{into-projections=false block-d={bd} block-batch={bb}}}"
    return [
        bitlinear,
        recurrence,
        glu,
        f"{glu},{recurrence},{bitlinear}",
        f"{bitlinear},{own},{glu}",
        f"{bitlinear},{recurrence},{glu},cse,dce",
    ]


@settings(max_examples=8, phases=NO_EXPLAIN)
@given(
    model=TINY_MODELS,
    # block sizes that (mostly) do not divide d, 2I, I or V, and sometimes a batch split too
    bn=st.sampled_from([3, 5, 7]),
    bd=st.sampled_from([3, 5]),
    bb=st.sampled_from([0, 2]),
    lengths=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    seed=st.integers(0, 1000),
)
def test_fusion_preserves_results_exactly(
    model: dict[str, int], bn: int, bd: int, bb: int, lengths: list[int], seed: int
) -> None:
    """Bit-identical prefill + decode results before and after each pass / pipeline (float masters and
    trits, drawn per model)."""
    imported = tiny_model(**model)
    ids, mask = padded_inputs(np.random.default_rng(seed), model["vocab"], lengths)
    expected = run_both(InterpRunner(imported.module, imported.store), ids, mask)
    for pipeline in fusion_pipelines(bn, bd, bb):
        module = transformed(imported.module, imported.store, pipeline)
        assert kernels(module), f"{pipeline} made no kernel"
        actual = run_both(InterpRunner(module), ids, mask)
        assert_same(actual, expected, pipeline)
        # the whole-model rule holds a fortiori; stated for the record (exact equality above)
        assert_logits_close(actual[0], expected[0], f"{pipeline}: prefill logits")


@settings(max_examples=4, phases=NO_EXPLAIN)
@given(
    model=TINY_MODELS,
    fmt=st.sampled_from(["2bit", "base3"]),
    bn=st.sampled_from([3, 5]),
    lengths=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    seed=st.integers(0, 1000),
)
def test_fusion_on_packed_weights(model: dict[str, int], fmt: str, bn: int, lengths: list[int], seed: int) -> None:
    """Packed weights: behind ``unpack`` (the unpack moves into the kernel, the packed bytes are the
    operand, split over N) and, through pack-weights, read by ``accum`` directly."""
    imported = tiny_model(**model)
    ids, mask = padded_inputs(np.random.default_rng(seed), model["vocab"], lengths)
    expected = run_both(InterpRunner(imported.module, imported.store), ids, mask)
    chain = f"fuse-bitlinear{{block-n={bn}}},fuse-recurrence,fuse-glu{{block-n={bn}}},cse,dce"

    folded = transformed(imported.module, imported.store, "fold-weight-quant")
    behind_unpack, store = packed_form(folded, resolve_store(folded), fmt)
    fused = transformed(behind_unpack, store, chain)
    assert not [op for op in function(fused, "decode_step").body.block.ops if isinstance(op, T.UnpackOp)]
    assert any(isinstance(op, T.UnpackOp) for k in kernels(fused) for op in k.body.block.ops)
    assert_same(run_both(InterpRunner(fused), ids, mask), expected, f"unpack + {chain}")

    pack = f"fold-weight-quant,pack-weights{{format={fmt}}}"
    direct = transformed(imported.module, imported.store, f"{pack},{chain}")
    packed_operands = [v for k in kernels(direct) for v in k.inputs if isinstance(v.type, T.PackedType)]
    assert packed_operands
    assert_same(run_both(InterpRunner(direct), ids, mask), expected, f"pack-weights + {chain}")


# ------------------------------------------------------------------------------------------ structure


@pytest.mark.parametrize("quantized", [False, True], ids=["float-masters", "trits"])
@pytest.mark.parametrize("pipeline", [FUSION_CHAIN, "O2"])
def test_kernels_per_layer(quantized: bool, pipeline: str) -> None:
    """After fusion, each layer's decode step (and prefill) is KERNELS_PER_LAYER kernels, the head one
    more, and no unfused compute op is left but the embedding and the lower bounds."""
    layers = 3
    imported = tiny_model(d=16, inter=24, vocab=20, layers=layers, quantized=quantized, seed=1)
    spec = named_pipeline(pipeline) if pipeline == "O2" else pipeline
    module = transformed(imported.module, imported.store, spec)
    for entry in ("decode_step", "prefill"):
        counts = kernels_by_owner(module, entry)
        assert all(counts[f"layer {i}"] <= MAX_KERNELS_PER_LAYER for i in range(layers)), (entry, counts)
        want = {**{f"layer {i}": KERNELS_PER_LAYER for i in range(layers)}, "head": 1}
        assert counts == want, (entry, counts)
        assert unfused_compute(module, entry) == []
    labels = [k.attributes["label"] for k in kernels(module, "decode_step")]
    assert [lab.data for lab in labels if isinstance(lab, StringAttr)][:KERNELS_PER_LAYER] == [
        "model.layers.0.attn.i_proj+f_proj+g_proj+recurrence",
        "model.layers.0.attn.o_proj",
        "model.layers.0.mlp.gate_proj",
        "model.layers.0.mlp.down_proj",
    ]
    # i/f/g share one pass of norm statistics over their input: one rms_normalize, three scales by
    # the three projections' own gammas, and no rmsnorm on that input left
    for k in kernels(module):
        label = k.attributes.get("label")
        if not (isinstance(label, StringAttr) and "i_proj+f_proj+g_proj" in label.data):
            continue
        body = list(k.body.block.ops)
        normalizes = [op for op in body if isinstance(op, T.RMSNormalizeOp)]
        scales = [op for op in body if isinstance(op, T.ScaleOp)]
        assert len(normalizes) == 1 and len(scales) == 3, label.data
        assert all(op.x is normalizes[0].result for op in scales)
        assert len({op.gamma for op in scales}) == 3
        assert not [op for op in body if isinstance(op, T.RMSNormOp) and op.x is normalizes[0].x]


def test_o2_results_match_unfused() -> None:
    """The whole -O2 pipeline (fold, pack, fuse, clean up, check) on a float checkpoint: the same bits."""
    imported = tiny_model(d=24, inter=20, vocab=30, layers=2, quantized=False, seed=5)
    ids, mask = padded_inputs(np.random.default_rng(0), 30, [4, 2])
    expected = run_both(InterpRunner(imported.module, imported.store), ids, mask)
    module = transformed(imported.module, imported.store, named_pipeline("O2"))
    assert_same(run_both(InterpRunner(module), ids, mask), expected, "-O2")


class UserMixer(nn.Module):
    """A user's own arrangement of mmfc blocks (imported through FX): a token mixer whose output gates
    the GLU's input by an elementwise product, a lower bound held as a buffer, no embedding."""

    def __init__(self, d: int, inter: int) -> None:
        super().__init__()
        self.norm, self.mixer, self.glu = RMSNorm(d), MLGRU(d), GLU(d, inter)
        self.register_buffer("lb", torch.linspace(0.1, 0.5, d))

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        a, _ = self.mixer(self.norm(x), self.lb, attention_mask)
        return x + self.glu(a * x)


@pytest.mark.parametrize(
    "pipeline",
    [
        "fuse-bitlinear{block-n=5},fuse-recurrence,fuse-glu{block-n=3},cse,dce",
        "fuse-glu{block-n=3},fuse-recurrence{block-d=5},fuse-bitlinear{block-n=5}",
    ],
)
def test_fusion_of_a_user_module(pipeline: str) -> None:
    """The passes match ops, not a model: a user module's BitLinears, recurrence and GLU fuse too,
    and the results stay bit-identical."""
    d, inter = 12, 10
    module = UserMixer(d, inter)
    init_random_(module, 7)
    imported = import_model(module.eval())
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, d)).astype(np.float32)
    mask = np.ones((2, 5), np.int64)
    mask[1, :2] = 0
    h = [np.zeros((2, d), np.float32)] * imported.num_states

    def outputs(runner: InterpRunner) -> list[np.ndarray]:
        return [*runner.run("prefill", x, mask, *h), *runner.run("decode_step", x[:, -1], *h)]

    expected = outputs(InterpRunner(imported.module, imported.store))
    fused = transformed(imported.module, imported.store, pipeline)
    assert len(kernels(fused, "decode_step")) >= 4
    assert_same(outputs(InterpRunner(fused)), expected, pipeline)


# ------------------------------------------------------------------------------------------ outlining API


def parse(text: str) -> ModuleOp:
    module, _ = parse_module(mmfc_context(), text, "<test>")
    module.verify()
    return module


def ops_named(module: ModuleOp, name: str) -> list[Operation]:
    return [op for op in module.walk() if op.name == name]


ELEMENTWISE = """
func.func @f(%x: tensor<?x8xf32>, %y: tensor<?x8xf32>, %g: tensor<8xf32>)
    -> (tensor<?x8xf32>, tensor<?x8xf32>) {
  %s = ternary.sigmoid %x : tensor<?x8xf32>
  %m = ternary.mul %s, %y : tensor<?x8xf32>
  %n = ternary.rmsnorm %m, %g : tensor<?x8xf32>, tensor<8xf32>
  %a = ternary.add %n, %s : tensor<?x8xf32>
  func.return %a, %m : tensor<?x8xf32>, tensor<?x8xf32>
}
"""


def test_propagate_splits_follows_labels() -> None:
    module = parse(ELEMENTWISE)
    sig, mul = ops_named(module, "ternary.sigmoid")[0], ops_named(module, "ternary.mul")[0]
    splits = propagate_splits([sig, mul], {(mul.results[0], -1): 0})
    assert splits.values[sig.results[0]] == (None, 0)
    assert splits.uses[(sig, 0)] == (None, 0) and splits.uses[(mul, 1)] == (None, 0)


def test_propagate_splits_refuses_a_split_reduction() -> None:
    module = parse(ELEMENTWISE)
    norm = ops_named(module, "ternary.rmsnorm")[0]
    with pytest.raises(FusionError, match="grid axis 0 cannot split dim 1 of a result of ternary.rmsnorm"):
        propagate_splits([norm], {(norm.results[0], 1): 0})
    with pytest.raises(FusionError, match="would be split by grid axis 1 but .* by grid axis 0"):
        mul = ops_named(module, "ternary.mul")[0]
        propagate_splits([mul], {(mul.results[0], 1): 0, (mul.operands[0], 1): 1})


QUANT = """
func.func @f(%x: tensor<?x8xf32>) -> tensor<?x1xf32> {
  %q, %s = ternary.quant_act %x : tensor<?x8xf32> -> tensor<?x8xi8>, tensor<?x1xf32>
  func.return %s : tensor<?x1xf32>
}
"""


def test_propagate_splits_refuses_to_split_a_dim_the_op_creates() -> None:
    """quant_act makes up its scale's last dim (one scale per row): no grid axis may split it."""
    quant = ops_named(parse(QUANT), "ternary.quant_act")[0]
    q, scale = quant.results
    created = "cannot split dim 1 of a result of ternary.quant_act: ternary.quant_act creates it"
    with pytest.raises(FusionError, match=created):
        propagate_splits([quant], {(scale, 1): 0})
    reduced = "cannot split dim 1 of operand 0 of ternary.quant_act: ternary.quant_act reduces"
    with pytest.raises(FusionError, match=reduced):
        propagate_splits([quant], {(quant.operands[0], 1): 0})
    splits = propagate_splits([quant], {(scale, 0): 0})
    assert splits.values[q] == (0, None) and splits.uses[(quant, 0)] == (0, None)


def test_outline_exports_values_used_outside() -> None:
    module = parse(ELEMENTWISE)
    sig, mul = ops_named(module, "ternary.sigmoid")[0], ops_named(module, "ternary.mul")[0]
    kernel = outline([mul, sig], [3], {(mul.results[0], -1): 0}, label="gates")
    module.verify()
    # %s (read by the add outside) and %m (returned) are results; x and y are read split
    assert [t.spelling() for t in kernel.input_tiles.data] == ["[*, 0]", "[*, 0]"]
    assert len(kernel.results) == 2 and [t.spelling() for t in kernel.result_tiles.data] == ["[*, 0]"] * 2
    assert kernel.attributes["label"] == StringAttr("gates")
    # and the rmsnorm (whole rows) can read the kernel's result after it
    assert kernel.is_before_in_block(ops_named(module, "ternary.rmsnorm")[0])


def test_illegal_fusions_leave_the_ir_unchanged() -> None:
    module = parse(ELEMENTWISE)
    before = str(module)
    sig, mul = ops_named(module, "ternary.sigmoid")[0], ops_named(module, "ternary.mul")[0]
    norm, add = ops_named(module, "ternary.rmsnorm")[0], ops_named(module, "ternary.add")[0]
    # the kernel would have to yield the norm's result whole: not split by grid axis 0
    with pytest.raises(FusionError, match="not split by grid axis 0"):
        outline([norm], [3], {})
    assert str(module) == before
    # a split of the norm's input rows' K
    with pytest.raises(FusionError, match="cannot split dim 1 of operand 0 of ternary.rmsnorm"):
        outline([norm], [3], {(mul.results[0], -1): 0})
    assert str(module) == before
    # sigmoid -> [rmsnorm outside] -> add: one kernel of sigmoid and add would depend on itself
    with pytest.raises(FusionError, match="both uses what it computes and feeds it"):
        outline([sig, mul, add], [3], {(add.results[0], -1): 0})
    assert str(module) == before
    kernel = outline([mul], [3], {(mul.results[0], -1): 0})
    after_outline = str(module)
    # the norm needs whole rows of the kernel's split result
    with pytest.raises(FusionError, match="cannot split"):
        absorb_consumer(kernel, norm)
    assert str(module) == after_outline
    # the sigmoid's result is also read by the add outside: absorbing it exports it as a second result
    # (split like the kernel's operand it fed)
    kernel = absorb_producer(kernel, sig)
    module.verify()
    assert len(kernel.results) == 2
    with pytest.raises(FusionError, match="ternary.add does not come before the kernel"):
        absorb_producer(kernel, add)


def test_absorb_producer_can_duplicate() -> None:
    module = parse(ELEMENTWISE)
    sig, mul = ops_named(module, "ternary.sigmoid")[0], ops_named(module, "ternary.mul")[0]
    kernel = outline([mul], [3], {(mul.results[0], -1): 0})
    kernel = absorb_producer(kernel, sig, duplicate=True)
    module.verify()
    # the original sigmoid stays for the add; the kernel computes its own copy
    assert len(ops_named(module, "ternary.sigmoid")) == 2 and len(kernel.results) == 1
