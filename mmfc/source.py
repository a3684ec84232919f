"""Where a model comes from: one resolver for the CLI's ``--model DIR``, ``--preset NAME``, a positional
``ARTIFACT`` or ``FILE.mlir``, and the Python API's model objects and paths.

:func:`source_of` (Python: an ``nn.Module``, a path, ``"preset:NAME"``) and :func:`source_from_args`
(the CLI's arguments) both give a :class:`ModelSource`; everything downstream takes that:

* :func:`load_config`: the model config, without touching weights (cheap; checks fail early);
* :func:`load_model`: the PyTorch model (a checkpoint loaded and validated, a preset initialised from
  its seed), or for a compiled artifact the loaded ``CompiledModel``;
* :func:`import_ir`: the ternary IR and its weight store (a checkpoint is imported from its headers,
  its tensors read lazily; an ``.mlir`` file is parsed and verified).

Every mistake is a one-line :class:`UserError`. Nothing here imports torch until a function needs it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mmfc.dialects.diagnostics import CheckpointError, UserError

if TYPE_CHECKING:
    from xdsl.dialects.builtin import ModuleOp

    from mmfc.dialects.weights import WeightStore
    from mmfc.frontends.torch.config import HGRNBitConfig

MANIFEST_FILE = "manifest.json"
CONFIG_FILE = "config.json"
PRESET_PREFIX = "preset:"

Kind = Literal["checkpoint", "preset", "artifact", "mlir", "module"]


@dataclass(frozen=True)
class ModelSource:
    """A model to work on: a checkpoint folder, a named preset (with the seed of its random weights),
    a compiled artifact folder, an ``.mlir`` file, or a model object given in Python."""

    kind: Kind
    path: Path | None = None
    preset: str | None = None
    init_seed: int = 0
    model: Any = None

    def __str__(self) -> str:
        if self.kind == "preset":
            return f"preset {self.preset}"
        if self.kind == "module":
            return f"a {type(self.model).__name__} object"
        return str(self.path)


# ------------------------------------------------------------------------------------------ resolving


def check_checkpoint_dir(path: str | Path) -> Path:
    """``path`` as a Path if it is a folder holding ``config.json``; else a :class:`CheckpointError`."""
    directory = Path(path)
    if not directory.exists():
        raise CheckpointError(f"{directory}: no such directory")
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: not a directory (a checkpoint is a folder with {CONFIG_FILE})")
    if not (directory / CONFIG_FILE).is_file():
        raise CheckpointError(f"{directory}: no {CONFIG_FILE} (not a checkpoint directory)")
    return directory


def preset_source(name: str, init_seed: int = 0) -> ModelSource:
    """A preset by name, with the seed of its random weights (both checked now, so a bad name or a
    seed out of ``[0, 2**64)`` fails before any work)."""
    from mmfc.dialects.seeds import check_seed
    from mmfc.frontends.torch.config import preset_config

    preset_config(name)
    try:
        seed = check_seed(init_seed, "init_seed")
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return ModelSource("preset", preset=name.lower(), init_seed=seed)


def seed_value(text: str) -> int:
    """An argparse type for seeds (``--seed``, ``--init-seed``): an integer in ``[0, 2**64)``."""
    from mmfc.dialects.seeds import check_seed

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    try:
        return check_seed(value, "a seed")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_init_seed_argument(parser: argparse.ArgumentParser) -> None:
    """``--init-seed S``: the seed of a preset's random weights."""
    parser.add_argument(
        "--init-seed", metavar="S", type=seed_value, default=0,
        help="seed of a preset's random weights, in [0, 2**64) (default 0)",
    )


def path_source(path: str | Path) -> ModelSource:
    """A folder (a compiled artifact if it holds ``manifest.json``, else a checkpoint) or an IR file."""
    p = Path(path)
    if p.is_dir():
        if (p / MANIFEST_FILE).is_file():
            from mmfc.artifact import read_manifest

            read_manifest(p)  # a broken manifest fails here, before anything loads
            return ModelSource("artifact", path=p)
        if (p / CONFIG_FILE).is_file():
            return ModelSource("checkpoint", path=p)
        raise UserError(f"{p}: neither a compiled artifact ({MANIFEST_FILE}) nor a checkpoint ({CONFIG_FILE})")
    if p.is_file():
        return ModelSource("mlir", path=p)
    raise UserError(f"{p}: no such file or directory")


def source_of(model_or_path: Any, init_seed: int = 0) -> ModelSource:
    """The Python API's model argument: an ``nn.Module`` (``HGRNBitForCausalLM`` or a user module built
    from mmfc's blocks), ``"preset:NAME"``, or a path (checkpoint folder, artifact folder, ``.mlir``)."""
    if isinstance(model_or_path, ModelSource):
        return model_or_path
    if isinstance(model_or_path, str) and model_or_path.startswith(PRESET_PREFIX):
        return preset_source(model_or_path[len(PRESET_PREFIX) :], init_seed)
    if isinstance(model_or_path, (str, Path)):
        return path_source(model_or_path)
    if hasattr(model_or_path, "state_dict") and hasattr(model_or_path, "forward"):
        return ModelSource("module", model=model_or_path)
    raise UserError(
        f"cannot compile a {type(model_or_path).__name__}: give an nn.Module, a checkpoint or artifact folder, "
        "an .mlir file, or 'preset:NAME'"
    )


def add_model_arguments(parser: argparse.ArgumentParser, positional: str | None = None) -> None:
    """Add ``--model DIR | --preset NAME`` (mutually exclusive) and, with ``positional`` (``"ARTIFACT"``
    or ``"FILE.mlir"``), an optional positional path. Whether one was given at all is checked by
    :func:`source_from_args`."""
    from mmfc.frontends.torch.config import PRESETS

    if positional is not None:
        what = {
            "ARTIFACT": "a compiled model folder (holds manifest.json); a checkpoint folder is accepted too",
            "FILE.mlir": "ternary IR to compile (instead of --model/--preset)",
        }[positional]
        parser.add_argument("path", nargs="?", metavar=positional, help=what)
    group = parser.add_mutually_exclusive_group(required=positional is None)
    group.add_argument("--model", metavar="DIR", help="checkpoint folder (config.json + model.safetensors)")
    group.add_argument("--preset", metavar="NAME", help=f"named shape with random weights: {', '.join(PRESETS)}")


def source_from_args(args: argparse.Namespace, allow: tuple[Kind, ...] | None = None) -> ModelSource:
    """The model named on the command line (``args.model``, ``args.preset``, optional ``args.path``,
    ``args.init_seed`` when the command has it); ``allow``: the kinds the command accepts."""
    path = getattr(args, "path", None)
    given = [x for x in (path, args.model, args.preset) if x is not None]
    if len(given) > 1:
        raise UserError("give the model once: a path, --model DIR or --preset NAME")
    if not given:
        raise UserError("no model given: pass a path, --model DIR or --preset NAME")
    if args.preset is not None:
        source = preset_source(args.preset, getattr(args, "init_seed", 0))
    elif args.model is not None and (Path(args.model) / MANIFEST_FILE).is_file():
        source = path_source(args.model)  # a compiled artifact named with --model is an artifact
    elif args.model is not None:
        source = ModelSource("checkpoint", path=check_checkpoint_dir(args.model))
    else:
        source = path_source(path)
    if allow is not None and source.kind not in allow:
        raise UserError(_refusal(source, allow))
    return source


def _refusal(source: ModelSource, allow: tuple[Kind, ...]) -> str:
    if source.kind == "mlir":
        return f"{source.path}: an .mlir file must be compiled first (mmfc compile {source.path} -o OUT), then run OUT"
    if source.kind == "artifact":
        return f"{source.path}: already a compiled artifact; give the model it was compiled from"
    return f"{source}: expected one of {', '.join(allow)}"


# ------------------------------------------------------------------------------------------ loading


def load_config(source: ModelSource) -> HGRNBitConfig:
    """The model's config, without touching weights (a preset's is built in; a folder's is read)."""
    from mmfc.frontends.torch.config import HGRNBitConfig, preset_config

    if source.kind == "preset":
        assert source.preset is not None
        return preset_config(source.preset)
    if source.kind == "module":
        return source.model.config
    assert source.path is not None
    if source.kind == "artifact":
        if not (source.path / CONFIG_FILE).is_file():
            from mmfc.artifact import read_manifest

            if CONFIG_FILE in (read_manifest(source.path).get("files") or {}):
                raise UserError(
                    f"{source.path / CONFIG_FILE}: listed in {MANIFEST_FILE} but missing (the artifact was "
                    "modified; compile the model again)"
                )
            raise UserError(f"{source.path}: this artifact has no {CONFIG_FILE} (compiled from bare IR); use `mmfc run`")
        return HGRNBitConfig.from_pretrained(source.path)
    if source.kind == "mlir":
        raise UserError(f"{source.path}: an .mlir file has no model config")
    # ConfigError messages already name the file: "DIR/config.json: key=value: why"
    return HGRNBitConfig.from_pretrained(check_checkpoint_dir(source.path))


def load_model(source: ModelSource, **load_options: Any) -> Any:
    """The PyTorch model (a checkpoint loaded and validated, a preset initialised from its seed, a
    model object as given); for a compiled artifact, the verified ``CompiledModel`` (same
    ``generate``/``prefill`` API; ``load_options`` go to its target)."""
    if source.kind == "module":
        return source.model
    if source.kind == "artifact":
        from mmfc.api import load

        assert source.path is not None
        return load(source.path, **load_options)
    if source.kind == "mlir":
        raise UserError(_refusal(source, ("checkpoint", "preset", "artifact")))
    from mmfc.frontends.torch.modeling import HGRNBitForCausalLM

    if source.kind == "preset":
        assert source.preset is not None
        return HGRNBitForCausalLM.from_preset(source.preset, seed=source.init_seed)
    assert source.path is not None
    return HGRNBitForCausalLM.from_pretrained(source.path)


@dataclass
class ImportedSource:
    """The IR of a source and what came with it: the weight store its symbols name, the model config
    (None for bare IR), the folder its tokenizer files come from, the tokenizer itself."""

    module: ModuleOp
    store: WeightStore
    config: dict[str, Any] | None
    source_dir: Path | None
    tokenizer: Any = None


def import_ir(source: ModelSource, entries: tuple[str, ...] = ("prefill", "decode_step")) -> ImportedSource:
    """The ternary IR of ``source`` (see the module docstring)."""
    if source.kind == "artifact":
        raise UserError(_refusal(source, ("checkpoint", "preset", "mlir", "module")))
    if source.kind == "mlir":
        from mmfc.dialects.context import mmfc_context
        from mmfc.dialects.source import parse_module, verify_module
        from mmfc.dialects.weights import resolve_store, set_mlir_path

        assert source.path is not None
        try:
            text = source.path.read_text()
        except UnicodeDecodeError:
            raise UserError(f"{source.path}: not a text file (IR is UTF-8 text)") from None
        module, parsed = parse_module(mmfc_context(), text, str(source.path))
        verify_module(module, parsed)
        set_mlir_path(module, source.path)
        return ImportedSource(module, resolve_store(module), None, None)
    if source.kind == "checkpoint":
        from mmfc.frontends.torch.checkpoint import load_tokenizer
        from mmfc.frontends.torch.importer import import_checkpoint

        assert source.path is not None
        config = load_config(source).to_dict()
        imported = import_checkpoint(source.path, entries)
        return ImportedSource(imported.module, imported.store, config, source.path, load_tokenizer(source.path))
    from mmfc.frontends.torch.importer import import_model

    model = load_model(source)
    imported = import_model(model, entries)
    config = getattr(model, "config", None)
    source_dir = getattr(model, "source_dir", None)
    return ImportedSource(
        imported.module,
        imported.store,
        config.to_dict() if config is not None else None,
        Path(source_dir) if source_dir is not None else None,
        getattr(model, "tokenizer", None),
    )


__all__ = [
    "ImportedSource",
    "ModelSource",
    "add_init_seed_argument",
    "add_model_arguments",
    "check_checkpoint_dir",
    "import_ir",
    "load_config",
    "load_model",
    "path_source",
    "preset_source",
    "seed_value",
    "source_from_args",
    "source_of",
]
