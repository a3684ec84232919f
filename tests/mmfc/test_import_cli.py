"""``mmfc import``: writes the IR with its weight store beside it (or names a checkpoint in place);
the result runs through ``mmfc run``; user mistakes give one line, exit 2 and no output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmfc.cli import main
from mmfc.frontends.torch.modeling import init_random_
from mmfc.models import HGRNBitConfig, HGRNBitForCausalLM
from mmfc.testing import assert_logits_close


def mmfc(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def checkpoint(tmp_path: Path) -> tuple[Path, HGRNBitForCausalLM]:
    config = HGRNBitConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, intermediate_size=24)
    model = init_random_(HGRNBitForCausalLM.from_config(config), 4)
    model.save_pretrained(tmp_path / "ckpt")
    return tmp_path / "ckpt", model


def test_import_preset_then_run(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    out_dir = tmp_path / "ir"
    out_dir.mkdir()
    code, _, err = mmfc(capsys, "import", "--preset", "tiny", "-o", str(out_dir / "tiny.mlir"))
    assert code == 0, err
    assert (out_dir / "tiny.mlir").stat().st_size < 100_000
    assert (out_dir / "tiny.weights.safetensors").is_file()
    text = (out_dir / "tiny.mlir").read_text()
    assert 'mmfc.weights = "tiny.weights.safetensors"' in text
    assert "dense<" not in text  # weights are never inlined
    ids = np.array([[1, 5, 9, 300]], np.int64)
    np.save(tmp_path / "ids.npy", ids)
    np.save(tmp_path / "mask.npy", np.ones_like(ids))
    for layer in range(2):
        np.save(tmp_path / f"h{layer}.npy", np.zeros((1, 128), np.float32))
    monkeypatch.chdir(tmp_path)  # run from elsewhere: the store resolves relative to the .mlir file
    inputs = [str(tmp_path / n) for n in ("ids.npy", "mask.npy", "h0.npy", "h1.npy")]
    code, _, err = mmfc(
        capsys, "run", str(out_dir / "tiny.mlir"), "--entry", "prefill", *sum((["--input", i] for i in inputs), []),
        "-o", str(tmp_path / "outs"),
    )
    assert code == 0, err
    logits = np.load(tmp_path / "outs" / "out0.npy")
    model = HGRNBitForCausalLM.from_preset("tiny", seed=0)
    assert_logits_close(logits, model(torch.from_numpy(ids)).logits)


def test_import_checkpoint_names_it_in_place(tmp_path: Path, checkpoint, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt, _ = checkpoint
    (tmp_path / "out").mkdir()
    code, _, err = mmfc(capsys, "import", "--model", str(ckpt), "-o", str(tmp_path / "out" / "m.mlir"))
    assert code == 0, err
    assert 'mmfc.weights = "../ckpt"' in (tmp_path / "out" / "m.mlir").read_text()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["m.mlir"]  # nothing copied


def test_output_flag_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["import", "--preset", "tiny"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "-o" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["import", "--preset", "nope", "-o", "x.mlir"], "unknown preset"),
        (["import", "--model", "/no/such/dir", "-o", "x.mlir"], "no such directory"),
        (["import", "--preset", "tiny", "-o", "/no/such/dir/x.mlir"], "does not exist"),
        (["import", "--preset", "tiny", "-o", "-"], "--store-dir"),
    ],
)
def test_user_mistakes(
    tmp_path: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = mmfc(capsys, *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_bad_checkpoint_leaves_no_output(tmp_path: Path, checkpoint, capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import load_file, save_file

    ckpt, _ = checkpoint
    tensors = load_file(str(ckpt / "model.safetensors"))
    del tensors["model.layers.1.attn.g_norm.weight"]
    save_file(tensors, str(ckpt / "model.safetensors"))
    code, _, err = mmfc(capsys, "import", "--model", str(ckpt), "-o", str(tmp_path / "m.mlir"))
    assert code == 2 and "model.layers.1.attn.g_norm.weight" in err
    assert not (tmp_path / "m.mlir").exists()
