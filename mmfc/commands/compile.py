"""``mmfc compile (--model DIR | --preset NAME | FILE.mlir) --target T -O2 -o OUT``: the whole pipeline.

Imports the model (or reads IR), runs the pass pipeline (``-O2`` by default; ``-O0`` or ``-p PIPELINE``),
and writes a compiled artifact folder: final IR, a standalone weight store holding exactly what the IR
references (packed trits and scales after -O2), the config and tokenizer files, and a manifest with
versions and checksums, written atomically. ``mmfc generate OUT ...`` runs it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mmfc.dialects.diagnostics import UserError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    from mmfc.api import TARGETS
    from mmfc.commands.model_source import PRESET_NAMES

    p = subparsers.add_parser("compile", help="compile a model into an artifact folder", description=__doc__.splitlines()[0])
    p.add_argument("input", nargs="?", metavar="FILE.mlir", help="IR to compile (instead of --model/--preset)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--model", metavar="DIR", help="checkpoint folder (config.json + model.safetensors)")
    group.add_argument("--preset", metavar="NAME", help=f"named shape with random weights: {', '.join(PRESET_NAMES)}")
    p.add_argument("--target", default="interp", choices=sorted(TARGETS), help="where the compiled model runs")
    level = p.add_mutually_exclusive_group()
    level.add_argument("-O0", dest="level", action="store_const", const="-O0", help="no fusion")
    level.add_argument("-O2", dest="level", action="store_const", const="-O2", help="everything (default)")
    level.add_argument("-p", "--passes", dest="pipeline", metavar="PIPELINE", help="an explicit pass pipeline")
    p.add_argument("-o", "--output", metavar="OUT", required=True, help="the artifact folder to write")
    p.add_argument("--stats", action="store_true", help="print per-layer kernels, packed bytes and trit sparsity")
    p.add_argument("--init-seed", type=int, default=0, help="seed of a preset's random weights (default 0)")
    p.add_argument("--print-ir-after-all", action="store_true", help="print the IR after each pass on stderr")
    p.add_argument("--timing", action="store_true", help="print the time each pass took")
    return p


def run(args: argparse.Namespace) -> int:
    from mmfc.api import compile as compile_model
    from mmfc.api import pipeline_spec

    given = [x for x in (args.input, args.model, args.preset) if x is not None]
    if len(given) != 1:
        raise UserError("give exactly one of FILE.mlir, --model DIR or --preset NAME")
    if args.model is not None:
        from mmfc.commands.model_source import check_checkpoint_dir

        source: object = check_checkpoint_dir(args.model)
    elif args.preset is not None:
        from mmfc.frontends.torch.config import preset_config

        preset_config(args.preset)  # a bad name fails before any work
        source = f"preset:{args.preset.lower()}"
    else:
        source = Path(args.input)
        if not source.is_file():
            raise UserError(f"{source}: no such file")
    pipeline = args.pipeline if args.pipeline is not None else (args.level or "-O2")
    spec = pipeline_spec(pipeline)
    from mmfc.pipeline import parse_pipeline

    if spec.strip():
        parse_pipeline(spec)  # an unknown pass or bad option fails before any work
    options = {}
    if args.print_ir_after_all:
        options["print_ir_after_all"] = True
    start = time.perf_counter()
    sys.stderr.write(f"pipeline: {spec or '(none)'}\n")
    compiled = compile_model(source, target=args.target, pipeline=pipeline, out=args.output, **options)
    seconds = time.perf_counter() - start
    manifest_stats = _stats(Path(args.output))
    if args.stats:
        from mmfc.stats import format_stats

        sys.stdout.write(format_stats(manifest_stats) + "\n")
    per_layer = manifest_stats.get("kernels_per_layer") or ["-"]
    files = sorted(p.name for p in Path(args.output).iterdir() if p.is_file())
    sys.stderr.write(
        f"kernels per layer: {'/'.join(str(k) for k in per_layer)}   launches per decode token: "
        f"{manifest_stats.get('decode_launches_per_token', 0)}   ternary weights: "
        f"{manifest_stats.get('ternary_weight_bytes', 0) / 1e6:.2f} MB\n"
        f"wrote {args.output}/ ({', '.join(files)}) in {seconds:.1f} s [target {compiled.target}]\n"
    )
    return 0


def _stats(out: Path) -> dict:
    import json

    return json.loads((out / "manifest.json").read_text()).get("stats", {})
