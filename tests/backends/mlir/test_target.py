"""The iree-cpu target from the command line: the artifact it writes (the .vmfb and the upstream module
under the checksums; IREE versions, CPU features and the weight order recorded), ``mmfc generate`` on
it, the one-line refusals of an artifact built for another IREE or CPU, the debug dump, and
``--emit mlir`` with the documented way of running its output through ``iree-compile``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mmfc
from mmfc.cli import main
from mmfc.models import HGRNBitForCausalLM

PROMPT = "1,600,7"
ROOT = Path(__file__).resolve().parents[3]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return rc, out, err


def assert_user_error(rc: int, out: str, err: str, *words: str) -> None:
    assert rc == 2 and out == "", (rc, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mmfc: error: "), err
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture(scope="module")
def pytorch_ids() -> list[int]:
    """What the PyTorch tiny preset generates greedily after PROMPT."""
    model = HGRNBitForCausalLM.from_preset("tiny", seed=0)
    ids = torch.tensor([[int(t) for t in PROMPT.split(",")]])
    return model.generate(ids, max_new_tokens=8, eos_token_id=None)[0, 3:].tolist()


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("iree") / "tiny.iree"
    assert main(["compile", "--preset", "tiny", "--target", "iree-cpu", "-o", str(out)]) == 0
    return out


def test_artifact_holds_the_module_under_its_checksums(artifact: Path) -> None:
    from mmfc.backends.mlir.compiler import host_cpu_features, iree_versions

    manifest = json.loads((artifact / "manifest.json").read_text())
    assert {"model.vmfb", "upstream.mlir", "constants.safetensors", "model.mlir", "weights.safetensors"} <= set(manifest["files"])
    record = manifest["target"]["record"]
    assert manifest["target"]["name"] == "iree-cpu"
    assert record["iree"] == iree_versions()
    assert record["cpu_features"] == list(host_cpu_features()) and record["cpu_features"]
    assert "--iree-llvmcpu-target-cpu=host" in record["compile_flags"]
    upstream = (artifact / "upstream.mlir").read_text()
    assert upstream.count("func.func @") == 2 and "ternary." not in upstream
    # every function takes its inputs (3 for decode_step of a 2-layer model), then each weight
    signature = upstream[upstream.index("func.func @decode_step(") :].split("{", 1)[0]
    assert signature.count("%") == 3 + len(record["weights"])
    assert set(record["folded"]) <= set(record["weights"]) and record["folded"]


def test_generate_runs_the_artifact(artifact: Path, pytorch_ids: list[int], capsys: pytest.CaptureFixture[str]) -> None:
    for driver in ("local-task", "local-sync"):
        rc, out, err = run_cli(["generate", str(artifact), "--prompt-ids", PROMPT, "--max-new-tokens", "8", "--ignore-eos", "--driver", driver], capsys)
        assert rc == 0, err
        assert out.strip() == "new ids: " + ",".join(map(str, pytorch_ids))
        assert "decode" in err and "ms/token (7 steps)" in err and f"iree-cpu, IREE llvm-cpu on the host CPU ({driver}" in err


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda r: r["iree"].update(runtime="0.0.1"), ["IREE runtime 0.0.1", "compile the model again"]),
        (lambda r: r["cpu_features"].append("amx-fp8"), ["CPU features this CPU lacks: amx-fp8"]),
        (lambda r: r.update(plan_format=0), ["plan format 0"]),
    ],
    ids=["iree-version", "cpu-features", "plan-format"],
)
def test_an_artifact_built_elsewhere_is_refused_in_one_line(
    artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: object, words: list[str]
) -> None:
    import shutil

    copy = tmp_path / "copy.iree"
    shutil.copytree(artifact, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    edit(manifest["target"]["record"])  # type: ignore[operator]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    rc, out, err = run_cli(["generate", str(copy), "--prompt-ids", PROMPT, "--max-new-tokens", "2"], capsys)
    assert_user_error(rc, out, err, *words)


def test_debug_dump_of_every_call(artifact: Path, tmp_path: Path) -> None:
    from mmfc.dialects.dump import load_dump

    compiled = mmfc.load(artifact, debug_dump_dir=tmp_path / "dump")
    ids = torch.tensor([[1, 600, 7]])
    out = compiled.prefill(ids)
    compiled.decode_step(torch.tensor([5]), out.state)
    folders = sorted(p.name for p in (tmp_path / "dump").iterdir())
    assert folders == ["000_prefill", "001_decode_step"]
    records = load_dump(tmp_path / "dump" / "001_decode_step")
    kernels = [r for r in records if r.name == "ternary.kernel"]
    assert len(kernels) == 2 * 4 + 1 and kernels[-1].label == "lm_head"
    assert kernels[-1].results[0].shape == (1, 1024)
    assert any(r.name == "ternary.accum" and r.results[0].dtype == "int32" for r in records)


def test_emit_mlir_and_run_it_through_iree_compile(tmp_path: Path, pytorch_ids: list[int], capsys: pytest.CaptureFixture[str]) -> None:
    """The example of docs/mlir.md: iree-compile on the exported module, then the example script."""
    out = tmp_path / "tiny.mlir"
    rc, _, err = run_cli(["compile", "--preset", "tiny", "--emit", "mlir", "-o", str(out)], capsys)
    assert rc == 0, err
    order = json.loads((tmp_path / "tiny.weights.json").read_text())
    assert order["weights_file"] == "tiny.weights.safetensors" and (tmp_path / order["weights_file"]).is_file()
    assert [w["index"] for w in order["weights"]] == list(range(len(order["weights"])))
    text = out.read_text()
    signature = text[text.index("func.func @decode_step(") :].split("{", 1)[0]
    assert signature.count("%") == len(order["entries"]["decode_step"]["inputs"]) + len(order["weights"])
    compiler = Path(sys.executable).parent / "iree-compile"
    vmfb = tmp_path / "tiny.vmfb"
    subprocess.run(
        [str(compiler), str(out), "--iree-hal-target-device=local", "--iree-hal-local-target-device-backends=llvm-cpu",
         "--iree-llvmcpu-target-cpu=host", "-o", str(vmfb)],
        check=True, timeout=300,
    )
    example = ROOT / "examples" / "upstream-mlir" / "run_upstream.py"
    ran = subprocess.run([sys.executable, str(example), str(out), str(vmfb), PROMPT], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "new ids: " + ",".join(map(str, pytorch_ids))


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--emit", "mlir", "-o", "{tmp}/tiny.txt"], ["must end in .mlir"]),
        (["--emit", "mlir", "--target", "triton", "-o", "{tmp}/tiny.mlir"], ["drop --target triton"]),
        (["--emit", "mlir", "-o", "{tmp}/missing/tiny.mlir"], ["does not exist"]),
    ],
)
def test_emit_mlir_mistakes_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], words: list[str]) -> None:
    rc, out, err = run_cli(["compile", "--preset", "tiny", *[a.format(tmp=tmp_path) for a in argv]], capsys)
    assert_user_error(rc, out, err, *words)
    assert list(tmp_path.iterdir()) == []
