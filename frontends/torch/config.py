"""``HGRNBitConfig``: the Hugging Face ``config.json`` of ``hgrn_bit`` models, without ``transformers``.

Known keys become attributes; every other key is kept verbatim in :attr:`HGRNBitConfig.extra` and
written back unchanged. Values the reference code implements differently from the released ones are
either implemented exactly (``num_heads`` dividing d, ``use_lower_bound`` false: the math is the
reference's) or refused with a :class:`ConfigError` naming the key (see :meth:`validate`).
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmfc.dialects.diagnostics import ConfigError
from mmfc.dialects.files import write_text_atomic

MODEL_TYPE = "hgrn_bit"

# Defaults of the reference configuration (released values).
_DEFAULTS: dict[str, Any] = {
    "vocab_size": 32000,
    "hidden_size": 2048,
    "num_hidden_layers": 24,
    "num_heads": 1,
    "expand_ratio": 1,
    "use_short_conv": False,
    "conv_size": 4,
    "share_conv_kernel": True,
    "use_lower_bound": True,
    "hidden_ratio": 4,
    "intermediate_size": None,
    "hidden_act": "swish",
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6,
    "use_cache": True,
    "pad_token_id": None,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "tie_word_embeddings": False,
    "initializer_range": 0.02,
    "fuse_cross_entropy": True,
    "attn_mode": "fused_recurrent",
}


def derive_intermediate_size(hidden_size: int, hidden_ratio: float | None) -> int:
    """The reference formula: ``I = 256 * ceil(int(d * hidden_ratio * 2 / 3) / 256)``.

    ``hidden_ratio=None`` means 4, as in the reference MLP."""
    ratio = 4 if hidden_ratio is None else hidden_ratio
    raw = int(hidden_size * ratio * 2 / 3)
    return 256 * math.ceil(raw / 256)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class HGRNBitConfig:
    """Configuration of an ``hgrn_bit`` model (field meanings: ``docs/model.md``, "Configuration")."""

    vocab_size: int = 32000
    hidden_size: int = 2048
    num_hidden_layers: int = 24
    num_heads: int = 1
    expand_ratio: int = 1
    use_short_conv: bool = False
    conv_size: int = 4
    share_conv_kernel: bool = True
    use_lower_bound: bool = True
    hidden_ratio: int | float = 4
    intermediate_size: int | None = None
    hidden_act: str = "swish"
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    use_cache: bool = True
    pad_token_id: int | None = None
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    tie_word_embeddings: bool = False
    initializer_range: float = 0.02
    fuse_cross_entropy: bool = True
    attn_mode: str = "fused_recurrent"
    model_type: str = MODEL_TYPE
    #: ``quantization_config`` of a pre-quantized checkpoint, or None for float masters.
    quantization_config: dict[str, Any] | None = None
    #: Keys mmfc does not use, kept and written back unchanged.
    extra: dict[str, Any] = field(default_factory=dict)
    #: The value ``intermediate_size`` had in the file (None when derived), written back as read.
    _intermediate_size_raw: int | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._intermediate_size_raw = self.intermediate_size
        if self.model_type != MODEL_TYPE:  # first: another family's keys mean nothing here
            raise self._bad("model_type", f"mmfc compiles '{MODEL_TYPE}' models only")
        if self.intermediate_size is None:
            # the formula needs sane inputs: check them first so a bad value is named, not a TypeError
            self._check_sizes("hidden_size")
            self._check_hidden_ratio()
            self.intermediate_size = derive_intermediate_size(self.hidden_size, self.hidden_ratio)
        self.validate()

    # ------------------------------------------------------------------ validation
    def _bad(self, key: str, why: str) -> ConfigError:
        return ConfigError(f"{key}={getattr(self, key)!r}: {why}")

    def _check_sizes(self, *keys: str) -> None:
        for key in keys:
            value = getattr(self, key)
            if not _is_int(value) or value <= 0:
                raise self._bad(key, "must be a positive integer")

    def _check_hidden_ratio(self) -> None:
        # null is allowed: the reference MLP then uses 4
        if self.hidden_ratio is not None and (not _is_number(self.hidden_ratio) or not self.hidden_ratio > 0):
            raise self._bad("hidden_ratio", "must be a positive number (or null for 4)")

    def validate(self) -> None:
        """Refuse values mmfc does not implement: one :class:`ConfigError` naming the key and the value
        (``key=value: why``; loaders prefix the file's path)."""
        bad = self._bad
        if self.model_type != MODEL_TYPE:
            raise bad("model_type", f"mmfc compiles '{MODEL_TYPE}' models only")
        self._check_sizes("vocab_size", "hidden_size", "num_hidden_layers", "num_heads", "intermediate_size")
        self._check_hidden_ratio()
        for key in ("use_short_conv", "use_lower_bound", "tie_word_embeddings"):
            if not isinstance(getattr(self, key), bool):
                raise bad(key, "must be true or false")
        if self.hidden_size % self.num_heads:
            raise bad("num_heads", f"must divide hidden_size={self.hidden_size}")
        if not _is_number(self.expand_ratio) or self.expand_ratio != 1:
            raise bad("expand_ratio", "only 1 is supported (the reference's lower bound has d entries)")
        if self.use_short_conv:
            raise bad("use_short_conv", "the short convolution is not supported (no release uses it)")
        if self.tie_word_embeddings:
            raise bad("tie_word_embeddings", "tied embeddings are not supported (no release uses them)")
        if self.hidden_act not in ("swish", "silu"):
            raise bad("hidden_act", "the hgrn_bit MLP hard-wires SiLU; only 'swish'/'silu' are accepted")
        if self.attn_mode != "fused_recurrent":
            raise bad("attn_mode", "the only accepted value is 'fused_recurrent'")
        if not _is_number(self.rms_norm_eps) or not self.rms_norm_eps > 0:
            raise bad("rms_norm_eps", "must be a positive number")
        if self.quantization_config is not None:
            qc = self.quantization_config
            if (
                not isinstance(qc, dict)
                or qc.get("quant_method") != "mmfc-ternary"
                or qc.get("weights") != "int8-trits"
            ):
                raise bad(
                    "quantization_config",
                    'mmfc reads only {"quant_method": "mmfc-ternary", "weights": "int8-trits"} (or none)',
                )

    # ------------------------------------------------------------------ derived figures
    @property
    def ternary_parameters(self) -> int:
        """Ternary weights: ``L (4 d^2 + 3 d I) + V d`` (the head is a BitLinear too)."""
        d, i = self.hidden_size, self.intermediate_size
        return self.num_hidden_layers * (4 * d * d + 3 * d * i) + self.vocab_size * d

    @property
    def num_parameters(self) -> int:
        """All parameters: embeddings, lower bounds, L layers (weights + 8 d + I norm entries), final norm,
        head (weight + its norm)."""
        d, i, v, n = self.hidden_size, self.intermediate_size, self.vocab_size, self.num_hidden_layers
        per_layer_norms = 8 * d + i
        lb = n * d if self.use_lower_bound else 0
        return self.ternary_parameters + v * d + lb + n * per_layer_norms + d + d

    # ------------------------------------------------------------------ (de)serialization
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config.json") -> HGRNBitConfig:
        """A validated config from a ``config.json`` object; unknown keys go to :attr:`extra` (deep-copied).

        Raises :class:`ConfigError` ``"<source>: key=value: why"``."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: the top level must be a JSON object, got {type(data).__name__}")
        known = {f for f in cls.__dataclass_fields__ if not f.startswith("_") and f != "extra"}
        kwargs = {k: copy.deepcopy(v) for k, v in data.items() if k in known}
        extra = {k: copy.deepcopy(v) for k, v in data.items() if k not in known}
        if "model_type" not in kwargs:
            kwargs["model_type"] = MODEL_TYPE
        try:
            return cls(**kwargs, extra=extra)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_json_file(cls, path: str | Path) -> HGRNBitConfig:
        """Read and validate one ``config.json``; every error is a :class:`ConfigError` naming ``path``."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> HGRNBitConfig:
        """The config of a checkpoint directory (its ``config.json``)."""
        return cls.from_json_file(Path(directory) / "config.json")

    def to_dict(self) -> dict[str, Any]:
        """The ``config.json`` object: every known field, ``intermediate_size`` as read (null stays null),
        ``quantization_config`` only when set, and every unknown key unchanged."""
        out: dict[str, Any] = copy.deepcopy(self.extra)
        for name in self.__dataclass_fields__:
            if name.startswith("_") or name == "extra":
                continue
            value = getattr(self, name)
            if name == "intermediate_size":
                value = self._intermediate_size_raw
            if name == "quantization_config" and value is None:
                continue
            out[name] = copy.deepcopy(value)
        return out

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, directory: str | Path) -> None:
        """Write ``directory/config.json`` (creating the folder); the file is replaced atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_text_atomic(directory / "config.json", self.to_json_string())

    def replace(self, **changes: Any) -> HGRNBitConfig:
        """A copy with some fields changed (``intermediate_size`` re-derived unless given)."""
        data = self.to_dict()
        if "intermediate_size" not in changes and self._intermediate_size_raw is None:
            data["intermediate_size"] = None
        data.update(changes)
        return HGRNBitConfig.from_dict(data)


# Presets: released shapes (random initialisation from a seed) and a tiny one for demos and tests.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"vocab_size": 1024, "hidden_size": 128, "num_hidden_layers": 2, "intermediate_size": 256},
    "370m": {"hidden_size": 1024, "num_hidden_layers": 24},
    "1.3b": {"hidden_size": 2048, "num_hidden_layers": 24},
    "2.7b": {"hidden_size": 2560, "num_hidden_layers": 32},
}


def preset_config(name: str) -> HGRNBitConfig:
    """The config of a named preset (``tiny``, ``370m``, ``1.3b``, ``2.7b``)."""
    try:
        overrides = PRESETS[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
    data = dict(_DEFAULTS)
    data.update(overrides)
    data["model_type"] = MODEL_TYPE
    data["architectures"] = ["HGRNBitForCausalLM"]
    return HGRNBitConfig.from_dict(data)
