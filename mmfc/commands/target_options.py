"""``--target NAME`` and every installed target's own flags, for the commands that build or load one.

Each installed target declares its options (:class:`~mmfc.dialects.target.TargetOption`); this module
adds them to a command's parser as ``--<name>`` flags in one group per target, read as text and parsed
by the chosen target. A flag of another target is a one-line mistake naming the target it belongs to.
"""

from __future__ import annotations

import argparse
from typing import Any

from mmfc.dialects.diagnostics import UserError

_PREFIX = "target_opt_"


def add_target_arguments(parser: argparse.ArgumentParser, *, at: tuple[str, ...], target_flag: bool = True) -> None:
    """``--target`` (when ``target_flag``) and the flags of every target option that applies ``at``
    (``"compile"``, ``"load"``)."""
    from mmfc.dialects.target import parse_bool
    from mmfc.targets import DEFAULT_TARGET, loadable_targets

    if target_flag:
        parser.add_argument(
            "--target",
            default=DEFAULT_TARGET,
            metavar="NAME",
            help=f"where the compiled model runs (default {DEFAULT_TARGET}; `mmfc targets` lists the installed ones)",
        )
    seen: set[str] = set()
    for target in loadable_targets():
        options = [o for o in target.options if o.at in at and o.name not in seen]
        if not options:
            continue
        group = parser.add_argument_group(f"options of target {target.name}")
        for option in options:
            seen.add(option.name)
            choices = f" ({'|'.join(option.choices)})" if option.choices else ""
            default = f"; default {option.default}" if option.default is not None else ""
            # a yes/no option is a plain switch (`--flag`), still accepting `--flag false`
            switch = {"nargs": "?", "const": "true"} if option.parse is parse_bool else {}
            group.add_argument(
                option.flag,
                dest=_PREFIX + option.name,
                metavar="VALUE",
                default=None,
                help=f"{option.help}{choices}{default}",
                **switch,
            )


def target_options_from_args(args: argparse.Namespace, target_name: str, *, at: tuple[str, ...]) -> dict[str, Any]:
    """The target options given on the command line, as text (the target parses them); a flag that
    ``target_name`` does not have (another target's) is a ``UserError``."""
    from mmfc.targets import get_target

    target = get_target(target_name)
    mine = {o.name for o in target.options if o.at in at}
    given: dict[str, Any] = {}
    for key, value in vars(args).items():
        if not key.startswith(_PREFIX) or value is None:
            continue
        name = key[len(_PREFIX) :]
        flag = "--" + name.replace("_", "-")
        if name not in mine:
            raise UserError(f"{flag} is not an option of target {target_name} (`mmfc targets` lists each target's options)")
        given[name] = value
    return given


__all__ = ["add_target_arguments", "target_options_from_args"]
