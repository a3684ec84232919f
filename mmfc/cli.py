"""The ``mmfc`` command line: one grammar for every subcommand (see docs/cli.md).

Each subcommand lives in its own module under ``mmfc/commands/`` and exposes
``add_parser(subparsers) -> argparse.ArgumentParser`` and ``run(args) -> int``. A user's mistake
(``UserError``, a bad flag) prints one line ``mmfc: error: ...`` and exits with code 2, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from mmfc.dialects.diagnostics import UserError

#: subcommand name -> module under mmfc.commands (imported only when that subcommand runs or is listed)
SUBCOMMANDS: dict[str, str] = {
    "info": "info",
    "import": "import_model",
    "compile": "compile",
    "opt": "opt",
    "generate": "generate",
    "run": "run",
    "passes": "list_passes",
    "targets": "list_targets",
    "sim": "sim",
    "sim-sweep": "sim_sweep",  # spelled `mmfc sim sweep` (see NESTED)
}

#: two-word commands: ``mmfc sim sweep ...`` is parsed as the hidden subcommand ``sim-sweep``
NESTED: dict[tuple[str, str], str] = {("sim", "sweep"): "sim-sweep"}

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr and exit code 2."""

    def error(self, message: str) -> "NoReturn":  # type: ignore[name-defined]  # noqa: F821
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(EXIT_USER_ERROR)


def build_parser() -> ArgumentParser:
    from mmfc import __version__

    parser = ArgumentParser(
        prog="mmfc",
        description="mmfc: a compiler stack for MatMul-free (ternary-weight) language models.",
    )
    parser.add_argument("--version", action="version", version=f"mmfc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for name, module in SUBCOMMANDS.items():
        mod = importlib.import_module(f"mmfc.commands.{module}")
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run)
    # the two-word commands' hidden names stay out of the list (argparse would print "==SUPPRESS==")
    hidden = set(NESTED.values())
    sub._choices_actions = [a for a in sub._choices_actions if a.dest not in hidden]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``mmfc`` command; returns the exit code. Ctrl-C at any point, while the parser is
    built (imports) as much as while a command runs, is one line and exit code 130."""
    try:
        return _main(argv)
    except KeyboardInterrupt as exc:
        # by name: an interrupt may land in the middle of importing the module that defines it
        detail = f"; {exc}" if type(exc).__name__ == "InterruptedAfterCommit" else ""
        sys.stderr.write(f"mmfc: interrupted{detail}\n")
        return EXIT_INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) >= 2 and (argv[0], argv[1]) in NESTED:
        argv = [NESTED[(argv[0], argv[1])], *argv[2:]]
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return EXIT_USER_ERROR
    from mmfc import progress_bar

    progress_bar.install()
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        sys.stderr.write(f"mmfc: error: {exc}\n")
        return EXIT_USER_ERROR
    except BrokenPipeError:
        return 0
    except Exception as exc:
        from mmfc.passmanager import PassInternalError, report_internal_error

        if isinstance(exc, PassInternalError):  # a pass crashed: a bug, one line and exit code 3
            return report_internal_error(exc)
        raise


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
