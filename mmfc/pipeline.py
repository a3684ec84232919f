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
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points

from xdsl.passes import ModulePass
from xdsl.utils.exceptions import ArgSpecParseError

from mmfc.dialects.diagnostics import UserError

ENTRY_POINT_GROUP = "mmfc.passes"

PassFactory = Callable[[], type[ModulePass]]


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
            result.append(pass_class.from_pass_spec(pass_spec))
        except (ValueError, TypeError) as exc:
            raise UserError(f"pass '{pass_spec.name}': {exc}") from None
    return result


def _describe_spec_error(spec: str, exc: ArgSpecParseError) -> str:
    """One line from xDSL's multi-line pipeline syntax error (location line, excerpt, caret, message)."""
    text = str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    message = lines[-1] if lines else "syntax error"
    where = re.search(r":\d+:(\d+)", text)
    column = f" at column {where.group(1)}" if where else ""
    return f"invalid pass pipeline '{spec}'{column}: {message}"
