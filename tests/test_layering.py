"""The house rules of the README ("Repository layout: three floors"): imports point down, `import mmfc` stays light, and plain
`xdsl-opt` reads mmfc IR from any directory without opening the weight store."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FLOOR = {"dialects": 0, "frontends": 1, "passes": 1, "backends": 1, "mmfc": 2}
PACKAGE_OF = {"mmfc.dialects": "dialects", "mmfc.frontends": "frontends", "mmfc.passes": "passes",
              "mmfc.backends": "backends"}


def _target_folder(module: str) -> str | None:
    for prefix, folder in PACKAGE_OF.items():
        if module == prefix or module.startswith(prefix + "."):
            return folder
    if module == "mmfc" or module.startswith("mmfc."):
        return "mmfc"
    return None


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


@pytest.mark.parametrize("folder", sorted(FLOOR))
def test_imports_only_point_down(folder: str) -> None:
    bad = []
    for path in (ROOT / folder).rglob("*.py"):
        for module in _imports(path):
            target = _target_folder(module)
            if target is None or target == folder:
                continue
            if FLOOR[target] >= FLOOR[folder]:
                bad.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not bad, "imports must point down a floor:\n" + "\n".join(bad)


def test_backends_do_not_import_each_other() -> None:
    for backend in (ROOT / "backends").iterdir():
        if not backend.is_dir() or backend.name.startswith("__"):
            continue
        for path in backend.rglob("*.py"):
            for module in _imports(path):
                if module.startswith("mmfc.backends.") and not module.startswith(f"mmfc.backends.{backend.name}"):
                    pytest.fail(f"{path.relative_to(ROOT)} imports another backend: {module}")


def test_import_mmfc_is_light() -> None:
    code = (
        "import sys, mmfc, mmfc.dialects.ternary, mmfc.dialects.weights, mmfc.dialects.builder, "
        "mmfc.backends.interp, mmfc.cli; mmfc.cli.build_parser();"
        "heavy = [m for m in ('torch', 'triton', 'iree') if m in sys.modules]; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_xdsl_opt_reads_mmfc_ir_from_any_directory(tmp_path: Path) -> None:
    from mmfc.dialects.builder import build_model
    from mmfc.frontends.torch.config import HGRNBitConfig

    config = HGRNBitConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, intermediate_size=8)
    # the store named here does not exist: parsing and verifying must never open it
    module = build_model(config, store="no/such/store.safetensors")
    (tmp_path / "m.mlir").write_text(str(module))
    xdsl_opt = shutil.which("xdsl-opt", path=str(Path(sys.executable).parent))
    assert xdsl_opt is not None
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run([xdsl_opt, str(tmp_path / "m.mlir"), "-p", "cse,dce"], cwd=elsewhere,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "ternary.accum" in out.stdout and "no/such/store.safetensors" in out.stdout
