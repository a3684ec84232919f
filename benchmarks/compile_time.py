"""Wall time and peak memory of ``mmfc compile --model DIR -O2`` on released-shape checkpoints (not CI).

usage: python benchmarks/compile_time.py [--sizes 370m,1.3b,2.7b] [--seed 0] [--work DIR] [--keep]
                                         [--target interp] [--json results.json] [--breakdown]

For each size the script first makes a checkpoint folder in the released format from ``--seed``
(``config.json`` of the preset's shape, bf16 float masters with the reference's tensor names, split
into ``model-0000i-of-0000n.safetensors`` shards of at most 2 GB with a
``model.safetensors.index.json``: one file for 370M, two for 1.3B, three for 2.7B). The values are
``N(0, 0.02)`` (norm weights ``1 + N(0, 0.02)``) drawn with numpy from the seed, one generator per
tensor, so a folder is made the same on every machine. Then it runs, in a child process::

    /usr/bin/time -f %M python -m mmfc compile --model DIR -O2 -o OUT --target TARGET

and records the wall time, the child's peak RSS as ``/usr/bin/time -f %M`` reports it, and the peak
of the RSS summed over the child's process tree (sampled from ``/proc`` every 50 ms), plus the load
average before and after (the machine may be shared). Checkpoints and artifacts live in ``--work``
(default: a temporary folder) and are removed at the end unless ``--keep`` (a kept checkpoint is
reused by the next run with the same seed). ``--breakdown`` then runs each compile once more, step by
step in a child process, and prints the seconds and the RSS after each step (where the time and the
memory go).

The bar (issue 12): 2.7B in <= 60 s with <= 3 GB peak RSS on a 2-core machine (resolved: 90 s, 4 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

SIZES = ("370m", "1.3b", "2.7b")
MAX_SHARD_BYTES = 2 * 10**9
SAMPLE_S = 0.05
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------------------------------ checkpoints


def make_checkpoint(size: str, seed: int, folder: Path) -> Path:
    """A released-format checkpoint of preset ``size`` with random bf16 masters from ``seed``."""
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from mmfc.frontends.torch.checkpoint import expected_tensors
    from mmfc.frontends.torch.config import preset_config

    done = folder / ".complete"
    if done.is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    config = preset_config(size)
    config.save_pretrained(folder)
    shapes = expected_tensors(config, quantized=False)
    shards: list[list[str]] = [[]]
    size_bytes = 0
    for name, shape in shapes.items():
        nbytes = 2 * int(np.prod(shape))
        if shards[-1] and size_bytes + nbytes > MAX_SHARD_BYTES:
            shards.append([])
            size_bytes = 0
        shards[-1].append(name)
        size_bytes += nbytes
    weight_map: dict[str, str] = {}
    total = 0
    for i, names in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        tensors = {}
        for name in names:
            index = list(shapes).index(name)
            rng = np.random.default_rng([seed, index])
            values = rng.standard_normal(shapes[name], dtype=np.float32) * np.float32(0.02)
            if name.endswith("norm.weight"):
                values += np.float32(1.0)
            bits = (values.view(np.uint32) >> 16).astype(np.uint16)  # bf16: the upper half of float32
            tensors[name] = torch.from_numpy(bits).view(torch.bfloat16)
            weight_map[name] = fname
            total += bits.nbytes
        save_file(tensors, str(folder / fname), metadata={"format": "pt"})
        del tensors
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    done.write_text("")
    return folder


# ------------------------------------------------------------------------------------------ measuring


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (from /proc/PID/task/TID/children; [] once gone)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return found


def _tree_rss_bytes(root: int) -> int:
    """Resident set size summed over ``root`` and every descendant (from /proc; 0 once gone). Only the
    tree is read, so sampling costs the measured command next to nothing."""
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE_BYTES
        except (OSError, ValueError, IndexError):
            continue
        todo.extend(_children(pid))
    return total


def measure(cmd: list[str]) -> dict[str, Any]:
    """Run ``cmd`` under ``/usr/bin/time -f %M``; wall seconds, its peak RSS and the sampled tree peak."""
    load_before = os.getloadavg()
    timed = ["/usr/bin/time", "-f", "mmfc-bench-maxrss-kb %M", *cmd]
    start = time.perf_counter()
    proc = subprocess.Popen(timed, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss_bytes(proc.pid))
            stop.wait(SAMPLE_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    seconds = time.perf_counter() - start
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n{err}")
    maxrss_kb = next(int(line.split()[1]) for line in err.splitlines() if line.startswith("mmfc-bench-maxrss-kb"))
    return {
        "wall_s": round(seconds, 2),
        "time_maxrss_mb": round(maxrss_kb * 1024 / 1e6, 1),
        "tree_peak_rss_mb": round(peak / 1e6, 1),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "stderr": err,
    }


def breakdown(checkpoint: Path, out: Path) -> list[tuple[str, float, float]]:
    """Where the time and memory of one compile go: ``(step, seconds, RSS MB after it)`` for the
    steps of ``mmfc.compile_artifact`` run one by one in this process (torch's import, the import
    and validation of the checkpoint, each pass, the statistics, writing the artifact)."""
    rows: list[tuple[str, float, float]] = []
    last = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal last
        now = time.perf_counter()
        with open("/proc/self/statm") as f:
            rss_mb = int(f.read().split()[1]) * PAGE_BYTES / 1e6
        rows.append((step, now - last, rss_mb))
        last = now

    import torch  # noqa: F401 -- timed on its own

    lap("import torch")
    from mmfc.artifact import artifact_dir, fill_artifact
    from mmfc.dialects.context import mmfc_context
    from mmfc.dialects.weights import resolve_store
    from mmfc.passmanager import PassManager
    from mmfc.pipeline import named_pipeline
    from mmfc.source import import_ir, source_of
    from mmfc.stats import compile_stats

    lap("import mmfc")
    src = import_ir(source_of(checkpoint))
    lap("import + validate the checkpoint")
    manager = PassManager(named_pipeline("O2"))
    manager.run(mmfc_context(), src.module)
    for step, seconds in manager.timings:
        rows.append((f"  {step}", seconds, float("nan")))
    lap("passes (-O2), verified after each")
    store = resolve_store(src.module)
    stats = compile_stats(src.module, store)
    lap("statistics")
    with artifact_dir(out) as folder:
        fill_artifact(folder, src.module, store, target="interp", pipeline="O2", config=src.config, stats=stats)
    lap("write the artifact")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(SIZES), help="comma-separated presets (default: all three)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random checkpoints (default 0)")
    parser.add_argument("--work", help="folder for checkpoints and artifacts (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoints (reused by the next run)")
    parser.add_argument("--target", default="interp", help="compile target (default interp)")
    parser.add_argument("--json", help="write the results here as JSON")
    parser.add_argument("--breakdown", action="store_true",
                        help="also run each size's compile step by step in a child process: seconds and RSS per step")
    parser.add_argument("--breakdown-of", metavar="DIR", help=argparse.SUPPRESS)  # the child of --breakdown
    args = parser.parse_args()
    if args.breakdown_of:
        out = Path(tempfile.mkdtemp(prefix="mmfc-breakdown-")) / "out"
        try:
            print(json.dumps(breakdown(Path(args.breakdown_of), out)))
        finally:
            shutil.rmtree(out.parent, ignore_errors=True)
        return 0
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="mmfc-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for size in sizes:
            start = time.perf_counter()
            ckpt = make_checkpoint(size, args.seed, work / f"ckpt-{size}-seed{args.seed}")
            made_s = time.perf_counter() - start
            out = work / f"out-{size}"
            shutil.rmtree(out, ignore_errors=True)
            cmd = [sys.executable, "-m", "mmfc", "compile", "--model", str(ckpt), "-O2", "-o", str(out),
                   "--target", args.target]
            row = {"size": size, "checkpoint_bytes": sum(f.stat().st_size for f in ckpt.glob("*.safetensors")),
                   "checkpoint_made_s": round(made_s, 1), **measure(cmd)}
            row["artifact_bytes"] = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
            shutil.rmtree(out, ignore_errors=True)
            if args.breakdown:
                child = [sys.executable, __file__, "--breakdown-of", str(ckpt)]
                rows = json.loads(subprocess.run(child, check=True, capture_output=True, text=True).stdout)
                row["breakdown"] = rows
                print(f"{size}, step by step (load {os.getloadavg()[0]:.2f}):")
                for step, seconds, rss_mb in rows:
                    rss = "" if rss_mb != rss_mb else f"{rss_mb:8.0f} MB"
                    print(f"  {step:<40} {seconds:7.2f} s {rss}")
            if not args.keep:
                shutil.rmtree(ckpt, ignore_errors=True)
            results.append(row)
            print(f"{size}: {row['wall_s']} s, /usr/bin/time %M {row['time_maxrss_mb']} MB, "
                  f"process tree {row['tree_peak_rss_mb']} MB (load {row['load_before'][0]} -> {row['load_after'][0]})",
                  flush=True)
    finally:
        if not args.work and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'size':<6} {'wall s':>7} {'peak RSS MB (time %M)':>22} {'tree peak MB':>13} {'checkpoint GB':>14} "
          f"{'artifact MB':>12} {'load':>11}")
    for r in results:
        print(f"{r['size']:<6} {r['wall_s']:>7.1f} {r['time_maxrss_mb']:>22.0f} {r['tree_peak_rss_mb']:>13.0f} "
              f"{r['checkpoint_bytes'] / 1e9:>14.2f} {r['artifact_bytes'] / 1e6:>12.0f} "
              f"{r['load_before'][0]:>5.2f}->{r['load_after'][0]:<5.2f}")
    if args.json:
        meta = {"cores": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()}
        Path(args.json).write_text(json.dumps({"machine": meta, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
