"""The backend interface as the roof drives it: the ``mmfc.targets`` registry, target options from
Python and the CLI, artifacts that record their target, and a ``CompiledModel`` whose state stays on
the runner's device. (A plugin target driven through the CLI: ``test_target_plugin.py``.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import mmfc
from mmfc.api import CompiledState
from mmfc.artifact import MANIFEST
from mmfc.cli import main
from mmfc.dialects.diagnostics import UserError
from mmfc.dialects.target import Target, TargetOption, parse_bool
from mmfc.frontends.torch.modeling import init_random_
from mmfc.models import HGRNBitConfig, HGRNBitForCausalLM
from mmfc.targets import ENTRY_POINT_GROUP, get_target, installed_targets


def tiny_model(seed: int = 0) -> HGRNBitForCausalLM:
    config = HGRNBitConfig(vocab_size=40, hidden_size=12, num_hidden_layers=2, intermediate_size=20)
    return init_random_(HGRNBitForCausalLM.from_config(config), seed)


def test_interp_registers_as_an_entry_point_like_a_plugin() -> None:
    eps = installed_targets()
    assert eps["interp"].value == "mmfc.backends.interp.target:InterpTarget"
    assert eps["interp"].group == ENTRY_POINT_GROUP
    target = get_target("interp")
    assert isinstance(target, Target) and target.name == "interp"


def test_unknown_target_lists_the_installed_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UserError, match=r"unknown target 'gpu9000' \(installed: .*interp"):
        mmfc.compile(tiny_model(), target="gpu9000")
    assert main(["compile", "--preset", "tiny", "--target", "gpu9000", "-o", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown target 'gpu9000'" in err[0] and "interp" in err[0]
    assert not (tmp_path / "a").exists()


def test_mmfc_targets_lists_interp_with_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("interp") and "--check-coverage [true|false]" in out
    assert main(["targets", "--json"]) == 0
    listed = {t["name"]: t for t in json.loads(capsys.readouterr().out)["targets"]}
    assert listed["interp"]["package"] == "mmfc" and listed["interp"]["features"]["unfused"] == "runs"
    assert {o["name"] for o in listed["interp"]["options"]} == {"check_coverage", "trace_kernel_bodies"}


def test_target_options_are_checked_and_parsed() -> None:
    target = get_target("interp")
    assert target.resolve_options({}) == {"check_coverage": True, "trace_kernel_bodies": False}
    assert target.resolve_options({"check_coverage": "no"})["check_coverage"] is False
    with pytest.raises(UserError, match=r"target interp has no option 'arch' \(its options: check_coverage, trace_kernel_bodies\)"):
        target.resolve_options({"arch": "asic"})
    with pytest.raises(UserError, match=r"target interp: --check-coverage 'maybe': expected true or false"):
        target.resolve_options({"check_coverage": "maybe"})
    with pytest.raises(UserError, match="has no option 'arch'"):
        mmfc.compile(tiny_model(), arch="asic")


def test_option_parsing_helpers() -> None:
    option = TargetOption("block_n", "block size", parse=int, default=64)
    assert option.flag == "--block-n"
    assert parse_bool(True) is True and parse_bool("OFF") is False
    with pytest.raises(ValueError):
        parse_bool("2")


def test_load_takes_only_load_time_options(tmp_path: Path) -> None:
    mmfc.compile(tiny_model(), out=tmp_path / "art")
    loaded = mmfc.load(tmp_path / "art", check_coverage=False)
    assert loaded.runner.functions.check_coverage is False
    with pytest.raises(UserError, match="has no option 'bogus'"):
        mmfc.load(tmp_path / "art", bogus=1)


def test_artifact_records_its_target_and_refuses_what_is_not_installed(tmp_path: Path) -> None:
    mmfc.compile(tiny_model(), out=tmp_path / "art")
    manifest_path = tmp_path / "art" / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    assert manifest["format_version"] == 2
    assert manifest["target"] == {"name": "interp", "options": {}, "record": {}}
    manifest["target"]["name"] = "tpu"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=r"compiled for target 'tpu', which is not installed here \(installed: .*interp"):
        mmfc.load(tmp_path / "art")
    manifest["format_version"] = 1
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=r"format version 1; this mmfc reads 2 \(compile the model again\)"):
        mmfc.load(tmp_path / "art")


def test_state_stays_with_the_runner_between_steps() -> None:
    compiled = mmfc.compile(tiny_model(3))
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    out = compiled(ids)
    assert isinstance(out.state, CompiledState) and len(out.state) == 2
    values = out.state.values
    assert all(isinstance(v, np.ndarray) for v in values)  # the interpreter's device values
    logits, state = compiled.decode_step(torch.tensor([7, 8]), out.state)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, 40)
    # the same state handed back as torch tensors gives the same step
    again, _ = compiled.decode_step(torch.tensor([7, 8]), [torch.as_tensor(v) for v in values])
    assert torch.equal(logits, again)
    assert torch.equal(out.state[0], torch.from_numpy(values[0]))
    with pytest.raises(ValueError, match="expected 2 state tensors"):
        compiled.decode_step(torch.tensor([7, 8]), out.state[:1])


def test_generate_returns_on_the_callers_device_and_matches_pytorch() -> None:
    model = tiny_model(4)
    compiled = mmfc.compile(model)
    prompt = torch.tensor([[3, 1, 4, 1, 5]])
    got = compiled.generate(prompt, max_new_tokens=4, eos_token_id=None)
    assert got.device == prompt.device and got.shape == (1, 9)
    assert torch.equal(got[:, :5], prompt)


def test_debug_dump_writes_one_folder_per_call(tmp_path: Path) -> None:
    compiled = mmfc.compile(tiny_model(5), debug_dump_dir=tmp_path / "dbg")
    compiled.generate(torch.tensor([[1, 2]]), max_new_tokens=3, eos_token_id=None)
    folders = sorted(p.name for p in (tmp_path / "dbg").iterdir())
    assert folders == ["000_prefill", "001_decode_step", "002_decode_step"]
    journal = (tmp_path / "dbg" / "001_decode_step" / "trace.jsonl").read_text().splitlines()
    kernels = [json.loads(line) for line in journal if json.loads(line)["op"] == "ternary.kernel"]
    assert kernels and all(k["label"] for k in kernels)


def test_cli_run_takes_a_target_and_its_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", "--preset", "tiny", "-o", str(tmp_path / "t.mlir")]) == 0
    ids = tmp_path / "ids.npy"
    np.save(ids, np.array([1, 2], np.int64))
    h = tmp_path / "h.npy"
    np.save(h, np.zeros((2, 128), np.float32))
    argv = ["run", str(tmp_path / "t.mlir"), "--entry", "decode_step", "--input", str(ids), "--input", str(h),
            "--input", str(h), "-o", str(tmp_path / "out")]
    assert main([*argv, "--target", "interp", "--check-coverage", "false"]) == 0
    assert (tmp_path / "out" / "out0.npy").is_file()
    capsys.readouterr()
    assert main([*argv, "--target", "nope"]) == 2
    assert "unknown target 'nope'" in capsys.readouterr().err
    assert main([*argv, "--check-coverage", "perhaps"]) == 2
    assert "expected true or false" in capsys.readouterr().err


def test_docs_table_of_targets_is_the_installed_targets_own() -> None:
    """docs/targets.md's table is what `mmfc targets --markdown` prints for mmfc's own targets."""
    from mmfc.commands.list_targets import markdown_table
    from mmfc.targets import describe_targets

    text = (Path(__file__).resolve().parents[2] / "docs" / "targets.md").read_text()
    table = text.split("<!-- targets table: begin -->\n", 1)[1].split("<!-- targets table: end -->", 1)[0]
    ours = [info for info in describe_targets() if info.package == "mmfc"]
    assert {info.name for info in ours} >= {"interp", "triton"}
    assert table == markdown_table(ours)
