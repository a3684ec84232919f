"""The Python API: ``mmfc.compile(model_or_path, target=..., pipeline=..., **options)`` and
``mmfc.load(dir, **options)``.

Both return a :class:`CompiledModel` whose ``__call__``, ``prefill``, ``decode_step`` and ``generate``
take exactly the keyword arguments of ``HGRNBitForCausalLM``'s (attention masks, sampling, seed,
``eos_token_id``) and return torch tensors of the same shapes. Every target plugs in behind these two
functions through the backend interface (:mod:`mmfc.dialects.target`, registry :mod:`mmfc.targets`):
the target's runner keeps values on its own device (the recurrent state stays there between decode
steps), and this module converts only at the user's boundary (logits become torch tensors on the
runner's torch device; the state is a :class:`CompiledState` of device values).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from xdsl.dialects.builtin import ModuleOp

from mmfc.dialects.diagnostics import UserError
from mmfc.dialects.numerics import check_mask
from mmfc.dialects.target import Build, Runner, Target
from mmfc.targets import DEFAULT_TARGET, get_target

_FROM_CONFIG: Any = object()


# ------------------------------------------------------------------------------------------ pipelines


def pipeline_spec(pipeline: str, target: Target | None = None, options: dict[str, Any] | None = None) -> str:
    """A pipeline string: a named level (``-O0``, ``O2``, ...) expanded by ``mmfc.pipeline`` (and
    adjusted by ``target``), anything else as given."""
    from mmfc.pipeline import named_pipeline

    if not isinstance(pipeline, str):
        raise UserError(f"pipeline must be a string (a pass list or a level such as '-O2'), got {pipeline!r}")
    level = pipeline.strip()
    if re.fullmatch(r"-?O\d+", level):
        standard = named_pipeline(level)
        return target.pipeline(level.lstrip("-"), standard, options or {}) if target is not None else standard
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
    state: CompiledState


class CompiledState(Sequence[Any]):
    """The recurrent state after a call: one ``[B, d]`` value per layer, kept on the runner's device.

    Indexing gives torch tensors (converted on first access); handing the object back to
    ``decode_step``/``prefill`` of the same model passes the device values without a copy.
    """

    def __init__(self, runner: Runner, values: Sequence[Any]) -> None:
        self.runner = runner
        self.values = list(values)
        self._torch: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = range(len(self))[i]
        if i not in self._torch:
            self._torch[i] = self.runner.to_torch(self.values[i])
        return self._torch[i]

    def __iter__(self) -> Iterator[Any]:
        return (self[i] for i in range(len(self)))


class CompiledModel:
    """A compiled model on one target (see the module docstring). Build it with :func:`compile` or
    :func:`load`, or around any runner: ``CompiledModel(runner, config=...)``.

    ``debug_dump_dir``: the debug mode; every call writes its kernels' outputs to
    ``DIR/NNN_<entry>/`` in the shared dump format (``mmfc.compare`` finds where two targets differ).
    """

    def __init__(
        self,
        runner: Runner,
        *,
        config: dict[str, Any] | None = None,
        path: Path | None = None,
        manifest: dict[str, Any] | None = None,
        tokenizer: Any = None,
        debug_dump_dir: str | Path | None = None,
        keep_alive: Any = None,
    ) -> None:
        self.runner = runner
        self.module = runner.module
        self.target = runner.target
        self.config = config or {}
        self.path = path
        self.manifest = manifest
        self.tokenizer = tokenizer
        self.debug_dump_dir = Path(debug_dump_dir) if debug_dump_dir is not None else None
        self._keep_alive = keep_alive  # e.g. the temporary folder of an in-memory build's files
        self._calls = 0
        self.entries = runner.entries()
        for needed in ("prefill", "decode_step"):
            if needed not in self.entries:
                raise UserError(f"the compiled module has no @{needed} entry (entries: {', '.join(self.entries)})")
        self.state_types = runner.input_types("decode_step")[1:]
        self.num_states = len(self.state_types)

    @property
    def device(self) -> str:
        """Where it runs, in words (the target and its device), for messages."""
        return f"target {self.target}, {self.runner.device}"

    @property
    def torch_device(self) -> str:
        """The torch device of the tensors it returns."""
        return self.runner.torch_device

    @property
    def eos_token_id(self) -> Any:
        return self.config.get("eos_token_id")

    def report(self) -> dict[str, Any] | None:
        """What the target measured (a simulator's cycles and energy), or None."""
        return self.runner.report()

    # ------------------------------------------------------------------ running
    def _run(self, entry: str, *inputs: Any) -> list[Any]:
        dump = None
        if self.debug_dump_dir is not None:
            dump = self.debug_dump_dir / f"{self._calls:03d}_{entry}"
        self._calls += 1
        return self.runner.run(entry, *inputs, dump_dir=dump)

    def _state_values(self, state: Sequence[Any] | None, batch: int) -> list[Any]:
        if isinstance(state, CompiledState) and state.runner is self.runner:
            return state.values
        if state is None:
            shapes = [(batch, t.get_shape()[-1]) for t in self.state_types]  # type: ignore[attr-defined]
            return [self.runner.upload(np.zeros(s, np.float32)) for s in shapes]
        if len(state) != self.num_states:
            raise ValueError(f"expected {self.num_states} state tensors (one per layer), got {len(state)}")
        return [self.runner.upload(_float32(s)) for s in state]

    def __call__(self, input_ids: Any, attention_mask: Any | None = None, state: Sequence[Any] | None = None) -> _Output:
        """``logits [B, T, V]`` (float32 torch tensor) and the state after the last position."""
        return self.prefill(input_ids, attention_mask, state)

    def prefill(self, input_ids: Any, attention_mask: Any | None = None, state: Sequence[Any] | None = None) -> _Output:
        ids = _int64(input_ids)
        if ids.dim() != 2:
            raise ValueError(f"input_ids must be [B, T], got shape {tuple(ids.shape)}")
        mask = ids.new_ones(ids.shape) if attention_mask is None else _int64(attention_mask)
        if tuple(mask.shape) != tuple(ids.shape):
            raise ValueError(f"attention_mask shape {tuple(mask.shape)} != input_ids shape {tuple(ids.shape)}")
        if attention_mask is not None:  # the PyTorch model's rule, whatever the target
            check_mask(mask.cpu().numpy())
        h = self._state_values(state, ids.shape[0])
        logits, *new_state = self._run("prefill", self.runner.upload(ids), self.runner.upload(mask), *h)
        return _Output(self.runner.to_torch(logits), CompiledState(self.runner, new_state))

    def decode_step(self, input_ids: Any, state: Sequence[Any] | None) -> tuple[Any, CompiledState]:
        """One token per row: ``(logits [B, V], state)``. The returned state is the runner's own (on
        some targets a buffer the next step updates in place: hand it to the next step)."""
        return self._decode_step(input_ids, state, keep=True)

    def _decode_step(self, input_ids: Any, state: Sequence[Any] | None, *, keep: bool) -> tuple[Any, CompiledState]:
        ids = _int64(input_ids).reshape(-1)
        h = self._state_values(state, ids.shape[0])
        logits, *new_state = self._run("decode_step", self.runner.upload(ids), *h)
        out = self.runner.to_torch(logits)
        if keep and self.runner.reuses_outputs:
            out = out.clone()  # the runner writes the next step's logits into the same buffer
        return out, CompiledState(self.runner, new_state)

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
        """Same contract as ``HGRNBitForCausalLM.generate``: prompt + new tokens ``[B, T + n]``, on the
        device ``input_ids`` came on. The loop runs on the runner's torch device, so a step copies to
        the host at most the sampled token ids."""
        import torch

        from mmfc.frontends.torch.generation import generate_loop

        if eos_token_id is _FROM_CONFIG:
            eos_token_id = self.eos_token_id
        ids = torch.as_tensor(input_ids)
        home = ids.device
        mask = None if attention_mask is None else torch.as_tensor(attention_mask).to(self.torch_device)
        out = generate_loop(
            prefill=lambda i, m: self.prefill(i, m),
            decode_step=lambda i, s: self._decode_step(i, s, keep=False),  # used at once: no copy
            input_ids=ids.to(self.torch_device),
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id if pad_token_id is not None else self.config.get("pad_token_id"),
        )
        return out.to(home)

    def close(self) -> None:
        self.runner.close()

    def __repr__(self) -> str:
        where = f" from {self.path}" if self.path else ""
        return f"CompiledModel(target={self.target!r}{where}, entries={self.entries})"


def _int64(x: Any) -> Any:
    import torch

    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(torch.int64)


def _float32(x: Any) -> Any:
    import torch

    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(torch.float32)


# ------------------------------------------------------------------------------------------ compile/load


def _split_options(target: Target, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pass-manager keyword arguments vs the target's own options (unknown names fail in the target)."""
    import inspect

    from mmfc.passmanager import PassManager

    manager_keys = set(inspect.signature(PassManager.__init__).parameters) - {"self", "pipeline"}
    target_options = {k: v for k, v in options.items() if k not in manager_keys}
    manager_options = {k: v for k, v in options.items() if k in manager_keys}
    return target.resolve_options(target_options), manager_options


def _materialize(build: Build) -> tuple[Path | None, Any]:
    """The build's files in a temporary folder (None when there are none) and the object keeping it."""
    if not build.files:
        return None, None
    tmp = tempfile.TemporaryDirectory(prefix="mmfc-build-")
    folder = Path(tmp.name)
    for name, data in build.files.items():
        (folder / name).write_bytes(data)
    return folder, tmp


@dataclass
class _Compiled:
    target: Target
    options: dict[str, Any]
    module: ModuleOp
    store: Any
    build: Build
    imported: Any
    pipeline: str


def _compile(model_or_path: Any, target: str, pipeline: str, init_seed: int, options: dict[str, Any]) -> _Compiled:
    from mmfc.dialects.weights import resolve_store
    from mmfc.source import import_ir, source_of

    tgt = get_target(target)
    target_options, manager_options = _split_options(tgt, options)
    spec = pipeline_spec(pipeline, tgt, target_options)
    if spec.strip():
        from mmfc.pipeline import parse_pipeline

        parse_pipeline(spec)  # an unknown pass or a bad option fails before any work
    src = import_ir(source_of(model_or_path, init_seed))
    run_pipeline(src.module, spec, **manager_options)
    store = resolve_store(src.module)
    tgt.check_module(src.module, target_options)
    build = tgt.build(src.module, store, target_options)
    return _Compiled(tgt, target_options, src.module, store, build, src, spec)


def compile_artifact(
    model_or_path: Any,
    out: str | Path,
    target: str = DEFAULT_TARGET,
    pipeline: str = "-O2",
    *,
    init_seed: int = 0,
    **options: Any,
) -> Path:
    """Like :func:`compile` with ``out``, but only writes the artifact (nothing is loaded on the
    target): returns its path. ``out`` is checked, and its temporary folder created, before any work
    (:func:`mmfc.artifact.artifact_dir`): a folder that cannot be written fails at once."""
    from mmfc.artifact import artifact_dir, fill_artifact
    from mmfc.stats import compile_stats

    with artifact_dir(out) as folder:
        c = _compile(model_or_path, target, pipeline, init_seed, options)
        fill_artifact(
            folder,
            c.module,
            c.store,
            target=c.target.name,
            target_options={o.name: c.options[o.name] for o in c.target.options if o.at == "compile"},
            build=c.build,
            pipeline=c.pipeline,
            config=c.imported.config,
            source_dir=c.imported.source_dir,
            stats=compile_stats(c.module, c.store),
        )
    return Path(out)


def compile(  # noqa: A001 - mmfc.compile is the public name
    model_or_path: Any,
    target: str = DEFAULT_TARGET,
    pipeline: str = "-O2",
    out: str | Path | None = None,
    *,
    init_seed: int = 0,
    debug_dump_dir: str | Path | None = None,
    **options: Any,
) -> CompiledModel:
    """Import ``model_or_path`` (an ``nn.Module``, a checkpoint folder, an ``.mlir`` file or
    ``"preset:NAME"``), run ``pipeline`` (a level such as ``-O2``, which the target may adjust, or a
    pass list), build it for ``target`` and, with ``out``, write an artifact folder; returns the
    compiled model. ``options``: the target's options (``mmfc targets`` lists them) and the pass
    manager's (``print_ir_after_all``, ...)."""
    if out is not None:
        path = compile_artifact(model_or_path, out, target, pipeline, init_seed=init_seed, **options)
        tgt = get_target(target)
        load_options = {k: v for k, v in options.items() if (o := tgt.option(k)) is not None and o.at == "load"}
        return load(path, debug_dump_dir=debug_dump_dir, **load_options)
    c = _compile(model_or_path, target, pipeline, init_seed, options)
    folder, keep = _materialize(c.build)
    runner = c.target.load(c.module, c.store, folder, c.build.record, c.options)
    return CompiledModel(
        runner, config=c.imported.config, tokenizer=c.imported.tokenizer, debug_dump_dir=debug_dump_dir, keep_alive=keep
    )


def load(artifact_dir: str | Path, *, debug_dump_dir: str | Path | None = None, **options: Any) -> CompiledModel:
    """Load (and verify) a compiled artifact folder on the target it was compiled for. ``options``:
    the target's load-time options (its compile-time ones are fixed in the artifact)."""
    from mmfc.artifact import load_artifact

    from mmfc.targets import installed_targets

    art = load_artifact(artifact_dir)
    if art.target not in installed_targets():
        have = ", ".join(sorted(installed_targets())) or "none"
        raise UserError(f"{art.path}: compiled for target {art.target!r}, which is not installed here (installed: {have})")
    tgt = get_target(art.target)
    given = tgt.resolve_options(options, at="load")
    recorded = {o.name: art.target_options.get(o.name, o.default) for o in tgt.options if o.at == "compile"}
    runner = tgt.load(art.module, art.store, art.path, art.target_record, {**recorded, **given})
    tokenizer = None
    if any((art.path / f).is_file() for f in ("tokenizer.json", "tokenizer.model")):
        from mmfc.frontends.torch.checkpoint import load_tokenizer

        tokenizer = load_tokenizer(art.path)
    return CompiledModel(
        runner, config=art.config, path=art.path, manifest=art.manifest, tokenizer=tokenizer, debug_dump_dir=debug_dump_dir
    )


def run_ir(
    module: ModuleOp, store: Any, target: str = DEFAULT_TARGET, **options: Any
) -> Runner:
    """A runner for IR as it is (no passes): the target checks, builds and loads it (``mmfc run``)."""
    tgt = get_target(target)
    resolved = tgt.resolve_options(options)
    tgt.check_module(module, resolved)
    build = tgt.build(module, store, resolved)
    folder, keep = _materialize(build)
    runner = tgt.load(module, store, folder, build.record, resolved)
    if keep is not None:
        runner._mmfc_keep_alive = keep  # type: ignore[attr-defined]  # the build folder lives with the runner
    return runner


__all__ = ["CompiledModel", "CompiledState", "compile", "compile_artifact", "load", "pipeline_spec", "run_ir", "run_pipeline"]
