"""``mmfc run``: a small model's IR on disk with its weight store beside it, run end to end, and the
user mistakes (one line on stderr, exit code 2, no output files left behind).

Outputs are compared with the in-process interpreter exactly and with the PyTorch model under the
flip-aware rule (``mmfc.testing``).
"""

from __future__ import annotations

import functools
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from mmfc.backends.interp import InterpRunner
from mmfc.cli import main
from mmfc.dialects.builder import WeightForm, build_model
from mmfc.dialects.weights import MemoryStore, bind, write_module_store
from mmfc.frontends.torch.config import HGRNBitConfig
from mmfc.frontends.torch.modeling import HGRNBitForCausalLM, init_random_
from mmfc.testing import assert_logits_close

V, D, L, I = 53, 24, 2, 40


@functools.cache
def model() -> HGRNBitForCausalLM:
    config = HGRNBitConfig(vocab_size=V, hidden_size=D, num_hidden_layers=L, intermediate_size=I)
    return init_random_(HGRNBitForCausalLM.from_config(config, seed=3), 3).quantize_()


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    """``tmp/ir/model.mlir`` (TRITS form) with ``tmp/ir/model.weights.safetensors`` beside it."""
    from xdsl.printer import Printer

    module = build_model(model().config, WeightForm.TRITS)
    bind(module, MemoryStore({k: v.numpy() for k, v in model().state_dict().items()}))
    (tmp_path / "ir").mkdir()
    path = tmp_path / "ir" / "model.mlir"
    store_path = write_module_store(module, path)
    assert store_path == tmp_path / "ir" / "model.weights.safetensors" and store_path.exists()
    with open(path, "w") as f:
        Printer(stream=f).print_op(module)
    return path


def save(path: Path, array: np.ndarray) -> str:
    np.save(path, array)
    return str(path)


def mmfc_run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["run", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_decode_step_end_to_end_from_another_directory(
    model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the store resolves relative to the .mlir, not the cwd
    rng = np.random.default_rng(0)
    ids = rng.integers(0, V, 3)
    states = [rng.standard_normal((3, D)).astype(np.float32) for _ in range(L)]
    inputs = [save(tmp_path / "ids.npy", ids)] + [save(tmp_path / f"h{i}.npy", h) for i, h in enumerate(states)]
    argv = [str(model_file), "--entry", "decode_step", "-o", str(tmp_path / "out")]
    for path in inputs:
        argv += ["--input", path]
    code, out, err = mmfc_run(capsys, *argv)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"{tmp_path / 'out' / 'out0.npy'}: float32 [3x{V}] (tensor<?x{V}xf32>)"
    assert len(lines) == 1 + L and all(f"float32 [3x{D}]" in line for line in lines[1:])
    results = [np.load(tmp_path / "out" / f"out{i}.npy") for i in range(1 + L)]
    # the same as the interpreter in process, bit for bit ...
    module = build_model(model().config, WeightForm.TRITS)
    store = MemoryStore({k: v.numpy() for k, v in model().state_dict().items()})
    expected = InterpRunner(module, store).run("decode_step", ids, *states)
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want, strict=True)
    # ... and PyTorch's decode step under the flip-aware rule
    ref_logits, ref_state = model().decode_step(torch.from_numpy(ids), [torch.from_numpy(h) for h in states])
    assert_logits_close(results[0], ref_logits)
    for got, want in zip(results[1:], ref_state):
        assert_logits_close(got, want, what="state")


def test_prefill_with_padding_and_dump_dir(
    model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ids = np.random.default_rng(1).integers(0, V, (2, 5))
    mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], np.int64)
    zeros = np.zeros((2, D), np.float32)
    argv = [str(model_file), "--entry", "prefill", "--dump-dir", "dump"]
    for name, value in [("ids", ids), ("mask", mask), ("z0", zeros), ("z1", zeros)]:
        argv += ["--input", save(tmp_path / f"{name}.npy", value)]
    code, out, _ = mmfc_run(capsys, *argv)
    assert code == 0 and out.startswith(f"out0.npy: float32 [2x5x{V}]")  # default: the current directory
    logits = np.load(tmp_path / "out0.npy")
    ref = model()(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    assert_logits_close(logits, ref.logits)
    dumped = sorted(p.name for p in (tmp_path / "dump").iterdir())
    assert "trace.jsonl" in dumped and "000_embedding.npy" in dumped
    last = [name for name in dumped if name.endswith("_dequant.npy")][-1]
    np.testing.assert_array_equal(np.load(tmp_path / "dump" / last), logits)  # lm_head's dequant is the output


# ------------------------------------------------------------------------------------ mistakes


@pytest.fixture
def decode_inputs(tmp_path: Path) -> list[str]:
    zeros = np.zeros((2, D), np.float32)
    return [save(tmp_path / "ids.npy", np.array([1, 2])), save(tmp_path / "z0.npy", zeros), save(tmp_path / "z1.npy", zeros)]


def inputs_argv(paths: list[str]) -> list[str]:
    return [arg for path in paths for arg in ("--input", path)]


def assert_user_error(code: int, out: str, err: str, pattern: str, out_dir: Path | None = None) -> None:
    import re

    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("mmfc: error: "), err
    assert re.search(pattern, err), err
    if out_dir is not None:
        assert not list(out_dir.glob("out*.npy")) and not list(out_dir.glob(".out*"))


def test_unknown_entry(model_file: Path, decode_inputs: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = mmfc_run(capsys, str(model_file), "--entry", "forward", *inputs_argv(decode_inputs), "-o", str(tmp_path))
    assert_user_error(code, out, err, r"no function @forward in the module \(functions: @prefill, @decode_step\)", tmp_path)


def test_entry_needed_with_two_functions(model_file: Path, decode_inputs: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = mmfc_run(capsys, str(model_file), *inputs_argv(decode_inputs))
    assert_user_error(code, out, err, r"model.mlir: say which function to run with --entry NAME")


def test_wrong_number_of_inputs(model_file: Path, decode_inputs: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = mmfc_run(capsys, str(model_file), "--entry", "decode_step", *inputs_argv(decode_inputs[:2]), "-o", str(tmp_path))
    assert_user_error(code, out, err, r"@decode_step takes 3 inputs \(tensor<\?xi64>, .*\), got 2", tmp_path)


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        (np.array([[1, 2]]), r"ids.npy: @decode_step: input 0 \(input_ids\) has type tensor<\?xi64>: expected 1 dims"),
        (np.array([1.0, 2.0]), r"ids.npy: .*expected an int64 array, got float64 array of shape \(2,\)"),
        (np.array([1, 2], np.int32), r"ids.npy: .*got int32 array"),
    ],
)
def test_wrong_input_rank_or_dtype(
    model_file: Path, decode_inputs: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], value: np.ndarray, pattern: str
) -> None:
    save(tmp_path / "ids.npy", value)
    code, out, err = mmfc_run(capsys, str(model_file), "--entry", "decode_step", *inputs_argv(decode_inputs), "-o", str(tmp_path))
    assert_user_error(code, out, err, pattern, tmp_path)


def test_wrong_static_dim(model_file: Path, decode_inputs: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save(tmp_path / "z1.npy", np.zeros((2, D + 1), np.float32))
    code, out, err = mmfc_run(capsys, str(model_file), "--entry", "decode_step", *inputs_argv(decode_inputs), "-o", str(tmp_path))
    assert_user_error(code, out, err, rf"z1.npy: .*input 2 \(h1\).*expected shape \[\?, {D}\]", tmp_path)


def test_missing_or_unreadable_npy(model_file: Path, decode_inputs: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "nope.npy")
    code, out, err = mmfc_run(capsys, str(model_file), "--entry", "decode_step", *inputs_argv([missing, *decode_inputs[1:]]))
    assert_user_error(code, out, err, r"nope.npy: no such file")
    (tmp_path / "text.npy").write_text("not an array\n")
    code, out, err = mmfc_run(capsys, str(model_file), "--entry", "decode_step", *inputs_argv([str(tmp_path / "text.npy"), *decode_inputs[1:]]))
    assert_user_error(code, out, err, r"text.npy: not a readable .npy array")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    code, out, err = mmfc_run(capsys, str(model_file), "--entry", "decode_step", *inputs_argv([str(tmp_path / "obj.npy"), *decode_inputs[1:]]))
    assert_user_error(code, out, err, r"obj.npy: not a readable .npy array")
    (tmp_path / "empty.npy").write_bytes(b"")
    code, out, err = mmfc_run(capsys, str(model_file), "--entry", "decode_step", *inputs_argv([str(tmp_path / "empty.npy"), *decode_inputs[1:]]))
    assert_user_error(code, out, err, r"empty.npy: empty file")


def test_missing_weight_store(model_file: Path, decode_inputs: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    (model_file.parent / "model.weights.safetensors").unlink()
    code, out, err = mmfc_run(capsys, str(model_file), "--entry", "decode_step", *inputs_argv(decode_inputs))
    assert_user_error(code, out, err, r"model.weights.safetensors: weight store not found")


def test_token_id_out_of_range_points_at_the_op(
    model_file: Path, decode_inputs: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    save(tmp_path / "ids.npy", np.array([1, V + 5]))
    code, out, err = mmfc_run(capsys, str(model_file), "--entry", "decode_step", *inputs_argv(decode_inputs), "-o", str(tmp_path))
    lines = model_file.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "ternary.embedding" in text and "tensor<?xi64>" in text)
    assert_user_error(
        code, out, err, rf"model.mlir:{line}:\d+: ternary.embedding: token id {V + 5} is out of range \[0, {V}\)", tmp_path
    )


SMALL = textwrap.dedent(
    """\
    builtin.module attributes {mmfc.weights = "small.safetensors"} {
      func.func @f(%x: tensor<?x4xf32>) -> tensor<?x4xf32> {
        %g = ternary.weight @gamma : tensor<4xf32>
        %y = ternary.rmsnorm %x, %g : tensor<?x4xf32>, tensor<4xf32>
        func.return %y : tensor<?x4xf32>
      }
    }
    """
)


def test_weight_that_differs_from_the_ir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "small.mlir").write_text(SMALL)
    MemoryStore({"gamma": np.ones(5, np.float32)}).save(tmp_path / "small.safetensors")
    x = save(tmp_path / "x.npy", np.ones((2, 4), np.float32))
    code, out, err = mmfc_run(capsys, str(tmp_path / "small.mlir"), "--input", x, "-o", str(tmp_path))
    assert_user_error(code, out, err, r"small.mlir:3:\d+: ternary.weight: @gamma is a F32 tensor of shape \[5\]", tmp_path)
    MemoryStore({"beta": np.ones(4, np.float32)}).save(tmp_path / "small.safetensors")
    code, out, err = mmfc_run(capsys, str(tmp_path / "small.mlir"), "--input", x, "-o", str(tmp_path))
    assert_user_error(code, out, err, r"small.mlir:3:\d+: .*no tensor gamma in the weight store", tmp_path)
    MemoryStore({"gamma": np.full(4, 2, np.float32)}).save(tmp_path / "small.safetensors")
    code, out, err = mmfc_run(capsys, str(tmp_path / "small.mlir"), "--input", x, "-o", str(tmp_path))
    assert code == 0 and out == f"{tmp_path / 'out0.npy'}: float32 [2x4] (tensor<?x4xf32>)\n"
    from mmfc.dialects import numerics as nm

    want = nm.rmsnorm(np.ones((2, 4), np.float32), np.full(4, 2, np.float32))
    np.testing.assert_array_equal(np.load(tmp_path / "out0.npy"), want, strict=True)


def test_ops_the_interpreter_cannot_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.mlir").write_text(
        "func.func @f(%x: tensor<2xf32>) -> tensor<2xf32> {\n"
        "  %y = arith.addf %x, %x : tensor<2xf32>\n"
        "  func.return %y : tensor<2xf32>\n}\n"
    )
    x = save(tmp_path / "x.npy", np.ones(2, np.float32))
    code, out, err = mmfc_run(capsys, str(tmp_path / "a.mlir"), "--input", x)
    assert_user_error(code, out, err, r"a.mlir:2:\d+: the interpreter cannot run arith.addf \(in @f\)")


def test_bad_ir_is_reported_with_its_position(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = SMALL.replace(", tensor<4xf32>\n", ", tensor<5xf32>\n")
    assert bad != SMALL
    (tmp_path / "bad.mlir").write_text(bad)
    code, out, err = mmfc_run(capsys, str(tmp_path / "bad.mlir"))
    assert_user_error(code, out, err, r"bad.mlir:4:\d+: operand is used with type tensor<5xf32>")


def test_installed_script_prints_no_traceback(model_file: Path, decode_inputs: list[str], tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "mmfc"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "mmfc"]
    save(tmp_path / "ids.npy", np.array([1, V]))
    proc = subprocess.run(
        [*command, "run", str(model_file), "--entry", "decode_step", *inputs_argv(decode_inputs), "-o", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("mmfc: error: ") and "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert not list(tmp_path.glob("out*.npy"))
