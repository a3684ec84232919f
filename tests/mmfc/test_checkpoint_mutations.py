"""Issue 12: ``mmfc compile`` refuses exactly what the PyTorch loader refuses.

A valid checkpoint folder (three shards and an index, float masters or pre-quantized) is mutated by
Hypothesis: a tensor's values (NaN, Inf, ternary-valued masters, trits or scales out of range), its
dtype, shape or name, config values, and the shard index. Then ``mmfc compile --model DIR`` (and
``mmfc generate ARTIFACT``) and ``mmfc generate --model DIR`` must agree: both exit 2 with one line,
or both succeed with the same tokens by the flip-aware rule (``mmfc.testing``).

The commands run in this process through ``mmfc.cli.main`` (the CLI's whole code path, minus the
interpreter start-up that would make each example cost seconds); an exception escaping ``main`` is
a traceback, and fails the test.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from mmfc.cli import main
from mmfc.frontends.torch.modeling import init_random_
from mmfc.models import HGRNBitConfig, HGRNBitForCausalLM
from mmfc.testing import assert_generate_matches

PROMPT = [1, 7, 30]
NEW_TOKENS = 6
INDEX = "model.safetensors.index.json"


def make_base(folder: Path, quantized: bool) -> Path:
    config = HGRNBitConfig(vocab_size=48, hidden_size=16, num_hidden_layers=2, intermediate_size=24)
    model = init_random_(HGRNBitForCausalLM.from_config(config), 7)
    model.save_pretrained(folder, quantized=quantized, max_shard_bytes=4_000 if quantized else 12_000)
    if not quantized:  # float masters in bf16, as released
        for shard in folder.glob("model-*.safetensors"):
            tensors = load_file(str(shard))
            save_file({k: v.to(torch.bfloat16) for k, v in tensors.items()}, str(shard), metadata={"format": "pt"})
    assert len(list(folder.glob("model-*.safetensors"))) >= 3
    return folder


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Path]:
    root = tmp_path_factory.mktemp("mutations")
    return {q: make_base(root / ("quantized" if q else "float"), q) for q in (False, True)}


# ------------------------------------------------------------------------------------------ mutations


def _index(folder: Path) -> dict[str, Any]:
    return json.loads((folder / INDEX).read_text())


def _shard_of(folder: Path, name: str) -> Path:
    return folder / _index(folder)["weight_map"][name]


def _edit_tensor(folder: Path, name: str, edit: Any) -> None:
    shard = _shard_of(folder, name)
    tensors = load_file(str(shard))
    result = edit(tensors[name])
    if result is None:
        del tensors[name]
    else:
        tensors[name] = result.contiguous()
    save_file(tensors, str(shard), metadata={"format": "pt"})


def _rename_tensor(folder: Path, name: str, new: str) -> None:
    shard = _shard_of(folder, name)
    tensors = load_file(str(shard))
    tensors[new] = tensors.pop(name)
    save_file(tensors, str(shard), metadata={"format": "pt"})
    index = _index(folder)
    index["weight_map"][new] = index["weight_map"].pop(name)
    (folder / INDEX).write_text(json.dumps(index))


def _poke(value: float) -> Any:
    def edit(t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        v = value if t.dtype.is_floating_point else (int(value) if math.isfinite(value) else 5)  # trits
        t.view(-1)[t.numel() // 2] = v
        return t

    return edit


VALUES = st.sampled_from([float("nan"), float("inf"), float("-inf"), 2.0, -3.0, 0.0, -0.5])
DTYPES = st.sampled_from([torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.int32])
CONFIG_EDITS = st.sampled_from(
    [
        ("hidden_size", 32), ("num_hidden_layers", 1), ("num_hidden_layers", 3), ("vocab_size", 40),
        ("intermediate_size", 16), ("rms_norm_eps", 1e-5), ("hidden_act", "relu"), ("use_lower_bound", False),
        ("quantization_config", {"quant_method": "gptq"}), ("an_unknown_key", 1), ("eos_token_id", 5),
        ("num_heads", 2), ("vocab_size", -1),
    ]
)


@st.composite
def mutations(draw: st.DrawFn) -> tuple[bool, str, Any]:
    """``(quantized base, description, apply(folder))``."""
    quantized = draw(st.booleans())
    kind = draw(st.sampled_from(["value", "dtype", "shape", "name", "config", "index"]))
    name = draw(st.sampled_from(TENSORS_QUANTIZED if quantized else TENSORS_FLOAT))
    if kind == "value":
        value = draw(VALUES)
        return quantized, f"{name}[mid] = {value}", lambda f: _edit_tensor(f, name, _poke(value))
    if kind == "dtype":
        dtype = draw(DTYPES)
        return quantized, f"{name} as {dtype}", lambda f: _edit_tensor(f, name, lambda t: t.to(dtype))
    if kind == "shape":
        how = draw(st.sampled_from(["transpose", "flatten", "drop-row", "scalar-1"]))

        def reshape(t: torch.Tensor) -> torch.Tensor:
            if how == "transpose":
                return t.T if t.dim() == 2 else t.reshape(1, -1)
            if how == "flatten":
                return t.reshape(-1)
            if how == "drop-row":
                return t[:-1] if t.dim() and t.shape[0] > 1 else t.reshape(1, 1)
            return t.reshape(1) if t.numel() == 1 else t[..., :1]

        return quantized, f"{name} {how}", lambda f: _edit_tensor(f, name, reshape)
    if kind == "name":
        how = draw(st.sampled_from(["drop", "rename", "extra"]))
        if how == "drop":
            return quantized, f"drop {name}", lambda f: _edit_tensor(f, name, lambda t: None)
        if how == "rename":
            return quantized, f"rename {name}", lambda f: _rename_tensor(f, name, name + ".old")

        def add_extra(f: Path) -> None:
            shard = _shard_of(f, name)
            tensors = load_file(str(shard))
            tensors["model.extra.weight"] = torch.ones(3)
            save_file(tensors, str(shard), metadata={"format": "pt"})

        return quantized, "extra tensor", add_extra
    if kind == "config":
        key, value = draw(CONFIG_EDITS)

        def set_config(f: Path) -> None:
            config = json.loads((f / "config.json").read_text())
            config[key] = value
            (f / "config.json").write_text(json.dumps(config))

        return quantized, f"config {key}={value!r}", set_config
    how = draw(st.sampled_from(["other-shard", "missing-shard", "drop-entry", "unknown-entry", "outside", "json"]))

    def edit_index(f: Path) -> None:
        index = _index(f)
        shards = sorted(set(index["weight_map"].values()))
        if how == "other-shard":
            index["weight_map"][name] = next(s for s in shards if s != index["weight_map"][name])
        elif how == "missing-shard":
            index["weight_map"][name] = "model-00009-of-00009.safetensors"
        elif how == "drop-entry":
            del index["weight_map"][name]
        elif how == "unknown-entry":
            index["weight_map"]["model.ghost.weight"] = shards[0]
        elif how == "outside":
            index["weight_map"][name] = "../" + index["weight_map"][name]
        else:
            (f / INDEX).write_text('{"weight_map": {')
            return
        (f / INDEX).write_text(json.dumps(index))

    return quantized, f"index {how} ({name})", edit_index


def _tensor_names(quantized: bool) -> list[str]:
    from mmfc.frontends.torch.checkpoint import tensor_roles

    config = HGRNBitConfig(vocab_size=48, hidden_size=16, num_hidden_layers=2, intermediate_size=24)
    if quantized:
        config.quantization_config = {"quant_method": "mmfc-ternary", "weights": "int8-trits"}
    return sorted(tensor_roles(config))


TENSORS_FLOAT = _tensor_names(False)
TENSORS_QUANTIZED = _tensor_names(True)


# ------------------------------------------------------------------------------------------ the rule


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def new_ids(stdout: str) -> list[int]:
    return json.loads(stdout)["new_ids"]


@settings(max_examples=24)
@given(mutation=mutations())
def test_compile_and_the_loader_agree_on_a_mutated_checkpoint(bases: dict[bool, Path], mutation: Any) -> None:
    quantized, what, apply = mutation
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ck"
        shutil.copytree(bases[quantized], folder)
        apply(folder)
        prompt = ["--prompt-ids", ",".join(map(str, PROMPT)), "--max-new-tokens", str(NEW_TOKENS)]
        prompt += ["--ignore-eos", "--json"]
        loaded = cli("generate", "--model", str(folder), *prompt)
        art = Path(tmp) / "art"
        compiled = cli("compile", "--model", str(folder), "-o", str(art))
        if loaded[0] != 0 or compiled[0] != 0:
            event("both refused")
            for rc, _, err in (loaded, compiled):
                assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("mmfc: error: "), (what, loaded, compiled)
            assert not art.exists() and sorted(p.name for p in Path(tmp).iterdir()) == ["ck"], what
            return
        event("both ran")
        ran = cli("generate", str(art), *prompt)
        assert ran[0] == 0, (what, ran)
        model = HGRNBitForCausalLM.from_pretrained(folder)
        want = torch.tensor([PROMPT + new_ids(loaded[1])])
        got = torch.tensor([PROMPT + new_ids(ran[1])])
        step_logits = model(want).logits[:, len(PROMPT) - 1 : -1]
        assert_generate_matches(got, want, step_logits, len(PROMPT))
