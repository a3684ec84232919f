"""``mmfc sim (--model DIR | --preset NAME | ARTIFACT) --arch NAME|FILE``: a model on a simulated
ternary accelerator; ``mmfc sim sweep ... --set KEY=V1,V2 ...``: design sweeps.

``mmfc sim`` compiles the model (``-O2``, weights packed in the accelerator's format), lowers it to the
accelerator (``lower-to-accel``), then prefills a prompt of ``--prompt-len`` tokens and decodes
``--tokens`` tokens greedily, computing the real values tile by tile (or, with ``--timing-only``, only
the timing). It prints the report (cycles, tokens/s, utilization, stalls, bytes, energy; ``--json``
for all of it as one JSON object) and with ``--trace FILE`` writes the timeline for ui.perfetto.dev.

``mmfc sim sweep`` times the cross product of ``--set`` values (timing only) on local processes or on
a Ray cluster (``--executor ray [--address HOST:PORT]``) and writes ``sweep.csv`` and
``pareto.png`` (tokens/s against J/token) into ``-o DIR``. A failing design is a row of the CSV.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from mmfc.dialects.diagnostics import UserError
from mmfc.source import add_model_arguments

#: published figures a simulation is reported next to: (arch preset, model shape) -> figure
PUBLISHED = {
    ("tereffic-hbm", (2560, 32)): {
        "tokens_per_s": 727.0,
        "source": "TerEffic (arXiv 2502.16473), HBM-assisted design, 2.7B model",
    },
}


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p, positional="ARTIFACT")
    p.add_argument("--arch", metavar="NAME|FILE", default=None,
                   help="the accelerator: a preset (edge-fpga, asic, tereffic-hbm) or a .toml file "
                        "(default: the artifact's, else edge-fpga)")
    p.add_argument("--tokens", type=_positive, default=16, metavar="N", help="decode steps to simulate (default 16)")
    p.add_argument("--prompt-len", type=_positive, default=8, metavar="N", help="prompt tokens prefilled first (default 8)")
    p.add_argument("--batch", type=_positive, default=1, metavar="B", help="sequences decoded together (default 1)")
    p.add_argument("--init-seed", type=int, default=0, help="seed of a preset's random weights (default 0)")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p = subparsers.add_parser("sim", help="run a model on a simulated ternary accelerator (mmfc sim sweep: design sweeps)",
                              description=__doc__.splitlines()[0] + " `mmfc sim sweep --help` for sweeps.")
    _common(p)
    p.add_argument("--timing-only", action="store_true", help="simulate the timing only (no values; fast)")
    p.add_argument("--trace", metavar="FILE", help="write a Chrome/Perfetto trace of every instruction")
    p.add_argument("--json", action="store_true", help="print the whole report as one JSON object")
    return p


def add_sweep_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p = subparsers.add_parser("sim-sweep", prog="mmfc sim sweep", help=argparse.SUPPRESS,
                              description="Time the cross product of accelerator parameters on one model (timing only); "
                                          "write sweep.csv and pareto.png.")
    _common(p)
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="a key of the description and its values, e.g. dram.gbps=12.8,25.6 (repeat for a cross product)")
    p.add_argument("-o", "--output", metavar="DIR", default="sweep", help="folder of sweep.csv and pareto.png (default sweep)")
    p.add_argument("--executor", choices=("local", "ray"), default="local", help="local processes (default) or a Ray cluster")
    p.add_argument("--address", metavar="HOST:PORT", help="the Ray cluster to join (default: start a local one)")
    p.add_argument("--workers", type=_positive, default=None, metavar="N", help="processes (local) or CPUs (local Ray)")
    p.add_argument("--no-plot", action="store_true", help="write the CSV only")
    return p


# ------------------------------------------------------------------------------------------ compiling


#: the fusion passes of -O2, for IR whose weights are only shapes (timing needs no values)
SHAPES_PIPELINE = "fuse-bitlinear,fuse-recurrence,fuse-glu,canonicalize,cse,dce"


def _compiled(args: argparse.Namespace, shapes_only: bool = False) -> tuple[Any, Any, Any, dict[str, Any] | None, str]:
    """``(fused module, store, accelerator, config, model name)`` of the command's model.

    ``shapes_only`` (timing without values, and no ``skip_zeros``): a checkpoint or preset is built
    from its config alone, its weights referenced as trits and never read (timing depends on shapes
    only, and the accelerator's format sets the bytes), which makes a 2.7B model instant to set up."""
    from mmfc.dialects.arch import load_arch
    from mmfc.source import load_config, source_from_args

    source = source_from_args(args, allow=("checkpoint", "preset", "artifact"))
    if source.kind == "artifact":
        from mmfc.artifact import load_artifact

        art = load_artifact(source.path)  # type: ignore[arg-type]
        if args.arch is None and art.target == "sim":  # the machine it was compiled for, as resolved then
            from mmfc.backends.sim.target import ARCH_FILE
            from mmfc.dialects.arch import parse_arch

            arch = parse_arch(json.loads((art.path / ARCH_FILE).read_text()), where=str(art.path / ARCH_FILE))
            return art.module, art.store, arch, art.config, str(source.path)
        return art.module, art.store, load_arch(args.arch), art.config, str(source.path)
    arch = load_arch(args.arch)
    if shapes_only and not arch.tacc.skip_zeros:
        from mmfc.api import run_pipeline
        from mmfc.dialects.builder import WeightForm, build_model

        config = load_config(source)
        module = build_model(config, WeightForm.TRITS, store="(weights not read)")
        run_pipeline(module, SHAPES_PIPELINE)
        return module, None, arch, config.to_dict(), str(source)
    from mmfc.api import _compile

    c = _compile(source, "sim", "-O2", getattr(args, "init_seed", 0), {"arch": arch.to_dict()})
    return c.module, c.store, arch, c.imported.config, str(source)


def _shape(config: dict[str, Any] | None) -> tuple[int, int] | None:
    if not config:
        return None
    return int(config.get("hidden_size", 0)), int(config.get("num_hidden_layers", 0))


def _published(arch: Any, config: dict[str, Any] | None, report: dict[str, Any]) -> dict[str, Any] | None:
    ref = PUBLISHED.get((arch.name, _shape(config)))  # type: ignore[arg-type]
    if ref is None:
        return None
    got = report["tokens_per_s"]
    return {**ref, "simulated_tokens_per_s": got, "error": got / ref["tokens_per_s"] - 1.0}


# ------------------------------------------------------------------------------------------ mmfc sim


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from mmfc.backends.sim.report import chrome_trace, format_table
    from mmfc.backends.sim.runner import SimRunner
    from mmfc.backends.sim.target import lower_module

    if args.batch < 1:
        raise UserError("--batch must be >= 1")
    module, store, arch, config, model_name = _compiled(args, shapes_only=args.timing_only)
    if args.trace:
        _check_writable(Path(args.trace))
    programs = lower_module(module, arch)
    runner = SimRunner(module, store, programs, arch, trace=bool(args.trace))
    start = time.perf_counter()
    new_ids: list[list[int]] = []
    if args.timing_only:
        if args.prompt_len:
            runner.simulate("prefill", args.batch, args.prompt_len)
        for _ in range(args.tokens):
            runner.simulate("decode_step", args.batch, 1)
    else:
        vocab = int((config or {}).get("vocab_size", 0)) or _vocab(module)
        rng = np.random.default_rng(args.init_seed)
        ids = rng.integers(0, vocab, (args.batch, max(args.prompt_len, 1)), dtype=np.int64)
        state = [np.zeros((args.batch, t.get_shape()[-1]), np.float32) for t in runner.input_types("decode_step")[1:]]
        mask = np.ones_like(ids)
        logits, *state = runner.run("prefill", ids, mask, *state)
        step = np.argmax(logits[:, -1], axis=-1).astype(np.int64)
        for _ in range(args.tokens):
            new_ids.append(step.tolist())
            logits, *state = runner.run("decode_step", step, *state)
            step = np.argmax(logits, axis=-1).astype(np.int64)
    host_s = time.perf_counter() - start
    report = runner.report()
    assert report is not None
    report["model"] = model_name
    report["timing_only"] = bool(args.timing_only)
    report["prompt_len"] = args.prompt_len
    report["tokens"] = args.tokens
    report["batch"] = args.batch
    report["host_seconds"] = host_s
    report["simulated_cycles_per_host_second"] = report["cycles"] / host_s if host_s > 0 else None
    if new_ids:
        report["new_ids"] = [list(col) for col in zip(*new_ids)]
    published = _published(arch, config, report)
    if published:
        report["published"] = published
    if args.trace:
        _write_json(Path(args.trace), chrome_trace(runner.trace_events(), arch.clock_mhz))
    if args.json:
        sys.stdout.write(json.dumps(report, indent=1) + "\n")
    else:
        sys.stdout.write(format_table(report, arch.name) + "\n")
        if published:
            sys.stdout.write(
                f"published: {published['tokens_per_s']:g} tok/s ({published['source']}); simulated "
                f"{published['simulated_tokens_per_s']:.1f} tok/s, error {100 * published['error']:+.1f}%\n"
            )
        if new_ids:
            sys.stdout.write("new ids: " + ",".join(str(i) for i in report["new_ids"][0]) + "\n")
    if args.trace:
        sys.stderr.write(f"trace written to {args.trace} (open it in ui.perfetto.dev)\n")
    sys.stderr.write(f"simulated {report['cycles']:,} cycles in {host_s:.2f} s on the host "
                     f"({'timing only' if args.timing_only else 'values and timing'})\n")
    return 0


def _vocab(module: Any) -> int:
    from mmfc.dialects import ternary as T

    for op in module.walk():
        if isinstance(op, T.EmbeddingOp):
            return T.shape_of(op.operands[0].type)[0]
    raise UserError("the model has no embedding: cannot make a prompt")


def _check_writable(path: Path) -> None:
    if path.is_dir():
        raise UserError(f"{path}: is a directory")
    if not path.parent.exists():
        raise UserError(f"{path.parent}: no such directory")


def _write_json(path: Path, data: Any) -> None:
    _write_atomic(path, json.dumps(data).encode())


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


# ------------------------------------------------------------------------------------------ mmfc sim sweep


def run_sweep(args: argparse.Namespace) -> int:
    from mmfc.backends.sim.sweep import (
        LocalExecutor,
        RayExecutor,
        SweepJob,
        csv_text,
        parse_sets,
        plot_pareto,
        points,
        progress_bar,
    )
    from mmfc.dialects.arch import load_arch

    base = load_arch(args.arch)
    if not args.sets:
        raise UserError("give at least one --set KEY=V1,V2,... to sweep")
    sets = parse_sets(args.sets, base)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory")
    if not args.no_plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UserError("the Pareto plot needs matplotlib: pip install mmfc[plot] (or pass --no-plot)") from None
    if args.executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install mmfc[ray]") from None
    elif args.address:
        raise UserError("--address is for --executor ray")
    args.arch = args.arch or base.name
    skip_zeros = True in sets.get("tacc.skip_zeros", []) or base.tacc.skip_zeros
    module, store, _, _, model_name = _compiled(args, shapes_only=not skip_zeros)
    job = SweepJob(str(module), base.to_dict(), args.tokens, args.prompt_len, max(args.batch, 1),
                   _nonzero_cumsum(module, store) if skip_zeros and store is not None else {})
    pts = points(sets)
    executor = RayExecutor(args.address, args.workers) if args.executor == "ray" else LocalExecutor(args.workers)
    start = time.perf_counter()
    with progress_bar(len(pts), f"{len(pts)} designs ({executor.name})", sys.stderr.isatty()) as progress:
        rows = executor.run(job, pts, progress)
    seconds = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    keys = list(sets)
    _write_atomic(out / "sweep.csv", csv_text(rows, keys).encode())
    written = ["sweep.csv"]
    if not args.no_plot:
        tmp = out / ".pareto.png.tmp.png"
        plot_pareto(rows, keys, tmp, f"{model_name} on {base.name}: decode tokens/s vs energy per token")
        tmp.replace(out / "pareto.png")
        written.append("pareto.png")
    failed = sum(1 for r in rows if r.get("status") != "ok")
    sys.stderr.write(f"{len(rows)} designs ({failed} failed) in {seconds:.1f} s on {executor.name}; "
                     f"wrote {', '.join(str(out / w) for w in written)}\n")
    return 0


def _nonzero_cumsum(module: Any, store: Any) -> dict[str, Any]:
    """Per weight symbol, the cumulative nonzero trits of its rows (for skip_zeros designs)."""
    import numpy as np

    from mmfc.dialects import numerics as nm
    from mmfc.dialects import ternary as T

    out = {}
    for op in module.walk():
        if isinstance(op, T.WeightOp) and isinstance(op.result.type, T.PackedType | T.TritsType):
            sym = op.sym.string_value()
            if sym in out:
                continue
            raw = np.asarray(store.get(sym))
            t = op.result.type
            trits = nm.unpack(raw, T.shape_of(t)[1], t.format.data) if isinstance(t, T.PackedType) else raw
            out[sym] = np.concatenate([[0], np.cumsum(np.count_nonzero(trits, axis=1))])
    return out


__all__ = ["add_parser", "add_sweep_parser", "run", "run_sweep"]
