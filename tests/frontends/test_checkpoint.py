"""Checkpoint directories: round trips, reference tensor names, and one clear error per bad checkpoint.

Every model here is tiny (V=64, d=32, L=2, I=64) with randomized norms and lower bounds, so a tensor
loaded into the wrong place, a scale stored the wrong way round or a lost bf16 rounding changes the
logits. Round trips are compared with ``torch.equal``: loading must not change a single bit.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from mmfc.dialects.diagnostics import CheckpointError, ConfigError, UserError
from mmfc.frontends.torch import HGRNBitConfig, HGRNBitForCausalLM
from safetensors import safe_open
from safetensors.torch import load_file, save_file

V, D, L, I = 64, 32, 2, 64
IDS = torch.tensor([[1, 5, 9, 63, 0, 17, 33, 2, 40, 11], [4, 4, 8, 15, 16, 23, 42, 7, 7, 60]])
QUANT_CONFIG = {"quant_method": "mmfc-ternary", "weights": "int8-trits"}


# ------------------------------------------------------------------------------------------ helpers


def tiny_config(**overrides: Any) -> HGRNBitConfig:
    base: dict[str, Any] = {"vocab_size": V, "hidden_size": D, "num_hidden_layers": L, "intermediate_size": I}
    base.update(overrides)
    return HGRNBitConfig(**base)


def tiny_model(seed: int = 0, **overrides: Any) -> HGRNBitForCausalLM:
    """A seeded tiny model whose RMSNorm weights and lower bounds are random too (not all ones/zeros)."""
    model = HGRNBitForCausalLM.from_config(tiny_config(**overrides), seed=seed)
    gen = torch.Generator().manual_seed(10_000 + seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith("lower_bounds"):
                p.copy_(torch.randn(p.shape, generator=gen))
    return model


def logits(model: HGRNBitForCausalLM) -> torch.Tensor:
    return model(IDS).logits


def spec_tensors(num_layers: int = L, lower_bound: bool = True) -> dict[str, tuple[int, ...]]:
    """The float checkpoint's tensors, written from docs/model.md ("Tensors")."""
    out: dict[str, tuple[int, ...]] = {
        "model.embeddings.weight": (V, D),
        "model.norm.weight": (D,),
        "lm_head.weight": (V, D),
        "lm_head.norm.weight": (D,),
    }
    if lower_bound:
        out["model.lower_bounds"] = (num_layers, D)
    for l in range(num_layers):
        p = f"model.layers.{l}."
        out[p + "attn_norm.weight"] = (D,)
        for x in "ifgo":
            out[p + f"attn.{x}_proj.weight"] = (D, D)
            out[p + f"attn.{x}_proj.norm.weight"] = (D,)
        out[p + "attn.g_norm.weight"] = (D,)
        out[p + "mlp_norm.weight"] = (D,)
        out[p + "mlp.gate_proj.weight"] = (2 * I, D)
        out[p + "mlp.gate_proj.norm.weight"] = (D,)
        out[p + "mlp.down_proj.weight"] = (D, I)
        out[p + "mlp.down_proj.norm.weight"] = (I,)
    return out


def spec_bitlinear_weights(num_layers: int = L) -> set[str]:
    names = {"lm_head.weight"}
    for l in range(num_layers):
        p = f"model.layers.{l}."
        names |= {p + f"attn.{x}_proj.weight" for x in "ifgo"}
        names |= {p + "mlp.gate_proj.weight", p + "mlp.down_proj.weight"}
    return names


def read_dir_tensors(directory: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint directory (single file or shards), read with safetensors only."""
    files = sorted(directory.glob("*.safetensors"))
    out: dict[str, torch.Tensor] = {}
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 - a safetensors handle, not a dict
                assert name not in out, f"{name} stored twice"
                out[name] = f.get_tensor(name)
    return out


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def one_line_error(excinfo: pytest.ExceptionInfo[BaseException], *fragments: str) -> str:
    """The error's message: one line, containing every fragment."""
    msg = str(excinfo.value)
    assert "\n" not in msg, f"multi-line message: {msg!r}"
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"
    return msg


@pytest.fixture(scope="module")
def model() -> HGRNBitForCausalLM:
    return tiny_model(seed=1)


@pytest.fixture(scope="module")
def model_logits(model: HGRNBitForCausalLM) -> torch.Tensor:
    return logits(model)


@pytest.fixture
def float_dir(tmp_path: Path, model: HGRNBitForCausalLM) -> Path:
    directory = tmp_path / "float"
    model.save_pretrained(directory)
    return directory


@pytest.fixture
def quant_dir(tmp_path: Path, model: HGRNBitForCausalLM) -> Path:
    directory = tmp_path / "quant"
    model.save_pretrained(directory, quantized=True)
    return directory


def rewrite_weights(directory: Path, edit: Any) -> None:
    """Load model.safetensors, let ``edit(state)`` change it in place, write it back."""
    path = directory / "model.safetensors"
    state = load_file(str(path))
    edit(state)
    save_file(state, str(path))


def rewrite_config(directory: Path, **changes: Any) -> None:
    path = directory / "config.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


# ------------------------------------------------------------------------------------------ round trips


def test_float_round_trip_is_bit_exact(float_dir: Path, model_logits: torch.Tensor) -> None:
    loaded = HGRNBitForCausalLM.from_pretrained(float_dir)
    assert sorted(p.name for p in float_dir.iterdir()) == ["config.json", "model.safetensors"]
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert torch.equal(logits(loaded), model_logits)


def test_pre_quantized_round_trip_matches_float_model(
    quant_dir: Path, model: HGRNBitForCausalLM, model_logits: torch.Tensor
) -> None:
    config = json.loads((quant_dir / "config.json").read_text())
    assert config["quantization_config"] == QUANT_CONFIG
    tensors = read_dir_tensors(quant_dir)
    float_state = model.state_dict()
    for name in spec_bitlinear_weights():
        trits, scale = tensors[name], tensors[name[: -len("weight")] + "weight_scale"]
        assert trits.dtype == torch.int8 and tuple(trits.shape) == tuple(float_state[name].shape)
        assert scale.dtype == torch.float32 and scale.dim() == 0
        # weight_scale = 1/s_w = mean|W| (absmean, per tensor); trits = clamp(round(W * s_w), -1, 1)
        w = float_state[name]
        assert float(scale) == float(torch.tensor(w.double().abs().mean().item(), dtype=torch.float32))
        expected_trits = torch.clamp(torch.round(w * (1.0 / scale)), -1, 1).to(torch.int8)
        assert torch.equal(trits, expected_trits)
        assert set(trits.unique().tolist()) <= {-1, 0, 1}
    loaded = HGRNBitForCausalLM.from_pretrained(quant_dir)
    assert loaded.config.quantization_config == QUANT_CONFIG
    assert torch.equal(logits(loaded), model_logits)


def test_pre_quantized_model_saves_again_unchanged(quant_dir: Path, tmp_path: Path) -> None:
    loaded = HGRNBitForCausalLM.from_pretrained(quant_dir)
    again = tmp_path / "again"
    loaded.save_pretrained(again, quantized=True)
    assert (again / "model.safetensors").read_bytes() == (quant_dir / "model.safetensors").read_bytes()
    # a quantized model has no float masters left: writing it as float would be the absmean pitfall
    with pytest.raises(UserError) as excinfo:
        loaded.save_pretrained(tmp_path / "as_float")
    one_line_error(excinfo, "quantized=True")
    assert not (tmp_path / "as_float").exists()


@pytest.mark.parametrize("quantized", [False, True])
def test_sharded_round_trip(
    tmp_path: Path, model: HGRNBitForCausalLM, model_logits: torch.Tensor, quantized: bool
) -> None:
    directory = tmp_path / "sharded"
    max_bytes = 6000  # the embedding alone (64 x 32 fp32 = 8 KiB) is over it: it gets a shard of its own
    model.save_pretrained(directory, quantized=quantized, max_shard_bytes=max_bytes)
    shards = sorted(directory.glob("model-*-of-*.safetensors"))
    assert len(shards) >= 3
    assert not (directory / "model.safetensors").exists()
    index = json.loads((directory / "model.safetensors.index.json").read_text())
    tensors = read_dir_tensors(directory)
    assert set(index["weight_map"]) == set(tensors)
    assert set(index["weight_map"].values()) == {p.name for p in shards}
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in tensors.values())
    for shard in shards:
        sizes = [t.numel() * t.element_size() for t in load_file(str(shard)).values()]
        assert len(sizes) == 1 or sum(sizes) <= max_bytes
    loaded = HGRNBitForCausalLM.from_pretrained(directory)
    assert torch.equal(logits(loaded), model_logits)


def test_layout_switch_removes_stale_weight_files(tmp_path: Path, model: HGRNBitForCausalLM) -> None:
    directory = tmp_path / "ckpt"
    model.save_pretrained(directory, max_shard_bytes=6000)
    model.save_pretrained(directory)
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "model.safetensors"]
    model.save_pretrained(directory, max_shard_bytes=6000)
    assert not (directory / "model.safetensors").exists()
    assert torch.equal(logits(HGRNBitForCausalLM.from_pretrained(directory)), logits(model))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_files_upcast_exactly(
    tmp_path: Path, model: HGRNBitForCausalLM, dtype: torch.dtype
) -> None:
    directory = tmp_path / "half"
    directory.mkdir()
    model.config.save_pretrained(directory)
    save_file(
        {k: v.to(dtype).contiguous() for k, v in model.state_dict().items()},
        str(directory / "model.safetensors"),
    )
    loaded = HGRNBitForCausalLM.from_pretrained(directory)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    rounded = tiny_model(seed=1)
    with torch.no_grad():
        for p in rounded.parameters():
            p.copy_(p.to(dtype).to(torch.float32))
    assert torch.equal(logits(loaded), logits(rounded))
    # the rounding matters at this size: the fp32 model gives other logits
    assert not torch.equal(logits(loaded), logits(model))


# ------------------------------------------------------------------------------------------ names


def test_float_tensor_names_and_shapes_are_the_reference_ones(float_dir: Path) -> None:
    tensors = read_dir_tensors(float_dir)
    assert {n: tuple(t.shape) for n, t in tensors.items()} == spec_tensors()
    assert all(t.dtype == torch.float32 for t in tensors.values())


def test_pre_quantized_tensor_names(quant_dir: Path) -> None:
    tensors = read_dir_tensors(quant_dir)
    expected = dict(spec_tensors())
    expected.update({n[: -len("weight")] + "weight_scale": () for n in spec_bitlinear_weights()})
    assert {n: tuple(t.shape) for n, t in tensors.items()} == expected


# ------------------------------------------------------------------------------------------ config values


def test_unknown_config_keys_are_written_back_unchanged(tmp_path: Path) -> None:
    original = {
        "model_type": "hgrn_bit",
        "vocab_size": V,
        "hidden_size": D,
        "num_hidden_layers": L,
        "hidden_ratio": 4,
        "intermediate_size": None,
        "conv_size": 7,
        "fuse_cross_entropy": False,
        "architectures": ["HGRNBitForCausalLM"],
        "transformers_version": "4.41.2",
        "torch_dtype": "bfloat16",
        "my_custom_key": {"nested": [1, 2.5, None, {"x": "y"}]},
    }
    src = tmp_path / "src"
    tiny = HGRNBitForCausalLM.from_config(HGRNBitConfig.from_dict(dict(original)), seed=3)
    tiny.save_pretrained(src)
    (src / "config.json").write_text(json.dumps(original))  # exactly the user's file
    loaded = HGRNBitForCausalLM.from_pretrained(src)
    # derived by the reference formula: 256 * ceil(int(32 * 4 * 2 / 3) / 256) = 256
    assert loaded.config.intermediate_size == 256
    assert tuple(loaded.model.layers[0].mlp.gate_proj.weight.shape) == (512, D)
    dst = tmp_path / "dst"
    loaded.save_pretrained(dst)
    written = json.loads((dst / "config.json").read_text())
    for key, value in original.items():
        assert key in written and written[key] == value, key
    assert written["intermediate_size"] is None
    assert "quantization_config" not in written
    assert torch.equal(logits(HGRNBitForCausalLM.from_pretrained(dst)), logits(tiny))


def test_num_heads_two_equals_one_head(float_dir: Path, model_logits: torch.Tensor) -> None:
    # the reference recurrence is elementwise: heads only reshape [B, T, d] -> [B, H, T, d/H]
    rewrite_config(float_dir, num_heads=2)
    two_heads = HGRNBitForCausalLM.from_pretrained(float_dir)
    assert two_heads.config.num_heads == 2
    assert torch.equal(logits(two_heads), model_logits)


def test_use_lower_bound_false(tmp_path: Path) -> None:
    plain = tiny_model(seed=4, use_lower_bound=False)
    directory = tmp_path / "nolb"
    plain.save_pretrained(directory)
    assert set(read_dir_tensors(directory)) == set(spec_tensors(lower_bound=False))
    loaded = HGRNBitForCausalLM.from_pretrained(directory)
    assert not hasattr(loaded.model, "lower_bounds")
    assert torch.equal(logits(loaded), logits(plain))

    # the reference's forget gate without a lower bound is sigmoid(f~): at the gate level...
    attn = loaded.model.layers[1].attn
    a = torch.randn(2, 5, D, generator=torch.Generator().manual_seed(0))
    f = attn.gates(a, None, None)[1]
    assert torch.allclose(f, torch.sigmoid(attn.f_proj(a)), rtol=0, atol=1e-6)
    # ...and for the whole model: it equals a lower-bounded model whose bounds are all exactly 0
    # (softmax([0, -1e4]) = [1, 0] -> lb = cumsum - s0 = [0, 0]), but not one with learned bounds
    bounded = tiny_model(seed=4)
    bounded.load_state_dict(
        {**plain.state_dict(), "model.lower_bounds": bounded.model.lower_bounds}, strict=True
    )
    assert not torch.equal(logits(bounded), logits(plain))
    with torch.no_grad():
        bounded.model.lower_bounds.zero_()
        bounded.model.lower_bounds[1:] = -1e4
    assert torch.equal(logits(bounded), logits(plain))

    # a lower_bounds tensor in a use_lower_bound=false checkpoint is unexpected
    rewrite_weights(directory, lambda s: s.update({"model.lower_bounds": torch.zeros(L, D)}))
    with pytest.raises(CheckpointError) as excinfo:
        HGRNBitForCausalLM.from_pretrained(directory)
    one_line_error(excinfo, "model.lower_bounds")


def test_lower_bound_of_layer_zero_is_zero(model: HGRNBitForCausalLM) -> None:
    # the reference skips the lower bound in layer 0; cumsum(s) - s[0] is exactly 0 there
    lbs = model.model.layer_lower_bounds()
    assert torch.equal(lbs[0], torch.zeros(D))
    assert bool((lbs[1] > 0).all())


# ------------------------------------------------------------------------------------------ atomic writes


@pytest.mark.parametrize("target_exists", [True, False])
def test_failed_save_leaves_target_untouched(
    tmp_path: Path, model: HGRNBitForCausalLM, monkeypatch: pytest.MonkeyPatch, target_exists: bool
) -> None:
    import safetensors.torch

    parent = tmp_path / "parent"
    parent.mkdir()
    target = parent / "ckpt"
    if target_exists:
        tiny_model(seed=9).save_pretrained(target)
        (target / "README.md").write_text("mine\n")
        before = snapshot(target)
    real_save = safetensors.torch.save_file
    calls = []

    def failing_save(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 2:  # the first shard is written, the second fails
            raise OSError(28, "No space left on device")
        real_save(*args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", failing_save)
    with pytest.raises(CheckpointError) as excinfo:
        model.save_pretrained(target, max_shard_bytes=6000)
    one_line_error(excinfo, "No space left on device")
    assert len(calls) == 2
    if target_exists:
        assert snapshot(target) == before
        assert sorted(p.name for p in parent.iterdir()) == ["ckpt"]
    else:
        assert list(parent.iterdir()) == []


def test_save_over_a_file_is_refused(tmp_path: Path, model: HGRNBitForCausalLM) -> None:
    target = tmp_path / "file"
    target.write_text("not a folder")
    with pytest.raises(CheckpointError) as excinfo:
        model.save_pretrained(target)
    one_line_error(excinfo, "file")
    assert target.read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_bad_max_shard_bytes_is_refused(tmp_path: Path, model: HGRNBitForCausalLM) -> None:
    with pytest.raises(UserError) as excinfo:
        model.save_pretrained(tmp_path / "x", max_shard_bytes=0)
    one_line_error(excinfo, "max_shard_bytes")


# ------------------------------------------------------------------------------------------ bad checkpoints


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as excinfo:
        HGRNBitForCausalLM.from_pretrained(tmp_path / "nowhere")
    one_line_error(excinfo, "nowhere")


def test_directory_without_config(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as excinfo:
        HGRNBitForCausalLM.from_pretrained(tmp_path)
    one_line_error(excinfo, "config.json")


def test_no_weights_file(float_dir: Path) -> None:
    (float_dir / "model.safetensors").unlink()
    with pytest.raises(CheckpointError) as excinfo:
        HGRNBitForCausalLM.from_pretrained(float_dir)
    one_line_error(excinfo, "model.safetensors")


def test_pickle_weights_are_refused_unopened(
    float_dir: Path, model: HGRNBitForCausalLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    (float_dir / "model.safetensors").unlink()
    torch.save(model.state_dict(), float_dir / "pytorch_model.bin")

    def no_unpickling(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the loader tried to unpickle")

    monkeypatch.setattr(torch, "load", no_unpickling)
    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(pickle, "Unpickler", no_unpickling)
    with pytest.raises(CheckpointError) as excinfo:
        HGRNBitForCausalLM.from_pretrained(float_dir)
    one_line_error(excinfo, "pytorch_model.bin", "safetensors")


def _drop(name: str) -> Any:
    return lambda s: s.pop(name)


def _set(name: str, value: torch.Tensor) -> Any:
    return lambda s: s.update({name: value})


def _poison(name: str, value: float) -> Any:
    def edit(s: dict[str, torch.Tensor]) -> None:
        s[name] = s[name].clone()
        s[name].view(-1)[3] = value

    return edit


@pytest.mark.parametrize(
    "edit, fragments",
    [
        (_drop("model.layers.1.attn.g_norm.weight"), ["missing", "model.layers.1.attn.g_norm.weight"]),
        (_drop("lm_head.norm.weight"), ["missing", "lm_head.norm.weight"]),
        (
            _set("model.layers.0.attn.extra.weight", torch.ones(D)),
            ["unexpected", "model.layers.0.attn.extra.weight"],
        ),
        (
            _set("model.layers.0.mlp.down_proj.weight", torch.randn(I, D)),
            ["model.layers.0.mlp.down_proj.weight", "[64, 32]", "[32, 64]"],
        ),
        (_set("model.lower_bounds", torch.randn(L + 1, D)), ["model.lower_bounds", "[3, 32]"]),
        (
            _poison("model.layers.1.mlp_norm.weight", float("nan")),
            ["model.layers.1.mlp_norm.weight", "non-finite"],
        ),
        (_poison("model.embeddings.weight", float("inf")), ["model.embeddings.weight", "non-finite"]),
        (_poison("lm_head.weight", float("-inf")), ["lm_head.weight", "non-finite"]),
        (
            _set("lm_head.weight", torch.randint(-5, 5, (V, D), dtype=torch.int32)),
            ["lm_head.weight", "int32"],
        ),
        (_set("model.norm.weight", torch.ones(D, dtype=torch.int8)), ["model.norm.weight", "int8"]),
    ],
    ids=[
        "missing",
        "missing-head-norm",
        "unexpected",
        "shape",
        "shape-lb",
        "nan",
        "inf",
        "-inf",
        "int32",
        "int8",
    ],
)
def test_bad_float_tensor(float_dir: Path, edit: Any, fragments: list[str]) -> None:
    rewrite_weights(float_dir, edit)
    with pytest.raises(CheckpointError) as excinfo:
        HGRNBitForCausalLM.from_pretrained(float_dir)
    one_line_error(excinfo, *fragments)


def test_ternary_valued_float_weights_are_refused(float_dir: Path, model: HGRNBitForCausalLM) -> None:
    name = "model.layers.1.attn.o_proj.weight"
    trits = torch.clamp(torch.round(model.state_dict()[name] / 0.01), -1, 1)
    rewrite_weights(float_dir, _set(name, trits * 0.0123))  # dequantized trits: three distinct values
    with pytest.raises(CheckpointError) as excinfo:
        HGRNBitForCausalLM.from_pretrained(float_dir)
    msg = one_line_error(excinfo, name, "ternary", "absmean", "scale")
    assert "quantized=True" in msg or "pre-quantized" in msg


def test_corrupt_safetensors_file(float_dir: Path) -> None:
    (float_dir / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    with pytest.raises(CheckpointError) as excinfo:
        HGRNBitForCausalLM.from_pretrained(float_dir)
    one_line_error(excinfo, "model.safetensors")


def test_truncated_safetensors_file(float_dir: Path) -> None:
    path = float_dir / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError) as excinfo:
        HGRNBitForCausalLM.from_pretrained(float_dir)
    one_line_error(excinfo, "model.safetensors")


def test_index_points_to_missing_shard(tmp_path: Path, model: HGRNBitForCausalLM) -> None:
    directory = tmp_path / "sharded"
    model.save_pretrained(directory, max_shard_bytes=6000)
    shard = sorted(directory.glob("model-*-of-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(CheckpointError) as excinfo:
        HGRNBitForCausalLM.from_pretrained(directory)
    one_line_error(excinfo, shard.name, "model.safetensors.index.json")


def test_index_names_tensor_its_shard_lacks(tmp_path: Path, model: HGRNBitForCausalLM) -> None:
    directory = tmp_path / "sharded"
    model.save_pretrained(directory, max_shard_bytes=6000)
    index_path = directory / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    shards = sorted(set(index["weight_map"].values()))
    name = "model.norm.weight"
    index["weight_map"][name] = next(s for s in shards if s != index["weight_map"][name])
    index_path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError) as excinfo:
        HGRNBitForCausalLM.from_pretrained(directory)
    one_line_error(excinfo, name)


def test_invalid_index_json(tmp_path: Path, model: HGRNBitForCausalLM) -> None:
    directory = tmp_path / "sharded"
    model.save_pretrained(directory, max_shard_bytes=6000)
    (directory / "model.safetensors.index.json").write_text('{"weight_map": [1, 2')
    with pytest.raises(CheckpointError) as excinfo:
        HGRNBitForCausalLM.from_pretrained(directory)
    one_line_error(excinfo, "model.safetensors.index.json")


@pytest.mark.parametrize(
    "edit, fragments",
    [
        (
            _poison("model.layers.0.attn.i_proj.weight", 2),
            ["model.layers.0.attn.i_proj.weight", "{-1, 0, +1}"],
        ),
        (_poison("lm_head.weight", -3), ["lm_head.weight", "{-1, 0, +1}"]),
        (_set("lm_head.weight", torch.zeros(V, D)), ["lm_head.weight", "int8"]),
        (_set("lm_head.weight", torch.zeros(V, D, dtype=torch.int32)), ["lm_head.weight", "int8"]),
        (
            _set("model.layers.1.mlp.gate_proj.weight_scale", torch.tensor(0.0)),
            ["model.layers.1.mlp.gate_proj.weight_scale", "positive"],
        ),
        (_set("lm_head.weight_scale", torch.tensor(-0.25)), ["lm_head.weight_scale", "positive"]),
        (_set("lm_head.weight_scale", torch.tensor(float("nan"))), ["lm_head.weight_scale", "non-finite"]),
        (
            _set("lm_head.weight_scale", torch.tensor(0.5, dtype=torch.bfloat16)),
            ["lm_head.weight_scale", "float32"],
        ),
        (_set("lm_head.weight_scale", torch.ones(2)), ["lm_head.weight_scale", "shape"]),
        (
            _drop("model.layers.0.attn.o_proj.weight_scale"),
            ["missing", "model.layers.0.attn.o_proj.weight_scale"],
        ),
    ],
    ids=[
        "trit-2",
        "trit-minus-3",
        "float-trits",
        "int32-trits",
        "scale-0",
        "scale-negative",
        "scale-nan",
        "scale-bf16",
        "scale-shape",
        "scale-missing",
    ],
)
def test_bad_pre_quantized_tensor(quant_dir: Path, edit: Any, fragments: list[str]) -> None:
    rewrite_weights(quant_dir, edit)
    with pytest.raises(CheckpointError) as excinfo:
        HGRNBitForCausalLM.from_pretrained(quant_dir)
    one_line_error(excinfo, *fragments)


def test_pre_quantized_weights_without_quantization_config(quant_dir: Path) -> None:
    data = json.loads((quant_dir / "config.json").read_text())
    del data["quantization_config"]
    (quant_dir / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError) as excinfo:
        HGRNBitForCausalLM.from_pretrained(quant_dir)
    one_line_error(excinfo, "weight_scale", "quantization_config")


@pytest.mark.parametrize(
    "key, value",
    [
        ("num_heads", 3),
        ("expand_ratio", 2),
        ("use_short_conv", True),
        ("tie_word_embeddings", True),
        ("hidden_act", "gelu"),
        ("attn_mode", "chunk"),
        ("model_type", "llama"),
        ("hidden_size", "32"),
        ("quantization_config", {"quant_method": "gptq"}),
    ],
)
def test_unsupported_config_value(float_dir: Path, key: str, value: Any) -> None:
    rewrite_config(float_dir, **{key: value})
    with pytest.raises(ConfigError) as excinfo:
        HGRNBitForCausalLM.from_pretrained(float_dir)
    msg = one_line_error(excinfo, repr(value) if not isinstance(value, dict) else "gptq")
    assert msg.startswith(f"{float_dir / 'config.json'}: {key}="), msg


def test_invalid_json_config(float_dir: Path) -> None:
    (float_dir / "config.json").write_text('{"vocab_size": 64,')
    with pytest.raises(ConfigError) as excinfo:
        HGRNBitForCausalLM.from_pretrained(float_dir)
    msg = one_line_error(excinfo, "JSON")
    assert msg.startswith(f"{float_dir / 'config.json'}: not valid JSON"), msg


# ------------------------------------------------------------------------------------------ tokenizer


def _write_word_level_tokenizer(directory: Path) -> None:
    tokenizers = pytest.importorskip(
        "tokenizers", reason="the optional `tokenizers` package is not installed"
    )
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "hello": 3, "world": 4, "ternary": 5}
    tok = tokenizers.Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = Whitespace()
    tok.decoder = tokenizers.decoders.WordPiece()  # joins words with spaces
    tok.save(str(directory / "tokenizer.json"))


def test_tokenizer_is_attached(float_dir: Path, tmp_path: Path) -> None:
    _write_word_level_tokenizer(float_dir)
    loaded = HGRNBitForCausalLM.from_pretrained(float_dir)
    assert loaded.tokenizer is not None
    assert loaded.tokenizer.encode("hello ternary world") == [3, 5, 4]
    assert loaded.tokenizer.encode("hello moon") == [3, 0]
    assert loaded.tokenizer.decode([4, 3]) == "world hello"
    # save_pretrained carries the tokenizer along
    loaded.save_pretrained(tmp_path / "copy")
    assert (tmp_path / "copy" / "tokenizer.json").read_bytes() == (float_dir / "tokenizer.json").read_bytes()


def test_corrupt_tokenizer_json(float_dir: Path) -> None:
    pytest.importorskip("tokenizers", reason="the optional `tokenizers` package is not installed")
    (float_dir / "tokenizer.json").write_text("{broken")
    with pytest.raises(CheckpointError) as excinfo:
        HGRNBitForCausalLM.from_pretrained(float_dir)
    one_line_error(excinfo, "tokenizer.json")


def test_loading_never_imports_transformers(float_dir: Path, tmp_path: Path) -> None:
    # A stand-in `transformers` on the path: any import of it, even one that is caught, shows up in
    # sys.modules. `tokenizers` and `sentencepiece` are blocked so that the loader has to fall back.
    fake = tmp_path / "fake_site"
    (fake / "transformers").mkdir(parents=True)
    (fake / "transformers" / "__init__.py").write_text("")
    for blocked in ("tokenizers", "sentencepiece"):
        (fake / blocked).mkdir()
        (fake / blocked / "__init__.py").write_text(f"raise ImportError('{blocked} blocked by the test')\n")
    (float_dir / "tokenizer.json").write_text("{}")
    (float_dir / "tokenizer.model").write_bytes(b"\x00")
    script = textwrap.dedent(
        f"""
        import sys, warnings
        from mmfc.frontends.torch import HGRNBitForCausalLM
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            m = HGRNBitForCausalLM.from_pretrained({str(float_dir)!r})
        print("tokenizer:", m.tokenizer)
        print("transformers imported:", "transformers" in sys.modules)
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "tokenizer: None" in result.stdout
    assert "transformers imported: False" in result.stdout, result.stdout
