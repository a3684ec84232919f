"""Mutation checks: each patch here plants a plausible bug; the test suite must catch every one.

usage: python tests/mutants/run.py [NAME ...] [--full]

For each ``tests/mutants/NAME.patch`` (all by default): copy the repository's tracked files to a
temporary folder, apply the patch there, install that copy (``pip install --no-deps --target``, so the
virtual environment is untouched), and run the tests the patch names in its header (``# tests:``; the
whole suite with ``--full``) against it, stopping at the first failure. A mutant is *killed* when the
tests fail; a ``# within: S`` header also requires the first failure within S seconds (a property
test that needs minutes to report its failure would look like a hung CI). Prints one line per mutant
and exits 1 if any survived.

The mutants: the two inputs of the MLGRU output gate swapped, and the forget gate's lower bound
dropped, each in both the numpy and the torch numerics (a bug copied into the reference twin);
each threshold of the flip-aware rule (``mmfc/testing.py``) loosened; the shared split rule of
kernels loosened (a reduced dim may be split across programs); a fusion pass that drops the
residual add.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def header(patch: Path, key: str) -> str | None:
    for line in patch.read_text().splitlines():
        if line.startswith("diff --git"):
            break
        m = re.match(rf"#\s*{key}:\s*(.*)", line)
        if m:
            return m.group(1).strip()
    return None


def copy_repository(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def run_mutant(patch: Path | None, tests: list[str]) -> tuple[bool, float, str]:
    """Run ``tests`` on a copy with ``patch`` applied (None: the copy as it is, the control):
    ``(killed, seconds to the verdict, what failed)``."""
    with tempfile.TemporaryDirectory(prefix=f"mutant-{patch.stem if patch else 'control'}-") as tmp:
        repo, site = Path(tmp) / "repo", Path(tmp) / "site"
        repo.mkdir()
        copy_repository(repo)
        if patch is not None:
            subprocess.run(["git", "apply", "--unsafe-paths", str(patch)], cwd=repo, check=True, capture_output=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
             "--disable-pip-version-check", "--target", str(site), str(repo)],
            check=True, capture_output=True,
        )  # fmt: skip
        tests = [str(repo / t) for t in tests]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
        start = time.perf_counter()
        # run from outside the copy, so that `import mmfc` finds the installed copy (not its sources)
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-c", str(repo / "pyproject.toml"),
             "--rootdir", str(repo), *tests],
            cwd=tmp, env=env, capture_output=True, text=True, check=False,
        )
        seconds = time.perf_counter() - start
        failed = [line for line in proc.stdout.splitlines() if line.startswith("FAILED")]
        return proc.returncode == 1 and bool(failed), seconds, failed[0] if failed else proc.stdout.strip()[-120:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="mutants to run (default: every patch here)")
    parser.add_argument("--full", action="store_true", help="run the whole suite against each mutant")
    args = parser.parse_args()
    patches = sorted(HERE.glob("*.patch")) if not args.names else [HERE / f"{n}.patch" for n in args.names]

    def tests_of(patch: Path) -> list[str]:
        return ["tests"] if args.full else (header(patch, "tests") or "tests").split()

    # the control: the same tests pass on the unpatched copy (so a failure below is the mutant's)
    control = sorted({t for patch in patches for t in tests_of(patch)})
    failed, seconds, what = run_mutant(None, control)
    print(f"{'(control: no patch)':<36} {'FAILS' if failed else 'passes':<16} {seconds:6.1f} s  {what if failed else ''}")
    if failed:
        return 1
    survived = 0
    for patch in patches:
        killed, seconds, what = run_mutant(patch, tests_of(patch))
        within = header(patch, "within")
        late = within is not None and seconds > float(within)
        verdict = "killed" if killed and not late else ("killed too late" if killed else "SURVIVED")
        survived += verdict != "killed"
        print(f"{patch.stem:<36} {verdict:<16} {seconds:6.1f} s  {what}", flush=True)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
