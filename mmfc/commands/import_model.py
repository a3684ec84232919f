"""``mmfc import (--model DIR | --preset NAME) -o OUT.mlir``: PyTorch model -> ternary IR + weight store.

A checkpoint folder is imported from its config and safetensors headers: the IR's weight-store
attribute names the checkpoint folder itself (relative to OUT.mlir), whose tensors are read lazily
later (float masters are never copied). A preset is built in PyTorch from ``--init-seed`` and its
tensors are written to ``OUT.weights.safetensors`` beside the IR (or into ``--store-dir``). The IR text
stays small: weights are symbols, never inlined.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mmfc.source import add_init_seed_argument, add_model_arguments, import_ir, source_from_args
from mmfc.dialects.diagnostics import UserError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "import",
        help="import a model into the ternary dialect (IR + weight store)",
        description=__doc__.splitlines()[0],
    )
    add_model_arguments(p)
    p.add_argument("-o", "--output", metavar="OUT.mlir", required=True, help="where to write the IR ('-' for stdout)")
    p.add_argument("--store-dir", metavar="DIR", help="write new weights here instead of next to OUT.mlir")
    p.add_argument(
        "--entry",
        action="append",
        choices=("prefill", "decode_step"),
        help="entry functions to emit (default: both); repeatable",
    )
    add_init_seed_argument(p)
    p.add_argument("--print-op-generic", action="store_true", help="print the generic op form")
    return p


def run(args: argparse.Namespace) -> int:
    from mmfc.commands.opt import check_ir_outputs, output_files, print_module
    from mmfc.dialects.context import mmfc_context
    from mmfc.dialects.weights import write_module_store

    source = source_from_args(args, allow=("checkpoint", "preset"))
    entries = tuple(args.entry or ("prefill", "decode_step"))
    out = None if args.output == "-" else Path(args.output)
    check_ir_outputs(out, args.store_dir)  # before any work: the IR and its weights can be written
    if out is None and source.kind == "preset" and args.store_dir is None:
        raise UserError("a preset's weights must be written somewhere: give -o OUT.mlir or --store-dir DIR")
    start = time.perf_counter()
    module = import_ir(source, entries).module
    module.verify()
    with output_files(out) as files:  # the weights and the IR land together, or neither does
        store_path = write_module_store(module, out, store_dir=args.store_dir, files=files)
        text = print_module(mmfc_context(), module, generic=args.print_op_generic)
        if out is not None:
            files.write_text(out, text)
    if out is None:
        sys.stdout.write(text)
    seconds = time.perf_counter() - start
    n_ops = sum(1 for _ in module.walk())
    where = "stdout" if out is None else str(out)
    sys.stderr.write(
        f"imported {source}: {', '.join(entries)}; {n_ops} ops, {len(text) / 1e3:.1f} kB of IR -> {where}; "
        f"weights: {store_path if store_path is not None else 'in memory'} ({seconds:.2f} s)\n"
    )
    return 0
