"""``mmfc compile (--model DIR | --preset NAME | FILE.mlir) --target T -O2 -o OUT``: the whole pipeline.

Imports the model (or reads IR), runs the pass pipeline (``-O2`` by default, as the target adjusts it;
``-O0`` or ``-p PIPELINE``), builds it for the target (``--target``, default ``interp``; each target's
own flags are listed under its name in ``--help``), and writes a compiled artifact folder: final IR, a
standalone weight store holding exactly what the IR references (packed trits and scales after -O2),
the target's files (generated code, binaries), the config and tokenizer files, and a manifest with
versions and checksums, written atomically. ``mmfc generate OUT ...`` runs it.

``--emit mlir -o OUT.mlir`` writes upstream MLIR instead of an artifact (the lowering of the
``iree-cpu`` target, for users with their own MLIR pipeline): ``OUT.mlir``, the weight arguments
``OUT.weights.safetensors`` and their order ``OUT.weights.json`` (see ``docs/mlir.md``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mmfc.commands.target_options import add_target_arguments, target_options_from_args
from mmfc.targets import DEFAULT_TARGET as DEFAULT_TARGET_NAME
from mmfc.source import add_init_seed_argument, add_model_arguments


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p = subparsers.add_parser("compile", help="compile a model into an artifact folder", description=__doc__.splitlines()[0])
    add_model_arguments(p, positional="FILE.mlir")
    level = p.add_mutually_exclusive_group()
    level.add_argument("-O0", dest="level", action="store_const", const="-O0", help="no fusion")
    level.add_argument("-O2", dest="level", action="store_const", const="-O2", help="everything (default)")
    level.add_argument("-p", "--passes", dest="pipeline", metavar="PIPELINE", help="an explicit pass pipeline")
    p.add_argument("-o", "--output", metavar="OUT", required=True, help="the artifact folder to write (OUT.mlir with --emit mlir)")
    p.add_argument(
        "--emit",
        choices=("artifact", "mlir"),
        default="artifact",
        help="artifact: a compiled artifact folder (default); mlir: upstream MLIR (func/arith/math/tensor/"
        "linalg.generic/scf) with its weights file and the order of the weight arguments beside it",
    )
    p.add_argument("--stats", action="store_true", help="print per-layer kernels, packed bytes and trit sparsity")
    add_init_seed_argument(p)
    p.add_argument("--print-ir-after-all", action="store_true", help="print the IR after each pass on stderr")
    add_target_arguments(p, at=("compile", "load"))
    return p


def run(args: argparse.Namespace) -> int:
    from mmfc.api import compile_artifact, pipeline_spec
    from mmfc.artifact import check_artifact_target
    from mmfc.source import source_from_args
    from mmfc.targets import get_target

    source = source_from_args(args, allow=("checkpoint", "preset", "mlir"))
    if args.emit == "mlir":
        return _emit_mlir(args, source)
    check_artifact_target(args.output)  # before any work (compile_artifact checks again as it starts)
    target = get_target(args.target)
    options = target_options_from_args(args, args.target, at=("compile", "load"))
    pipeline = args.pipeline if args.pipeline is not None else (args.level or "-O2")
    spec = pipeline_spec(pipeline, target, target.resolve_options(options))
    if spec.strip():
        from mmfc.pipeline import parse_pipeline

        parse_pipeline(spec)  # an unknown pass or a bad option fails before any work
    if args.print_ir_after_all:
        options["print_ir_after_all"] = True
    start = time.perf_counter()
    compile_artifact(source, args.output, target=args.target, pipeline=spec, **options)
    seconds = time.perf_counter() - start
    manifest_stats = json.loads((Path(args.output) / "manifest.json").read_text()).get("stats", {})
    if args.stats:
        from mmfc.stats import format_stats

        sys.stdout.write(format_stats(manifest_stats) + "\n")
    per_layer = manifest_stats.get("kernels_per_layer") or ["-"]
    files = sorted(p.name for p in Path(args.output).iterdir() if p.is_file())
    sys.stderr.write(
        f"pipeline: {spec or '(none)'}\n"
        f"kernels per layer: {'/'.join(str(k) for k in per_layer)}   launches per decode token: "
        f"{manifest_stats.get('decode_launches_per_token', 0)}   ternary weights: "
        f"{manifest_stats.get('ternary_weight_bytes', 0) / 1e6:.2f} MB   all weights: "
        f"{manifest_stats.get('weight_bytes', 0) / 1e6:.2f} MB\n"
        f"wrote {args.output}/ ({', '.join(files)}) in {seconds:.1f} s [target {target.name}]\n"
    )
    return 0


def _emit_mlir(args: argparse.Namespace, source: object) -> int:
    """``--emit mlir``: the pipeline, then the upstream module and its weights (module docstring)."""
    from mmfc.api import pipeline_spec, run_pipeline
    from mmfc.dialects.diagnostics import UserError
    from mmfc.dialects.weights import resolve_store
    from mmfc.source import import_ir

    if args.target not in ("iree-cpu", DEFAULT_TARGET_NAME):
        raise UserError(f"--emit mlir writes the upstream MLIR of the iree-cpu target's lowering; drop --target {args.target}")
    out = Path(args.output)
    if not out.name.endswith(".mlir"):
        raise UserError(f"--emit mlir writes an .mlir file: -o {out} must end in .mlir")
    if out.is_dir():
        raise UserError(f"{out}: is a directory (--emit mlir writes OUT.mlir)")
    from mmfc.backends.mlir.export import companion_paths
    from mmfc.commands.opt import check_output_file

    for path in (out, *companion_paths(out)):  # before any work: the three files can be written
        check_output_file(path)
    pipeline = args.pipeline if args.pipeline is not None else (args.level or "-O2")
    spec = pipeline_spec(pipeline)
    if spec.strip():
        from mmfc.pipeline import parse_pipeline

        parse_pipeline(spec)
    start = time.perf_counter()
    sys.stderr.write(f"pipeline: {spec or '(none)'}\n")
    imported = import_ir(source)  # type: ignore[arg-type]
    run_pipeline(imported.module, spec, print_ir_after_all=args.print_ir_after_all)
    from mmfc.backends.mlir.export import export_upstream
    from mmfc.backends.mlir.lower import check_lowerable

    check_lowerable(imported.module)
    exported = export_upstream(imported.module, resolve_store(imported.module), out)
    sys.stderr.write(
        f"wrote {exported.mlir} (upstream MLIR), {exported.weights.name} ({exported.weight_count} weight arguments, "
        f"{exported.weight_bytes / 1e6:.2f} MB), {exported.order.name} (their order) in {time.perf_counter() - start:.1f} s\n"
    )
    return 0
