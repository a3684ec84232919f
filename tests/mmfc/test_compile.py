"""``mmfc.compile`` / ``mmfc.load`` / ``mmfc compile``: compiled artifacts run like the PyTorch model.

Whole-model comparisons use the flip-aware rule (mmfc.testing)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import mmfc
from mmfc.artifact import ArtifactError, load_artifact, verify_artifact
from mmfc.cli import main
from mmfc.frontends.torch.modeling import init_random_
from mmfc.models import HGRNBitConfig, HGRNBitForCausalLM
from mmfc.testing import assert_generate_matches, assert_logits_close, assert_teacher_forced

PIPELINES = ["cse", "-O0", "-O2"]


def tiny_model(seed: int = 0, layers: int = 2) -> HGRNBitForCausalLM:
    config = HGRNBitConfig(vocab_size=48, hidden_size=16, num_hidden_layers=layers, intermediate_size=24)
    return init_random_(HGRNBitForCausalLM.from_config(config), seed)


def test_compiled_model_takes_the_models_keyword_arguments() -> None:
    for name in ("__call__", "generate"):
        ours = inspect.signature(getattr(mmfc.CompiledModel, name)).parameters
        theirs = inspect.signature(getattr(HGRNBitForCausalLM, name if name != "__call__" else "forward")).parameters
        assert list(ours) == list(theirs), name


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_compiled_logits_and_greedy_tokens_match(pipeline: str, tmp_path: Path) -> None:
    model = tiny_model(1)
    compiled = mmfc.compile(model, target="interp", pipeline=pipeline, out=tmp_path / "art")
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 48, (2, 12), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding
    out = compiled(ids, attention_mask=mask)
    ref = model(ids, attention_mask=mask)
    assert out.logits.shape == ref.logits.shape and out.logits.dtype == torch.float32
    assert_logits_close(out.logits[0], ref.logits[0])
    assert_logits_close(out.logits[1, 4:], ref.logits[1, 4:])
    assert_teacher_forced(out.logits[:1], ref.logits[:1], min_steps=8)
    for a, b in zip(out.state, ref.state):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    prompt = ids[:, :5]
    want = model.generate(prompt, max_new_tokens=8, eos_token_id=None)
    got = compiled.generate(prompt, max_new_tokens=8, eos_token_id=None)
    assert got.shape == want.shape
    assert_generate_matches(got, want, model(want).logits[:, 4:-1], 5)
    # the artifact reloads to the same results
    loaded = mmfc.load(tmp_path / "art")
    assert torch.equal(loaded(ids, attention_mask=mask).logits, out.logits)
    # sampling is seeded and reproducible through the same keyword arguments
    kw = dict(max_new_tokens=6, do_sample=True, temperature=0.9, top_k=10, top_p=0.9, seed=4, eos_token_id=None)
    assert torch.equal(loaded.generate(prompt, **kw), loaded.generate(prompt, **kw))


def test_artifact_layout_and_checksums(tmp_path: Path) -> None:
    mmfc.compile(tiny_model(2), pipeline="cse", out=tmp_path / "art")
    names = sorted(p.name for p in (tmp_path / "art").iterdir())
    assert names == ["config.json", "manifest.json", "model.mlir", "weights.safetensors"]
    manifest = verify_artifact(tmp_path / "art")
    assert manifest["target"] == {"name": "interp", "options": {}, "record": {}} and manifest["versions"]["mmfc"] == mmfc.__version__
    assert set(manifest["files"]) == {"config.json", "model.mlir", "weights.safetensors"}
    assert 'mmfc.weights = "weights.safetensors"' in (tmp_path / "art" / "model.mlir").read_text()
    # tampering is caught on load
    with open(tmp_path / "art" / "weights.safetensors", "r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    with pytest.raises(ArtifactError, match="weights.safetensors: checksum mismatch"):
        load_artifact(tmp_path / "art")


def test_artifact_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "art"
    mmfc.compile(tiny_model(3), pipeline="cse", out=out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    from mmfc.dialects import weights

    def broken_save(self, *a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(weights.WeightStore, "save", broken_save)
    with pytest.raises(ArtifactError, match=r"art: cannot write the artifact \(disk full\)"):
        mmfc.compile(tiny_model(4), pipeline="cse", out=out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old artifact is intact
    assert [p.name for p in tmp_path.iterdir()] == ["art"]  # no temporary folder left
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    monkeypatch.undo()
    with pytest.raises(ArtifactError, match="not a compiled artifact"):
        mmfc.compile(tiny_model(4), pipeline="cse", out=tmp_path / "notes")
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me"


def test_cli_compile_then_generate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    art = tmp_path / "tiny.interp"
    assert main(["compile", "--preset", "tiny", "-O2", "-o", str(art), "--stats"]) == 0
    out, err = capsys.readouterr()
    assert "pipeline:" in err and "check-matmul-free" in err and "trit sparsity" in out
    stats = json.loads((art / "manifest.json").read_text())["stats"]
    assert stats["kernels_per_layer"] and max(stats["kernels_per_layer"]) <= 6
    args = ["--prompt-ids", "1,2,3", "--max-new-tokens", "6", "--ignore-eos", "--json"]
    assert main(["generate", str(art), *args]) == 0
    compiled = json.loads(capsys.readouterr().out)
    assert main(["generate", "--preset", "tiny", *args]) == 0
    reference = json.loads(capsys.readouterr().out)
    model = HGRNBitForCausalLM.from_preset("tiny", seed=0)
    ref_ids = torch.tensor([reference["ids"]])
    assert_generate_matches(np.array([compiled["ids"]]), ref_ids, model(ref_ids).logits[:, 2:-1], 3)


def test_cli_compile_user_mistakes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, needle in [
        (["compile", "--preset", "tiny", "-o", str(tmp_path / "a"), "-p", "no-such-pass"], "no-such-pass"),
        (["compile", "-o", str(tmp_path / "b")], "no model given"),
        (["compile", str(tmp_path / "missing.mlir"), "-o", str(tmp_path / "c")], "no such file"),
        (["compile", "--preset", "nope", "-o", str(tmp_path / "d")], "unknown preset"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []
