"""``HGRNBitConfig``: the reference's defaults and formula, lossless ``config.json`` round trips, and one
:class:`ConfigError` naming the key and the value for everything mmfc does not implement."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from mmfc.dialects.diagnostics import ConfigError, UserError
from mmfc.frontends.torch import HGRNBitConfig, derive_intermediate_size, preset_config

TINY: dict[str, Any] = {"vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 2, "intermediate_size": 64}


def spec_intermediate_size(d: int, hidden_ratio: float) -> int:
    """docs/model.md: I = 256 * ceil(int(d * hidden_ratio * 2 / 3) / 256)."""
    return 256 * math.ceil(int(d * hidden_ratio * 2 / 3) / 256)


def refused(data: dict[str, Any], *fragments: str) -> str:
    with pytest.raises(ConfigError) as excinfo:
        HGRNBitConfig.from_dict(data)
    msg = str(excinfo.value)
    assert isinstance(excinfo.value, UserError)
    assert "\n" not in msg
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"
    return msg


# ------------------------------------------------------------------------------------------ defaults


@pytest.mark.parametrize(
    "name, d, layers, size, params",
    [
        ("370m", 1024, 24, 2816, 374_108_160),
        ("1.3b", 2048, 24, 5632, 1_364_779_008),
        ("2.7b", 2560, 32, 6912, 2_702_357_504),
    ],
)
def test_released_sizes(name: str, d: int, layers: int, size: int, params: int) -> None:
    config = preset_config(name)
    assert (config.hidden_size, config.num_hidden_layers, config.vocab_size) == (d, layers, 32000)
    assert config.intermediate_size == size == spec_intermediate_size(d, 4)
    assert derive_intermediate_size(d, 4) == size
    assert config.to_dict()["intermediate_size"] is None  # derived, so written back as null
    assert config.num_parameters == params  # docs/model.md, "Configuration" (released sizes)


def test_reference_defaults() -> None:
    config = HGRNBitConfig()
    assert config.model_type == "hgrn_bit"
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers) == (32000, 2048, 24)
    assert (config.num_heads, config.expand_ratio, config.hidden_ratio) == (1, 1, 4)
    assert config.use_short_conv is False and config.use_lower_bound is True
    assert config.tie_word_embeddings is False
    assert config.hidden_act == "swish" and config.attn_mode == "fused_recurrent"
    assert config.rms_norm_eps == 1e-6
    assert config.intermediate_size == 5632
    assert config.quantization_config is None


@pytest.mark.parametrize("d, ratio", [(32, 4), (1000, 3), (768, 2.5), (4096, 4), (100, 1)])
def test_intermediate_size_formula(d: int, ratio: float) -> None:
    config = HGRNBitConfig.from_dict({"hidden_size": d, "hidden_ratio": ratio, "intermediate_size": None})
    assert config.intermediate_size == spec_intermediate_size(d, ratio)
    assert config.intermediate_size % 256 == 0


def test_null_hidden_ratio_means_four() -> None:
    # the reference MLP replaces hidden_ratio=None by 4
    config = HGRNBitConfig.from_dict({"hidden_size": 1024, "hidden_ratio": None})
    assert config.intermediate_size == 2816
    assert config.to_dict()["hidden_ratio"] is None


# ------------------------------------------------------------------------------------------ round trips


def test_unknown_keys_and_null_intermediate_size_round_trip(tmp_path: Path) -> None:
    original = {
        "model_type": "hgrn_bit",
        "vocab_size": 64,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "intermediate_size": None,
        "conv_size": 5,
        "share_conv_kernel": False,
        "fuse_cross_entropy": False,
        "max_position_embeddings": 4096,
        "architectures": ["HGRNBitForCausalLM"],
        "transformers_version": "4.41.2",
        "torch_dtype": "bfloat16",
        "my_custom_key": {"nested": [1, None, {"deep": True}]},
    }
    (tmp_path / "config.json").write_text(json.dumps(original))
    config = HGRNBitConfig.from_pretrained(tmp_path)
    assert config.intermediate_size == 256
    assert config.extra["my_custom_key"] == original["my_custom_key"]
    out = tmp_path / "out"
    config.save_pretrained(out)
    written = json.loads((out / "config.json").read_text())
    for key, value in original.items():
        assert written[key] == value, key
    assert "extra" not in written and "_intermediate_size_raw" not in written
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]  # no temp file left
    # a second trip changes nothing
    assert HGRNBitConfig.from_pretrained(out).to_dict() == written


def test_explicit_intermediate_size_is_kept() -> None:
    config = HGRNBitConfig.from_dict(dict(TINY))
    assert config.intermediate_size == 64
    assert config.to_dict()["intermediate_size"] == 64


def test_to_dict_is_a_copy() -> None:
    data = dict(TINY, my_list=[1, 2])
    config = HGRNBitConfig.from_dict(data)
    data["my_list"].append(3)
    config.to_dict()["my_list"].append(4)
    assert config.extra["my_list"] == [1, 2]


def test_replace_rederives_a_null_intermediate_size() -> None:
    config = HGRNBitConfig.from_dict({"hidden_size": 1024})
    assert config.replace(hidden_size=2048).intermediate_size == 5632
    fixed = HGRNBitConfig.from_dict(dict(TINY))
    assert fixed.replace(hidden_size=64).intermediate_size == 64


def test_quantization_config_round_trip() -> None:
    qc = {"quant_method": "mmfc-ternary", "weights": "int8-trits"}
    config = HGRNBitConfig.from_dict(dict(TINY, quantization_config=qc))
    assert config.quantization_config == qc
    assert config.to_dict()["quantization_config"] == qc
    assert "quantization_config" not in HGRNBitConfig.from_dict(dict(TINY)).to_dict()


def test_missing_model_type_means_hgrn_bit() -> None:
    assert HGRNBitConfig.from_dict(dict(TINY)).model_type == "hgrn_bit"


# ------------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    "key, value",
    [
        ("num_heads", 3),
        ("num_heads", 0),
        ("expand_ratio", 2),
        ("use_short_conv", True),
        ("use_short_conv", "false"),
        ("use_lower_bound", "yes"),
        ("tie_word_embeddings", True),
        ("hidden_act", "gelu"),
        ("attn_mode", "chunk"),
        ("attn_mode", "fused_chunk"),
        ("model_type", "llama"),
        ("vocab_size", 0),
        ("num_hidden_layers", -1),
        ("hidden_size", 32.0),
        ("intermediate_size", "64"),
        ("rms_norm_eps", 0),
        ("hidden_ratio", "4"),
        ("quantization_config", {"quant_method": "gptq", "bits": 4}),
    ],
)
def test_unsupported_value_names_key_and_value(key: str, value: Any) -> None:
    msg = refused(dict(TINY, **{key: value}), f"{key}={value!r}")
    assert msg.startswith(f"config.json: {key}="), msg


def test_bad_size_is_named_before_the_formula_runs() -> None:
    # with intermediate_size null the formula would otherwise fail on a string with a TypeError
    refused({"hidden_size": "2048", "intermediate_size": None}, "hidden_size='2048'")
    refused({"hidden_size": 64, "hidden_ratio": "4", "intermediate_size": None}, "hidden_ratio='4'")
    refused({"model_type": "llama", "hidden_size": "big"}, "model_type='llama'")


def test_direct_construction_validates_too() -> None:
    with pytest.raises(ConfigError, match=r"num_heads=5"):
        HGRNBitConfig(**TINY, num_heads=5)


def test_top_level_must_be_an_object(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("[1, 2, 3]")
    with pytest.raises(ConfigError, match="JSON object"):
        HGRNBitConfig.from_pretrained(tmp_path)


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"hidden_size": 32')
    with pytest.raises(ConfigError) as excinfo:
        HGRNBitConfig.from_pretrained(tmp_path)
    assert str(excinfo.value).startswith(f"{tmp_path / 'config.json'}: not valid JSON")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        HGRNBitConfig.from_pretrained(tmp_path)


def test_unknown_preset() -> None:
    with pytest.raises(ConfigError, match="'7b'"):
        preset_config("7b")
