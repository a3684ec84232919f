"""The Python API: ``mmfc.compile(model_or_path, target=..., pipeline=...)`` and ``mmfc.load(dir)``.

Both return a :class:`CompiledModel` whose ``__call__`` and ``generate`` take exactly the keyword
arguments of ``HGRNBitForCausalLM``'s (attention masks, sampling, seed, ``eos_token_id``) and return
torch tensors of the same shapes. Every target plugs in behind these two functions through
:data:`TARGETS` (a name -> runner factory; a runner has ``run(entry, *numpy_inputs) -> list``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp

from mmfc.dialects.diagnostics import UserError

#: target name -> factory(module, store) -> runner with .run(entry, *inputs) -> list[np.ndarray]
TARGETS: dict[str, Callable[[ModuleOp, Any], Any]] = {}


def _interp_runner(module: ModuleOp, store: Any) -> Any:
    from mmfc.backends.interp import InterpRunner

    return InterpRunner(module, store)


TARGETS["interp"] = _interp_runner

_FROM_CONFIG: Any = object()


# ------------------------------------------------------------------------------------------ pipelines


def pipeline_spec(pipeline: str) -> str:
    """A pipeline string: a named level (``-O0``, ``O2``, ...) expanded by ``mmfc.pipeline``, anything
    else as given."""
    from mmfc.pipeline import named_pipeline

    if re.fullmatch(r"-?O\d+", pipeline.strip()):
        return named_pipeline(pipeline.strip())
    return pipeline


def run_pipeline(module: ModuleOp, pipeline: str, **options: Any) -> list[tuple[str, float]]:
    """Run ``pipeline`` (named or a pass list) on ``module`` in place through the pass manager,
    verifying after every pass. Returns ``(step name, seconds)`` rows."""
    from mmfc.dialects.context import mmfc_context
    from mmfc.passmanager import PassManager

    manager = PassManager(pipeline_spec(pipeline), timing=False, **options)
    manager.run(mmfc_context(), module)
    return list(manager.timings)


# ------------------------------------------------------------------------------------------ the model


@dataclass
class _Output:
    logits: Any
    state: list[Any]


class CompiledModel:
    """A compiled model on one target. Inputs and outputs are torch tensors (numpy accepted)."""

    def __init__(
        self,
        module: ModuleOp,
        store: Any,
        target: str = "interp",
        config: dict[str, Any] | None = None,
        path: Path | None = None,
        manifest: dict[str, Any] | None = None,
        tokenizer: Any = None,
    ) -> None:
        if target not in TARGETS:
            raise UserError(f"unknown target {target!r}; available: {', '.join(sorted(TARGETS))}")
        self.module = module
        self.store = store
        self.target = target
        self.config = config or {}
        self.path = path
        self.manifest = manifest
        self.tokenizer = tokenizer
        self.entries = [op.sym_name.data for op in module.ops if isinstance(op, func.FuncOp)]
        for needed in ("prefill", "decode_step"):
            if needed not in self.entries:
                raise UserError(f"the compiled module has no @{needed} entry (entries: {', '.join(self.entries)})")
        self.runner = TARGETS[target](module, store)
        self.num_states = len(self._function("decode_step").function_type.inputs.data) - 1

    def _function(self, name: str) -> func.FuncOp:
        return next(op for op in self.module.ops if isinstance(op, func.FuncOp) and op.sym_name.data == name)

    def _zeros(self, batch: int) -> list[np.ndarray]:
        types = self._function("decode_step").function_type.inputs.data[1:]
        return [np.zeros((batch, t.get_shape()[-1]), np.float32) for t in types]

    @property
    def device(self) -> str:
        """Where it runs (the target's name), for messages."""
        return f"target {self.target}"

    @property
    def eos_token_id(self) -> Any:
        return self.config.get("eos_token_id")

    # ------------------------------------------------------------------ running
    def __call__(self, input_ids: Any, attention_mask: Any | None = None, state: Sequence[Any] | None = None) -> _Output:
        """``logits [B, T, V]`` (float32 torch tensor) and the state after the last position."""
        return self.prefill(input_ids, attention_mask, state)

    def prefill(self, input_ids: Any, attention_mask: Any | None = None, state: Sequence[Any] | None = None) -> _Output:
        import torch

        device = input_ids.device if isinstance(input_ids, torch.Tensor) else torch.device("cpu")
        ids = _np_int(input_ids)
        if ids.ndim != 2:
            raise ValueError(f"input_ids must be [B, T], got shape {ids.shape}")
        mask = np.ones_like(ids) if attention_mask is None else _np_int(attention_mask)
        if mask.shape != ids.shape:
            raise ValueError(f"attention_mask shape {mask.shape} != input_ids shape {ids.shape}")
        h = self._zeros(ids.shape[0]) if state is None else [_np_f32(s) for s in state]
        logits, *new_state = self.runner.run("prefill", ids, mask, *h)
        return _Output(torch.from_numpy(np.asarray(logits)).to(device), [torch.from_numpy(np.asarray(s)).to(device) for s in new_state])

    def decode_step(self, input_ids: Any, state: Sequence[Any]) -> tuple[Any, list[Any]]:
        """One token per row: ``(logits [B, V], state)``."""
        import torch

        device = input_ids.device if isinstance(input_ids, torch.Tensor) else torch.device("cpu")
        ids = _np_int(input_ids).reshape(-1)
        logits, *new_state = self.runner.run("decode_step", ids, *[_np_f32(s) for s in state])
        return torch.from_numpy(np.asarray(logits)).to(device), [torch.from_numpy(np.asarray(s)).to(device) for s in new_state]

    def generate(
        self,
        input_ids: Any,
        attention_mask: Any | None = None,
        max_new_tokens: int = 20,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        eos_token_id: Any = _FROM_CONFIG,
        pad_token_id: int | None = None,
    ) -> Any:
        """Same contract as ``HGRNBitForCausalLM.generate``: prompt + new tokens ``[B, T + n]``."""
        import torch

        from mmfc.frontends.torch.generation import generate_loop

        if eos_token_id is _FROM_CONFIG:
            eos_token_id = self.eos_token_id
        return generate_loop(
            prefill=lambda ids, mask: self.prefill(ids, mask),
            decode_step=self.decode_step,
            input_ids=torch.as_tensor(input_ids),
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id if pad_token_id is not None else self.config.get("pad_token_id"),
        )

    def __repr__(self) -> str:
        where = f" from {self.path}" if self.path else ""
        return f"CompiledModel(target={self.target!r}{where}, entries={self.entries})"


def _np_int(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.int64)


def _np_f32(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


# ------------------------------------------------------------------------------------------ compile/load


@dataclass
class Source:
    module: ModuleOp
    store: Any
    config: dict[str, Any] | None
    source_dir: Path | None
    tokenizer: Any = None


def import_source(model_or_path: Any, init_seed: int = 0) -> Source:
    """An nn.Module, a checkpoint folder, a preset name (``preset:370m``) or a ``.mlir`` file -> IR."""
    from mmfc.dialects.weights import resolve_store

    if isinstance(model_or_path, (str, Path)):
        text = str(model_or_path)
        if text.startswith("preset:"):
            from mmfc.frontends.torch.modeling import HGRNBitForCausalLM

            model_or_path = HGRNBitForCausalLM.from_preset(text.split(":", 1)[1], seed=init_seed)
        else:
            path = Path(text)
            if path.is_dir():
                from mmfc.frontends.torch.checkpoint import load_tokenizer
                from mmfc.frontends.torch.config import HGRNBitConfig
                from mmfc.frontends.torch.importer import import_checkpoint

                if not (path / "config.json").is_file():
                    raise UserError(f"{path}: not a checkpoint folder (no config.json)")
                imported = import_checkpoint(path)
                config = HGRNBitConfig.from_pretrained(path).to_dict()
                return Source(imported.module, imported.store, config, path, load_tokenizer(path))
            if path.is_file():
                from mmfc.dialects.context import mmfc_context
                from mmfc.dialects.source import parse_module, verify_module
                from mmfc.dialects.weights import set_mlir_path

                module, source = parse_module(mmfc_context(), path.read_text(), str(path))
                verify_module(module, source)
                set_mlir_path(module, path)
                return Source(module, resolve_store(module), None, None)
            raise UserError(f"{path}: no such file or directory")
    from mmfc.frontends.torch.importer import import_model

    imported = import_model(model_or_path)
    config = getattr(model_or_path, "config", None)
    source_dir = getattr(model_or_path, "source_dir", None)
    return Source(
        imported.module,
        imported.store,
        config.to_dict() if config is not None else None,
        Path(source_dir) if source_dir is not None else None,
        getattr(model_or_path, "tokenizer", None),
    )


def compile(  # noqa: A001 - the public name the issue asks for
    model_or_path: Any,
    target: str = "interp",
    pipeline: str = "-O2",
    out: str | Path | None = None,
    **pass_manager_options: Any,
) -> CompiledModel:
    """Import, run ``pipeline`` and (with ``out``) write an artifact; returns the compiled model."""
    from mmfc.dialects.weights import resolve_store

    if target not in TARGETS:
        raise UserError(f"unknown target {target!r}; available: {', '.join(sorted(TARGETS))}")
    src = import_source(model_or_path)
    run_pipeline(src.module, pipeline, **pass_manager_options)
    store = resolve_store(src.module)
    path = None
    if out is not None:
        from mmfc.artifact import write_artifact
        from mmfc.stats import compile_stats

        path = write_artifact(
            out,
            src.module,
            store,
            target=target,
            pipeline=pipeline_spec(pipeline),
            config=src.config,
            source_dir=src.source_dir,
            stats=compile_stats(src.module, store),
        )
    return CompiledModel(src.module, store, target, src.config, path, None, src.tokenizer)


def load(artifact_dir: str | Path, target: str | None = None) -> CompiledModel:
    """Load (and verify) a compiled artifact folder."""
    from mmfc.artifact import load_artifact

    art = load_artifact(artifact_dir)
    tokenizer = None
    if any((art.path / f).is_file() for f in ("tokenizer.json", "tokenizer.model")):
        from mmfc.frontends.torch.checkpoint import load_tokenizer

        tokenizer = load_tokenizer(art.path)
    return CompiledModel(
        art.module, art.store, target or art.manifest.get("target", "interp"), art.config, art.path, art.manifest, tokenizer
    )
