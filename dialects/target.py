"""What a compilation target is: the interface every backend implements.

A *target* turns final IR plus its weight store into something that runs: the numpy interpreter
(``interp``), generated Triton kernels, a simulated accelerator, an IREE module. Each backend
(``backends/<name>/target.py``) defines one :class:`Target` subclass and registers it under the
entry-point group ``mmfc.targets``, exactly as a plugin does::

    [project.entry-points."mmfc.targets"]
    interp = "mmfc.backends.interp.target:InterpTarget"

The roof (``mmfc.targets``, ``mmfc.compile``, ``mmfc.load``, the ``mmfc`` CLI) drives every target
through this interface and nothing else:

1. :meth:`Target.resolve_options` checks the options the user gave (API keyword arguments such as the
   simulator's ``arch=``, or the CLI flags ``--arch``) against :attr:`Target.options`;
2. :meth:`Target.pipeline` picks the pass pipeline of an ``-O`` level (given the standard one);
3. :meth:`Target.check_module` accepts the final IR or refuses it in one line (e.g. unfused IR on a
   target that runs only kernels);
4. :meth:`Target.build` turns the IR into the target's own artifact files (generated code, binaries)
   and a *record* of what the build depends on (a Triton version, a GPU architecture);
5. :meth:`Target.load` makes a :class:`Runner` from the IR, its store, the folder of those files and
   the record (refusing, or rebuilding, when the record does not fit the machine it runs on).

A :class:`Runner` keeps values on its own device (numpy arrays for the interpreter, GPU tensors for
Triton): ``run`` takes host arrays or its own device values and returns device values; only
``download``/``to_torch`` bring them to the host, which the generic ``CompiledModel`` does at the
user's boundary. Every runner's debug mode writes the dump format of :mod:`mmfc.dialects.dump`.

This module imports nothing heavy (no torch, Triton or IREE): the CLI reads every installed target's
options to build its flags.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Attribute

from mmfc.dialects.diagnostics import UserError
from mmfc.dialects.weights import WeightStore


@dataclass(frozen=True)
class TargetOption:
    """One option of a target: the Python keyword ``name`` (``mmfc.compile(..., arch="asic")``) and
    the CLI flag ``--<name with dashes>``. ``parse`` turns a value (CLI text, or what the API was given)
    into the value the target uses (and accepts such a value again unchanged) and raises ``ValueError``
    with a message when it is not valid;
    ``default`` is used when the option is not given; ``choices`` lists the valid values for help
    texts (``parse`` still checks). ``at`` says when it applies: ``"compile"`` (recorded in the
    artifact, fixed afterwards) or ``"load"`` (given when the artifact is loaded or run)."""

    name: str
    help: str
    parse: Callable[[Any], Any] = str
    default: Any = None
    choices: tuple[str, ...] | None = None
    at: str = "compile"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def parse_bool(value: Any) -> bool:
    """An option value that is a yes/no: a bool, or ``true/false/yes/no/1/0`` as text."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def parse_choice(*choices: str) -> Callable[[Any], str]:
    """A ``parse`` for an option that is one of ``choices`` (case and surrounding spaces ignored)."""
    expected = f"{', '.join(choices[:-1])} or {choices[-1]}" if len(choices) > 1 else choices[0]

    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"expected {expected}")
        return text

    return parse


@dataclass(frozen=True)
class Features:
    """What a target supports, for ``mmfc targets`` and the table in ``docs/targets.md``.

    ``device``: where it runs, in words; ``unfused``: what it does with IR that has no kernels
    (``"runs"`` or ``"refuses"``); ``packings``: the packed weight formats it runs (trits are always
    accepted where ``unfused`` runs); the booleans: batch > 1, attention masks (left padding),
    sampling in ``generate``, a debug dump of each kernel's outputs."""

    device: str
    unfused: str = "runs"
    packings: tuple[str, ...] = ("2bit", "base3")
    batch: bool = True
    masks: bool = True
    sampling: bool = True
    debug_dump: bool = True


@dataclass
class Build:
    """What :meth:`Target.build` produced: ``files`` (artifact file name -> contents; plain names,
    covered by the artifact's checksums) and ``record`` (JSON-ready facts the build depends on, kept
    in the manifest and handed back to :meth:`Target.load`)."""

    files: dict[str, bytes] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)


def function_of(module: ModuleOp, entry: str) -> func.FuncOp:
    """The ``func.func @entry`` of ``module``; a ``UserError`` naming the functions it has if absent."""
    for op in module.ops:
        if isinstance(op, func.FuncOp) and op.sym_name.data == entry:
            return op
    have = ", ".join(f"@{op.sym_name.data}" for op in module.ops if isinstance(op, func.FuncOp)) or "none"
    raise UserError(f"no function @{entry} in the module (functions: {have})")


def mask_arguments(module: ModuleOp, entry: str) -> list[int]:
    """Indices of ``@entry``'s arguments that are attention masks: those read as the mask of a
    ``ternary.mask`` op, directly or as a kernel operand."""
    from mmfc.dialects import ternary as T

    def reaches_mask(value: Any) -> bool:
        for use in value.uses:
            op = use.operation
            if isinstance(op, T.MaskOp) and use.index == 1:
                return True
            if isinstance(op, T.KernelOp) and reaches_mask(op.body.block.args[use.index]):
                return True
        return False

    return [i for i, arg in enumerate(function_of(module, entry).body.block.args) if reaches_mask(arg)]


def check_mask_inputs(module: ModuleOp, entry: str, inputs: Sequence[Any]) -> None:
    """Refuse, before any target runs ``@entry``, an attention mask holding values other than 0 and 1
    (``numerics.check_mask``: a mask is not a weighting): an :class:`InputError` naming the argument."""
    from mmfc.dialects.numerics import check_mask

    for i in mask_arguments(module, entry):
        if i < len(inputs):
            try:
                check_mask(np.asarray(inputs[i]))
            except ValueError as exc:
                raise InputError(f"argument {i} of @{entry}: {exc}", input_index=i) from None


class InputError(UserError):
    """An input of a run that its function cannot take; ``input_index``: which one."""

    def __init__(self, message: str, *, input_index: int | None = None) -> None:
        super().__init__(message)
        self.input_index = input_index


def entries_of(module: ModuleOp) -> list[str]:
    """Names of the module's functions, in order."""
    return [op.sym_name.data for op in module.ops if isinstance(op, func.FuncOp)]


class Runner(ABC):
    """A compiled model loaded on one target (see the module docstring).

    ``module`` is the final IR it runs (the signatures of its functions say what ``run`` takes and
    returns), ``store`` the weights its symbols name. Subclasses implement :meth:`run` and, when their values do not live in host numpy
    arrays, :meth:`upload`, :meth:`download` and :meth:`to_torch`.
    """

    #: the target's name (``interp``, ``triton``, ...)
    target: ClassVar[str] = ""
    #: whether ``run("decode_step", ...)`` returns the same result buffers at every call (a
    #: workspace), so that a caller who keeps them must copy them
    reuses_outputs: ClassVar[bool] = False

    def __init__(self, module: ModuleOp, store: WeightStore | None = None) -> None:
        self.module = module
        self.store = store

    @property
    def device(self) -> str:
        """Where it runs, in words, for messages (``numpy interpreter on the CPU``)."""
        return "cpu"

    @property
    def torch_device(self) -> str:
        """The torch device its values convert to without a copy (``cpu``, ``cuda:0``)."""
        return "cpu"

    def entries(self) -> list[str]:
        return entries_of(self.module)

    def input_types(self, entry: str) -> list[Attribute]:
        return list(function_of(self.module, entry).function_type.inputs.data)

    def output_types(self, entry: str) -> list[Attribute]:
        return list(function_of(self.module, entry).function_type.outputs.data)

    @abstractmethod
    def run(self, entry: str, *inputs: Any, dump_dir: str | Path | None = None) -> list[Any]:
        """Run ``@entry`` on ``inputs`` (host arrays in the representation of
        :mod:`mmfc.dialects.values`, or this runner's own device values) and return its results as
        device values. ``dump_dir``: the debug mode, writing this run's records to that folder in the
        format of :mod:`mmfc.dialects.dump`. Problems caused by the inputs are ``UserError``s."""

    def upload(self, value: Any) -> Any:
        """A host array (numpy, or a torch tensor) as this runner's device value."""
        if hasattr(value, "detach"):
            return value.detach().cpu().numpy()
        return np.asarray(value)

    def download(self, value: Any) -> np.ndarray:
        """A device value as a host numpy array (a scalar as a 0-d array)."""
        return np.asarray(value)

    def to_torch(self, value: Any) -> Any:
        """A device value as a torch tensor on :attr:`torch_device` (no copy where possible)."""
        import torch

        return torch.from_numpy(np.ascontiguousarray(self.download(value)))

    def report(self) -> dict[str, Any] | None:
        """What the target measured on its last runs (e.g. a simulator's cycles), or None."""
        return None

    def close(self) -> None:
        """Release what the runner holds (device memory, temporary files)."""


class Target(ABC):
    """A compilation target: see the module docstring for how the roof drives it.

    Subclasses set :attr:`name`, :attr:`summary`, :attr:`features` and :attr:`options`, and implement
    :meth:`build` and :meth:`load`; the other methods have defaults that accept everything.
    """

    name: ClassVar[str]
    #: one line for ``mmfc targets``
    summary: ClassVar[str]
    features: ClassVar[Features]
    options: ClassVar[tuple[TargetOption, ...]] = ()

    # ------------------------------------------------------------------------------------ options

    def option(self, name: str) -> TargetOption | None:
        return next((o for o in self.options if o.name == name), None)

    def resolve_options(self, given: Mapping[str, Any], *, at: str | None = None) -> dict[str, Any]:
        """``given`` checked and parsed: every option of this target (restricted to those that apply
        ``at`` ``"compile"`` or ``"load"`` when given), defaults filled in. An unknown name or a value
        ``parse`` rejects is a ``UserError`` naming the target and the option."""
        known = {o.name: o for o in self.options if at is None or o.at == at}
        resolved: dict[str, Any] = {}
        for key, value in given.items():
            option = known.get(key)
            if option is None:
                names = ", ".join(sorted(known)) or "none"
                raise UserError(f"target {self.name} has no option {key!r} (its options: {names})")
            try:
                resolved[key] = option.parse(value)
            except (ValueError, TypeError) as exc:
                raise UserError(f"target {self.name}: {option.flag} {value!r}: {exc}") from None
        for name, option in known.items():
            resolved.setdefault(name, option.default)
        return resolved

    # ---------------------------------------------------------------------------------- compiling

    def pipeline(self, level: str, standard: str, options: Mapping[str, Any]) -> str:
        """The pass pipeline of optimization level ``level`` (``O0``, ``O2``) on this target, given
        the ``standard`` pipeline of that level (a target may, e.g., pack ``base3`` instead)."""
        return standard

    def check_module(self, module: ModuleOp, options: Mapping[str, Any]) -> None:
        """Refuse (``UserError``, one line saying what to do) IR this target cannot run."""

    @abstractmethod
    def build(self, module: ModuleOp, store: WeightStore, options: Mapping[str, Any]) -> Build:
        """The target's artifact files and record for ``module`` (already checked)."""

    @abstractmethod
    def load(
        self,
        module: ModuleOp,
        store: WeightStore,
        folder: Path | None,
        record: Mapping[str, Any],
        options: Mapping[str, Any],
    ) -> Runner:
        """A runner for ``module``: ``folder`` holds the files :meth:`build` made (None when it made
        none), ``record`` is what it recorded. An artifact built for another environment is refused
        here in one line, or rebuilt (saying so on stderr)."""


__all__ = [
    "parse_choice",
    "Build",
    "Features",
    "InputError",
    "Runner",
    "Target",
    "TargetOption",
    "check_mask_inputs",
    "entries_of",
    "mask_arguments",
    "function_of",
    "parse_bool",
]
