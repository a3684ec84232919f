"""`pip install .` works outside the repository and installs every source folder under `mmfc.*`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_FOLDERS = {"mmfc": "mmfc", "dialects": "mmfc.dialects", "passes": "mmfc.passes",
                  "backends": "mmfc.backends", "frontends": "mmfc.frontends"}


def _packages_on_disk() -> set[str]:
    found = set()
    for folder, dotted in SOURCE_FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([dotted, *rel.parts]) if rel.parts else dotted)
    return found


def test_every_package_folder_is_mapped() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert _packages_on_disk() <= set(config["packages"]), "add new package folders to pyproject.toml"
    for pkg in config["packages"]:
        folder = config["package-dir"].get(pkg)
        if folder is None:  # mapped through its parent
            parent, _, leaf = pkg.rpartition(".")
            folder = f"{config['package-dir'][parent]}/{leaf}"
        assert (ROOT / folder / "__init__.py").is_file(), pkg


def test_pip_install_outside_the_repository(tmp_path: Path) -> None:
    # build from a copy: setuptools writes build/ and mmfc.egg-info into the source folder, and a stale
    # egg-info in the checkout would shadow the editable install's entry points for later tests
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__",
                                                             ".hypothesis", ".pytest_cache", ".whl"))
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target), str(src)],
        check=True, cwd=tmp_path, capture_output=True,
    )
    code = (
        "import mmfc, mmfc.dialects.numerics as n, mmfc.frontends.torch.config as c, mmfc.cli, sys;"
        "print(n.__file__); assert 'torch' not in sys.modules"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.stdout.strip().startswith(str(target))
    assert (target / "mmfc" / "dialects" / "numerics.py").is_file()
