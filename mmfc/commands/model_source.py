"""How a command names the model it works on: ``--model DIR``, ``--preset NAME`` or a positional ARTIFACT.

One grammar for every subcommand (docs/cli.md). This module only parses and checks the *names*; it
reads ``config.json`` (cheap) but loads weights only in :func:`load_model`. Every mistake is a
:class:`UserError` (one line, exit 2). torch is imported inside the functions that need it, so that
building the parser (``mmfc --help``) stays light.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from mmfc.dialects.diagnostics import CheckpointError, UserError

if TYPE_CHECKING:
    from mmfc.frontends.torch.config import HGRNBitConfig
    from mmfc.frontends.torch.modeling import HGRNBitForCausalLM

#: The names ``--preset`` accepts, for help texts only (the truth is ``frontends.torch.config.PRESETS``;
#: a test holds the two equal). Listed here so that ``mmfc --help`` does not import torch.
PRESET_NAMES = ("tiny", "370m", "1.3b", "2.7b")

MANIFEST_FILE = "manifest.json"
CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: a checkpoint folder (``path``) or a named preset (``preset``)."""

    kind: Literal["checkpoint", "preset", "artifact"]
    path: Path | None = None
    preset: str | None = None

    def __str__(self) -> str:
        return f"preset {self.preset}" if self.kind == "preset" else str(self.path)


def add_model_arguments(parser: argparse.ArgumentParser, artifact: bool = False) -> None:
    """Add ``--model DIR | --preset NAME`` (mutually exclusive) and, with ``artifact``, an optional
    positional ``ARTIFACT`` folder. Whether one was given at all is checked by :func:`resolve`."""
    if artifact:
        parser.add_argument(
            "artifact",
            nargs="?",
            metavar="ARTIFACT",
            help="a compiled model folder (holds manifest.json); a checkpoint folder is accepted too",
        )
    group = parser.add_mutually_exclusive_group(required=not artifact)
    group.add_argument("--model", metavar="DIR", help="checkpoint folder (config.json + model.safetensors)")
    group.add_argument(
        "--preset", metavar="NAME", help=f"named shape with random weights: {', '.join(PRESET_NAMES)}"
    )


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


def resolve(args: argparse.Namespace) -> ModelSource:
    """The model named on the command line (``args.model``, ``args.preset``, optional ``args.artifact``).

    An ARTIFACT folder holding ``config.json`` is a checkpoint, used like ``--model``; one holding
    ``manifest.json`` is a compiled artifact, which no command can run yet.
    """
    artifact = getattr(args, "artifact", None)
    if artifact is not None:
        if args.model is not None or args.preset is not None:
            raise UserError("give the model once: ARTIFACT, --model DIR or --preset NAME")
        directory = Path(artifact)
        if not directory.is_dir():
            raise UserError(f"{directory}: no such directory")
        if (directory / MANIFEST_FILE).is_file():
            from mmfc.artifact import read_manifest

            read_manifest(directory)  # a broken manifest fails here, before anything loads
            return ModelSource("artifact", path=directory)
        if (directory / CONFIG_FILE).is_file():
            return ModelSource("checkpoint", path=directory)
        raise UserError(
            f"{directory}: neither a compiled artifact ({MANIFEST_FILE}) nor a checkpoint ({CONFIG_FILE})"
        )
    if args.model is not None:
        return ModelSource("checkpoint", path=check_checkpoint_dir(args.model))
    if args.preset is not None:
        return ModelSource("preset", preset=args.preset.lower())
    raise UserError("no model given: pass ARTIFACT, --model DIR or --preset NAME")


def load_config(source: ModelSource) -> HGRNBitConfig:
    """The model's config, without touching weights (a preset's is built in; a checkpoint's is read)."""
    from mmfc.frontends.torch.config import HGRNBitConfig, preset_config

    if source.kind == "preset":
        assert source.preset is not None
        return preset_config(source.preset)
    assert source.path is not None
    if source.kind == "artifact":
        if not (source.path / CONFIG_FILE).is_file():
            raise UserError(f"{source.path}: this artifact has no {CONFIG_FILE} (compiled from bare IR); use `mmfc run`")
        return HGRNBitConfig.from_pretrained(source.path)
    # ConfigError messages already name the file: "DIR/config.json: key=value: why"
    return HGRNBitConfig.from_pretrained(check_checkpoint_dir(source.path))


def load_model(source: ModelSource, init_seed: int = 0) -> HGRNBitForCausalLM:
    """The PyTorch model: a checkpoint loaded and validated, or a preset initialised from ``init_seed``;
    for a compiled artifact, the verified ``CompiledModel`` (same ``generate``/``prefill`` API)."""
    from mmfc.frontends.torch.modeling import HGRNBitForCausalLM

    if source.kind == "artifact":
        from mmfc.api import load

        assert source.path is not None
        return load(source.path)  # type: ignore[return-value]

    if source.kind == "preset":
        assert source.preset is not None
        return HGRNBitForCausalLM.from_preset(source.preset, seed=init_seed)
    assert source.path is not None
    return HGRNBitForCausalLM.from_pretrained(source.path)
