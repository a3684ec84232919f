"""Design sweeps: the cross product of accelerator parameters, timed on one model, as CSV and a plot.

``mmfc sim sweep ... --set dram.gbps=25,50,100 --set tacc.lanes=256,1024`` runs every combination in
timing-only mode (no values: a design point is the lowering, with its tiler, and the schedule of a
prefill and the decode steps). Every point runs :func:`run_point`, the one task function of both
executors: :class:`LocalExecutor` (processes on this machine) and :class:`RayExecutor` (a Ray
cluster, ``pip install mmfc[ray]``; Ray is imported only there). A point that fails (an SRAM too small
for the model, accumulators too narrow) is a row with its error, not the end of the sweep.

:func:`write_csv` writes the rows in the order of the points (the same CSV whatever ran them);
:func:`pareto_front` and :func:`plot_pareto` draw tokens/s against joules per token (matplotlib,
imported only there).
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import sys
from contextlib import contextmanager
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmfc.dialects.arch import Accelerator, ArchError, parse_arch
from mmfc.dialects.diagnostics import UserError

#: the figures of a row, after the swept keys
COLUMNS = (
    "status", "error", "cycles_per_token", "seconds_per_token", "tokens_per_s", "energy_j_per_token",
    "dram_bytes_per_token", "util_tacc", "util_vector", "util_dma", "util_dram", "stall_tacc_dram",
    "stall_tacc_dependency", "prefill_cycles",
)


def parse_value(text: str) -> Any:
    """One value of a ``--set`` list as TOML would read it: an integer, a number, true/false, or text."""
    t = text.strip()
    for cast in (int, float):
        try:
            return cast(t)
        except ValueError:
            pass
    if t in ("true", "false"):
        return t == "true"
    return t.strip('"')


def parse_sets(items: Sequence[str], base: Accelerator) -> dict[str, list[Any]]:
    """``["dram.gbps=25,50", ...]`` -> ``{"dram.gbps": [25, 50]}``, every value checked against the
    description's schema now (one-line ``UserError`` naming the key)."""
    out: dict[str, list[Any]] = {}
    for item in items:
        key, eq, values = item.partition("=")
        key = key.strip()
        if not eq or not key or not values.strip():
            raise UserError(f"--set {item!r}: expected KEY=V1,V2,... (e.g. dram.gbps=25,50)")
        if key in out:
            raise UserError(f"--set {key}: given twice")
        vals = [parse_value(v) for v in values.split(",") if v.strip()]
        for v in vals:
            base.with_values({key: v}, where=f"--set {key}={v}")
        out[key] = vals
    return out


def points(sets: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The cross product of ``sets``, in order (the last key varies fastest)."""
    keys = list(sets)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(sets[k] for k in keys))]


@dataclass
class SweepJob:
    """What every point needs: the fused module's text, the base description, the run's shape, and
    the weights' per-row nonzero counts (cumulative, per weight symbol) for ``skip_zeros`` designs."""

    module_text: str
    base: dict[str, Any]
    tokens: int
    prompt_len: int
    batch: int = 1
    nonzero_cumsum: dict[str, np.ndarray] = field(default_factory=dict)


_MODULES: dict[int, Any] = {}


def _module(job: SweepJob) -> Any:
    """The job's module, parsed once per process."""
    key = hash(job.module_text)
    if key not in _MODULES:
        from mmfc.dialects.context import mmfc_context
        from mmfc.dialects.source import parse_module

        _MODULES.clear()
        _MODULES[key] = parse_module(mmfc_context(), job.module_text, "sweep.mlir")[0]
    return _MODULES[key]


def run_point(job: SweepJob, point: Mapping[str, Any]) -> dict[str, Any]:
    """Time one design point (the one task function of every executor): a row of :data:`COLUMNS`
    after the point's own values; a failure is a row with ``status`` ``error``."""
    from xdsl.dialects import func

    from mmfc.backends.sim.engine import Engine
    from mmfc.backends.sim.report import summarize
    from mmfc.dialects.accel_lowering import plan_function

    row: dict[str, Any] = dict(point)
    try:
        arch = parse_arch(job.base, where="--arch").with_values(point)
        programs = {f.sym_name.data: plan_function(f, arch, job.batch, max(job.prompt_len, 1))
                    for f in _module(job).ops if isinstance(f, func.FuncOp)}
        nonzeros = None
        if arch.tacc.skip_zeros and job.nonzero_cumsum:
            cums = job.nonzero_cumsum
            nonzeros = lambda sym, a, b: int(cums[sym][b] - cums[sym][a])  # noqa: E731
        engine = Engine(programs, arch, nonzeros)
        calls = []
        if job.prompt_len > 0:
            calls.append(engine.time_call("prefill", job.batch, job.prompt_len))
        calls += [engine.time_call("decode_step", job.batch, 1)] * job.tokens
        rep = summarize(arch, calls)
    except (UserError, ArchError) as exc:
        row.update(status="error", error=str(exc))
        return row
    stall = rep["stalls"]["tacc_share"]
    util = rep["utilization"]
    row.update(
        status="ok", error="", cycles_per_token=rep["cycles_per_token"], seconds_per_token=rep["seconds_per_token"],
        tokens_per_s=rep["tokens_per_s"], energy_j_per_token=rep["energy_j_per_token"],
        dram_bytes_per_token=rep["dram_bytes_per_token"], util_tacc=util["tacc"], util_vector=util["vector"],
        util_dma=util["dma"], util_dram=util["dram"], stall_tacc_dram=stall.get("dram", 0.0),
        stall_tacc_dependency=stall.get("dependency", 0.0),
        prefill_cycles=rep["prefill"]["cycles"] if rep["prefill"] else 0,
    )
    return row


# --------------------------------------------------------------------------------------------------
# Executors
# --------------------------------------------------------------------------------------------------

Progress = Callable[[int], None]


class LocalExecutor:
    """Points on local processes (``workers`` of them; 1 runs them in this process)."""

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1

    def run(self, job: SweepJob, pts: Sequence[Mapping[str, Any]], progress: Progress) -> list[dict[str, Any]]:
        if self.workers <= 1 or len(pts) <= 1:
            out = []
            for p in pts:
                out.append(run_point(job, p))
                progress(1)
            return out
        from concurrent.futures import ProcessPoolExecutor
        import multiprocessing

        results: list[dict[str, Any] | None] = [None] * len(pts)
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(self.workers, len(pts)), mp_context=ctx) as pool:
            futures = {pool.submit(run_point, job, p): i for i, p in enumerate(pts)}
            from concurrent.futures import as_completed

            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                progress(1)
        return [r for r in results if r is not None]


class RayExecutor:
    """Points as Ray tasks on a cluster (``address`` HOST:PORT of a running one; None starts a local
    instance). The same task function as :class:`LocalExecutor`."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        self.address = address
        self.workers = workers

    def run(self, job: SweepJob, pts: Sequence[Mapping[str, Any]], progress: Progress) -> list[dict[str, Any]]:
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install mmfc[ray]") from None
        started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
            if self.address:
                _check_reachable(self.address)
            try:
                if self.address:
                    ray.init(address=self.address, **kwargs)
                else:
                    ray.init(num_cpus=self.workers, **kwargs)
            except Exception as exc:  # noqa: BLE001 - no cluster there: one line
                raise UserError(f"--executor ray: cannot connect to Ray at {self.address or 'a local instance'}: "
                                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
            started = True
        try:
            task = ray.remote(run_point)
            job_ref = ray.put(job)
            refs = [task.remote(job_ref, dict(p)) for p in pts]
            index = {r: i for i, r in enumerate(refs)}
            results: list[dict[str, Any] | None] = [None] * len(refs)
            pending = list(refs)
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for r in done:
                    results[index[r]] = ray.get(r)
                    progress(1)
            return [r for r in results if r is not None]
        finally:
            if started:
                ray.shutdown()


def _check_reachable(address: str) -> None:
    """Fail in one line, at once, when nothing listens at ``HOST:PORT`` (Ray itself retries for
    minutes)."""
    import socket

    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=3):
            return
    except (OSError, ValueError) as exc:
        raise UserError(f"--executor ray: cannot connect to Ray at {address}: {exc}") from None


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return repr(v)
    return str(v)


def csv_text(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> str:
    """The CSV of ``rows``: the swept keys, then :data:`COLUMNS`."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*keys, *COLUMNS])
    for r in rows:
        w.writerow([_cell(r.get(k, "")) for k in (*keys, *COLUMNS)])
    return buf.getvalue()


def pareto_front(rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Indices of the successful rows no other row beats on both tokens/s (higher) and J/token
    (lower), by tokens/s."""
    ok = [i for i, r in enumerate(rows) if r.get("status") == "ok"]
    front = []
    for i in ok:
        a = rows[i]
        dominated = any(
            rows[j]["tokens_per_s"] >= a["tokens_per_s"] and rows[j]["energy_j_per_token"] <= a["energy_j_per_token"]
            and (rows[j]["tokens_per_s"] > a["tokens_per_s"] or rows[j]["energy_j_per_token"] < a["energy_j_per_token"])
            for j in ok
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: rows[i]["tokens_per_s"])


def plot_pareto(rows: Sequence[Mapping[str, Any]], keys: Sequence[str], path: Path, title: str) -> None:
    """A PNG of every successful point (tokens/s against J/token) with the Pareto front drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.get("status") == "ok"]
    front = [rows[i] for i in pareto_front(rows)]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.scatter([r["tokens_per_s"] for r in ok], [r["energy_j_per_token"] * 1e3 for r in ok], s=18, color="0.6",
               label="design points")
    ax.plot([r["tokens_per_s"] for r in front], [r["energy_j_per_token"] * 1e3 for r in front], "o-", color="C3",
            label="Pareto front")
    for r in front:
        ax.annotate(", ".join(f"{k.split('.')[-1]}={r[k]}" for k in keys), (r["tokens_per_s"], r["energy_j_per_token"] * 1e3),
                    fontsize=6, xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("decode tokens/s")
    ax.set_ylabel("energy per token (mJ)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


@contextmanager
def progress_bar(total: int, label: str, enabled: bool = True) -> Iterator[Progress]:
    """A progress callback drawing a bar on stderr (tqdm; nothing when it is missing or disabled)."""
    try:
        from tqdm import tqdm
    except ImportError:
        enabled = False
    if not enabled:
        yield lambda n: None
        return
    bar = tqdm(total=total, desc=label, unit="design", leave=False, file=sys.stderr)
    try:
        yield bar.update
    finally:
        bar.close()


__all__ = [
    "COLUMNS",
    "LocalExecutor",
    "RayExecutor",
    "SweepJob",
    "csv_text",
    "progress_bar",
    "pareto_front",
    "parse_sets",
    "parse_value",
    "plot_pareto",
    "points",
    "run_point",
]
