"""Run a generated module: upload the weights once, then follow the plan, launch after launch.

Torch only allocates buffers and hands pointers to Triton: every value the model computes comes out
of a generated kernel. On a GPU (``torch.cuda.is_available()``) the kernels are compiled; without
one they run in Triton's interpreter (``TRITON_INTERPRET=1`` is set, for the process, before the
generated module is imported; tensors stay on the CPU), and the runner says which (:attr:`TritonRunner.device`).

``decode_step`` runs in a *workspace* per batch size: every buffer it needs (inputs, intermediates,
scratch, logits, the recurrent state, updated in place) is allocated once, so a step allocates
nothing; on a GPU the step is captured once as a CUDA graph per batch size and replayed. The state a
step returns is the workspace's own state buffers: handing it back to the next step costs no copy,
and another state is copied in. ``prefill`` allocates its buffers per call. The debug mode
(``dump_dir``) runs the kernels' ``DEBUG`` variants and writes every kernel's results and body values
in the shared dump format.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from xdsl.dialects.builtin import ModuleOp

from mmfc.dialects.diagnostics import UserError
from mmfc.dialects.target import Runner
from mmfc.backends.triton.analysis import next_pow2
from mmfc.dialects.weights import WeightStore

KERNELS_FILE = "kernels.py"
CONSTANTS_FILE = "constants.safetensors"

_TORCH_DTYPES = {
    "float32": "float32", "float64": "float64", "int8": "int8", "int32": "int32", "int64": "int64", "uint8": "uint8",
}


def _torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, _TORCH_DTYPES[name])


def _interpret() -> None:
    """Run Triton kernels in its interpreter from now on, in this process: ``TRITON_INTERPRET=1``
    must be set before a kernel is decorated, and Triton reads it again at launch.

    Triton's own library functions (``tl.sum``, ``tl.max``, ...) are decorated when
    ``triton.language`` is first imported, and on a CPU something often imports it early (PyTorch's
    FX and dynamo do, to see whether Triton is there): those compiled-only functions are then
    re-wrapped for the interpreter, as they would have been had the variable been set first."""
    os.environ["TRITON_INTERPRET"] = "1"
    if "triton.language" not in sys.modules:
        return
    import triton.language as tl
    from triton.language import standard
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    for name, fn in list(vars(standard).items()):
        if type(fn) is JITFunction:
            wrapped = InterpretedFunction(fn.fn)
            setattr(standard, name, wrapped)
            if getattr(tl, name, None) is fn:
                setattr(tl, name, wrapped)


def choose_device(option: str) -> tuple[str, bool]:
    """``(torch device, interpret)`` for the target's ``device`` option: ``auto`` (the GPU when there
    is one, else the interpreter), ``cuda`` (refused without a GPU), ``interpret``."""
    import torch

    has_gpu = torch.cuda.is_available()
    if option == "cuda" and not has_gpu:
        raise UserError("target triton: --device cuda, but no CUDA GPU is available (use --device auto or interpret)")
    if option == "interpret" or (option == "auto" and not has_gpu):
        return "cpu", True
    return "cuda", False


def import_kernels(path: Path, interpret: bool) -> Any:
    """Import a generated ``kernels.py`` as a fresh module (Triton's JIT reads its source file)."""
    name = f"mmfc_generated_kernels_{abs(hash((str(path.resolve()), interpret, path.stat().st_mtime_ns)))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    if interpret:
        _interpret()
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _check_packed(raw: np.ndarray, fmt: str, sym: str) -> None:
    """Packed bytes hold only codes the format writes (a kernel would read any byte as some trits):
    no 0b11 pair in ``2bit``, no byte above 242 in ``base3``."""
    b = raw.astype(np.uint8, copy=False)
    bad = np.any((b & 0x55) & ((b >> 1) & 0x55)) if fmt == "2bit" else np.any(b > 242)
    if bad:
        raise UserError(f"weight @{sym}: invalid {fmt} code in the packed bytes (the weight store is corrupt)")


def _device_2bit_table() -> np.ndarray:
    """Byte -> byte: each 2-bit code of the ``2bit`` format (0: 0, 1: +1, 2: -1) rewritten as the
    trit + 1 (0: -1, 1: 0, 2: +1), the form the generated kernels read (a trit is ``code - 1``, and
    four codes in four bytes feed one ``dp4a``)."""
    table = np.zeros(256, dtype=np.uint8)
    trit_plus_one = {0: 1, 1: 2, 2: 0, 3: 0}  # 3 never occurs (the store is checked first)
    for byte in range(256):
        table[byte] = sum(trit_plus_one[(byte >> (2 * j)) & 3] << (2 * j) for j in range(4))
    return table


DEVICE_2BIT = _device_2bit_table()

#: the most rows a launch of a GEMV-capable kernel may have for the runtime to pick that schedule
GEMV_MAX_ROWS = 8

#: programs a launch over many rows aims at (several per multiprocessor of a large GPU)
TARGET_PROGRAMS = 1024


@dataclass
class _Launch:
    """One kernel launch: the kernel, its grid, its arguments and keyword arguments (constexprs,
    warps), and for the debug mode its plan step and debug buffers."""

    kernel: Any
    grid: tuple[int, ...]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    step: dict[str, Any] = field(default_factory=dict)
    dbg: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> None:
        self.kernel[self.grid](*self.args, **self.kwargs)


@dataclass
class _Workspace:
    """Every buffer of one entry point at one input shape, allocated once (``decode_step``)."""

    buffers: dict[str, Any] = field(default_factory=dict)
    launches: list[_Launch] = field(default_factory=list)
    graph: Any = None


class TritonRunner(Runner):
    """The runner of the ``triton`` target (see the module docstring)."""

    target = "triton"
    reuses_outputs = True

    def __init__(
        self,
        module: ModuleOp,
        store: WeightStore,
        folder: Path,
        options: Mapping[str, Any],
    ) -> None:
        super().__init__(module, store)
        import torch

        self.torch = torch
        self._device, self.interpret = choose_device(str(options.get("device", "auto")))
        self.kernels = import_kernels(folder / KERNELS_FILE, self.interpret)
        self.plan: dict[str, Any] = self.kernels.PLAN
        from mmfc.backends.triton.codegen import PLAN_FORMAT

        if self.plan.get("format") != PLAN_FORMAT:
            raise UserError(
                f"{folder / KERNELS_FILE}: generated with plan format {self.plan.get('format')!r}; this mmfc runs "
                f"format {PLAN_FORMAT} (compile the model again)"
            )
        self.use_graphs = bool(options.get("graphs", True)) and not self.interpret
        self.accumulate = str(options.get("accumulate", "auto"))
        self.gemv = bool(options.get("gemv", True))
        self.rows_per = int(options.get("rows_per_program", 0))
        self.gemv_warps = int(options.get("gemv_warps", 0))
        self.dp4a = bool(options.get("dp4a", True)) and not self.interpret
        self.buffers: dict[str, Any] = {}
        self._upload_weights(store, folder)
        self._dummy = torch.zeros(1, dtype=torch.int8, device=self._device)
        self._workspaces: dict[tuple[str, tuple[tuple[int, ...], ...]], _Workspace] = {}
        self.launch_count = 0

    # ------------------------------------------------------------------------------ where it runs

    @property
    def device(self) -> str:
        if self.interpret:
            return "Triton interpreter on the CPU"
        name = self.torch.cuda.get_device_name()
        graphs = ", decode as CUDA graph" if self.use_graphs else ""
        return f"compiled Triton kernels on {name}{graphs}"

    @property
    def torch_device(self) -> str:
        return self._device

    # ------------------------------------------------------------------------------ weights

    def _upload_weights(self, store: WeightStore, folder: Path) -> None:
        torch = self.torch
        for sym, spec in self.plan["weights"].items():
            raw = np.asarray(store.get(sym))
            if spec.get("format"):
                _check_packed(raw, spec["format"], sym)
            host = np.ascontiguousarray(raw.astype(spec["dtype"], copy=False)).reshape(-1 if spec["scalar"] else raw.shape)
            if spec.get("format") == "2bit":
                host = DEVICE_2BIT[host]
            self.buffers[f"w:{sym}"] = torch.from_numpy(host.copy()).to(self._device)
        if self.plan["constants"]:
            from mmfc.dialects.weights import WeightStore as Store

            constants = Store.open(folder / CONSTANTS_FILE)
            for name in self.plan["constants"]:
                value = np.ascontiguousarray(np.asarray(constants.get(name)))
                self.buffers[f"c:{name}"] = torch.from_numpy(value.reshape(value.shape or (1,)).copy()).to(self._device)

    # ------------------------------------------------------------------------------ values

    def upload(self, value: Any) -> Any:
        torch = self.torch
        if isinstance(value, torch.Tensor):
            return value.to(self._device)
        return torch.from_numpy(np.ascontiguousarray(value)).to(self._device)

    def download(self, value: Any) -> np.ndarray:
        return value.detach().cpu().numpy()

    def to_torch(self, value: Any) -> Any:
        return value

    # ------------------------------------------------------------------------------ running

    def _inputs(self, entry: str, inputs: Sequence[Any]) -> list[Any]:
        from mmfc.dialects.values import coerce_input

        spec = self.plan["entries"].get(entry)
        if spec is None:
            have = ", ".join(f"@{e}" for e in self.plan["entries"]) or "none"
            raise UserError(f"no function @{entry} in the module (functions: {have})")
        args = spec["args"]
        if len(inputs) != len(args):
            raise UserError(f"@{entry} takes {len(args)} inputs, got {len(inputs)}")
        out = []
        types = self.input_types(entry)
        for i, (v, a, t) in enumerate(zip(inputs, args, types)):
            if isinstance(v, self.torch.Tensor):
                if str(v.dtype).removeprefix("torch.") != a["dtype"] or v.dim() != len(a["shape"]):
                    v = v.detach().cpu().numpy()
                else:
                    bad = [d for d, (n, want) in enumerate(zip(v.shape, a["shape"])) if want is not None and n != want]
                    if bad:
                        raise UserError(f"@{entry}: input {i} has shape {tuple(v.shape)}, expected {a['shape']}")
                    out.append(v.to(self._device).contiguous())
                    continue
            value, problem = coerce_input(v, t)
            if problem is not None:
                name = spec["arg_names"][i]
                raise UserError(f"@{entry}: input {i} ({name}) has type {t}: {problem}")
            out.append(self.upload(np.asarray(value)))
        return out

    def run(self, entry: str, *inputs: Any, dump_dir: str | Path | None = None) -> list[Any]:
        args = self._inputs(entry, inputs)
        self._check_ids(entry, args)
        if dump_dir is not None:
            return self._run_debug(entry, args, Path(dump_dir))
        if entry == "decode_step":
            return self._run_workspace(entry, args)
        env = self._bind(entry, args)
        for launch in self._launches(entry, env):
            self.launch_count += 1
            launch()
        return [env[name] for name in self.plan["entries"][entry]["outputs"]]

    def _check_ids(self, entry: str, args: list[Any]) -> None:
        """Token ids must index the embedding table (a kernel would read outside it): checked on the
        host when they come from the host, as the other targets check them."""
        for step in self.plan["entries"][entry]["steps"]:
            if step["record_as"] != "ternary.embedding":
                continue
            table_name, ids_name = step["inputs"]
            if not ids_name.startswith("arg"):
                continue
            ids = args[int(ids_name[3:])]
            if ids.device.type == "cpu" or self.interpret:
                vocab = self.buffers[table_name].shape[0]
                if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
                    bad = ids[(ids < 0) | (ids >= vocab)].flatten()[0]
                    raise UserError(f"ternary.embedding: token id {int(bad)} is out of range [0, {vocab})")

    def _bind(self, entry: str, args: list[Any]) -> dict[str, Any]:
        env = dict(self.buffers)
        for i, a in enumerate(args):
            env[f"arg{i}"] = a
        return env

    def _launches(
        self, entry: str, env: dict[str, Any], *, owned: frozenset[str] = frozenset(), debug: bool = False
    ) -> Iterator[_Launch]:
        """Each launch of ``entry``, allocating its outputs into ``env`` as it goes (an output may be
        written over an input that is in ``owned``)."""
        torch = self.torch
        shared_scratch = None
        for step in self.plan["entries"][entry]["steps"]:
            ins = [env[name] for name in step["inputs"]]

            def dim(spec: Any) -> int:
                return int(spec) if isinstance(spec, int) else int(ins[spec[1]].shape[spec[2]])

            extents = [dim(e) for e, _ in step["grid"]]
            grid = tuple(max(1, math.ceil(n / b)) for n, (_, b) in zip(extents, step["grid"]))
            rows = math.prod(dim(s) for s in step["block_rows_of"])
            schedule = self.schedule(step, rows)
            split: tuple[Any, ...] = ()
            if step.get("row_split"):
                rows_per = self.rows_per_program(rows, schedule["BLOCK_ROWS"], math.prod(grid))
                grid += (max(1, math.ceil(rows / rows_per)),)
                split = (rows_per,)
            grid = grid or (1,)
            outs = []
            for r, (name, shape, dtype) in enumerate(zip(step["outputs"], step["output_shapes"], step["output_dtypes"])):
                alias = step["in_place"].get(str(r))
                if alias is not None and step["inputs"][alias] in owned:
                    env[name] = ins[alias]
                else:
                    env[name] = torch.empty([dim(s) for s in shape], dtype=_torch_dtype(dtype), device=self._device)
                outs.append(env[name])
            dbg: dict[str, Any] = {}
            if debug:
                for d in step["debug"]:
                    dbg[d["name"]] = torch.empty([dim(s) for s in d["shape"]], dtype=_torch_dtype(d["dtype"]), device=self._device)
            scratch = self._dummy
            if step["scratch_per_row"]:
                # one scratch buffer serves every launch (they run one after another on one stream):
                # it grows (doubling) when a launch needs more
                elems = math.prod(grid) * schedule["BLOCK_ROWS"] * step["scratch_per_row"]
                if shared_scratch is None or shared_scratch.numel() < elems:
                    grown = elems if shared_scratch is None else max(elems, 2 * shared_scratch.numel())
                    shared_scratch = torch.empty(grown, dtype=torch.float32, device=self._device)
                scratch = shared_scratch
            sizes = [dim(s) for s in step["sizes"]]
            dbg_args = [dbg.get(d["name"], self._dummy) for d in step["debug"]]
            kernel = getattr(self.kernels, step["kernel"])
            kwargs = {**schedule, "DEBUG": debug, "enable_fp_fusion": False}
            yield _Launch(kernel, grid, (*ins, *outs, *dbg_args, scratch, *sizes, *split), kwargs, step, dbg)

    def rows_per_program(self, rows: int, block_rows: int, programs: int) -> int:
        """Rows each program walks where a kernel's rows may be split among programs: all of them in
        the interpreter (its programs run one after another) and for a few rows (a decode step: the
        weights a program holds serve all its rows); otherwise whole blocks of rows, split until the
        launch has about :data:`TARGET_PROGRAMS` programs (a prompt's rows, spread over the GPU)."""
        if self.rows_per > 0:
            return self.rows_per  # (a block of rows may reach past a program's last row: it is masked)
        if self.interpret or rows <= GEMV_MAX_ROWS:
            return max(1, rows)
        blocks = math.ceil(rows / block_rows)
        parts = min(blocks, max(1, math.ceil(TARGET_PROGRAMS / max(1, programs))))
        return math.ceil(blocks / parts) * block_rows

    def schedule(self, step: dict[str, Any], rows: int) -> dict[str, Any]:
        """The launch parameters of a step over ``rows`` rows (the rows one block walks): rows per
        block, weight bytes per accumulation step, int8 dots or additions, warps.

        In the interpreter, big blocks and dots (numpy products: fewer, larger operations). On a GPU,
        blocks of rows whose tiles fit in registers, dots only for blocks of at least 16 rows, and for
        additions a chunk as long as a ``[rows, block_n, chunk]`` tile of partial sums allows (the
        whole weight row of a decode step's program in one or a few steps). The target's
        ``accumulate`` option forces additions or dots."""
        widest = int(step["max_block"])
        pow2 = next_pow2(rows)
        if step.get("gemv") and self.gemv and rows <= GEMV_MAX_ROWS and self.accumulate != "dot":
            schedule = {"BLOCK_ROWS": 1, "CHUNK": 16, "USE_DOT": False, "GEMV": True, "DP4A": self.dp4a}
            if not self.interpret:
                schedule["num_warps"] = self.gemv_warps or (4 if widest <= 2048 else 8)
            return schedule
        fixed = {"GEMV": False, "DP4A": False}
        if self.interpret:  # numpy operations: the fewer and larger, the faster
            use_dot = self.accumulate != "add"
            chunk = max(16, next_pow2(max(step["accum_k"] or [16]))) if use_dot else 64
            return {"BLOCK_ROWS": min(pow2, 128 if use_dot else 8), "CHUNK": chunk, "USE_DOT": use_dot, **fixed}
        block_rows = max(1, min(pow2, 16384 // widest, 64))
        use_dot = block_rows >= 16 if self.accumulate == "auto" else self.accumulate == "dot"
        if use_dot:
            block_rows = max(block_rows, 16)
        # additions: a [rows, block_n, chunk] tile of partial sums in registers
        chunk = 32 if use_dot else max(16, min(256, 4096 // max(1, block_rows * min(widest, 16))))
        warps = 4 if widest <= 1024 else (8 if widest <= 4096 else 16)
        return {"BLOCK_ROWS": block_rows, "CHUNK": next_pow2(chunk), "USE_DOT": use_dot, "num_warps": warps, **fixed}

    # ------------------------------------------------------------------------------ decode workspace

    def _run_workspace(self, entry: str, args: list[Any]) -> list[Any]:
        spec = self.plan["entries"][entry]
        key = (entry, tuple(tuple(a.shape) for a in args))
        ws = self._workspaces.get(key)
        if ws is None:
            ws = self._workspaces[key] = self._make_workspace(entry, args)
        for i, a in enumerate(args):  # inputs into the workspace (nothing to copy for its own state)
            buf = ws.buffers[f"arg{i}"]
            if a.data_ptr() != buf.data_ptr():
                buf.copy_(a)
        if ws.graph is not None:
            ws.graph.replay()
        else:
            for launch in ws.launches:
                launch()
        self.launch_count += len(ws.launches)
        return [ws.buffers[name] for name in spec["outputs"]]

    def _make_workspace(self, entry: str, args: list[Any]) -> _Workspace:
        ws = _Workspace()
        env = self._bind(entry, [a.clone() for a in args])
        owned = frozenset(f"arg{i}" for i in range(len(args)))
        ws.launches = list(self._launches(entry, env, owned=owned))
        ws.buffers = env
        if self.use_graphs:
            torch = self.torch
            saved = [env[f"arg{i}"].clone() for i in range(len(args))]
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):  # warm up: compile every kernel before capturing
                for launch in ws.launches:
                    launch()
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                for launch in ws.launches:
                    launch()
            ws.graph = graph
            for i, s in enumerate(saved):  # the warm-up updated the state in place
                env[f"arg{i}"].copy_(s)
        return ws

    def profile(self, entry: str, *inputs: Any, repeats: int = 20, per_graph: int = 10) -> list[dict[str, Any]]:
        """Time each launch of ``entry`` alone, with the bytes of the weights it reads and the
        bandwidth that gives: where a step's time goes. On a GPU each launch is captured
        ``per_graph`` times in a CUDA graph of its own and timed by replay (GPU events around the
        replay, divided by ``per_graph``; median of ``repeats``): the host's launch overhead, which a
        decode step's graph does not pay either, stays out of the figure."""
        import statistics

        torch = self.torch
        args = self._inputs(entry, inputs)
        env = self._bind(entry, args)
        launches = list(self._launches(entry, env, owned=frozenset(f"arg{i}" for i in range(len(args)))))
        for launch in launches:  # compile and warm up (and let the clocks rise: an idle GPU clocks down)
            launch()
        warm = time.perf_counter()
        while time.perf_counter() - warm < 0.5:
            for launch in launches:
                launch()
            torch.cuda.synchronize()
        rows = []
        for launch in launches:
            # the weights a launch reads whole (an embedding table is gathered from: one row per token)
            gathered = launch.step["record_as"] == "ternary.embedding" or launch.step["label"] == "embedding"
            weights = 0 if gathered else sum(
                t.numel() * t.element_size() for name, t in zip(launch.step["inputs"], launch.args) if name.startswith("w:")
            )
            graph = torch.cuda.CUDAGraph()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                launch()
            torch.cuda.current_stream().wait_stream(stream)
            with torch.cuda.graph(graph):
                for _ in range(per_graph):
                    launch()
            graph.replay()
            times = []
            for _ in range(repeats):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                graph.replay()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / per_graph)
            ms = statistics.median(times)
            rows.append({
                "label": launch.step["label"], "kernel": launch.step["kernel"], "grid": list(launch.grid),
                "ms": round(ms, 5), "weight_bytes": weights, "gbps": round(weights / (ms * 1e-3) / 1e9, 1) if ms else None,
            })
        return rows

    def profile_decode(self, batch: int = 1) -> list[dict[str, Any]]:
        """:meth:`profile` of one ``decode_step`` (token ids 0, zero state), summed per generated
        function (one per kernel shape): launches, ms, weight bytes, GB/s; the slowest first."""
        if self.interpret:
            raise UserError("--profile times compiled kernels on a GPU; here the kernels run in Triton's interpreter")
        spec = self.plan["entries"]["decode_step"]
        inputs = [
            np.zeros([batch if n is None else n for n in a["shape"]], dtype=a["dtype"]) for a in spec["args"]
        ]
        return summarize_profile(self.profile("decode_step", *inputs))

    def workspace_state(self, values: Sequence[Any]) -> bool:
        """Whether ``values`` are the state buffers of a decode workspace (handed back without a copy)."""
        ptrs = {v.data_ptr() for v in values}
        return any(ptrs <= {b.data_ptr() for b in ws.buffers.values() if hasattr(b, "data_ptr")} for ws in self._workspaces.values())

    # ------------------------------------------------------------------------------ debug mode

    def _run_debug(self, entry: str, args: list[Any], dump_dir: Path) -> list[Any]:
        from mmfc.dialects.dump import DumpWriter, OpRecord

        writer = DumpWriter(dump_dir)
        env = self._bind(entry, args)
        index = 0
        for launch in list(self._launches(entry, env, debug=True)):
            step, dbg = launch.step, launch.dbg
            self.launch_count += 1
            launch()
            if self._device == "cuda":
                self.torch.cuda.synchronize()
            results = tuple(self.download(env[name]) for name in step["outputs"])
            if step["record_as"] is not None:  # a function-level op the target wrapped in a kernel
                writer(OpRecord(index, step["record_as"], None, entry, None, results, ("",) * len(results)))
                index += 1
                continue
            writer(OpRecord(index, "ternary.kernel", step["label"], entry, None, results, ("",) * len(results)))
            index += 1
            by_body: dict[int, list[Any]] = {}
            for d in step["debug"]:  # one record per body op, its results in order
                by_body.setdefault(d["body"], []).append(d)
            for body, values in by_body.items():
                results = tuple(self.download(dbg[d["name"]]) for d in sorted(values, key=lambda d: d["result"]))
                writer(OpRecord(index, values[0]["op"], step["label"], entry, None, results, ("",) * len(results), body=body))
                index += 1
        return [env[name] for name in self.plan["entries"][entry]["outputs"]]


def summarize_profile(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-launch timings (:meth:`TritonRunner.profile`) summed by generated function (one per
    kernel shape): launches, total ms, weight bytes, achieved GB/s; the slowest first."""
    table: dict[str, dict[str, Any]] = {}
    for r in rows:
        t = table.setdefault(r["kernel"], {"kernel": r["kernel"], "launches": 0, "ms": 0.0, "weight_bytes": 0, "grid": r["grid"]})
        t["launches"] += 1
        t["ms"] += r["ms"]
        t["weight_bytes"] += r["weight_bytes"]
    for t in table.values():
        t["ms"] = round(t["ms"], 4)
        t["gbps"] = round(t["weight_bytes"] / (t["ms"] * 1e-3) / 1e9, 1) if t["ms"] else None
    return sorted(table.values(), key=lambda t: -t["ms"])


__all__ = ["CONSTANTS_FILE", "KERNELS_FILE", "TritonRunner", "choose_device", "import_kernels", "summarize_profile"]
