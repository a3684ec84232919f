"""``mmfc run FILE.mlir --entry NAME --input a.npy [--input b.npy ...] [-o DIR] [--target T]``: run IR.

Parses and verifies ``FILE.mlir`` (``-``: stdin), opens its weight store (the module's ``mmfc.weights``
path, relative to the file), runs function ``@NAME`` on the ``.npy`` inputs (one per argument, in
order) on a target (``--target``, default ``interp``: the numpy reference interpreter; the IR runs as
it is, no passes, so a target that needs fused IR refuses unfused IR), writes the results to
``DIR/out0.npy``, ``DIR/out1.npy``, ... (default: the current directory; all files or none) and prints
one line per result: file, dtype, shape, IR type. ``--entry`` may be left out when the module has one
function.

``--dump-dir DIR`` is the debug mode: each op's (each kernel's) results go to ``DIR/NNN_<op>.npy`` with
an index in ``DIR/trace.jsonl``, the dump format every target writes (the interpreter's
``--trace-kernel-bodies`` adds every op inside a kernel, per program).

Every mistake is one line and exit code 2: a missing or unreadable ``.npy``, a wrong number of inputs,
an input of the wrong rank, shape or dtype, an unknown entry, IR that does not parse or verify, a
missing weight store, and problems found while running (``FILE:LINE:COL`` of the op, e.g. a token id
out of range or a weight whose stored shape differs from the IR).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmfc.commands.target_options import add_target_arguments, target_options_from_args
from mmfc.dialects.diagnostics import UserError

if TYPE_CHECKING:
    import numpy as np


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "run",
        help="run a function of an .mlir file (numpy reference interpreter, or --target)",
        description=(__doc__ or "").split("\n\n")[0],
    )
    p.add_argument("input_file", metavar="FILE", help="input .mlir file ('-': stdin)")
    p.add_argument("--entry", metavar="NAME", help="function to run (optional when the module has one)")
    p.add_argument(
        "--input", dest="inputs", action="append", default=[], metavar="FILE.npy",
        help="one argument of the function, in order (repeat the flag)",
    )
    p.add_argument("-o", "--output-dir", default=".", metavar="DIR", help="where out0.npy ... go (default: .)")
    p.add_argument("--dump-dir", metavar="DIR", help="debug mode: write every op's results to DIR/NNN_<op>.npy")
    p.add_argument("--parse-timeout", type=float, default=None, metavar="SECONDS", help="stop parsing after this long")
    add_target_arguments(p, at=("compile", "load"))
    return p


def run(args: argparse.Namespace) -> int:
    from mmfc.api import run_ir
    from mmfc.commands.opt import read_input
    from mmfc.dialects.context import mmfc_context
    from mmfc.dialects.source import parse_module, verify_module
    from mmfc.dialects.target import InputError, check_mask_inputs, entries_of, function_of
    from mmfc.dialects.weights import resolve_store, set_mlir_path

    options = target_options_from_args(args, args.target, at=("compile", "load"))
    name, text = read_input(args.input_file)
    arrays = [load_npy(path) for path in args.inputs]  # file mistakes before the (slower) parse
    module, source = parse_module(mmfc_context(), text, name, time_limit_s=args.parse_timeout)
    verify_module(module, source)
    if args.input_file != "-":
        set_mlir_path(module, Path(args.input_file))
    entry = args.entry or _only_entry(entries_of(module), name)
    function_of(module, entry)  # an unknown entry fails before the target loads
    try:
        check_mask_inputs(module, entry, arrays)  # for every target: a mask holds 0 and 1
    except InputError as exc:
        raise UserError(f"{args.inputs[exc.input_index]}: {exc}") from None
    runner = None
    try:
        runner = run_ir(module, resolve_store(module), args.target, **options)
        results = runner.run(entry, *arrays, dump_dir=args.dump_dir)
        host = [runner.download(r) for r in results]
    except UserError as exc:
        index = getattr(exc, "input_index", None)
        if index is not None and index < len(args.inputs):
            raise UserError(f"{args.inputs[index]}: {exc}") from None
        op = getattr(exc, "op", None) or _failing_op(runner)
        if op is not None:
            raise source.error_at(op, str(exc)) from None
        raise
    out_types = function_of(module, entry).function_type.outputs.data
    files = write_outputs(Path(args.output_dir), host)
    for path, value, t in zip(files, host, out_types):
        shape = "x".join(str(d) for d in value.shape) or "scalar"
        sys.stdout.write(f"{path}: {value.dtype} [{shape}] ({t})\n")
    return 0


def _failing_op(runner: Any) -> Any:
    """The op a runner was running when it failed, where it knows (the interpreter does)."""
    monitor = getattr(runner, "monitor", None)
    return monitor.failing_op() if monitor is not None else None


def _only_entry(entries: list[str], name: str) -> str:
    if len(entries) == 1:
        return entries[0]
    have = ", ".join(f"@{e}" for e in entries) or "none"
    raise UserError(f"{name}: say which function to run with --entry NAME (functions: {have})")


def load_npy(path: str) -> "np.ndarray":
    """Read one ``.npy`` file (never a pickle); every problem is a one-line UserError naming it."""
    import numpy as np

    try:
        value = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not a .npy file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except EOFError:  # an empty file
        raise UserError(f"{path}: empty file, not a .npy array") from None
    except ValueError as exc:  # not a .npy file, a pickled object array, a truncated file
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "pickled" in first and not _has_npy_magic(path):
            first = "not a .npy file (no NumPy header)"
        raise UserError(f"{path}: not a readable .npy array ({first})") from None
    if not isinstance(value, np.ndarray):  # an .npz archive
        raise UserError(f"{path}: an .npz archive; give one array per --input as .npy")
    return value


def _has_npy_magic(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(6) == b"\x93NUMPY"
    except OSError:
        return False


def write_outputs(directory: Path, results: "list[np.ndarray]") -> list[Path]:
    """Write ``out{i}.npy`` into ``directory`` (created if missing): every file or none
    (``dialects.files.atomic_files``: a failure leaves earlier outputs as they were)."""
    import numpy as np

    from mmfc.dialects.files import atomic_files

    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{directory}: cannot create the output folder: {exc.strerror or exc}") from None
    if not directory.is_dir():
        raise UserError(f"{directory}: not a folder")
    targets = [directory / f"out{i}.npy" for i in range(len(results))]
    for target in targets:
        if target.is_dir():
            raise UserError(f"{target}: is a directory")
    try:
        with atomic_files() as files:
            for target, value in zip(targets, results):
                np.save(files.open(target), value, allow_pickle=False)
    except OSError as exc:
        raise UserError(f"{directory}: cannot write the results: {exc.strerror or exc}") from None
    return targets


__all__ = ["add_parser", "load_npy", "run", "write_outputs"]
