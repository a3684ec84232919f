"""Pass registry and pass-pipeline parsing.

Passes come from two places, both as name -> factory (a function returning the ``ModulePass`` class,
called only when the pass is used, so listing passes imports nothing heavy):

* xDSL's own passes (``xdsl.transforms.get_all_passes()``: ``cse``, ``canonicalize``, ``dce``, ...);
* the entry-point group ``mmfc.passes``: mmfc's built-in passes register there exactly as a plugin
  does (``[project.entry-points."mmfc.passes"] fuse-bitlinear = "mmfc.passes.fuse_bitlinear:FuseBitLinear"``).
  The entry point's name is the pass name and must equal the class's ``name``.

A plugin may not take a name xDSL (or an earlier plugin) already has: it is skipped with a warning, so
that one bad plugin does not stop every pipeline. Pipelines use xDSL's syntax: ``cse,canonicalize``,
``pass-name{option=value other=1,2}``.

Named pipelines (:data:`NAMED_PIPELINES`, ``mmfc opt -O0`` / ``-O2``) are plain pipeline strings.
:func:`describe_passes` lists passes with their options for ``mmfc passes``.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from xdsl.passes import ModulePass
from xdsl.utils.exceptions import ArgSpecParseError

from mmfc.dialects.diagnostics import UserError

ENTRY_POINT_GROUP = "mmfc.passes"

PassFactory = Callable[[], type[ModulePass]]

#: optimization levels -> pipeline (``mmfc opt -O0``, ``-O2``; ``mmfc compile`` uses the same table).
#:
#: * ``O0``: no pass at all. The IR is parsed, verified and printed unchanged: unfused ops, weights
#:   as the input holds them (float masters stay float masters).
#: * ``O2``: fold the offline weight quantization into stored trits + scales, pack them 4 trits per
#:   byte, fuse BitLinears, recurrences and GLUs into kernels, clean up with xDSL's canonicalize, cse
#:   and dce, and finally fail if a floating-point matrix product remains (``check-matmul-free``).
NAMED_PIPELINES: dict[str, str] = {
    "O0": "",
    "O2": (
        "fold-weight-quant,pack-weights{format=2bit},fuse-bitlinear,fuse-recurrence,fuse-glu,"
        "canonicalize,cse,dce,check-matmul-free"
    ),
}


def named_pipeline(name: str) -> str:
    """The pipeline string of ``name`` (``O2`` or ``-O2``); a ``UserError`` listing the names if unknown."""
    key = name.lstrip("-")
    if key not in NAMED_PIPELINES:
        known = ", ".join(f"-{k}" for k in NAMED_PIPELINES)
        raise UserError(f"unknown optimization level '-{key}' (known: {known})")
    return NAMED_PIPELINES[key]


def _entry_point_factory(ep: EntryPoint) -> PassFactory:
    """A factory that loads ``ep`` on first use and checks that it names a ModulePass called ``ep.name``."""

    def load() -> type[ModulePass]:
        origin = f"entry point '{ep.name} = {ep.value}' (group {ENTRY_POINT_GROUP})"
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin is reported, not a traceback
            raise UserError(f"{origin} cannot be loaded: {type(exc).__name__}: {exc}") from exc
        if not (isinstance(obj, type) and issubclass(obj, ModulePass)):
            raise UserError(f"{origin} does not name a ModulePass subclass")
        if obj.name != ep.name:
            raise UserError(f"{origin} names pass '{obj.name}'; the entry point must be named the same")
        return obj

    return load


def _distribution_name(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else ep.value.split(":", 1)[0].split(".", 1)[0]


def plugin_passes() -> dict[str, tuple[PassFactory, str]]:
    """Passes registered under the ``mmfc.passes`` entry-point group: name -> (factory, distribution).

    Nothing is imported until a factory is called.
    """
    found: dict[str, tuple[PassFactory, str]] = {}
    # in discovery order (sys.path order, as imports resolve): on a clash the first one wins
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found:
            warnings.warn(
                f"pass '{ep.name}' is registered twice in {ENTRY_POINT_GROUP} "
                f"({found[ep.name][1]} and {_distribution_name(ep)}); keeping the first",
                stacklevel=2,
            )
            continue
        found[ep.name] = (_entry_point_factory(ep), _distribution_name(ep))
    return found


def pass_origins() -> dict[str, str]:
    """Every available pass name -> where it comes from (``xdsl`` or the plugin's distribution)."""
    from xdsl.transforms import get_all_passes

    origins = {name: "xdsl" for name in get_all_passes()}
    for name, (_, dist) in plugin_passes().items():
        origins.setdefault(name, dist)
    return origins


def available_passes() -> dict[str, PassFactory]:
    """Every pass a pipeline may name: xDSL's own, then the ``mmfc.passes`` entry points.

    A plugin pass whose name xDSL already uses is skipped with a warning (xDSL's pass is kept).
    """
    from xdsl.transforms import get_all_passes

    passes: dict[str, PassFactory] = dict(get_all_passes())
    for name, (factory, dist) in plugin_passes().items():
        if name in passes:
            warnings.warn(
                f"{dist} registers pass '{name}' in {ENTRY_POINT_GROUP}, a name xDSL already has; "
                "ignoring it",
                stacklevel=2,
            )
            continue
        passes[name] = factory
    return passes


def close_pass_names(name: str, names: list[str] | None = None) -> list[str]:
    """Up to 5 registered pass names that look like ``name`` (for "did you mean")."""
    return difflib.get_close_matches(name, names if names is not None else list(available_passes()), n=5)


def parse_pipeline(spec: str, passes: dict[str, PassFactory] | None = None) -> list[ModulePass]:
    """The passes of a pipeline spec (``cse,canonicalize``, ``foo{opt=1}``), ready to apply in order.

    Raises :class:`UserError` (one line) for a syntax error, an unknown pass (naming close matches), or
    options a pass does not accept.
    """
    from xdsl.utils.arg_spec import parse_pipeline as parse_spec

    if passes is None:
        passes = available_passes()
    try:
        specs = list(parse_spec(spec))
    except ArgSpecParseError as exc:  # a BaseException in xDSL 0.75
        raise UserError(_describe_spec_error(spec, exc)) from None
    result: list[ModulePass] = []
    for pass_spec in specs:
        if pass_spec.name not in passes:
            close = close_pass_names(pass_spec.name, list(passes))
            hint = f"did you mean {', '.join(close)}?" if close else "no registered pass has a similar name"
            raise UserError(f"unknown pass '{pass_spec.name}' ({hint})")
        pass_class = passes[pass_spec.name]()
        try:
            made = pass_class.from_pass_spec(pass_spec)
        except (ValueError, TypeError) as exc:
            raise UserError(f"pass '{pass_spec.name}': {exc}") from None
        _check_integer_options(pass_spec.name, made)
        result.append(made)
    return result


#: integer pass options become IR attributes and loop bounds: 64-bit signed integers
_OPTION_INT_LIMIT = 2**63


def _check_integer_options(name: str, made: ModulePass) -> None:
    """A ``UserError`` for an integer option (of any pass, plugins included) that does not fit a
    64-bit signed integer: it is the user's value, not a bug of the pass that would meet it later."""
    if not dataclasses.is_dataclass(made):
        return
    for f in dataclasses.fields(made):
        values = getattr(made, f.name, None)
        for value in values if isinstance(values, tuple | list) else (values,):
            if isinstance(value, int) and not isinstance(value, bool) and not -_OPTION_INT_LIMIT <= value < _OPTION_INT_LIMIT:
                option = f.name.replace("_", "-")
                raise UserError(
                    f"pass '{name}': option {option}={value} is out of range (integer options are 64-bit: "
                    f"[-2**63, 2**63))"
                )


def _describe_spec_error(spec: str, exc: ArgSpecParseError) -> str:
    """One line from xDSL's multi-line pipeline syntax error (location line, excerpt, caret, message)."""
    text = str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    message = lines[-1] if lines else "syntax error"
    where = re.search(r":\d+:(\d+)", text)
    column = f" at column {where.group(1)}" if where else ""
    return f"invalid pass pipeline '{spec}'{column}: {message}"


# ------------------------------------------------------------------------------------ listing


@dataclass(frozen=True)
class PassOption:
    """One option of a pass: the spelling in a pipeline (``pack-weights{format=2bit}``), its type,
    and its default (``None`` with ``required=True`` when it has none)."""

    name: str
    type: str
    default: str | None
    required: bool = False


@dataclass(frozen=True)
class PassInfo:
    """What ``mmfc passes`` shows of one pass.

    ``package``: ``xdsl`` or the distribution that registers the entry point. ``error``: why the pass
    cannot be used (its plugin does not import, the entry point is misnamed, or xDSL already has the
    name); ``description`` and ``options`` are then empty.
    """

    name: str
    package: str
    description: str = ""
    options: tuple[PassOption, ...] = ()
    error: str | None = None
    origin: str = ""  # the entry point's ``module:Class`` (empty for xDSL's passes)

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "package": self.package,
            "description": self.description,
            "options": [dataclasses.asdict(o) for o in self.options],
            "error": self.error,
            "entry_point": self.origin or None,
        }


def pass_description(cls: type) -> str:
    """The first line of the class's own docstring ("" when it has none).

    ``@dataclass`` gives a class without a docstring one of its own (``Name(field: type, ...)``), which
    says nothing: that counts as none.
    """
    doc = cls.__dict__.get("__doc__") or ""
    if not doc.strip() or (doc.startswith(f"{cls.__name__}(") and doc.rstrip().endswith(")")):
        return ""
    return doc.strip().splitlines()[0].strip()


def pass_options(cls: type[ModulePass]) -> tuple[PassOption, ...]:
    """The options of a pass class: its dataclass fields (spelled with ``-`` as pipelines write them)."""
    from xdsl.utils.hints import type_repr

    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 -- an unresolvable annotation: show it as written
        hints = {}
    options = []
    for f in dataclasses.fields(cls) if dataclasses.is_dataclass(cls) else ():
        if f.name == "name" or not f.init:
            continue
        annotation = hints.get(f.name, f.type)
        type_text = annotation if isinstance(annotation, str) else type_repr(annotation)
        if f.default is not dataclasses.MISSING:
            default, required = _option_text(f.default), False
        elif f.default_factory is not dataclasses.MISSING:
            default, required = _option_text(f.default_factory()), False
        else:
            default, required = None, True
        options.append(PassOption(f.name.replace("_", "-"), str(type_text), default, required))
    return tuple(options)


def _option_text(value: object) -> str:
    """A default as a pipeline would spell it: ``true``, ``2bit``, ``1,2``, ``none``."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "none"
    if isinstance(value, tuple | list):
        return ",".join(_option_text(v) for v in value)
    return str(value)


def describe_passes(*, include_xdsl: bool = False) -> list[PassInfo]:
    """Every pass, sorted by name: the ``mmfc.passes`` entry points (mmfc's own and plugins), and with
    ``include_xdsl`` xDSL's passes. Each entry-point pass is loaded (imported) to read its options; one
    that cannot be loaded is listed with ``error`` set, never raised. So is a registration that
    pipelines ignore (a name xDSL has, or a name an earlier entry point took), listed after the one
    in use.
    """
    from xdsl.transforms import get_all_passes

    xdsl_passes = get_all_passes()
    infos: list[PassInfo] = []
    first: dict[str, str] = {}
    # the same discovery order as plugin_passes(): on a clash the first one is the one pipelines use
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = _distribution_name(ep)
        if ep.name in first:
            error = f"ignored: {first[ep.name]} registers this name first"
            infos.append(PassInfo(ep.name, dist, error=error, origin=ep.value))
            continue
        first[ep.name] = dist
        if ep.name in xdsl_passes:
            error = "ignored: xDSL already has a pass of this name"
            infos.append(PassInfo(ep.name, dist, error=error, origin=ep.value))
            continue
        infos.append(_describe(ep.name, dist, _entry_point_factory(ep), ep.value))
    if include_xdsl:
        infos.extend(_describe(name, "xdsl", factory, "") for name, factory in xdsl_passes.items())
    return sorted(infos, key=lambda info: (info.name, (info.error or "").startswith("ignored:")))


def _describe(name: str, package: str, factory: PassFactory, origin: str) -> PassInfo:
    try:
        cls = factory()
    except UserError as exc:
        # the factory's message starts by naming the entry point; the listing names it already
        text = str(exc)
        marker = "cannot be loaded: "
        text = text[text.index(marker) :] if marker in text else text
        return PassInfo(name, package, error=text, origin=origin)
    except Exception as exc:  # noqa: BLE001 -- a broken pass must not break the listing
        return PassInfo(name, package, error=f"cannot be loaded: {type(exc).__name__}: {exc}", origin=origin)
    try:
        options = pass_options(cls)
    except Exception as exc:  # noqa: BLE001
        error = f"cannot read its options: {type(exc).__name__}: {exc}"
        return PassInfo(name, package, error=error, origin=origin)
    return PassInfo(name, package, pass_description(cls), options, origin=origin)
