"""Checkpoint directories: ``config.json`` + ``model.safetensors`` (or a sharded index), HF layout.

Reading never unpickles anything (safetensors only) and needs no ``transformers``. Every problem with a
directory is one :class:`CheckpointError` naming the file, tensor or key: a missing, unexpected,
wrongly shaped, wrongly typed or non-finite tensor; float weights that are already ternary-valued
(the absmean pitfall of ``docs/model.md``); a pre-quantized tensor outside {-1, 0, +1}; a weight
scale that is not one positive float32.

**One validation** (:func:`check_checkpoint`) serves the PyTorch loader (``from_pretrained``) and the
importer (``mmfc import``, ``mmfc compile``): the folder is read through the weight store's
:class:`~mmfc.dialects.weights.CheckpointStore` (memory-mapped), names, shapes and dtypes are checked
against the config from the headers (:func:`open_checkpoint`), then every value by its role with the
rules of :mod:`mmfc.dialects.weight_values` (:func:`check_values`: streamed block by block on every
core, each tensor's pages released once checked). Whatever one refuses, the other refuses in the same
words.

Two kinds of checkpoint load into :class:`HGRNBitForCausalLM`:

* float masters (bf16/fp16/fp32, upcast to float32), quantized on the fly like the reference;
* mmfc pre-quantized: ``config.json`` has ``quantization_config = {"quant_method": "mmfc-ternary",
  "weights": "int8-trits"}``, every BitLinear ``X.weight`` is int8 trits of the same name and shape and
  ``X.weight_scale`` a float32 scalar holding 1/s_w.

Writing is all-or-nothing (``mmfc.dialects.files.atomic_dir`` with ``merge=True``): every file is first
written to a temporary folder on the target's filesystem (inside an existing target, else beside it). Only when all are complete does a new target
folder get renamed into place in one step, or, for an existing one, each file moved in with
``os.replace`` (weights first, ``config.json`` last, then stale weight files of the other layout
removed). A failure while writing leaves the target as it was, and the temporary folder is removed.

Tokenizers are read with the ``tokenizers`` or ``sentencepiece`` packages when installed; loading never
imports ``transformers``.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mmfc.dialects import weight_values
from mmfc.dialects.diagnostics import CheckpointError, UserError
from mmfc.dialects.dtypes import by_code as dtype_by_code
from mmfc.dialects.files import atomic_dir
from mmfc.dialects.parallel import map_in_order
from mmfc.dialects.progress import progress
from mmfc.dialects.weight_values import Role
from mmfc.dialects.weights import SCALE_TENSOR_SUFFIX, CheckpointStore, WeightStoreError
from mmfc.frontends.torch.config import HGRNBitConfig

if TYPE_CHECKING:
    from mmfc.frontends.torch.modeling import HGRNBitForCausalLM

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
QUANT_CONFIG = {"quant_method": "mmfc-ternary", "weights": "int8-trits"}
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
)


# ------------------------------------------------------------------------------------------ reading


def _one_line(exc: BaseException) -> str:
    """An exception's text on one line (library messages sometimes span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _meta_model(
    config: HGRNBitConfig, quantized: bool, cls: type[HGRNBitForCausalLM] | None = None
) -> HGRNBitForCausalLM:
    """A model of ``config`` on the meta device (shapes only), its BitLinears quantized if asked.

    Quantizes module by module: ``HGRNBitForCausalLM.quantize_`` would also edit ``config``."""
    from mmfc.frontends.torch.modeling import BitLinear, HGRNBitForCausalLM

    with torch.device("meta"):
        model = (cls or HGRNBitForCausalLM)(config)
        if quantized:
            for module in model.modules():
                if isinstance(module, BitLinear):
                    module.quantize_()
    return model


def expected_tensors(config: HGRNBitConfig, quantized: bool) -> dict[str, tuple[int, ...]]:
    """Every tensor name of a checkpoint for ``config`` and its shape (the reference's names; a
    pre-quantized checkpoint adds a scalar ``X.weight_scale`` per BitLinear)."""
    return {name: tuple(t.shape) for name, t in _meta_model(config, quantized).state_dict().items()}


def _bitlinear_weight_names(model: HGRNBitForCausalLM) -> set[str]:
    """The ``X.weight`` names of every BitLinear (the tensors that are ternary once quantized)."""
    from mmfc.frontends.torch.modeling import BitLinear

    return {f"{name}.weight" for name, m in model.named_modules() if isinstance(m, BitLinear)}


def check_tensor_names(directory: Path, expected: Iterable[str], present: Iterable[str], quantized: bool) -> None:
    """A :class:`CheckpointError` for the first missing or unexpected tensor name (both sorted)."""
    expected, present = set(expected), set(present)
    missing = sorted(expected - present)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"{directory}: missing tensor {missing[0]}{more}")
    unexpected = sorted(present - expected)
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        hint = ""
        if any(n.endswith(".weight_scale") for n in unexpected) and not quantized:
            hint = "; it looks pre-quantized but config.json has no quantization_config"
        raise CheckpointError(f"{directory}: unexpected tensor {unexpected[0]}{more}{hint}")


def check_tensor_shape(where: str, name: str, shape: tuple[int, ...], want: tuple[int, ...]) -> tuple[int, ...]:
    """``shape`` as the model uses it (a ``weight_scale`` stored as ``[1]`` reads as a scalar ``()``);
    a :class:`CheckpointError` at ``where`` when it is not ``want``."""
    if name.endswith(".weight_scale") and shape == (1,):
        shape = ()
    if shape != want:
        raise CheckpointError(f"{where} has shape {list(shape)}, expected {list(want)}")
    return shape


def tensor_roles(config: HGRNBitConfig) -> dict[str, tuple[tuple[int, ...], Role]]:
    """Every tensor of a checkpoint for ``config``: its shape and the value rule it obeys
    (``dialects.weight_values``): BitLinear weights are ``master`` (float) or ``trits``
    (pre-quantized, with a ``scale`` each), everything else ``float``."""
    key = json.dumps(config.to_dict(), sort_keys=True, default=str)
    cached = _ROLES.get(key)
    if cached is not None:
        return dict(cached)
    quantized = config.quantization_config is not None
    model = _meta_model(config, quantized)
    ternary = _bitlinear_weight_names(model)
    roles: dict[str, tuple[tuple[int, ...], Role]] = {}
    for name, t in model.state_dict().items():
        role: Role
        if name in ternary:
            role = "trits" if quantized else "master"
        elif name.endswith(SCALE_TENSOR_SUFFIX):
            role = "scale"
        else:
            role = "float"
        roles[name] = (tuple(t.shape), role)
    _ROLES[key] = dict(roles)
    return roles


#: tensor_roles by config (building even a meta model of 2.7B takes a second; a compile asks twice)
_ROLES: dict[str, dict[str, tuple[tuple[int, ...], Role]]] = {}


def _dtype_name(code: str) -> str:
    """A safetensors code as users know it: ``int8``, ``bfloat16``, ``float32``, ``F8_E4M3``."""
    row = dtype_by_code(code)
    if row is None or not row.names:
        return code
    return row.names[1] if len(row.names) > 1 else row.names[0]


def _role_dtype_problem(role: Role, code: str) -> str | None:
    """Why a tensor of ``role`` may not be stored as ``code`` (None: it may)."""
    row = dtype_by_code(code)
    is_float = row is not None and row.is_float
    if role == "trits" and code != "I8":
        return f"pre-quantized weights must be int8 trits, got {_dtype_name(code)}"
    if role == "scale" and code != "F32":
        return f"has dtype {_dtype_name(code)}; a pre-quantized weight_scale is float32"
    if role in ("master", "float") and not is_float:
        return f"has dtype {_dtype_name(code)}; expected a float tensor (bf16, fp16 or fp32)"
    return None


def open_checkpoint(directory: str | Path, config: HGRNBitConfig) -> CheckpointStore:
    """The checkpoint folder's weights (read lazily), checked against ``config`` from the
    safetensors headers alone: the index and shards agree, and every tensor the model has is there
    with its shape and a dtype its role allows, and no other. Values are checked by
    :func:`check_values`. The first problem is a :class:`CheckpointError` naming the file and the
    tensor."""
    directory = Path(directory)
    try:
        store = CheckpointStore(directory)
    except WeightStoreError as exc:
        raise CheckpointError(str(exc)) from None
    roles = tensor_roles(config)
    quantized = config.quantization_config is not None
    check_tensor_names(directory, roles, store.names(), quantized)
    for name, (shape, role) in roles.items():
        info = store.info(name)
        where = tensor_place(store, name)
        check_tensor_shape(where, name, tuple(info.shape), shape)
        problem = _role_dtype_problem(role, info.stored)
        if problem is not None:
            joiner = ": " if problem.startswith("pre-quantized") else " "
            raise CheckpointError(f"{where}{joiner}{problem}")
    return store


def tensor_place(store: CheckpointStore, name: str) -> str:
    """How messages name tensor ``name`` of a checkpoint: ``FILE: tensor NAME``."""
    return f"{store.file_of(name)}: tensor {name}"


def check_values(store: CheckpointStore, config: HGRNBitConfig) -> None:
    """Check every tensor's values by its role (``dialects.weight_values``: finite floats, float
    masters not already ternary, trits in {-1, 0, +1}, positive finite scalar scales), tensor by
    tensor on the worker threads, each tensor's pages released once checked: a 2.7B checkpoint is
    never held in memory. The first problem (in the order of :func:`tensor_roles`) is a
    :class:`CheckpointError` naming the file and the tensor."""
    roles = tensor_roles(config)
    names = list(roles)

    def check(name: str) -> str | None:
        try:
            weight_values.check_values(store, name, roles[name][1])
        except weight_values.WeightValueError as exc:
            return str(exc)
        return None

    with progress("check weights", len(names)) as advance:
        for name, problem in zip(names, map_in_order(check, names)):
            if problem is not None:
                where = tensor_place(store, name)
                if problem == weight_values.ALREADY_TERNARY:
                    problem += (
                        " if loaded as a float master. Store trits with their scale as an mmfc pre-quantized "
                        "checkpoint (save_pretrained(dir, quantized=True), quantization_config "
                        '{"quant_method": "mmfc-ternary", "weights": "int8-trits"})'
                    )
                raise CheckpointError(f"{where} {problem}")
            advance(1)


def check_checkpoint(directory: str | Path, config: HGRNBitConfig) -> CheckpointStore:
    """:func:`open_checkpoint` then :func:`check_values`: the one validation of a checkpoint folder,
    which ``from_pretrained`` and the importer (``mmfc import``, ``mmfc compile``) both make."""
    store = open_checkpoint(directory, config)
    check_values(store, config)
    return store


def load_state_dict_checked(directory: Path, config: HGRNBitConfig) -> dict[str, torch.Tensor]:
    """Read and validate every tensor of ``directory`` against ``config`` (:func:`check_checkpoint`).
    Float tensors come back float32, trits int8, scales as 0-d float32."""
    store = check_checkpoint(directory, config)
    out: dict[str, torch.Tensor] = {}
    for name, (shape, role) in tensor_roles(config).items():
        array = store.get(name)
        dtype = np.int8 if role == "trits" else np.float32
        out[name] = torch.from_numpy(np.array(array, dtype=dtype, copy=True).reshape(shape))
        store.release(name)
    return out


def load_pretrained(
    cls: type[HGRNBitForCausalLM], directory: str | Path, device: str | torch.device = "cpu"
) -> HGRNBitForCausalLM:
    """Load a checkpoint directory into ``cls`` (float32 masters or int8 trits + float32 scales).

    Raises :class:`CheckpointError` (folder, weights, tokenizer) or :class:`ConfigError` (config.json),
    each naming the file and the tensor or key."""
    directory = Path(directory)
    if not directory.exists():
        raise CheckpointError(f"{directory}: no such directory")
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: not a directory (a checkpoint is a folder with config.json)")
    if not (directory / "config.json").is_file():
        raise CheckpointError(f"{directory}: no config.json (not a checkpoint directory)")
    config = HGRNBitConfig.from_pretrained(directory)  # ConfigError messages name config.json's path
    state = load_state_dict_checked(directory, config)
    model = _meta_model(config, config.quantization_config is not None, cls)
    model.load_state_dict(state, strict=True, assign=True)
    model = model.to(device)
    model.eval()
    model.tokenizer = load_tokenizer(directory)
    model.source_dir = directory
    return model


# ------------------------------------------------------------------------------------------ writing


def _checkpoint_tensors(model: HGRNBitForCausalLM, quantized: bool) -> dict[str, torch.Tensor]:
    """The tensors to write, on the CPU: float masters as they are, or (``quantized``) each BitLinear
    weight as int8 trits plus its float32 ``weight_scale``, computed exactly as the float path does."""
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
                    "(save_pretrained(dir, quantized=True)); writing ternary-valued floats would shrink "
                    "the scales"
                )
        tensors[name] = t.detach().contiguous().cpu()
    return tensors


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def save_pretrained(
    model: HGRNBitForCausalLM,
    directory: str | Path,
    quantized: bool = False,
    max_shard_bytes: int | None = None,
) -> None:
    """Write ``config.json``, the weights and the source's tokenizer files into ``directory``.

    Weights go to one ``model.safetensors``, or, when ``max_shard_bytes`` is given and they are larger,
    to ``model-0000i-of-0000n.safetensors`` shards (each at most ``max_shard_bytes`` unless one tensor is
    larger) with a ``model.safetensors.index.json``. ``quantized=True`` writes the mmfc pre-quantized
    layout. Other files already in ``directory`` are kept; weight files of the other layout are removed.
    Nothing in ``directory`` changes unless every file was written (see the module docstring).

    Raises :class:`UserError` for a bad argument and :class:`CheckpointError` when the files cannot be
    written (the message names the path and the system's reason).
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    if max_shard_bytes is not None and (
        not isinstance(max_shard_bytes, int) or isinstance(max_shard_bytes, bool) or max_shard_bytes <= 0
    ):
        raise UserError(f"max_shard_bytes={max_shard_bytes!r}: must be a positive number of bytes")
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"{directory}: exists and is not a directory; cannot write a checkpoint there")
    tensors = _checkpoint_tensors(model, quantized)
    config = model.config.replace()
    config.quantization_config = dict(QUANT_CONFIG) if quantized else None

    try:
        if not directory.exists():
            directory.parent.mkdir(parents=True, exist_ok=True)
        # weights first, then the index, then config.json: a reader in between still finds the old
        # index or single file first
        order = {INDEX_FILE: 1, "config.json": 2}
        with atomic_dir(directory, merge=True, order=lambda name: order.get(name, 0)) as tmp:
            if max_shard_bytes is None or sum(_nbytes(t) for t in tensors.values()) <= max_shard_bytes:
                save_file(tensors, str(tmp / SINGLE_FILE), metadata={"format": "pt"})
                weights = [SINGLE_FILE]
            else:
                weights = _save_sharded(tensors, tmp, max_shard_bytes, save_file)
            config.save_pretrained(tmp)
            source = getattr(model, "source_dir", None)
            if source is not None and Path(source).resolve() != directory.resolve():
                for fname in TOKENIZER_FILES:
                    if (Path(source) / fname).is_file():
                        shutil.copy2(Path(source) / fname, tmp / fname)
        _remove_stale_weights(directory, weights)
    except OSError as exc:
        raise CheckpointError(f"{directory}: cannot write the checkpoint ({_one_line(exc)})") from None


def _remove_stale_weights(directory: Path, weights: list[str]) -> None:
    """Delete the weight files of the other layout (single file vs shards) that ``weights`` replaced."""
    stale = [SINGLE_FILE, INDEX_FILE, *(p.name for p in directory.glob("model-*-of-*.safetensors"))]
    for name in stale:
        if name not in weights and (directory / name).is_file():
            (directory / name).unlink()


def _save_sharded(
    tensors: dict[str, torch.Tensor], tmp: Path, max_shard_bytes: int, save_file: Any
) -> list[str]:
    """Write shards in state-dict order, starting a new one when the next tensor would not fit, and the
    index; returns the file names written."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in tensors.items():
        if shards[-1] and size + _nbytes(t) > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += _nbytes(t)
    weight_map: dict[str, str] = {}
    written = []
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(tmp / fname), metadata={"format": "pt"})
        written.append(fname)
        weight_map.update({name: fname for name in shard})
    index = {"metadata": {"total_size": sum(_nbytes(t) for t in tensors.values())}, "weight_map": weight_map}
    (tmp / INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
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

    def __repr__(self) -> str:
        return f"Tokenizer({self.source!r})"


def load_tokenizer(directory: Path) -> Tokenizer | None:
    """A tokenizer from ``tokenizer.json`` (package ``tokenizers``) or ``tokenizer.model``
    (``sentencepiece``, BOS=1 prepended as the Llama tokenizer does).

    None when the directory has neither, or (with a warning) when no installed package reads them:
    prompts are then token ids. Never imports ``transformers``. A file that the package cannot read is
    a :class:`CheckpointError` naming it."""
    directory = Path(directory)
    tj, sp = directory / "tokenizer.json", directory / "tokenizer.model"
    if not tj.is_file() and not sp.is_file():
        return None
    if tj.is_file():
        try:
            from tokenizers import Tokenizer as HFTokenizer
        except ImportError:
            pass
        else:
            try:
                tok = HFTokenizer.from_file(str(tj))
            except Exception as exc:  # noqa: BLE001 - the Rust library raises plain Exception
                raise CheckpointError(f"{tj}: not a readable tokenizer ({_one_line(exc)})") from None
            return Tokenizer(lambda s: tok.encode(s).ids, lambda ids: tok.decode(ids), str(tj))
    if sp.is_file():
        try:
            import sentencepiece
        except ImportError:
            pass
        else:
            try:
                proc = sentencepiece.SentencePieceProcessor(model_file=str(sp))
            except Exception as exc:  # noqa: BLE001 - it raises OSError or RuntimeError by version
                raise CheckpointError(
                    f"{sp}: not a readable sentencepiece model ({_one_line(exc)})"
                ) from None
            return Tokenizer(lambda s: [1] + proc.encode(s), lambda ids: proc.decode(ids), str(sp))
    found = tj if tj.is_file() else sp
    warnings.warn(
        f"{found}: not loaded (install the `tokenizers` or `sentencepiece` package); "
        "the model takes token ids only",
        stacklevel=3,
    )
    return None
