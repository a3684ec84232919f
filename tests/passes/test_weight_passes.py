"""fold-weight-quant and pack-weights preserve the meaning of a model, bit for bit.

Random tiny models (``HGRNBitForCausalLM.from_config`` + ``init_random_``, imported with ``import_model``)
run in the interpreter before and after each pass: the logits and states must be identical (not
close): folding computes the same float32 scale ``numerics.quant_weight`` computes at run time, and a
packed weight means the same trits. The stored tensors are checked against ``numerics`` directly, the
input store against a copy taken before the passes, and the CLI path (``mmfc opt ... -o`` then
``mmfc run``) end to end.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from xdsl.dialects.builtin import FunctionType, ModuleOp

from mmfc.backends.interp import InterpRunner
from mmfc.cli import main
from mmfc.dialects import numerics as nm
from mmfc.dialects import ternary as T
from mmfc.dialects import weights as W
from mmfc.dialects.context import mmfc_context
from mmfc.dialects.source import OpError
from mmfc.frontends.torch.importer import import_model
from mmfc.frontends.torch.modeling import BitLinear, init_random_
from mmfc.models import HGRNBitConfig, HGRNBitForCausalLM
from mmfc.passes.fold_weight_quant import FoldWeightQuant
from mmfc.passes.pack_weights import PackWeights

#: Hypothesis's explain phase re-runs a failing example under a line tracer, which takes minutes for an
#: example that builds and runs a model; without it a failure is reported in seconds.
NO_EXPLAIN = [p for p in Phase if p is not Phase.explain]

FORMATS = ("2bit", "base3")


# ------------------------------------------------------------------------------------------ helpers


def tiny_model(
    seed: int,
    d: int = 16,
    layers: int = 1,
    inter: int = 24,
    vocab: int = 40,
    dtype: torch.dtype = torch.float32,
) -> HGRNBitForCausalLM:
    config = HGRNBitConfig(vocab_size=vocab, hidden_size=d, num_hidden_layers=layers, intermediate_size=inter)
    return init_random_(HGRNBitForCausalLM.from_config(config), seed).to(dtype)


def bitlinear_names(model: HGRNBitForCausalLM) -> list[str]:
    """``X.weight`` of every BitLinear: the float masters fold-weight-quant quantizes."""
    return sorted(f"{name}.weight" for name, m in model.named_modules() if isinstance(m, BitLinear))


def apply(module: ModuleOp, *passes: FoldWeightQuant | PackWeights) -> None:
    ctx = mmfc_context()
    for p in passes:
        p.apply(ctx, module)
        module.verify()


def run_both(module: ModuleOp, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """prefill then decode_step (continuing from prefill's state): every output, in order."""
    runner = InterpRunner(module, W.resolve_store(module))
    logits, *state = runner.run("prefill", inputs["ids"], inputs["mask"], *inputs["h0"])
    step_logits, *step_state = runner.run("decode_step", inputs["next"], *state)
    return [logits, *state, step_logits, *step_state]


def make_inputs(rng: np.random.Generator, vocab: int, d: int, layers: int, batch: int, length: int) -> dict:
    mask = np.ones((batch, length), dtype=np.int64)
    mask[0, : rng.integers(0, length)] = 0  # left padding on one row
    return {
        "ids": rng.integers(0, vocab, (batch, length)),
        "mask": mask,
        "h0": [rng.standard_normal((batch, d)).astype(np.float32) for _ in range(layers)],
        "next": rng.integers(0, vocab, batch),
    }


def assert_identical(before: list[np.ndarray], after: list[np.ndarray]) -> None:
    assert len(before) == len(after)
    for i, (a, b) in enumerate(zip(before, after)):
        assert a.dtype == b.dtype and a.shape == b.shape, i
        assert np.array_equal(a, b), f"output {i} differs: max |diff| {np.max(np.abs(a - b))}"


def snapshot(store: W.WeightStore) -> dict[str, np.ndarray]:
    return {name: np.array(store.get(name), copy=True) for name in store.names()}


def assert_unchanged(store: W.WeightStore, before: dict[str, np.ndarray]) -> None:
    assert store.names() == sorted(before)
    for name, array in before.items():
        got = store.get(name)
        assert got.dtype == array.dtype and np.array_equal(got, array), name


def ops_of(module: ModuleOp, kind: type) -> list:
    return [op for op in module.walk() if isinstance(op, kind)]


# ------------------------------------------------------------------------------------------ properties


@settings(max_examples=10, phases=NO_EXPLAIN)
@given(
    seed=st.integers(0, 2**16),
    d=st.sampled_from([8, 16, 24]),
    layers=st.integers(1, 2),
    inter=st.sampled_from([8, 20, 36]),
    vocab=st.integers(5, 50),
    dtype=st.sampled_from(["float32", "float16", "float64"]),
    batch=st.integers(1, 3),
    length=st.integers(1, 5),
)
def test_fold_then_pack_preserve_outputs_bit_for_bit(
    seed: int, d: int, layers: int, inter: int, vocab: int, dtype: str, batch: int, length: int
) -> None:
    model = tiny_model(seed, d, layers, inter, vocab, getattr(torch, dtype))
    imported = import_model(model)
    module, store = imported.module, imported.store
    inputs = make_inputs(np.random.default_rng(seed), vocab, d, layers, batch, length)
    masters = snapshot(store)
    before = run_both(module, inputs)

    apply(module, FoldWeightQuant())
    assert not ops_of(module, T.QuantWeightOp)
    folded = W.resolve_store(module)
    assert folded is not store and folded.base is store
    assert_identical(before, run_both(module, inputs))
    # the new layer holds exactly one int8 trits tensor and one float32 scale per BitLinear ...
    names = bitlinear_names(model)
    assert folded.own_names() == sorted(names + [n + "_scale" for n in names])
    for name in names:
        trits, scale = nm.quant_weight(masters[name])
        assert folded.get(name).dtype == np.int8 and np.array_equal(folded.get(name), trits)
        got_scale = folded.get(name + "_scale")
        assert got_scale.dtype == np.float32 and got_scale.shape == () and got_scale == scale
    assert_unchanged(store, masters)  # ... and the input store is untouched

    for fmt in FORMATS:
        packed_module = module.clone()
        W.bind(packed_module, folded)
        apply(packed_module, PackWeights(format=fmt))
        packed = W.resolve_store(packed_module)
        assert packed.base is folded and packed.own_names() == names
        for name in names:
            assert packed.get(name).dtype == np.uint8
            assert np.array_equal(packed.get(name), nm.pack(folded.get(name), fmt))
        refs = [op for op in ops_of(packed_module, T.WeightOp) if op.sym.string_value() in names]
        assert refs and all(op.result.type.format.data == fmt for op in refs)
        assert not ops_of(packed_module, T.UnpackOp)  # every consumer is an accum: no unpack needed
        assert_identical(before, run_both(packed_module, inputs))
    assert_unchanged(store, masters)
    assert folded.names() == sorted(set(masters) | {n + "_scale" for n in names})


def test_fold_matches_the_pre_quantized_import() -> None:
    """Folding a float model gives the IR and the tensors of importing the same model quantized."""
    model = tiny_model(7, d=16, layers=2, inter=20)
    quantized = copy.deepcopy(model).quantize_()
    folded = import_model(model)
    apply(folded.module, FoldWeightQuant())
    reference = import_model(quantized)
    assert str(folded.module) == str(reference.module)
    store = W.resolve_store(folded.module)
    for name in bitlinear_names(model):
        for tensor in (name, name + "_scale"):
            expected = reference.store.get(tensor)
            assert store.get(tensor).dtype == expected.dtype and np.array_equal(store.get(tensor), expected)


def test_prefill_and_decode_step_share_one_quantization(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model(3)
    imported = import_model(model)
    masters_used = len(ops_of(imported.module, T.QuantWeightOp))
    names = bitlinear_names(model)
    assert masters_used == 2 * len(names)  # each BitLinear once in prefill, once in decode_step
    calls: list[int] = []
    real = nm.weight_scale

    def counting(abs_sum: float, count: int) -> np.float32:
        calls.append(count)
        return real(abs_sum, count)

    monkeypatch.setattr(nm, "weight_scale", counting)  # one scale per quantized tensor
    apply(imported.module, FoldWeightQuant())
    assert len(calls) == len(names)
    trits_refs = [op for op in ops_of(imported.module, T.WeightOp) if isinstance(op.result.type, T.TritsType)]
    assert sorted({op.sym.string_value() for op in trits_refs}) == names and len(trits_refs) == 2 * len(names)


def test_gate_proj_has_one_shared_scale() -> None:
    model = tiny_model(11, d=16, inter=24)
    imported = import_model(model)
    name = "model.layers.0.mlp.gate_proj.weight"
    master = np.array(imported.store.get(name), dtype=np.float64)
    assert master.shape == (48, 16)
    apply(imported.module, FoldWeightQuant())
    store = W.resolve_store(imported.module)
    scale = store.get(name + "_scale")
    # one scalar for the whole fused [2I, d] tensor: the absmean over both halves, in float64 -> float32
    assert scale.shape == () and scale == np.float32(np.abs(master).mean())
    gate_half, up_half = np.abs(master[:24]).mean(), np.abs(master[24:]).mean()
    assert np.float32(gate_half) != scale and np.float32(up_half) != scale  # per-half scales would differ
    refs = [op for op in ops_of(imported.module, T.WeightOp) if op.sym.string_value() == name + "_scale"]
    assert len(refs) == 2  # one per entry function, no per-half scale
    assert np.array_equal(store.get(name), np.clip(np.round(master.astype(np.float32) / scale), -1, 1))


def test_ternary_valued_master_is_refused_and_nothing_changes() -> None:
    model = tiny_model(5)
    with torch.no_grad():
        w = model.model.layers[0].attn.f_proj.weight
        w.copy_(torch.sign(w) * 0.05)  # what re-saving quantized weights as floats produces
    imported = import_model(model)
    text, masters = str(imported.module), snapshot(imported.store)
    with pytest.raises(OpError) as info:
        apply(imported.module, FoldWeightQuant())
    assert isinstance(info.value.op, T.QuantWeightOp)
    message = info.value.message
    assert "@model.layers.0.attn.f_proj.weight is already ternary-valued" in message
    assert "not idempotent" in message and "0.69x" in message and "!ternary.trits" in message
    assert str(imported.module) == text  # checked before any rewrite: the module is as it was
    assert W.resolve_store(imported.module) is imported.store
    assert_unchanged(imported.store, masters)


def test_master_with_another_user_is_left_alone() -> None:
    """A float master also read by another op keeps its quant_weight (in every function)."""
    imported = import_model(tiny_model(2))
    module = imported.module
    name = "model.layers.0.attn.i_proj.weight"
    prefill = next(op for op in module.ops if op.sym_name.data == "prefill")
    ref = next(op for op in prefill.walk() if isinstance(op, T.WeightOp) and op.sym.string_value() == name)
    # a second, non-quant_weight user of the master: return it alongside the function's results
    ret = prefill.body.block.last_op
    new_ret = type(ret)(*ret.operands, ref.result)
    prefill.body.block.insert_op_before(new_ret, ret)
    prefill.body.block.erase_op(ret)
    prefill.function_type = FunctionType.from_lists(
        prefill.function_type.inputs.data, [*prefill.function_type.outputs.data, ref.result.type]
    )
    module.verify()
    apply(module, FoldWeightQuant())
    left = [op for op in ops_of(module, T.QuantWeightOp) if op.master.owner.sym.string_value() == name]
    assert len(left) == 2  # prefill and decode_step both keep it
    store = W.resolve_store(module)
    assert name not in store.own_names() and store.get(name).dtype == np.float32
    assert "model.layers.0.attn.f_proj.weight" in store.own_names()  # the others are folded


def test_passes_without_work_never_open_the_store(tmp_path: Path) -> None:
    """Nothing to fold (trits already) or to pack (float masters only): a missing store is not opened."""
    from mmfc.dialects.builder import WeightForm, build_model

    missing = str(tmp_path / "missing.safetensors")
    config = tiny_model(1).config
    for form, idle, busy in ((WeightForm.TRITS, FoldWeightQuant(), PackWeights()),
                             (WeightForm.FLOAT, PackWeights(), FoldWeightQuant())):
        module = build_model(config, form, store=missing)
        text = str(module)
        apply(module, idle)
        assert str(module) == text
        with pytest.raises(W.StoreNotFoundError, match="missing.safetensors"):
            apply(module, busy)  # the pass that has work needs the store


def test_pack_leaves_a_symbol_read_with_two_types_alone() -> None:
    """A name read both as trits and as packed bytes cannot be repacked: the store holds one tensor."""
    imported = import_model(tiny_model(4))
    apply(imported.module, FoldWeightQuant())
    name = "lm_head.weight"
    decode = next(op for op in imported.module.ops if op.sym_name.data == "decode_step")
    ref = next(op for op in decode.walk() if isinstance(op, T.WeightOp) and op.sym.string_value() == name)
    n, k = ref.result.type.get_shape()
    stray = T.WeightOp(name, T.PackedType((n, k), "2bit"))  # dead, but a read of the same name
    decode.body.block.insert_op_before(stray, ref)
    apply(imported.module, PackWeights())
    trits_refs = [op for op in ops_of(imported.module, T.WeightOp) if op.sym.string_value() == name]
    assert sorted(str(op.result.type) for op in trits_refs) == sorted(
        ["!ternary.trits<40x16>", "!ternary.trits<40x16>", '!ternary.packed<40x16, "2bit">']
    )
    assert name not in W.resolve_store(imported.module).own_names()


def test_pack_option_is_checked() -> None:
    with pytest.raises(ValueError, match="option format must be one of '2bit', 'base3', got 'base4'"):
        PackWeights(format="base4")
    from mmfc.dialects.diagnostics import UserError
    from mmfc.pipeline import parse_pipeline

    with pytest.raises(UserError, match="pass 'pack-weights': option format must be one of"):
        parse_pipeline("pack-weights{format=1bit}")
    assert parse_pipeline("pack-weights{format=base3}") == [PackWeights(format="base3")]
    assert parse_pipeline("pack-weights") == [PackWeights(format="2bit")]


def test_pack_refuses_trits_outside_the_ternary_range() -> None:
    imported = import_model(tiny_model(6))
    apply(imported.module, FoldWeightQuant())
    bad = W.resolve_store(imported.module).derive()
    name = "model.layers.0.attn.o_proj.weight"
    values = np.array(bad.get(name))
    values[0, 0] = 2
    bad.put(name, values)
    W.bind(imported.module, bad)
    text = str(imported.module)
    expected = r"@model\.layers\.0\.attn\.o_proj\.weight holds trits outside \{-1, 0, \+1\}: found \[2\]"
    with pytest.raises(OpError, match=expected):
        apply(imported.module, PackWeights())
    assert str(imported.module) == text


# ------------------------------------------------------------------------------------------ CLI


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mmfc(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


@pytest.mark.parametrize("bf16", [False, True], ids=["f32", "bf16"])
def test_opt_fold_and_pack_then_run(tmp_path: Path, capsys: pytest.CaptureFixture[str], bf16: bool) -> None:
    """``mmfc opt x.mlir -p fold-weight-quant,pack-weights{format=base3} -o y.mlir`` writes
    ``y.weights.safetensors`` next to ``y.mlir``; ``mmfc run`` of y gives x's outputs exactly."""
    model = tiny_model(9, d=16, layers=2, inter=20)
    ckpt = tmp_path / "ckpt"
    model.save_pretrained(ckpt)
    if bf16:  # a bf16 checkpoint: masters read in place (upcast on read), never copied
        from safetensors.torch import save_file

        tensors = {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}
        save_file(tensors, ckpt / "model.safetensors")
    digest = sha256(ckpt / "model.safetensors")
    mmfc(capsys, "import", "--model", str(ckpt), "-o", str(tmp_path / "x.mlir"))
    (tmp_path / "out").mkdir()
    mmfc(
        capsys, "opt", str(tmp_path / "x.mlir"), "-p", "fold-weight-quant,pack-weights{format=base3}",
        "-o", str(tmp_path / "out" / "y.mlir"),
    )
    y_store = tmp_path / "out" / "y.weights.safetensors"
    assert y_store.exists()
    text = (tmp_path / "out" / "y.mlir").read_text()
    assert 'mmfc.weights = "y.weights.safetensors"' in text
    assert "ternary.quant_weight" not in text and "!ternary.trits" not in text
    assert '!ternary.packed<40x16, "base3">' in text  # the fused gate|up weight: 2 * 20 rows
    new = W.open_store(y_store)
    assert new.base is not None and Path(new.base.path).resolve() == ckpt.resolve()  # layered, not copied
    names = bitlinear_names(model)
    assert new.own_names() == sorted(names + [n + "_scale" for n in names])
    masters = W.open_store(ckpt)
    for name in names:
        trits, scale = nm.quant_weight(masters.get(name))
        assert np.array_equal(new.get(name), nm.pack(trits, "base3")) and new.get(name + "_scale") == scale

    rng = np.random.default_rng(1)
    ids, mask = rng.integers(0, 40, (2, 4)), np.ones((2, 4), dtype=np.int64)
    inputs = {"ids": ids, "mask": mask, **{f"h{i}": np.zeros((2, 16), np.float32) for i in range(2)}}
    argv: list[str] = []
    for key, value in inputs.items():
        np.save(tmp_path / f"{key}.npy", value)
        argv += ["--input", str(tmp_path / f"{key}.npy")]
    for mlir, out in (("x.mlir", "run_x"), ("out/y.mlir", "run_y")):
        mmfc(capsys, "run", str(tmp_path / mlir), "--entry", "prefill", "-o", str(tmp_path / out), *argv)
    for i in range(3):  # logits and the two layers' states
        x, y = np.load(tmp_path / "run_x" / f"out{i}.npy"), np.load(tmp_path / "run_y" / f"out{i}.npy")
        assert x.dtype == y.dtype and np.array_equal(x, y), i
    assert sha256(ckpt / "model.safetensors") == digest  # the input store is never mutated


def test_opt_to_stdout_keeps_the_store_in_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tiny_model(8)
    ckpt = tmp_path / "ckpt"
    model.save_pretrained(ckpt)
    mmfc(capsys, "import", "--model", str(ckpt), "-o", str(tmp_path / "x.mlir"))
    before = sorted(p.name for p in tmp_path.iterdir())
    out = mmfc(capsys, "opt", str(tmp_path / "x.mlir"), "-p", "fold-weight-quant,pack-weights")
    assert 'mmfc.weights = "<memory>"' in out and '!ternary.packed<16x16, "2bit">' in out
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written



# ------------------------------------------------------------------------------------------ streaming (issue 12)


def test_weights_are_quantized_packed_and_written_a_block_at_a_time(tmp_path: Path) -> None:
    """Folding, packing and saving hold a few blocks of a tensor, never the tensor (nor the checkpoint):
    measured with tracemalloc, which sees numpy's buffers. The results are those of the whole-tensor
    numerics."""
    import tracemalloc

    from safetensors.torch import save_file

    from mmfc.dialects.parallel import worker_count
    from mmfc.passes.fold_weight_quant import _quantize

    gen = torch.Generator().manual_seed(0)
    masters = {f"m{i}.weight": (torch.randn(2048, 2048, generator=gen) * 0.02).to(torch.bfloat16) for i in range(3)}
    save_file(masters, str(tmp_path / "big.safetensors"))  # 3 x 8 MiB bf16, 3 x 16 MiB as float32
    store = W.FileStore(tmp_path / "big.safetensors")
    tracemalloc.start()
    try:
        folded = {name: _quantize(store, name) for name in masters}
        fold_peak = tracemalloc.get_traced_memory()[1]  # the packed results and what made them
        held = store.derive()
        for name, (packed, shape, scale) in folded.items():
            held.put_packed_trits(name, packed, shape, "2bit")
        tracemalloc.reset_peak()
        before_save = tracemalloc.get_traced_memory()[0]
        saved = held.save(tmp_path / "trits.safetensors", standalone=True)  # unpacked one tensor at a time
        save_peak = tracemalloc.get_traced_memory()[1] - before_save
    finally:
        tracemalloc.stop()
    packed_bytes = 3 * 2048 * 512
    block_bytes = 4 * nm.BLOCK_ELEMENTS  # one float32 block
    assert fold_peak < packed_bytes + 8 * block_bytes, fold_peak  # a whole float32 master is 16 MiB
    in_flight = worker_count() + 1  # tensors unpacked at once: one per worker, one being written
    assert save_peak < in_flight * (2048 * 2048 + 2048 * 512) + 2**20, save_peak  # int8 + validity temp
    for name, master in masters.items():
        trits, scale = nm.quant_weight(master.float().numpy())
        assert folded[name][2] == scale and np.array_equal(saved.get(name), trits)
