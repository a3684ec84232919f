"""Issue 12: every reproduction of the hardening issue, through the ``mmfc`` command in a subprocess.

Each case checks the exit code, that stderr is the one line expected (no traceback), and that the
files around the output are as they were. The subprocesses of the table run a few at a time (they
spend most of their time importing torch and xDSL), so the whole table takes about as long as its
slowest few cases."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import mmfc
from mmfc.dialects.diagnostics import UserError
from mmfc.models import HGRNBitForCausalLM

MMFC = [sys.executable, "-m", "mmfc"]
PROMPT = ["--prompt-ids", "1,600,7", "--max-new-tokens", "6", "--ignore-eos"]


def snapshot(folder: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every entry under ``folder`` (hidden ones too): its mode and, for a file, its bytes."""
    out: dict[str, tuple[int, bytes | None]] = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        out[rel] = (path.stat().st_mode, path.read_bytes() if path.is_file() else None)
    return out


def run(
    args: list[str], cwd: Path, timeout: float = 300, umask: int | None = None, env: dict[str, str] | None = None,
    **kwargs: Any,
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MMFC_PROGRESS": "0", **(env or {})}
    argv = [*MMFC, *args]
    if umask is not None:
        argv = ["sh", "-c", f"umask {umask:03o} && exec \"$@\"", "sh", *argv]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, **kwargs)


def one_line(result: subprocess.CompletedProcess[str], rc: int, *fragments: str) -> str:
    """The single stderr line of a failed command, after checking its exit code and fragments."""
    lines = result.stderr.splitlines()
    assert result.returncode == rc, (result.returncode, result.stderr)
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def new_ids(result: subprocess.CompletedProcess[str]) -> list[int]:
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("new ids: "))
    return [int(i) for i in line[len("new ids: ") :].split(",")]


def rewrite(folder: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


# ------------------------------------------------------------------------------------------ the table


@dataclass
class Case:
    """One reproduction: ``setup(folder)`` prepares the folder and returns the argument lists to run
    there (one command, or several run in order); ``check(folder, results, before)`` then asserts."""

    setup: Callable[[Path], list[list[str]]]
    check: Callable[[Path, list[subprocess.CompletedProcess[str]], dict[str, Any]], None]
    results: list[subprocess.CompletedProcess[str]] = field(default_factory=list)
    #: run without torch (an import of it fails): the command must refuse before any work starts
    before_any_work: bool = False
    env: dict[str, str] = field(default_factory=dict)


def tiny_checkpoint(folder: Path, quantized: bool = False) -> Path:
    path = folder / ("ckq" if quantized else "ck")
    HGRNBitForCausalLM.from_preset("tiny", seed=0).save_pretrained(path, quantized=quantized)
    return path


def poisoned(name: str, value: float, quantized: bool = False) -> Callable[[Path], list[list[str]]]:
    """Issue 12, point 1: a checkpoint with one bad value; generate --model and compile both run."""

    def setup(folder: Path) -> list[list[str]]:
        ck = tiny_checkpoint(folder, quantized)

        def edit(tensors: dict[str, torch.Tensor]) -> None:
            t = tensors[name].clone()
            t.view(-1)[0] = value
            tensors[name] = t

        rewrite(ck, edit)
        return [["generate", "--model", ck.name, *PROMPT], ["compile", "--model", ck.name, "-o", "art"]]

    return setup


def both_refuse(*fragments: str) -> Callable[[Path, list[Any], dict[str, Any]], None]:
    def check(folder: Path, results: list[Any], before: dict[str, Any]) -> None:
        loaded, compiled = results
        assert one_line(loaded, 2, *fragments) == one_line(compiled, 2, *fragments)  # the same words
        assert snapshot(folder) == before  # no artifact, no temporary, the checkpoint as it was

    return check


def scale_of_one_element(folder: Path) -> list[list[str]]:
    ck = tiny_checkpoint(folder, quantized=True)
    rewrite(ck, lambda t: t.update({"lm_head.weight_scale": t["lm_head.weight_scale"].reshape(1)}))
    return [["generate", "--model", ck.name, *PROMPT], ["compile", "--model", ck.name, "-o", "art"],
            ["generate", "art", *PROMPT]]


def same_tokens(folder: Path, results: list[Any], before: dict[str, Any]) -> None:
    loaded, compiled, ran = results
    assert compiled.returncode == 0, compiled.stderr
    assert new_ids(loaded) == new_ids(ran)  # greedy, tiny: no near-ties at these steps


def opt_into_a_folder(folder: Path) -> list[list[str]]:
    run(["import", "--preset", "tiny", "-o", "tiny.mlir"], folder, check=True)
    (folder / "D.mlir").mkdir()
    (folder / "D.weights.safetensors").write_bytes(b"an earlier store")  # must not be replaced
    return [["opt", "tiny.mlir", "-O2", "-o", "D.mlir"]]


def refused_untouched(*fragments: str) -> Callable[[Path, list[Any], dict[str, Any]], None]:
    def check(folder: Path, results: list[Any], before: dict[str, Any]) -> None:
        one_line(results[-1], 2, *fragments)
        assert snapshot(folder) == before

    return check


def import_into_a_folder(folder: Path) -> list[list[str]]:
    (folder / "SOMEDIR").mkdir()
    (folder / "SOMEDIR.weights.safetensors").write_bytes(b"an earlier store")  # must not be replaced
    return [["import", "--preset", "tiny", "-o", "SOMEDIR"]]


def import_weights_into_a_folder(folder: Path) -> list[list[str]]:
    """The IR's own path is fine, the weight store's is a folder: refused before the import."""
    (folder / "H.weights.safetensors").mkdir()
    return [["import", "--preset", "370m", "-o", "H.mlir"]]


def opt_weights_into_a_folder(folder: Path) -> list[list[str]]:
    run(["import", "--preset", "tiny", "-o", "tiny.mlir"], folder, check=True)
    (folder / "H.weights.safetensors").mkdir()
    return [["opt", "tiny.mlir", "-O2", "-o", "H.mlir"]]


def emit_mlir_read_only(folder: Path) -> list[list[str]]:
    if os.geteuid() == 0:
        return [["compile", "--preset", "370m", "--emit", "mlir", "-o", "/sys/mmfc-test-out.mlir"]]
    ro = folder / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return [["compile", "--preset", "370m", "--emit", "mlir", "-o", "ro/out.mlir"]]


def emit_mlir_order_file_a_folder(folder: Path) -> list[list[str]]:
    (folder / "E.weights.json").mkdir()
    return [["compile", "--preset", "tiny", "--emit", "mlir", "-o", "E.mlir"]]


def compile_under_a_file(folder: Path) -> list[list[str]]:
    (folder / "afile").write_text("a file, not a folder\n")
    return [["compile", "--preset", "1.3b", "-o", "afile/art"]]


def kill_then_compile(folder: Path) -> list[list[str]]:
    """A compile killed with SIGKILL while it writes leaves its temporary folder; the next compile
    (to the same folder) removes it."""
    env = {**os.environ, "MMFC_PROGRESS": "0"}
    proc = subprocess.Popen([*MMFC, "compile", "--preset", "370m", "-o", "art"], cwd=folder, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120

    def temporary_folder() -> bool:  # not the probe file that checks the folder takes new entries
        return any(p.name.startswith(".art.mmfc-tmp-") and p.is_dir() for p in folder.iterdir())

    while not temporary_folder():
        assert proc.poll() is None and time.monotonic() < deadline, "the compile never created its folder"
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert temporary_folder()  # what the kill left
    return [["compile", "--preset", "tiny", "-o", "art"]]


def nothing_stale(folder: Path, results: list[Any], before: dict[str, Any]) -> None:
    assert results[0].returncode == 0, results[0].stderr
    assert sorted(p.name for p in folder.iterdir()) == ["art"]


def under_umask(folder: Path) -> list[list[str]]:
    return [["compile", "--preset", "tiny", "-o", "art"]]


def umask_modes(folder: Path, results: list[Any], before: dict[str, Any]) -> None:
    assert results[0].returncode == 0, results[0].stderr
    art = folder / "art"
    assert art.stat().st_mode & 0o777 == 0o750
    assert {p.stat().st_mode & 0o777 for p in art.iterdir()} == {0o640}


def greedy_and_tiny_temperature(folder: Path) -> list[list[str]]:
    return [["generate", "--preset", "tiny", *PROMPT],
            ["generate", "--preset", "tiny", *PROMPT, "--temperature", "1e-40"]]


def tiny_temperature_is_greedy(folder: Path, results: list[Any], before: dict[str, Any]) -> None:
    greedy, cold = results
    assert new_ids(cold) == new_ids(greedy)


def non_utf8(folder: Path) -> list[list[str]]:
    (folder / "bad.mlir").write_bytes(b"builtin.module {\n\xff\xfe\x00 }\n")
    return [["compile", "bad.mlir", "-o", "X"]]


def read_only(folder: Path) -> list[list[str]]:
    if os.geteuid() == 0:  # root writes through permissions; a read-only filesystem stops it too
        return [["compile", "--preset", "tiny", "-o", "/sys/mmfc-test-out"]]
    ro = folder / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return [["compile", "--preset", "tiny", "-o", "ro/out"]]


def compile_and_info(folder: Path) -> list[list[str]]:
    return [["compile", "--preset", "tiny", "-o", "art"], ["info", "art"], ["info", "--model", "art", "--json"]]


def describes_the_artifact(folder: Path, results: list[Any], before: dict[str, Any]) -> None:
    compiled, positional, flag = results
    assert positional.returncode == 0, positional.stderr
    assert "compiled artifact: art (target interp" in positional.stdout
    assert "kernels per layer: 4" in positional.stdout and "float masters" not in positional.stdout
    facts = json.loads(flag.stdout)["source"]
    assert facts["artifact"] == "art" and facts["target"] == "interp" and facts["kernels_per_layer"] == [4]


def progress_shown(folder: Path, results: list[Any], before: dict[str, Any]) -> None:
    """MMFC_PROGRESS=1 (a terminal shows them after a second): a bar per long step, on stderr only,
    removed when the step ends; the command's report follows."""
    result = results[0]
    assert result.returncode == 0, result.stderr
    assert "%|" not in result.stdout
    for step in ("initialize weights", "quantize weights", "pack weights (2bit)", "run passes",
                 "write weights.safetensors"):
        assert f"{step}:" in result.stderr, (step, result.stderr)
    assert result.stderr.splitlines()[-1].startswith("wrote art/")


def o0_stats(folder: Path) -> list[list[str]]:
    return [["compile", "--preset", "tiny", "-O0", "--stats", "-o", "art"]]


def real_bytes_and_launches(folder: Path, results: list[Any], before: dict[str, Any]) -> None:
    assert results[0].returncode == 0, results[0].stderr
    stats = json.loads((folder / "art" / "manifest.json").read_text())["stats"]
    weights = (folder / "art" / "weights.safetensors").stat().st_size
    assert stats["decode_launches_per_token"] > 9  # every unfused op is a launch of its own
    assert 0.8 * weights < stats["weight_bytes"] <= weights  # the tensors written, header aside
    assert stats["ternary_weight_bytes"] > 0.7 * stats["weight_bytes"]  # the float masters
    assert f"launches per decode token: {stats['decode_launches_per_token']}" in results[0].stderr


def mlir_given_to_generate(folder: Path) -> list[list[str]]:
    run(["import", "--preset", "tiny", "-o", "tiny.mlir"], folder, check=True)
    return [["generate", "tiny.mlir", *PROMPT]]


def artifact_without_config(folder: Path) -> list[list[str]]:
    run(["compile", "--preset", "tiny", "-o", "art"], folder, check=True)
    (folder / "art" / "config.json").unlink()
    return [["generate", "art", *PROMPT]]


def seeded_compile(folder: Path) -> list[list[str]]:
    return [["compile", "--preset", "tiny", "--init-seed", "1", "-o", "art1"],
            ["compile", "--preset", "tiny", "-o", "art0"],
            ["generate", "art1", *PROMPT],
            ["generate", "--preset", "tiny", "--init-seed", "1", *PROMPT]]


def the_seed_is_used(folder: Path, results: list[Any], before: dict[str, Any]) -> None:
    one, zero, ran, loaded = results
    assert one.returncode == 0 and zero.returncode == 0
    w1 = (folder / "art1" / "weights.safetensors").read_bytes()
    assert w1 != (folder / "art0" / "weights.safetensors").read_bytes()
    assert new_ids(ran) == new_ids(loaded)


def bad_mask(folder: Path) -> list[list[str]]:
    run(["import", "--preset", "tiny", "-o", "tiny.mlir"], folder, check=True)
    np.save(folder / "ids.npy", np.array([[1, 600, 7]], np.int64))
    np.save(folder / "mask.npy", np.array([[1, 2, 1]], np.int64))
    np.save(folder / "h.npy", np.zeros((1, 128), np.float32))
    args = ["run", "tiny.mlir", "--entry", "prefill", "--input", "ids.npy", "--input", "mask.npy"]
    return [[*args, "--input", "h.npy", "--input", "h.npy", "-o", "out"]]


def given(*args: str) -> Callable[[Path], list[list[str]]]:
    return lambda folder: [list(args)]


CASES: dict[str, Case] = {
    # 1. compile refuses what the loader refuses, in the same words
    "nan-embedding": Case(poisoned("model.embeddings.weight", float("nan")),
                          both_refuse("model.embeddings.weight", "non-finite")),
    "inf-norm": Case(poisoned("model.layers.0.attn_norm.weight", float("inf")),
                     both_refuse("model.layers.0.attn_norm.weight", "non-finite")),
    "scale-negative": Case(poisoned("model.layers.0.attn.i_proj.weight_scale", -0.5, quantized=True),
                           both_refuse("model.layers.0.attn.i_proj.weight_scale", "positive scale")),
    "scale-zero": Case(poisoned("lm_head.weight_scale", 0.0, quantized=True),
                       both_refuse("lm_head.weight_scale", "positive scale")),
    "scale-nan": Case(poisoned("lm_head.weight_scale", float("nan"), quantized=True),
                      both_refuse("lm_head.weight_scale", "non-finite")),
    "scale-shape-1": Case(scale_of_one_element, same_tokens),
    # 2. a failed command touches no file
    "opt-into-a-folder": Case(opt_into_a_folder, refused_untouched("D.mlir", "is a directory")),
    "import-into-a-folder": Case(import_into_a_folder, refused_untouched("SOMEDIR", "is a directory"),
                                 before_any_work=True),
    "import-weights-into-a-folder": Case(import_weights_into_a_folder,
                                         refused_untouched("H.weights.safetensors", "is a directory"),
                                         before_any_work=True),
    "opt-weights-into-a-folder": Case(opt_weights_into_a_folder,
                                      refused_untouched("H.weights.safetensors", "is a directory")),
    "compile-into-a-missing-folder": Case(given("compile", "--preset", "1.3b", "-o", "MISSING/art"),
                                          refused_untouched("MISSING/art", "does not exist"), before_any_work=True),
    "compile-under-a-file": Case(compile_under_a_file, refused_untouched("afile/art", "afile is not a folder"),
                                 before_any_work=True),
    "emit-mlir-read-only": Case(emit_mlir_read_only, refused_untouched("out.mlir", "cannot write"),
                                before_any_work=True),
    "emit-mlir-order-file-a-folder": Case(emit_mlir_order_file_a_folder,
                                          refused_untouched("E.weights.json", "is a directory"), before_any_work=True),
    "killed-compile-cleaned-up": Case(kill_then_compile, nothing_stale),
    "artifact-follows-the-umask": Case(under_umask, umask_modes),
    # 3. never a traceback
    "tiny-temperature": Case(greedy_and_tiny_temperature, tiny_temperature_is_greedy),
    "seed-too-big": Case(given("generate", "--preset", "tiny", *PROMPT, "--temperature", "0.8", "--seed",
                               "18446744073709551616"), refused_untouched("--seed", "2**64")),
    "init-seed-too-big": Case(given("generate", "--preset", "tiny", *PROMPT, "--init-seed", "99999999999999999999999"),
                              refused_untouched("--init-seed", "2**64")),
    "compile-non-utf8": Case(non_utf8, refused_untouched("bad.mlir", "UTF-8")),
    "compile-read-only": Case(read_only, refused_untouched("cannot write"), before_any_work=True),
    "compile-huge-block-n": Case(
        given("compile", "--preset", "tiny", "-o", "X", "-p",
              "fold-weight-quant,pack-weights,fuse-bitlinear{block-n=99999999999999999999}"),
        refused_untouched("fuse-bitlinear", "block-n=99999999999999999999", "out of range")),
    # 4. flags and figures that mislead
    "init-seed-used": Case(seeded_compile, the_seed_is_used),
    "info-of-an-artifact": Case(compile_and_info, describes_the_artifact),
    "o0-stats": Case(o0_stats, real_bytes_and_launches),
    "progress-bars": Case(given("compile", "--preset", "tiny", "-o", "art"), progress_shown,
                          env={"MMFC_PROGRESS": "1"}),
    "generate-an-mlir-file": Case(mlir_given_to_generate,
                                  refused_untouched("tiny.mlir", "must be compiled first", "mmfc compile tiny.mlir -o")),
    "artifact-without-config": Case(artifact_without_config,
                                    refused_untouched("config.json", "listed in manifest.json but missing")),
    "temperature-inf": Case(given("generate", "--preset", "tiny", *PROMPT, "--temperature", "inf"),
                            refused_untouched("--temperature", "finite")),
    "mask-of-twos": Case(bad_mask, refused_untouched("mask.npy: argument 1 of @prefill", "mask", "found 2")),
}


NO_TORCH = "no-torch"  # a folder under the cases' root holding a ``torch`` package that fails to import


def _run_case(name: str, root: Path) -> tuple[Path, dict[str, Any], list[subprocess.CompletedProcess[str]]]:
    folder = root / name
    folder.mkdir()
    case = CASES[name]
    argvs = case.setup(folder)
    before = snapshot(folder)
    umask = 0o027 if name == "artifact-follows-the-umask" else None
    env = dict(case.env)
    if case.before_any_work:  # the refusal must come before any work, so before torch is imported
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root / NO_TORCH), os.environ.get("PYTHONPATH")) if p)
    return folder, before, [run(argv, folder, umask=umask, env=env) for argv in argvs]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every case run, three at a time (each mostly waits for its imports)."""
    root = tmp_path_factory.mktemp("hardening")
    (root / NO_TORCH / "torch").mkdir(parents=True)
    (root / NO_TORCH / "torch" / "__init__.py").write_text(
        'raise ImportError("torch imported: the command started working before checking its outputs")\n'
    )
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(_run_case, name, root) for name in CASES}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_reproduction(name: str, outcomes: dict[str, Any]) -> None:
    folder, before, results = outcomes[name]
    CASES[name].check(folder, results, before)


# ------------------------------------------------------------------------------------------ in process


def test_opt_with_an_out_of_range_option_is_the_users_mistake(tmp_path: Path) -> None:
    result = run(["opt", "-", "-p", "fuse-bitlinear{block-n=99999999999999999999}"], tmp_path, input="builtin.module {}\n")
    one_line(result, 2, "block-n=99999999999999999999", "out of range")


def test_ctrl_c_at_any_moment_is_one_line(tmp_path: Path) -> None:
    """SIGINT while the command imports (the first fraction of a second) or runs: exit 130, one line.
    (Python's own start-up, before mmfc's first line runs, is not mmfc's: delays start after it.)"""
    env = {**os.environ, "MMFC_PROGRESS": "0"}
    argv = [*MMFC, "generate", "--preset", "tiny", *PROMPT]
    for delay in (0.12, 0.18, 0.25, 0.35, 0.5, 0.7, 1.0, 1.4):
        proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        if proc.returncode == 0:
            continue  # it finished first
        assert proc.returncode == 130 and err.splitlines() == ["mmfc: interrupted"], (delay, proc.returncode, err)


def test_ctrl_c_during_the_final_rename_reports_a_complete_artifact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mmfc.cli import main

    out = tmp_path / "art"
    assert main(["compile", "--preset", "tiny", "-o", str(out)]) == 0
    capsys.readouterr()
    real_replace = os.replace

    def interrupted(src: Any, dst: Any) -> None:
        if Path(dst) == out:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C exactly while the new artifact is renamed in
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", interrupted)
    assert main(["compile", "--preset", "tiny", "--init-seed", "3", "-o", str(out)]) == 130
    monkeypatch.undo()
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == f"mmfc: interrupted; {out} was written completely before the interrupt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]  # no .art.mmfc-old-* left
    mmfc.load(out)  # complete and verified


def test_python_api_mistakes_are_user_errors(tmp_path: Path) -> None:
    model = HGRNBitForCausalLM.from_preset("tiny")
    with pytest.raises(UserError, match="pipeline must be a string"):
        mmfc.compile(model, pipeline=None)  # type: ignore[arg-type]
    (tmp_path / "garbage.mlir").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    with pytest.raises(UserError, match="garbage.mlir: not a text file"):
        mmfc.compile(str(tmp_path / "garbage.mlir"))
    with pytest.raises(UserError, match="init_seed must lie in"):
        mmfc.compile("preset:tiny", init_seed=2**64)
    with pytest.raises(ValueError, match="temperature must be finite"):
        model.generate(torch.tensor([[1, 2]]), max_new_tokens=2, do_sample=True, temperature=float("inf"))
    with pytest.raises(ValueError, match="seed must lie in"):
        model.generate(torch.tensor([[1, 2]]), max_new_tokens=2, do_sample=True, seed=-1)


def test_masks_are_checked_for_every_target_before_it_runs() -> None:
    """The rule sits at the runner boundary, so targets that never call numpy (Triton, IREE) keep it."""
    from mmfc.dialects.target import InputError, check_mask_inputs, mask_arguments

    model = HGRNBitForCausalLM.from_preset("tiny")
    fused = mmfc.compile(model, pipeline="-O2")  # the mask reaches ternary.mask inside a kernel
    unfused = mmfc.compile(model, pipeline="-O0")
    for compiled in (fused, unfused):
        assert mask_arguments(compiled.module, "prefill") == [1]
        assert mask_arguments(compiled.module, "decode_step") == []
        ids = np.array([[1, 2, 3]])
        with pytest.raises(InputError, match="argument 1 of @prefill: .*found 3") as info:
            check_mask_inputs(compiled.module, "prefill", [ids, np.array([[1, 3, 1]]), np.zeros((1, 128))])
        assert info.value.input_index == 1
        with pytest.raises(ValueError, match="found 2"):
            compiled(torch.tensor(ids), attention_mask=torch.tensor([[0, 2, 1]]))
        with pytest.raises(ValueError, match="found 2"):  # the PyTorch model says the same
            model(torch.tensor(ids), attention_mask=torch.tensor([[0, 2, 1]]))
