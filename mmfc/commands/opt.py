"""``mmfc opt [FILE.mlir|-] [-p PIPELINE] [-o OUT]``: the mlir-opt of mmfc.

Without ``-p`` it parses, verifies and prints the IR. ``-`` or no file reads stdin. Every problem in
the input is one line ``FILE:LINE:COL: message`` (``<stdin>`` for stdin) and exit code 2:

* a parse error, at the token where parsing stopped; a verifier error, at the failing operation;
* any exception xDSL raises while parsing or verifying (never a traceback);
* a parse that runs past ``--parse-timeout`` seconds (default: a few seconds, scaled by input size).

``-p`` takes an xDSL pipeline (``cse,canonicalize``, ``pass{option=value}``); names resolve through
:func:`mmfc.pipeline.available_passes` (xDSL's passes plus the ``mmfc.passes`` entry points). ``-O0`` /
``-O2`` instead run a named pipeline (:data:`mmfc.pipeline.NAMED_PIPELINES`). The passes run through
:class:`mmfc.passmanager.PassManager`: the IR is verified after every pass (``--no-verify-each``: once,
after the last), ``--print-ir-after-all`` / ``--print-ir-after=NAME`` print it on stderr,
``--dump-dir DIR`` writes ``DIR/NN-<pass>.mlir`` after each pass (``00-input.mlir`` first), ``--timing``
prints a table of wall times on stderr. A pass that crashes (anything but a diagnostic) is a bug in
that pass: one line ``mmfc: internal error in pass 'X': ...: please report``, exit code 3 (the
traceback with ``MMFC_DEBUG=1``). ``-o`` writes atomically: all of the output or nothing.

``--split-input-file`` treats each ``// -----`` separated chunk as its own module (line numbers stay
those of the whole file); ``--verify-diagnostics`` prints a chunk's verifier or pass diagnostic in
place of its IR instead of failing (exit 0), and ``--parsing-diagnostics`` does the same for parse
errors, so that a filecheck test can check the message.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from mmfc.dialects import files
from mmfc.dialects.diagnostics import UserError
from mmfc.dialects.files import AtomicFiles

# print_module and write_text_atomic live with the pass manager; other commands import them from here
from mmfc.passmanager import PassManager, print_module, write_text_atomic

if TYPE_CHECKING:
    from xdsl.context import Context
    from xdsl.dialects.builtin import ModuleOp
    from xdsl.passes import ModulePass

#: a chunk separator of --split-input-file: a line holding only ``// -----`` (mlir-opt's marker)
SPLIT_MARKER = re.compile(r"^[ \t]*// -----[^\n]*\n?", re.MULTILINE)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "opt",
        help="parse, verify, transform and print IR (mlir-opt style)",
        description=(__doc__ or "").split("\n\n")[0],
    )
    p.add_argument(
        "input", nargs="?", default="-", metavar="FILE", help="input .mlir file ('-' or none: stdin)"
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "-p", "--passes", default="", metavar="PIPELINE", help="pass pipeline, e.g. 'cse,canonicalize'"
    )
    which.add_argument(
        "-O",
        dest="opt_level",
        metavar="LEVEL",
        help="run a named pipeline: -O0 (no pass) or -O2 (fold, pack, fuse, clean up, check-matmul-free)",
    )
    p.add_argument("-o", "--output", metavar="OUT", help="write the IR here (atomically) instead of stdout")
    p.add_argument("--print-op-generic", action="store_true", help="print operations in the generic form")
    p.add_argument(
        "--store-dir",
        metavar="DIR",
        help="write weights that passes create here (default: next to -o; in memory on stdout)",
    )
    p.add_argument("--split-input-file", action="store_true", help="process each '// -----' chunk on its own")
    p.add_argument(
        "--verify-diagnostics",
        action="store_true",
        help="print a verifier or pass diagnostic in place of the IR and exit 0",
    )
    p.add_argument(
        "--parsing-diagnostics",
        action="store_true",
        help="print a parse diagnostic in place of the IR and exit 0",
    )
    p.add_argument(
        "--allow-unregistered-dialect", action="store_true", help="parse unknown operations generically"
    )
    p.add_argument(
        "--parse-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="give up parsing after this long (default: a few seconds, more for large inputs; 0: no limit)",
    )
    p.add_argument("--print-ir-after-all", action="store_true", help="print the IR after each pass on stderr")
    p.add_argument(
        "--print-ir-after",
        action="append",
        default=[],
        metavar="NAME",
        help="print the IR after pass NAME on stderr (repeat the flag or give a comma list)",
    )
    p.add_argument(
        "--dump-dir",
        metavar="DIR",
        help="write the IR after each pass to DIR/NN-<pass>.mlir (and DIR/00-input.mlir), weights beside",
    )
    p.add_argument(
        "--verify-each",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="verify the IR after every pass (default); --no-verify-each: only after the last one",
    )
    p.add_argument("--timing", action="store_true", help="print the time each step took on stderr")
    return p


def run(args: argparse.Namespace) -> int:
    from mmfc.dialects.context import mmfc_context
    from mmfc.passmanager import PassInternalError, report_internal_error

    # flag mistakes (an unknown pass, a bad option, --print-ir-after of a pass not in the pipeline)
    # before reading the input
    passes = _pipeline(args)
    after = [name.strip() for value in args.print_ir_after for name in value.split(",") if name.strip()]
    PassManager(passes, print_ir_after=after)
    out = Path(args.output) if args.output else None
    # before any work: a folder in the way, a folder missing or read-only (the IR's and its weights')
    check_ir_outputs(out, args.store_dir)
    name, text = read_input(args.input)
    ctx = mmfc_context(allow_unregistered=args.allow_unregistered_dialect)
    chunks = split_input(text) if args.split_input_file else [(text, 0)]
    managers: list[PassManager] = []
    pieces: list[str] = []
    try:
        # the weights passes created and the IR land together, or neither does
        with output_files(out) as files:
            for index, (chunk, line_offset) in enumerate(chunks):
                if index:
                    pieces.append("// -----\n")
                dump_dir = args.dump_dir
                if dump_dir is not None and len(chunks) > 1:
                    dump_dir = str(Path(dump_dir) / f"chunk-{index:02d}")  # one numbering per chunk
                manager = PassManager(
                    passes,
                    verify_each=args.verify_each,
                    print_ir_after_all=args.print_ir_after_all,
                    print_ir_after=after,
                    dump_dir=dump_dir,
                    timing=args.timing,
                    print_generic=args.print_op_generic,
                )
                managers.append(manager)
                pieces.append(_process_chunk(ctx, args, manager, name, chunk, line_offset, files))
            output = "".join(pieces)
            if out is not None:
                files.write_text(out, output)
    except PassInternalError as exc:
        return report_internal_error(exc)
    if out is None:
        sys.stdout.write(output)
        sys.stdout.flush()
    if args.timing:
        total = managers[0]
        for other in managers[1:]:  # the chunks' times, summed per step
            for step, seconds in other.timings:
                total.add_time(step, seconds)
        total.print_timing()
    return 0


def _pipeline(args: argparse.Namespace) -> list[ModulePass]:
    """The passes ``-p`` or ``-O`` asks for (a UserError for an unknown pass or a bad option)."""
    from mmfc.pipeline import named_pipeline, parse_pipeline

    spec = named_pipeline(f"O{args.opt_level}") if args.opt_level is not None else args.passes
    return parse_pipeline(spec) if spec.strip() else []


def _process_chunk(
    ctx: Context,
    args: argparse.Namespace,
    manager: PassManager,
    name: str,
    chunk: str,
    line_offset: int,
    files: AtomicFiles | None = None,
) -> str:
    """The printed result of one chunk, or its diagnostic line when a --*-diagnostics flag asks for it."""
    from mmfc.dialects.source import SourceError, parse_module, verify_module

    try:
        with manager.timed("parse"):
            module, source = parse_module(
                ctx, chunk, name, line_offset=line_offset, time_limit_s=args.parse_timeout
            )
    except SourceError as exc:
        if args.parsing_diagnostics:
            return f"{exc}\n"
        raise
    src = None if args.input == "-" else Path(args.input)
    record_source_path(module, src)
    manager.source_map = source
    try:
        with manager.timed("verify"):
            verify_module(module, source)
        manager.run(ctx, module)
    except SourceError as exc:
        if args.verify_diagnostics:
            return f"{exc}\n"
        raise
    # Where the weights go: a store a pass created in memory is written next to -o (or into
    # --store-dir; on stdout without --store-dir it stays in memory and prints as "<memory>"); an
    # untouched store only has its relative path rewritten for the output's folder.
    from mmfc.dialects.weights import write_module_store

    with manager.timed("write weights"):
        write_module_store(module, Path(args.output) if args.output else None, store_dir=args.store_dir, files=files)
    with manager.timed("print"):
        printed = print_module(ctx, module, generic=args.print_op_generic)
    return printed


def check_output_file(path: Path) -> None:
    """A ``UserError`` when the file ``path`` cannot be written (checked before any work): its folder
    is missing or takes no new file, or a folder is in the way."""
    if path.is_dir():
        raise UserError(f"{path}: cannot write: is a directory")
    try:
        files.check_writable(path)
    except OSError as exc:
        raise UserError(f"{path}: cannot write: {exc.strerror or exc}") from None


def check_ir_outputs(out: Path | None, store_dir: str | None = None) -> None:
    """:func:`check_output_file` for the IR ``out`` and for the weight store that may be written with
    it (``OUT.weights.safetensors`` beside it, or in ``store_dir``), before any work."""
    if out is not None:
        check_output_file(out)
    weights = _weights_module()
    if weights is None:
        return
    name = weights.default_store_path(out).name if out is not None else "module" + weights.STORE_SUFFIX
    if store_dir is not None:
        directory = Path(store_dir)
        if directory.exists() and not directory.is_dir():
            raise UserError(f"{directory}: --store-dir is not a folder")
        if directory.is_dir():
            check_output_file(directory / name)
    elif out is not None:
        check_output_file(out.with_name(name))


@contextmanager
def output_files(out: Path | None) -> Iterator[AtomicFiles]:
    """An :func:`~mmfc.dialects.files.atomic_files` block for a command's outputs (IR and the weight
    store written for it): all of them land when the block ends, or none; what the system refuses is
    a ``UserError`` naming the output."""
    try:
        with files.atomic_files() as block:
            yield block
    except OSError as exc:
        where = exc.filename if exc.filename else (str(out) if out is not None else "output")
        raise UserError(f"{where}: cannot write: {exc.strerror or exc}") from None


def read_input(path: str) -> tuple[str, str]:
    """(name for diagnostics, text) of a file, or of stdin for ``-``. Unreadable input is a UserError."""
    from mmfc.dialects.source import STDIN_NAME, SourceMap

    if path == "-":
        name, data = STDIN_NAME, sys.stdin.buffer.read()
    else:
        name = path
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise UserError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise UserError(f"{path}: is a directory, not an .mlir file") from None
        except OSError as exc:
            raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return name, data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # report at the character where the bad bytes start
        text = data[: exc.start].decode("utf-8")
        raise SourceMap(name, text).error_at(
            len(text), f"invalid UTF-8 (byte 0x{data[exc.start]:02x})"
        ) from None


def split_input(text: str) -> list[tuple[str, int]]:
    """Chunks of a ``--split-input-file`` input, each with the number of lines before it in the file."""
    chunks: list[tuple[str, int]] = []
    start, line = 0, 0
    for marker in SPLIT_MARKER.finditer(text):
        chunk = text[start : marker.start()]
        chunks.append((chunk, line))
        line += chunk.count("\n") + marker.group(0).count("\n")
        start = marker.end()
    chunks.append((text[start:], line))
    return chunks


def _weights_module() -> ModuleType | None:
    """``mmfc.dialects.weights``, or None while the weight store does not exist."""
    try:
        from mmfc.dialects import weights
    except ModuleNotFoundError as exc:
        if exc.name == "mmfc.dialects.weights":
            return None
        raise
    return weights


def record_source_path(module: ModuleOp, src: Path | None) -> None:
    """Tell the weight store which file ``module`` was parsed from (None: stdin), so that a pass
    resolving the ``mmfc.weights`` path resolves it against that file's folder. Opens nothing."""
    weights = _weights_module()
    if weights is not None and hasattr(weights, "set_mlir_path"):
        weights.set_mlir_path(module, src)
