"""Checkpoint directories: ``config.json`` + ``model.safetensors`` (or a sharded index), HF layout.

Reading never unpickles anything (safetensors only) and needs no ``transformers``. Every problem with a
directory is one :class:`CheckpointError` naming the file, tensor or key: a missing, unexpected,
wrongly shaped, wrongly typed or non-finite tensor; float weights that are already ternary-valued
(the absmean pitfall of ``model-spec.md``); a pre-quantized tensor outside {-1, 0, +1}.

Two kinds of checkpoint load into :class:`HGRNBitForCausalLM`:

* float masters (bf16/fp16/fp32, upcast to float32), quantized on the fly like the reference;
* mmfc pre-quantized: ``config.json`` has ``quantization_config = {"quant_method": "mmfc-ternary",
  "weights": "int8-trits"}``, every BitLinear ``X.weight`` is int8 trits of the same name and shape and
  ``X.weight_scale`` a float32 scalar holding 1/s_w.

Writing is atomic: files are written to a temporary folder beside the target and moved into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch

from mmfc.dialects.diagnostics import CheckpointError, ConfigError, UserError
from mmfc.frontends.torch.config import HGRNBitConfig

if TYPE_CHECKING:
    from mmfc.frontends.torch.modeling import HGRNBitForCausalLM

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
QUANT_CONFIG = {"quant_method": "mmfc-ternary", "weights": "int8-trits"}
FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
)


# ------------------------------------------------------------------------------------------ reading


def _weight_files(directory: Path) -> dict[str, Path]:
    """Map each tensor name to the safetensors file holding it."""
    from safetensors import safe_open

    index = directory / INDEX_FILE
    single = directory / SINGLE_FILE
    if index.is_file():
        try:
            data = json.loads(index.read_text())
            weight_map = data["weight_map"]
            if not isinstance(weight_map, dict):
                raise TypeError("weight_map is not an object")
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{index}: not a valid safetensors index ({exc})") from None
        files: dict[str, Path] = {}
        for name, fname in weight_map.items():
            path = directory / str(fname)
            if not path.is_file():
                raise CheckpointError(f"{index}: tensor {name} points to missing shard {fname}")
            files[name] = path
        # tensors present in shards but absent from the index are unexpected too
        for shard in sorted(set(files.values())):
            for name in _safe_keys(shard, safe_open):
                if name not in files:
                    files[name] = shard
        return files
    if single.is_file():
        return {name: single for name in _safe_keys(single, safe_open)}
    pickles = [p.name for p in directory.glob("*.bin")] + [p.name for p in directory.glob("*.pt")]
    if pickles:
        raise CheckpointError(
            f"{directory}: only pickle weights ({', '.join(sorted(pickles))}); mmfc reads safetensors only "
            "(it never unpickles): convert them to model.safetensors first"
        )
    raise CheckpointError(f"{directory}: no {SINGLE_FILE} or {INDEX_FILE}")


def _safe_keys(path: Path, safe_open: Any) -> list[str]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None


def _read_tensors(files: dict[str, Path], names: list[str]) -> Iterator[tuple[str, torch.Tensor]]:
    from safetensors import safe_open

    by_file: dict[Path, list[str]] = {}
    for name in names:
        by_file.setdefault(files[name], []).append(name)
    for path, file_names in by_file.items():
        try:
            with safe_open(str(path), framework="pt") as f:
                for name in file_names:
                    yield name, f.get_tensor(name)
        except CheckpointError:
            raise
        except Exception as exc:
            raise CheckpointError(f"{path}: cannot read tensor ({exc})") from None


def expected_tensors(config: HGRNBitConfig, quantized: bool) -> dict[str, tuple[int, ...]]:
    """Every tensor name of a checkpoint for ``config`` and its shape (the reference's names)."""
    from mmfc.frontends.torch.modeling import HGRNBitForCausalLM

    with torch.device("meta"):
        model = HGRNBitForCausalLM(config)
        if quantized:
            model.quantize_()
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def _bitlinear_weight_names(config: HGRNBitConfig) -> set[str]:
    names = {"lm_head.weight"}
    for l in range(config.num_hidden_layers):
        p = f"model.layers.{l}."
        names |= {p + f"attn.{x}_proj.weight" for x in "ifgo"}
        names |= {p + "mlp.gate_proj.weight", p + "mlp.down_proj.weight"}
    return names


def _looks_ternary(t: torch.Tensor) -> bool:
    """True when a float tensor holds at most three distinct values (checked on a sample first)."""
    flat = t.reshape(-1)
    if flat.numel() == 0:
        return False
    if torch.unique(flat[:4096]).numel() > 3:
        return False
    return torch.unique(flat).numel() <= 3


def load_state_dict_checked(directory: Path, config: HGRNBitConfig) -> dict[str, torch.Tensor]:
    """Read and validate every tensor; float tensors come back float32, trits int8."""
    quantized = config.quantization_config is not None
    expected = expected_tensors(config, quantized)
    files = _weight_files(directory)
    missing = sorted(set(expected) - set(files))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"{directory}: missing tensor {missing[0]}{more}")
    unexpected = sorted(set(files) - set(expected))
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        hint = ""
        if any(n.endswith(".weight_scale") for n in unexpected) and not quantized:
            hint = "; it looks pre-quantized but config.json has no quantization_config"
        raise CheckpointError(f"{directory}: unexpected tensor {unexpected[0]}{more}{hint}")
    ternary_names = _bitlinear_weight_names(config)
    out: dict[str, torch.Tensor] = {}
    for name, t in _read_tensors(files, list(expected)):
        where = f"{files[name].name}: tensor {name}"
        shape = tuple(t.shape)
        want = expected[name]
        if name.endswith(".weight_scale") and shape == (1,):
            t = t.reshape(())
            shape = ()
        if shape != want:
            raise CheckpointError(f"{where} has shape {list(shape)}, expected {list(want)}")
        if quantized and name in ternary_names:
            if t.dtype.is_floating_point or t.dtype == torch.bool:
                raise CheckpointError(f"{where}: pre-quantized weights must be int8 trits, got {t.dtype}")
            if t.numel() and (int(t.min()) < -1 or int(t.max()) > 1):
                raise CheckpointError(f"{where}: pre-quantized trits must lie in {{-1, 0, +1}}")
            out[name] = t.to(torch.int8)
            continue
        if t.dtype not in FLOAT_DTYPES:
            raise CheckpointError(f"{where} has dtype {t.dtype}; expected a float tensor (bf16, fp16 or fp32)")
        t = t.to(torch.float32)
        if not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{where} holds non-finite values (NaN or Inf)")
        if name.endswith(".weight_scale") and not float(t) > 0:
            raise CheckpointError(f"{where} must be a positive scale, got {float(t)}")
        if not quantized and name in ternary_names and _looks_ternary(t):
            raise CheckpointError(
                f"{where} is already ternary-valued (at most 3 distinct values) but is loaded as a float "
                "master: re-quantizing ternary weights keeps the signs but shrinks the absmean scale by the "
                "fraction of non-zeros (about 0.69x), silently changing every output. Store trits with their "
                "scale as an mmfc pre-quantized checkpoint (save_pretrained(dir, quantized=True), "
                'quantization_config {"quant_method": "mmfc-ternary", "weights": "int8-trits"})'
            )
        out[name] = t
    return out


def load_pretrained(
    cls: type["HGRNBitForCausalLM"], directory: str | Path, device: str | torch.device = "cpu"
) -> "HGRNBitForCausalLM":
    directory = Path(directory)
    if not directory.exists():
        raise CheckpointError(f"{directory}: no such directory")
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: not a directory (a checkpoint is a folder with config.json)")
    if not (directory / "config.json").is_file():
        raise CheckpointError(f"{directory}: no config.json (not a checkpoint directory)")
    try:
        config = HGRNBitConfig.from_pretrained(directory)
    except ConfigError as exc:
        raise ConfigError(f"{directory}/{exc}") from None
    state = load_state_dict_checked(directory, config)
    with torch.device("meta"):
        model = cls(config)
        if config.quantization_config is not None:
            for module in model.modules():
                if hasattr(module, "quantize_") and module is not model:
                    module.quantize_()
    model.load_state_dict(state, strict=True, assign=True)
    model = model.to(device)
    model.eval()
    model.tokenizer = load_tokenizer(directory)
    model.source_dir = directory
    return model


# ------------------------------------------------------------------------------------------ writing


def _checkpoint_tensors(model: "HGRNBitForCausalLM", quantized: bool) -> dict[str, torch.Tensor]:
    from mmfc.frontends.torch import numerics as tn
    from mmfc.frontends.torch.modeling import BitLinear

    tensors: dict[str, torch.Tensor] = {}
    bitlinears = {name for name, m in model.named_modules() if isinstance(m, BitLinear)}
    for name, t in model.state_dict().items():
        owner = name.rsplit(".", 1)[0]
        if owner in bitlinears and name.endswith(".weight") and not name.endswith(".norm.weight"):
            if quantized and t.dtype.is_floating_point:
                trits, scale = tn.quant_weight(t)
                tensors[name] = trits.contiguous().cpu()
                tensors[owner + ".weight_scale"] = scale.reshape(()).cpu()
                continue
            if not quantized and not t.dtype.is_floating_point:
                raise UserError(
                    f"{name} holds trits: a quantized model can only be saved pre-quantized "
                    "(save_pretrained(dir, quantized=True)); writing ternary-valued floats would shrink the scales"
                )
        tensors[name] = t.detach().contiguous().cpu()
    return tensors


def save_pretrained(
    model: "HGRNBitForCausalLM",
    directory: str | Path,
    quantized: bool = False,
    max_shard_bytes: int | None = None,
) -> None:
    """Write ``config.json`` and the weights (sharded with an index above ``max_shard_bytes``) atomically."""
    from safetensors.torch import save_file

    directory = Path(directory)
    tensors = _checkpoint_tensors(model, quantized)
    config = model.config.replace()
    config.quantization_config = dict(QUANT_CONFIG) if quantized else None
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        config.save_pretrained(tmp)
        if max_shard_bytes is None or sum(t.numel() * t.element_size() for t in tensors.values()) <= max_shard_bytes:
            save_file(tensors, str(tmp / SINGLE_FILE), metadata={"format": "pt"})
            written = [SINGLE_FILE]
        else:
            written = _save_sharded(tensors, tmp, max_shard_bytes, save_file)
        source = getattr(model, "source_dir", None)
        if source is not None:
            for fname in TOKENIZER_FILES:
                if (Path(source) / fname).is_file():
                    shutil.copy2(Path(source) / fname, tmp / fname)
        directory.mkdir(parents=True, exist_ok=True)
        # remove stale weight files of the other layout before moving the new ones in
        for stale in [SINGLE_FILE, INDEX_FILE, *[p.name for p in directory.glob("model-*-of-*.safetensors")]]:
            if stale not in written and (directory / stale).exists():
                (directory / stale).unlink()
        for entry in sorted(tmp.iterdir()):
            os.replace(entry, directory / entry.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _save_sharded(tensors: dict[str, torch.Tensor], tmp: Path, max_shard_bytes: int, save_file: Any) -> list[str]:
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    weight_map: dict[str, str] = {}
    written = []
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(tmp / fname), metadata={"format": "pt"})
        written.append(fname)
        weight_map.update({name: fname for name in shard})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (tmp / INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return written + [INDEX_FILE]


# ------------------------------------------------------------------------------------------ tokenizer


class Tokenizer:
    """A thin wrapper: ``encode(text) -> list[int]`` (with BOS when the source adds it), ``decode(ids)``."""

    def __init__(self, encode: Any, decode: Any, source: str) -> None:
        self._encode = encode
        self._decode = decode
        self.source = source

    def encode(self, text: str) -> list[int]:
        return list(self._encode(text))

    def decode(self, ids: list[int]) -> str:
        return str(self._decode(list(ids)))


def load_tokenizer(directory: Path) -> Tokenizer | None:
    """A tokenizer from ``tokenizer.json`` (package ``tokenizers``) or ``tokenizer.model``
    (``sentencepiece``), else through ``transformers`` when installed; None when the directory has none
    or no library can read it (prompts are then token ids)."""
    directory = Path(directory)
    tj, sp = directory / "tokenizer.json", directory / "tokenizer.model"
    if not tj.is_file() and not sp.is_file():
        return None
    if tj.is_file():
        try:
            from tokenizers import Tokenizer as HFTokenizer

            tok = HFTokenizer.from_file(str(tj))
            return Tokenizer(lambda s: tok.encode(s).ids, lambda ids: tok.decode(ids), str(tj))
        except ImportError:
            pass
    if sp.is_file():
        try:
            import sentencepiece

            proc = sentencepiece.SentencePieceProcessor(model_file=str(sp))
            return Tokenizer(lambda s: [1] + proc.encode(s), lambda ids: proc.decode(ids), str(sp))
        except ImportError:
            pass
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(directory))
        return Tokenizer(lambda s: tok(s)["input_ids"], lambda ids: tok.decode(ids), str(directory))
    except ImportError:
        return None
