"""``mmfc passes [--all] [--json]``: the passes a pipeline (``mmfc opt -p``) can name.

One line per pass, sorted by name: the name, the package that provides it (``mmfc`` for the built-in
passes, a plugin's distribution name, ``xdsl``), and the first line of its docstring; each option on
an indented line below (``name: type = default``, as ``-p 'pass{name=value}'`` spells it). By default
the passes of the ``mmfc.passes`` entry-point group (mmfc's own and every installed plugin's); ``--all``
adds xDSL's (``cse``, ``canonicalize``, ``dce``, ...).

Listing loads (imports) every pass to read its options. A pass that cannot be loaded -- a plugin that
fails to import, an entry point that does not name a ``ModulePass`` or names one of another name, a
name xDSL already has -- is listed with ``cannot be loaded: ...`` (or why it is ignored) in place of its
description; the listing itself never fails because of one plugin.

``--json``: one object ``{"passes": [{"name", "package", "description", "options": [{"name", "type",
"default", "required"}], "error", "entry_point"}]}`` (``error`` null for a usable pass).
"""

from __future__ import annotations

import argparse
import json
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "passes",
        help="list the built-in and plugin passes (with their options)",
        description=(__doc__ or "").split("\n\n")[0],
    )
    p.add_argument("--all", action="store_true", help="also list xDSL's passes (cse, canonicalize, ...)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    return p


def run(args: argparse.Namespace) -> int:
    from mmfc.pipeline import describe_passes

    infos = describe_passes(include_xdsl=args.all)
    if args.json:
        sys.stdout.write(json.dumps({"passes": [info.as_json() for info in infos]}, indent=2) + "\n")
        return 0
    sys.stdout.write(render(infos))
    return 0


def render(infos: list) -> str:  # type: ignore[type-arg]
    """The table: ``NAME  PACKAGE  DESCRIPTION`` columns, options indented under the description."""
    if not infos:
        return "no passes registered in the mmfc.passes entry-point group (mmfc passes --all lists xDSL's)\n"
    # columns fit the names, within bounds (xDSL has a few very long names: those just push the line)
    name_w = min(30, max(19, *(len(info.name) for info in infos))) + 1
    pkg_w = min(24, max(15, *(len(info.package) for info in infos))) + 1
    lines = []
    for info in infos:
        text = info.error if info.error is not None else (info.description or "(no description)")
        lines.append(f"{info.name:<{name_w}} {info.package:<{pkg_w}} {text}".rstrip())
        for option in info.options:
            value = "required" if option.required else f"= {option.default}"
            lines.append(f"{'':<{name_w}} {'':<{pkg_w}}   {option.name}: {option.type} {value}")
    return "\n".join(lines) + "\n"
