"""``mmfc targets [--json]``: the compilation targets installed (``--target NAME``), with their options.

One line per target, sorted by name: the name, the package that provides it (``mmfc`` for the built-in
ones, a plugin's distribution name) and its summary; below it, where it runs and what it supports,
then each option as its flag (``--arch VALUE``), when it applies (at compile time, recorded in the
artifact, or when the artifact is loaded) and its default. A target that cannot be loaded is listed
with the reason. ``--json``: one object ``{"targets": [...]}`` with the same facts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "targets", help="list the installed compilation targets (with their options)", description=(__doc__ or "").split("\n\n")[0]
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--markdown", action="store_true", help="print what each target supports as a Markdown table")
    return p


def _as_json(info: Any) -> dict[str, Any]:
    target = info.target
    if target is None:
        return {"name": info.name, "package": info.package, "error": info.error}
    return {
        "name": info.name,
        "package": info.package,
        "summary": target.summary,
        "features": dataclasses.asdict(target.features),
        "options": [
            {"name": o.name, "flag": o.flag, "at": o.at, "default": o.default, "choices": o.choices, "help": o.help}
            for o in target.options
        ],
        "error": None,
    }


def markdown_table(infos: list[Any]) -> str:
    """What each target supports, one row per target (the table of ``docs/targets.md``)."""
    yes = {True: "yes", False: "no"}
    lines = [
        "| target | runs on | unfused IR | batch | masks | sampling | packings | debug dump |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for info in infos:
        if info.target is None:
            continue
        f = info.target.features
        lines.append(
            f"| `{info.name}` | {f.device} | {f.unfused} | {yes[f.batch]} | {yes[f.masks]} | {yes[f.sampling]} | "
            f"{', '.join(f.packings)} | {yes[f.debug_dump]} |"
        )
    return "\n".join(lines) + "\n"


def render(infos: list[Any]) -> str:
    from mmfc.dialects.target import parse_bool

    lines = []
    for info in infos:
        if info.target is None:
            lines.append(f"{info.name:<12} {info.package:<16} {info.error}")
            continue
        t = info.target
        f = t.features
        lines.append(f"{info.name:<12} {info.package:<16} {t.summary}")
        supports = [name for name in ("batch", "masks", "sampling", "debug_dump") if getattr(f, name)]
        lines.append(
            f"{'':<29} runs on {f.device}; unfused IR: {f.unfused}; packings: {', '.join(f.packings)}; "
            f"supports: {', '.join(supports).replace('_', ' ')}"
        )
        for o in t.options:
            default = "" if o.default is None else f" (default {o.default})"
            when = "compile time" if o.at == "compile" else "load time"
            value = "[true|false]" if o.parse is parse_bool else ("|".join(o.choices) if o.choices else "VALUE")
            lines.append(f"{'':<29} {o.flag} {value}  [{when}] {o.help}{default}")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from mmfc.targets import describe_targets

    infos = list(describe_targets())
    if args.markdown:
        sys.stdout.write(markdown_table(infos))
        return 0
    if args.json:
        sys.stdout.write(json.dumps({"targets": [_as_json(i) for i in infos]}, indent=2) + "\n")
    else:
        sys.stdout.write(render(infos) if infos else "no targets installed (entry-point group mmfc.targets)\n")
    return 0
