"""``mmfc sim sweep``: design sweeps (see :mod:`mmfc.commands.sim`; the CLI spells it ``sim sweep``)."""

from __future__ import annotations

import argparse

from mmfc.commands.sim import add_sweep_parser, run_sweep


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    return add_sweep_parser(subparsers)


def run(args: argparse.Namespace) -> int:
    return run_sweep(args)
