"""``mmfc opt [FILE.mlir|-] [-p PIPELINE] [-o OUT]``: the mlir-opt of mmfc.

Without ``-p`` it parses, verifies and prints the IR. ``-`` or no file reads stdin. Every problem in
the input is one line ``FILE:LINE:COL: message`` (``<stdin>`` for stdin) and exit code 2:

* a parse error, at the token where parsing stopped; a verifier error, at the failing operation;
* any exception xDSL raises while parsing or verifying (never a traceback);
* a parse that runs past ``--parse-timeout`` seconds (default: a few seconds, scaled by input size).

``-p`` takes an xDSL pipeline (``cse,canonicalize``, ``pass{option=value}``); names resolve through
:func:`mmfc.pipeline.available_passes` (xDSL's passes plus the ``mmfc.passes`` entry points). The IR is
verified after every pass. ``-o`` writes atomically: all of the output or nothing.

``--split-input-file`` treats each ``// -----`` separated chunk as its own module (line numbers stay
those of the whole file); ``--verify-diagnostics`` prints a chunk's verifier or pass diagnostic in
place of its IR instead of failing (exit 0), and ``--parsing-diagnostics`` does the same for parse
errors, so that a filecheck test can check the message.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from io import StringIO
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from mmfc.dialects.diagnostics import UserError

if TYPE_CHECKING:
    from xdsl.context import Context
    from xdsl.dialects.builtin import ModuleOp
    from xdsl.passes import ModulePass

    from mmfc.dialects.source import SourceMap

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
    p.add_argument(
        "-p", "--passes", default="", metavar="PIPELINE", help="pass pipeline, e.g. 'cse,canonicalize'"
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
    p.add_argument("--timing", action="store_true", help="print the time each step took on stderr")
    return p


def run(args: argparse.Namespace) -> int:
    from mmfc.dialects.context import mmfc_context
    from mmfc.pipeline import parse_pipeline

    passes = parse_pipeline(args.passes) if args.passes.strip() else []  # flag mistakes before reading
    name, text = read_input(args.input)
    ctx = mmfc_context(allow_unregistered=args.allow_unregistered_dialect)
    timings: list[tuple[str, float]] = []
    pieces: list[str] = []
    chunks = split_input(text) if args.split_input_file else [(text, 0)]
    for index, (chunk, line_offset) in enumerate(chunks):
        if index:
            pieces.append("// -----\n")
        pieces.append(_process_chunk(ctx, args, passes, name, chunk, line_offset, timings))
    output = "".join(pieces)
    if args.output:
        write_text_atomic(Path(args.output), output)
    else:
        sys.stdout.write(output)
        sys.stdout.flush()
    if args.timing:
        _print_timings(timings)
    return 0


def _process_chunk(
    ctx: Context,
    args: argparse.Namespace,
    passes: list[ModulePass],
    name: str,
    chunk: str,
    line_offset: int,
    timings: list[tuple[str, float]],
) -> str:
    """The printed result of one chunk, or its diagnostic line when a --*-diagnostics flag asks for it."""
    from mmfc.dialects.source import SourceError, parse_module, verify_module

    start = time.perf_counter()
    try:
        module, source = parse_module(
            ctx, chunk, name, line_offset=line_offset, time_limit_s=args.parse_timeout
        )
    except SourceError as exc:
        if args.parsing_diagnostics:
            return f"{exc}\n"
        raise
    timings.append(("parse", time.perf_counter() - start))
    src = None if args.input == "-" else Path(args.input)
    record_source_path(module, src)
    try:
        start = time.perf_counter()
        verify_module(module, source)
        timings.append(("verify", time.perf_counter() - start))
        _apply_passes(ctx, module, source, passes, args, timings)
    except SourceError as exc:
        if args.verify_diagnostics:
            return f"{exc}\n"
        raise
    # Where the weights go: a store a pass created in memory is written next to -o (or into
    # --store-dir; on stdout without --store-dir it stays in memory and prints as "<memory>"); an
    # untouched store only has its relative path rewritten for the output's folder.
    from mmfc.dialects.weights import write_module_store

    write_module_store(module, Path(args.output) if args.output else None, store_dir=args.store_dir)
    start = time.perf_counter()
    printed = print_module(ctx, module, generic=args.print_op_generic)
    timings.append(("print", time.perf_counter() - start))
    return printed


def _apply_passes(
    ctx: Context,
    module: ModuleOp,
    source: SourceMap,
    passes: list[ModulePass],
    args: argparse.Namespace,
    timings: list[tuple[str, float]],
) -> None:
    """Apply ``passes`` in order, verifying after each; a pass's diagnostic becomes a SourceError."""
    from xdsl.utils.exceptions import DiagnosticException

    from mmfc.dialects.source import op_error, verify_module

    for module_pass in passes:
        context = f"pass '{module_pass.name}'"
        start = time.perf_counter()
        try:
            module_pass.apply(ctx, module)
        except DiagnosticException as exc:  # PassFailedException, VerifyException, OpError
            raise op_error(source, exc, context) from None
        timings.append((module_pass.name, time.perf_counter() - start))
        verify_module(module, source, f"after {context}")
        if args.print_ir_after_all:
            sys.stderr.write(f"// -----// IR Dump After {module_pass.name} //----- //\n")
            sys.stderr.write(print_module(ctx, module, generic=args.print_op_generic))


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


def print_module(ctx: Context, module: ModuleOp, *, generic: bool = False) -> str:
    """The module as MLIR text (xdsl-opt's form: the op, dialect metadata, then a newline)."""
    from xdsl.printer import Printer

    out = StringIO()
    printer = Printer(stream=out, print_generic_format=generic)
    printer.print_op(module)
    printer.print_metadata(ctx.loaded_dialects)
    out.write("\n")
    return out.getvalue()


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


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` all at once: a temporary file in the same folder, then ``os.replace``.

    A failure leaves ``path`` as it was (absent or old) and no temporary file behind.
    """
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"{path}: folder {folder} does not exist")
    if path.is_dir():
        raise UserError(f"{path}: is a directory")
    mode = path.stat().st_mode & 0o777 if path.exists() else _default_file_mode()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise UserError(f"{path}: cannot write: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)  # mkstemp creates 0600; give the file the mode a plain open() would
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise UserError(f"{path}: cannot write: {exc.strerror or exc}") from None
        raise


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _print_timings(timings: list[tuple[str, float]]) -> None:
    total = sum(seconds for _, seconds in timings) or 1e-12
    sys.stderr.write(f"{'step':<32} {'ms':>10} {'%':>6}\n")
    for step, seconds in timings:
        sys.stderr.write(f"{step:<32} {seconds * 1e3:>10.2f} {100 * seconds / total:>6.1f}\n")
    sys.stderr.write(f"{'total':<32} {total * 1e3:>10.2f}\n")
