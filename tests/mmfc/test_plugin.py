"""User story 2: a pass plugin installed as its own package (``examples/plugin-pass``,
distribution ``mmfc-reorder-example``, pass ``sort-weight-refs``) is listed by ``mmfc passes`` and runs in
``mmfc opt -p``, and the interpreter gives the same numbers before and after it.

The example is installed with ``pip install --no-deps --no-build-isolation --target DIR`` from a copy in a
temporary folder (so the build leaves nothing in the checkout), and every command that should see it
runs in a subprocess with ``DIR`` on ``PYTHONPATH``: the virtual environment is never changed (checked at
the end), and the test works on a fresh clone without network access.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution, entry_points
from pathlib import Path

import numpy as np
import pytest
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.printer import Printer

from mmfc.backends.interp import InterpRunner
from mmfc.dialects import ternary as T
from mmfc.dialects.builder import WeightForm, build_model
from mmfc.dialects.context import mmfc_context
from mmfc.dialects.source import parse_module
from mmfc.dialects.weights import MemoryStore, bind, write_module_store
from mmfc.pipeline import ENTRY_POINT_GROUP

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "plugin-pass"
DIST = "mmfc-reorder-example"
PASS = "sort-weight-refs"


@dataclass(frozen=True)
class Installed:
    target: Path  # the --target folder (the package and its .dist-info)
    source: Path  # the copy it was built from (holds the example's own tests)

    def env(self) -> dict[str, str]:
        path = os.pathsep.join(p for p in (str(self.target), os.environ.get("PYTHONPATH", "")) if p)
        bin_dir = str(Path(sys.executable).parent)
        search = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
        return {**os.environ, "PYTHONPATH": path, "PATH": search}

    def run(self, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv), capture_output=True, text=True, env=self.env(), cwd=cwd, timeout=300, check=False
        )

    def mmfc(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "mmfc", *argv)


def visible_in_this_process() -> bool:
    try:
        distribution(DIST)
    except PackageNotFoundError:
        return any(ep.name == PASS for ep in entry_points(group=ENTRY_POINT_GROUP))
    return True


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    assert not visible_in_this_process(), f"{DIST} is installed in this environment; the test needs it absent"
    base = tmp_path_factory.mktemp("plugin")
    source = base / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = base / "target"
    proc = subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
            "--no-index", "--disable-pip-version-check", "--target", str(target), str(source),
        ],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield Installed(target, source)
    # the environment that runs the tests never saw the plugin
    assert not visible_in_this_process()


# ------------------------------------------------------------------------------- a small model


@dataclass
class SmallConfig:
    vocab_size: int = 13
    hidden_size: int = 8
    num_hidden_layers: int = 2
    intermediate_size: int = 12
    rms_norm_eps: float = 1e-6
    use_lower_bound: bool = True


def random_store(module: ModuleOp, seed: int) -> MemoryStore:
    """Random weights for every ``ternary.weight`` of ``module``."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    for op in module.walk():
        if isinstance(op, T.WeightOp):
            t = op.result.type
            if isinstance(t, T.TritsType):
                tensors[op.sym.string_value()] = rng.integers(-1, 2, t.get_shape()).astype(np.int8)
            elif T.is_scale_type(t):
                tensors[op.sym.string_value()] = np.asarray(rng.uniform(0.5, 2.0), np.float32)
            else:
                assert isinstance(t, TensorType)
                tensors[op.sym.string_value()] = rng.standard_normal(t.get_shape()).astype(np.float32)
    return MemoryStore(tensors)


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    """``ir/model.mlir`` (a 2-layer model, stored trits) with its weight store beside it."""
    module = build_model(SmallConfig(), WeightForm.TRITS)
    bind(module, random_store(module, seed=7))
    (tmp_path / "ir").mkdir()
    path = tmp_path / "ir" / "model.mlir"
    write_module_store(module, path)
    with open(path, "w") as f:
        Printer(stream=f).print_op(module)
    return path


def load(path: Path) -> ModuleOp:
    module, _ = parse_module(mmfc_context(), path.read_text(), str(path))
    return module


def run_decode(path: Path) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    config = SmallConfig()
    ids = rng.integers(0, config.vocab_size, 3)
    d, layers = config.hidden_size, config.num_hidden_layers
    states = [rng.standard_normal((3, d)).astype(np.float32) for _ in range(layers)]
    return InterpRunner(load(path), mlir_path=path).run("decode_step", ids, *states)


# -------------------------------------------------------------------------------------- tests


def test_mmfc_passes_lists_the_plugin_with_its_package(installed: Installed) -> None:
    proc = installed.mmfc("passes")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    [row] = [line for line in lines if line.startswith(PASS)]
    assert row.split()[:2] == [PASS, DIST]
    assert "Hoist each function's ternary.weight refs" in row
    options = lines[lines.index(row) + 1 : lines.index(row) + 3]
    assert [o.strip() for o in options] == ["order: str = symbol", "check-store: bool = false"]
    # without the plugin on the path, it is not there
    assert PASS not in subprocess.run(
        [sys.executable, "-m", "mmfc", "passes"], capture_output=True, text=True, timeout=120, check=True
    ).stdout


def test_mmfc_opt_runs_the_plugin_and_keeps_the_numbers(
    installed: Installed, model_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out" / "sorted.mlir"
    out.parent.mkdir()
    proc = installed.mmfc("opt", str(model_file), "-p", PASS, "-o", str(out), "--print-ir-after", PASS)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith(f"// -----// IR Dump After {PASS} //----- //")
    module = load(out)
    for entry in module.ops:
        assert isinstance(entry, func.FuncOp)
        body = list(entry.body.ops)
        refs = [op.sym.string_value() for op in body if isinstance(op, T.WeightOp)]
        assert refs and all(isinstance(op, T.WeightOp) for op in body[: len(refs)]), entry.sym_name.data
        assert refs == sorted(refs)
    # the input did emit its weights interleaved (so the pass had something to do)
    before = load(model_file)
    first = next(op for op in before.ops if isinstance(op, func.FuncOp))
    assert not all(isinstance(op, T.WeightOp) for op in list(first.body.ops)[:5])
    # the store is untouched, so the output names the input's store from its own folder
    assert 'mmfc.weights = "../ir/model.weights.safetensors"' in out.read_text()
    for got, want in zip(run_decode(out), run_decode(model_file), strict=True):
        np.testing.assert_array_equal(got, want, strict=True)


def test_plugin_option_mistakes_and_diagnostics(
    installed: Installed, model_file: Path, tmp_path: Path
) -> None:
    proc = installed.mmfc("opt", str(model_file), "-p", f"{PASS}{{order=random}}")
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr == (
        f"mmfc: error: pass '{PASS}': order must be one of symbol, first-use, got 'random'\n"
    )
    # check-store: a tensor missing from the store is reported at the op that names it
    (tmp_path / "ir" / "model.weights.safetensors").unlink()
    MemoryStore({"unrelated": np.zeros(2, np.float32)}).save(tmp_path / "ir" / "model.weights.safetensors")
    proc = installed.mmfc("opt", str(model_file), "-p", f"{PASS}{{check-store=true}}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"mmfc: error: {model_file}:")
    assert f"pass '{PASS}': 'ternary.weight' op no tensor" in proc.stderr


def test_the_examples_own_tests_pass(installed: Installed, tmp_path: Path) -> None:
    """The example's tests (filecheck + interpreter property test) against the installed plugin; run
    from another folder so that the import finds the installed copy, not the source."""
    proc = installed.run(
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(installed.source / "tests"),
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout
