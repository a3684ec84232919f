"""Import time, peak memory and IR size of `mmfc import` on a preset (not part of CI).

usage: python benchmarks/import_time.py [--preset 370m] [--out DIR] [--json results.json]

Runs `mmfc import --preset NAME -o DIR/NAME.mlir` in a child process, measuring wall time and the
child's peak RSS (resource.getrusage of children), and prints a table. The bar the frontend is held
to: 370m under 60 s on a 2-core machine, .mlir text under 1 MB.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="370m")
    parser.add_argument("--out", help="folder for the IR and weights (default: a temporary folder, removed)")
    parser.add_argument("--json", help="write the results here as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        out.mkdir(parents=True, exist_ok=True)
        mlir = out / f"{args.preset}.mlir"
        cmd = [sys.executable, "-m", "mmfc", "import", "--preset", args.preset, "-o", str(mlir)]
        start = time.perf_counter()
        subprocess.run(cmd, check=True)
        seconds = time.perf_counter() - start
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        ir_bytes = mlir.stat().st_size
        store = mlir.with_suffix(".weights.safetensors")
        store_bytes = store.stat().st_size if store.exists() else 0
    import numpy
    import torch
    import xdsl

    result = {
        "preset": args.preset,
        "wall_s": round(seconds, 2),
        "peak_rss_mib": round(peak_mib, 1),
        "ir_bytes": ir_bytes,
        "store_bytes": store_bytes,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": __import__("os").cpu_count(),
                    "python": platform.python_version()},
        "versions": {"torch": torch.__version__, "numpy": numpy.__version__, "xdsl": str(getattr(xdsl, "__version__", "?"))},
    }
    print(f"{'preset':<8} {'wall s':>8} {'peak RSS MiB':>13} {'IR kB':>8} {'weights MB':>11}")
    print(f"{args.preset:<8} {seconds:>8.2f} {peak_mib:>13.0f} {ir_bytes / 1e3:>8.1f} {store_bytes / 1e6:>11.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
