"""The target registry: every compilation target installed, found through the ``mmfc.targets``
entry-point group (mmfc's own ``interp``, ``triton``, ... register there exactly as a plugin does).

An entry point names a :class:`~mmfc.dialects.target.Target` subclass; its name must equal the
class's ``name``. Targets load lazily: :func:`installed_targets` imports nothing, :func:`get_target`
imports the one asked for. A target that cannot be loaded is reported (``mmfc targets`` lists it with
the reason; asking for it is a one-line ``UserError``), never a traceback, and does not hide the
others. Two registrations of one name: the first wins (sys.path order), with a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from mmfc.dialects.diagnostics import UserError
from mmfc.dialects.target import Target

ENTRY_POINT_GROUP = "mmfc.targets"
DEFAULT_TARGET = "interp"


def _distribution_name(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else ep.value.split(":", 1)[0].split(".", 1)[0]


def installed_targets() -> dict[str, EntryPoint]:
    """Target name -> its entry point (nothing imported). On a duplicate name the first one wins."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found:
            warnings.warn(
                f"target '{ep.name}' is registered twice in {ENTRY_POINT_GROUP} "
                f"({_distribution_name(found[ep.name])} and {_distribution_name(ep)}); keeping the first",
                stacklevel=2,
            )
            continue
        found[ep.name] = ep
    return found


_LOADED: dict[str, Target] = {}


def _load(ep: EntryPoint) -> Target:
    origin = f"target entry point '{ep.name} = {ep.value}' (group {ENTRY_POINT_GROUP})"
    try:
        obj = ep.load()
    except Exception as exc:  # a broken plugin is reported, not a traceback
        raise UserError(f"{origin} cannot be loaded: {type(exc).__name__}: {exc}") from exc
    if not (isinstance(obj, type) and issubclass(obj, Target)):
        raise UserError(f"{origin} does not name a Target subclass")
    if getattr(obj, "name", None) != ep.name:
        raise UserError(f"{origin} names target '{getattr(obj, 'name', None)}'; the entry point must be named the same")
    return obj()


def target_names() -> list[str]:
    return sorted(installed_targets())


def get_target(name: str) -> Target:
    """The installed target ``name``; an unknown name is a ``UserError`` listing the installed ones."""
    if name in _LOADED:
        return _LOADED[name]
    found = installed_targets()
    if name not in found:
        have = ", ".join(sorted(found)) or "none"
        raise UserError(f"unknown target {name!r} (installed: {have}; `mmfc targets` describes them)")
    target = _LOADED[name] = _load(found[name])
    return target


@dataclass(frozen=True)
class TargetInfo:
    """One line of ``mmfc targets``: the target (None when it cannot be loaded, ``error`` says why)."""

    name: str
    package: str
    target: Target | None
    error: str | None = None


def describe_targets() -> Iterator[TargetInfo]:
    """Every installed target, sorted by name, loaded to read its summary, features and options."""
    for name, ep in sorted(installed_targets().items()):
        try:
            yield TargetInfo(name, _distribution_name(ep), get_target(name))
        except UserError as exc:
            yield TargetInfo(name, _distribution_name(ep), None, str(exc))


def loadable_targets() -> list[Target]:
    """The installed targets that load (for building CLI flags); broken ones are skipped silently
    here, and reported when named or listed."""
    return [info.target for info in describe_targets() if info.target is not None]


__all__ = [
    "DEFAULT_TARGET",
    "ENTRY_POINT_GROUP",
    "TargetInfo",
    "describe_targets",
    "get_target",
    "installed_targets",
    "loadable_targets",
    "target_names",
]
