"""The Triton code generator: what it writes, what it refuses, and the artifact it leaves."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import torch
from xdsl.dialects import func

import mmfc
from mmfc.backends.triton.codegen import PLAN_FORMAT
from mmfc.backends.triton.emitters import EMITTERS
from mmfc.backends.triton.runtime import KERNELS_FILE
from mmfc.cli import main
from mmfc.dialects import ternary as T
from mmfc.dialects.diagnostics import UserError
from mmfc.frontends.torch.modeling import init_random_
from mmfc.models import HGRNBitConfig, HGRNBitForCausalLM
from mmfc.testing import assert_logits_close


def tiny(seed: int = 0) -> HGRNBitForCausalLM:
    config = HGRNBitConfig(vocab_size=31, hidden_size=14, num_hidden_layers=2, intermediate_size=19)
    return init_random_(HGRNBitForCausalLM.from_config(config), seed)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("triton") / "tiny.triton"
    mmfc.compile(tiny(), target="triton", out=out)
    return out


def test_one_function_per_kernel_named_after_its_label(artifact: Path) -> None:
    source = (artifact / KERNELS_FILE).read_text()
    tree = ast.parse(source)
    functions = {f.name for f in tree.body if isinstance(f, ast.FunctionDef)}
    loaded = mmfc.load(artifact)
    kernels = {
        (fn.sym_name.data, op.attributes["label"].data)  # type: ignore[union-attr]
        for fn in loaded.module.ops
        if isinstance(fn, func.FuncOp)
        for op in fn.body.block.ops
        if isinstance(op, T.KernelOp)
    }
    for entry, label in kernels:
        # one function per kernel shape: the layers share theirs (named with layers.N)
        name = "k_" + re.sub(r"\W+", "_", f"{entry}__{re.sub(r'[.]layers[.][0-9]+[.]', '.layers.N.', label)}").strip("_")
        assert name in functions, name
        # the IR it came from is in the comment above it, and the labels it also runs
        above = source[: source.index(f"def {name}(")].rsplit("\n\n", 1)[-1]
        assert "ternary.accum" in above and label in above, (name, label)
    assert len([f for f in functions if f.startswith("k_")]) == 12  # (embedding, 4 per layer, head) x 2 entries
    # plus the embeddings, wrapped in kernels of their own, and the shared helpers
    assert {"k_prefill__embedding", "k_decode_step__embedding", "round_half_away", "add_sub"} <= functions
    plan = loaded.runner.plan
    assert len(plan["entries"]["decode_step"]["steps"]) == 1 + 2 * 4 + 1  # embedding, 4 per layer, head


def test_every_size_argument_is_left_unspecialized(artifact: Path) -> None:
    """Batch and sequence length are run-time arguments: Triton must not compile a variant per value
    (it specializes integers equal to 1 or divisible by 16 unless told not to)."""
    tree = ast.parse((artifact / KERNELS_FILE).read_text())
    kernels = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name.startswith("k_")]
    assert kernels
    for f in kernels:
        ints = [a.arg for a in f.args.args if a.arg.startswith("n_")]
        decorator = ast.unparse(f.decorator_list[0])
        for name in ints:
            assert repr(name) in decorator, (f.name, name, decorator)


def test_the_artifact_checksums_the_generated_module(artifact: Path) -> None:
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert KERNELS_FILE in manifest["files"]
    assert manifest["target"]["record"]["plan_format"] == PLAN_FORMAT and manifest["target"]["record"]["kernels"] >= 10
    text = (artifact / KERNELS_FILE).read_text()
    (artifact / KERNELS_FILE).write_text(text.replace("tl.div_rn(1.0,", "tl.div_rn(2.0,", 1))
    try:
        with pytest.raises(UserError, match="checksum mismatch"):
            mmfc.load(artifact)
    finally:
        (artifact / KERNELS_FILE).write_text(text)


def test_another_plan_format_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "a"
    mmfc.compile(tiny(1), target="triton", out=out)
    from mmfc.artifact import MANIFEST, sha256_of

    text = (out / KERNELS_FILE).read_text().replace(f"'format': {PLAN_FORMAT},", "'format': 99,")
    (out / KERNELS_FILE).write_text(text)
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["files"][KERNELS_FILE] = {"bytes": (out / KERNELS_FILE).stat().st_size, "sha256": sha256_of(out / KERNELS_FILE)}
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=rf"plan format 99; this mmfc runs format {PLAN_FORMAT} \(compile the model again\)"):
        mmfc.load(out)


KERNEL_WITHOUT_EMITTER = """
builtin.module {
  func.func @f(%x: tensor<3x4xf32>) -> tensor<4xf32> {
    %y = ternary.kernel grid [] (%a = %x : tensor<3x4xf32>) -> (tensor<4xf32>) attributes {label = "pick"} {
      %r = ternary.row %a[1] : tensor<3x4xf32> -> tensor<4xf32>
      ternary.yield %r : tensor<4xf32>
    }
    func.return %y : tensor<4xf32>
  }
}
"""


def test_an_op_without_an_emitter_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert T.RowOp not in EMITTERS
    path = tmp_path / "k.mlir"
    path.write_text(KERNEL_WITHOUT_EMITTER)
    with pytest.raises(UserError, match=r"the triton target has no emitter for ternary.row \(in kernel pick\)"):
        mmfc.compile(path, target="triton", pipeline="cse")
    assert main(["compile", str(path), "--target", "triton", "-p", "cse", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "mmfc: error: the triton target has no emitter for ternary.row (in kernel pick)"
    assert not (tmp_path / "out").exists()


def test_cli_compile_generate_and_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tiny.triton"
    assert main(["compile", "--preset", "tiny", "--target", "triton", "-o", str(out)]) == 0
    assert (out / KERNELS_FILE).is_file()
    capsys.readouterr()
    assert main(["generate", str(out), "--prompt-ids", "1,600,7", "--max-new-tokens", "4", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["new_ids"]
    assert main(["generate", "--preset", "tiny", "--prompt-ids", "1,600,7", "--max-new-tokens", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["new_ids"] == got
    assert main(["generate", str(out), "--prompt-ids", "1,600,7", "--max-new-tokens", "2"]) == 0
    err = capsys.readouterr().err
    where = "Triton interpreter on the CPU" if not torch.cuda.is_available() else "compiled Triton kernels on"
    assert f"[target triton, {where}" in err
    assert main(["generate", str(out), "--prompt-ids", "1,2", "--device", "nope"]) == 2
    assert "--device 'nope': expected auto, cuda or interpret" in capsys.readouterr().err
    # --profile times compiled kernels: refused in one line, before any token, where there are none
    assert main(["generate", "--preset", "tiny", "--prompt-ids", "1,2", "--profile"]) == 2
    assert capsys.readouterr().err.strip().endswith("has no per-kernel profile (the triton target on a GPU has one)")
    if not torch.cuda.is_available():
        assert main(["generate", str(out), "--prompt-ids", "1,2", "--profile"]) == 2
        err = capsys.readouterr().err.strip()
        assert err == "mmfc: error: --profile times compiled kernels on a GPU; here the kernels run in Triton's interpreter"


def test_debug_dump_names_the_first_kernel_that_differs_from_the_interpreter() -> None:
    """The roof's comparison over two targets' dumps: none differs; a kernel whose generated code is
    broken on purpose is named."""
    from mmfc.compare import first_kernel_difference

    model = tiny(2)
    ours = mmfc.compile(model, target="triton")
    reference = mmfc.compile(model, target="interp")
    import numpy as np

    ids = np.array([[1, 2, 3], [4, 5, 6]])
    inputs = (ids, np.ones_like(ids), np.zeros((2, 14), np.float32), np.zeros((2, 14), np.float32))
    same = first_kernel_difference(ours.runner, reference.runner, "prefill", *inputs, rtol=1e-4, atol=1e-5)
    assert same.difference is None and same.compared >= 9
    kernels = ours.runner.kernels
    name = "k_prefill__model_layers_N_attn_o_proj"  # the layers' o_proj kernels share it
    original = getattr(kernels, name)
    try:
        setattr(kernels, name, _Scaled(original))
        found = first_kernel_difference(ours.runner, reference.runner, "prefill", *inputs, rtol=1e-4, atol=1e-5)
    finally:
        setattr(kernels, name, original)
    assert found.difference is not None and found.difference.actual.label == "model.layers.0.attn.o_proj"


class _Scaled:
    """A kernel that launches ``original`` and then scales its output: one kernel broken on purpose."""

    def __init__(self, original: object) -> None:
        self.original = original

    def __getitem__(self, grid: object) -> object:
        def launch(*args: object, **kwargs: object) -> None:
            self.original[grid](*args, **kwargs)  # type: ignore[index]
            out = [a for a in args if isinstance(a, torch.Tensor)]
            out[6].mul_(1.5)  # the kernel's result (after its six operands)

        return launch


def test_interpret_matches_for_a_compiled_artifact_loaded_again(artifact: Path) -> None:
    model = tiny()
    loaded = mmfc.load(artifact)
    ids = torch.tensor([[5, 6, 7, 8]])
    assert_logits_close(loaded(ids).logits, model(ids).logits)


def test_another_triton_version_recompiles_and_says_so(
    artifact: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mmfc.backends.triton import target as triton_target

    record = json.loads((artifact / "manifest.json").read_text())["target"]["record"]
    assert record["triton"] is not None and "gpu" in record
    monkeypatch.setattr(triton_target, "installed_triton", lambda: "9.9.9")
    loaded = mmfc.load(artifact)
    err = capsys.readouterr().err
    assert f"mmfc: note: kernels generated with Triton {record['triton']}; compiling them with Triton 9.9.9" in err
    assert_logits_close(loaded(torch.tensor([[1, 2, 3]])).logits, tiny()(torch.tensor([[1, 2, 3]])).logits)
