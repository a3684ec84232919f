"""The xDSL context every mmfc tool parses with: all of xDSL's dialects plus mmfc's own.

Every dialect is registered lazily (a factory per name, imported when the parser first meets one of
its operations or attributes), so building a context imports no dialect. mmfc's dialects are the ones
``dialects/universe.py`` exposes to plain ``xdsl-opt`` through the ``xdsl.universe`` entry point: one
list, so that ``mmfc opt`` and ``xdsl-opt`` read the same IR.
"""

from __future__ import annotations

from collections.abc import Callable

from xdsl.context import Context
from xdsl.dialects import get_all_dialects
from xdsl.ir import Dialect

from mmfc.dialects.universe import MMFC_UNIVERSE


def mmfc_dialect_factories() -> dict[str, Callable[[], Dialect]]:
    """mmfc's dialects, name -> factory (the list ``dialects/universe.py`` gives ``xdsl-opt``)."""
    return dict(MMFC_UNIVERSE.all_dialects)


def mmfc_context(*, allow_unregistered: bool = False) -> Context:
    """A fresh context with xDSL's dialects and mmfc's dialects registered (none loaded yet).

    ``allow_unregistered``: parse operations of unknown dialects generically instead of failing.
    Raises ``AlreadyRegisteredConstructException`` if an mmfc dialect takes a name xDSL has (a bug).
    """
    ctx = Context(allow_unregistered=allow_unregistered)
    for name, factory in get_all_dialects().items():
        ctx.register_dialect(name, factory)
    for name, factory in mmfc_dialect_factories().items():
        ctx.register_dialect(name, factory)
    return ctx
