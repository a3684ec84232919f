"""A compilation target from a plugin package, driven through the CLI like the built-in ones.

``examples/plugin-target`` (distribution ``mmfc-toy-target``, target ``toy``) is installed with
``pip install --no-deps --no-build-isolation --target DIR`` from a copy in a temporary folder, and every
command runs in a subprocess with ``DIR`` on ``PYTHONPATH``: the virtual environment is never changed.
The toy evaluates each op through the shared semantics, so its artifacts must generate the tokens the
interpreter's do, and its options, files and record go through the same roof as mmfc's own targets.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "plugin-target"


@dataclass(frozen=True)
class Installed:
    target: Path

    def mmfc(self, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        path = os.pathsep.join(p for p in (str(self.target), os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "PYTHONPATH": path}
        return subprocess.run(
            [sys.executable, "-m", "mmfc", *argv], capture_output=True, text=True, env=env, cwd=cwd, timeout=300, check=False
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("toy")
    source = base / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--target", str(base / "site"), str(source)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield Installed(base / "site")


def test_mmfc_targets_lists_the_plugin_with_its_options(installed: Installed) -> None:
    proc = installed.mmfc("targets", "--json")
    assert proc.returncode == 0, proc.stderr
    listed = {t["name"]: t for t in json.loads(proc.stdout)["targets"]}
    assert listed["toy"]["package"] == "mmfc-toy-target" and listed["toy"]["error"] is None
    assert {(o["name"], o["at"]) for o in listed["toy"]["options"]} == {("listing", "compile"), ("strict", "load")}
    assert "interp" in listed  # mmfc's own targets register the same way
    # without the plugin on the path it is not there, and asking for it lists what is installed
    plain = subprocess.run([sys.executable, "-m", "mmfc", "compile", "--preset", "tiny", "--target", "toy", "-o", "x"],
                           capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert plain.returncode == 2 and "unknown target 'toy' (installed: interp" in plain.stderr


def test_compile_generate_and_run_through_the_cli(installed: Installed, tmp_path: Path) -> None:
    toy, interp = tmp_path / "tiny.toy", tmp_path / "tiny.interp"
    proc = installed.mmfc("compile", "--preset", "tiny", "--target", "toy", "-o", str(toy))
    assert proc.returncode == 0, proc.stderr
    assert "[target toy]" in proc.stderr
    manifest = json.loads((toy / "manifest.json").read_text())
    assert manifest["target"] == {"name": "toy", "options": {"listing": True}, "record": {"toy_format": 1}}
    assert "program.txt" in manifest["files"] and "ternary.kernel model.layers.0.attn.o_proj" in (toy / "program.txt").read_text()
    assert installed.mmfc("compile", "--preset", "tiny", "-o", str(interp)).returncode == 0
    prompt = ["--prompt-ids", "1,600,7", "--max-new-tokens", "6", "--json"]
    ours, theirs = installed.mmfc("generate", str(toy), *prompt), installed.mmfc("generate", str(interp), *prompt)
    assert ours.returncode == 0 and theirs.returncode == 0, ours.stderr + theirs.stderr
    assert json.loads(ours.stdout)["new_ids"] == json.loads(theirs.stdout)["new_ids"]
    # mmfc run --target toy on the artifact's IR equals the interpreter's outputs
    ids, h = tmp_path / "ids.npy", tmp_path / "h.npy"
    np.save(ids, np.array([3, 5], np.int64))
    np.save(h, np.full((2, 128), 0.25, np.float32))
    inputs = ["--entry", "decode_step", "--input", str(ids), "--input", str(h), "--input", str(h)]
    for name in ("toy", "interp"):
        proc = installed.mmfc("run", str(toy / "model.mlir"), *inputs, "--target", name, "-o", str(tmp_path / name))
        assert proc.returncode == 0, proc.stderr
    for i in range(3):
        np.testing.assert_array_equal(np.load(tmp_path / "toy" / f"out{i}.npy"), np.load(tmp_path / "interp" / f"out{i}.npy"))


def test_the_plugins_options_and_refusals_are_one_line(installed: Installed, tmp_path: Path) -> None:
    toy = tmp_path / "a.toy"
    assert installed.mmfc("compile", "--preset", "tiny", "--target", "toy", "--listing", "false", "-o", str(toy)).returncode == 0
    assert not (toy / "program.txt").exists()
    wrong = installed.mmfc("compile", "--preset", "tiny", "--target", "interp", "--listing", "false", "-o", str(tmp_path / "b"))
    assert wrong.returncode == 2 and wrong.stderr.strip() == (
        "mmfc: error: --listing is not an option of target interp (`mmfc targets` lists each target's options)"
    )
    # a compile-time option is not a flag of generate (the artifact fixed it)
    fixed = installed.mmfc("generate", str(toy), "--prompt-ids", "1,2", "--listing", "true")
    assert fixed.returncode == 2 and fixed.stderr.count("\n") == 1 and "unrecognized arguments: --listing true" in fixed.stderr
    strict = installed.mmfc("generate", str(toy), "--prompt-ids", "1,2", "--max-new-tokens", "1", "--strict", "false")
    assert strict.returncode == 0, strict.stderr
    bad = installed.mmfc("compile", "--preset", "tiny", "--target", "toy", "--listing", "maybe", "-o", str(tmp_path / "c"))
    assert bad.returncode == 2 and "target toy: --listing 'maybe': expected true or false" in bad.stderr
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
    # a record of another format is refused by the target, in one line
    manifest_path = toy / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["target"]["record"]["toy_format"] = 7
    manifest_path.write_text(json.dumps(manifest))
    refused = installed.mmfc("generate", str(toy), "--prompt-ids", "1,2")
    assert refused.returncode == 2 and refused.stderr.strip() == "mmfc: error: target toy: built by toy format 7; this one reads 1"
