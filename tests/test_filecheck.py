"""Runs the lit + filecheck tests of ``tests/filecheck`` from pytest: one pytest test per ``.mlir``.

A failure shows lit's verbose output (the RUN line that failed, the tool's stdout/stderr and
filecheck's diagnostics).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FILECHECK_DIR = Path(__file__).parent / "filecheck"
MLIR_FILES = sorted(p for p in FILECHECK_DIR.rglob("*.mlir") if "Output" not in p.parts)


def _lit() -> list[str]:
    """lit from the environment that runs pytest (its script sits next to the interpreter)."""
    script = Path(sys.executable).parent / "lit"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import lit.main; lit.main.main()"]


def test_there_are_filecheck_tests() -> None:
    assert MLIR_FILES, f"no .mlir tests found under {FILECHECK_DIR}"


@pytest.mark.parametrize("path", MLIR_FILES, ids=[str(p.relative_to(FILECHECK_DIR)) for p in MLIR_FILES])
def test_filecheck(path: Path, tmp_path: Path) -> None:
    env = dict(os.environ)
    env["MMFC_LIT_EXEC_ROOT"] = str(tmp_path)  # %t lives here: concurrent runs never share it
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    proc = subprocess.run(
        [*_lit(), "-v", "--no-progress-bar", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if proc.returncode != 0:
        pytest.fail(f"lit failed on {path.name}:\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    # lit exits 0 when it finds no test to run: make sure this file actually ran and passed.
    assert "Passed: 1" in proc.stdout or "1 Passed" in proc.stdout or "PASS:" in proc.stdout, proc.stdout
