"""The ``mmfc`` command line: ``info`` and ``generate``, and the one-line exit-2 contract for mistakes.

Most tests call ``mmfc.cli.main`` in-process (fast); a few run the installed ``mmfc`` script in a
subprocess to check what a user really sees (exit code, stderr, no traceback, no torch for ``--help``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mmfc.cli import main
from mmfc.commands import info as info_cmd
from mmfc.dialects.numerics import pack, packed_row_bytes
from mmfc.frontends.torch import PRESETS, BitLinear, HGRNBitConfig, HGRNBitForCausalLM, preset_config
from mmfc.frontends.torch import checkpoint as checkpoint_mod

TINY_PROMPT = [1, 17, 230, 45]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``(exit code, stdout, stderr)`` of ``mmfc argv`` run in-process (argparse exits become codes)."""
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's usage errors and --help
        rc = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return rc, out, err


def mmfc_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m mmfc``."""
    script = Path(sys.executable).parent / "mmfc"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mmfc"]


def run_process(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(mmfc_command() + argv, capture_output=True, text=True, timeout=120)


def assert_user_error(rc: int, out: str, err: str) -> None:
    """The contract for a user's mistake: exit 2, exactly one line on stderr, nothing on stdout."""
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("mmfc"), err
    assert out == ""


@pytest.fixture(scope="module")
def tiny() -> HGRNBitForCausalLM:
    return HGRNBitForCausalLM.from_preset("tiny", seed=0)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory, tiny: HGRNBitForCausalLM) -> Path:
    """A float checkpoint of the tiny preset (no tokenizer)."""
    directory = tmp_path_factory.mktemp("ckpt") / "tiny"
    tiny.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_quant_dir(tmp_path_factory: pytest.TempPathFactory, tiny: HGRNBitForCausalLM) -> Path:
    directory = tmp_path_factory.mktemp("ckpt") / "tiny-ternary"
    tiny.save_pretrained(directory, quantized=True)
    return directory


def greedy_reference(model: HGRNBitForCausalLM, prompt: list[int], n: int, **kwargs: object) -> list[int]:
    return model.generate(torch.tensor([prompt]), max_new_tokens=n, **kwargs)[0, len(prompt) :].tolist()


# ------------------------------------------------------------------------------------------ help


def test_help_lists_the_subcommands() -> None:
    proc = run_process(["--help"])
    assert proc.returncode == 0, proc.stderr
    for name in ("info", "generate", "sim"):
        assert name in proc.stdout
    # `mmfc sim sweep` is parsed as a hidden subcommand: not listed, and never as argparse's marker
    assert "sim-sweep" not in proc.stdout and "SUPPRESS" not in proc.stdout


def test_building_the_parser_does_not_import_torch() -> None:
    code = "import sys; from mmfc.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_help_names_every_preset(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["info", "--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in PRESETS)


# ------------------------------------------------------------------------------------------ info


@pytest.mark.parametrize(
    "preset, params, mb_2bit, mb_base3, mb_embedding",
    [
        # exact parameter counts and packed sizes (MB, rounded) from docs/model.md
        ("370m", "374,108,160", 85, 68, 66),
        ("1.3b", "1,364,779,008", 325, 260, 131),
        ("2.7b", "2,702,357,504", 655, 524, 164),
    ],
)
def test_info_preset_matches_the_spec(
    preset: str,
    params: str,
    mb_2bit: int,
    mb_base3: int,
    mb_embedding: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc, out, err = run_cli(["info", "--preset", preset], capsys)
    assert rc == 0, err
    assert f"parameters {params}" in out
    assert out.splitlines()[0].startswith("hgrn_bit  d=")
    rc, out, err = run_cli(["info", "--preset", preset, "--json"], capsys)
    facts = json.loads(out)
    assert f"{facts['parameters']:,}" == params
    sizes = facts["weight_bytes"]
    assert round(sizes["2bit"] / 1e6) == mb_2bit
    assert round(sizes["base3"] / 1e6) == mb_base3
    assert round(sizes["embedding_bf16"] / 1e6) == mb_embedding
    assert sizes["bf16"] == 2 * facts["parameters"]


def test_info_2_7b_as_a_user_runs_it() -> None:
    proc = run_process(["info", "--preset", "2.7b"])
    assert proc.returncode == 0, proc.stderr
    assert "parameters 2,702,357,504" in proc.stdout


def test_info_never_builds_a_model(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``info`` works from the config alone: building any module would allocate real-size weights."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("mmfc info built a model")

    monkeypatch.setattr(HGRNBitForCausalLM, "__init__", refuse)
    monkeypatch.setattr(BitLinear, "__init__", refuse)
    rc, out, err = run_cli(["info", "--preset", "2.7b"], capsys)
    assert rc == 0, err


@given(
    d=st.integers(1, 48),
    layers=st.integers(1, 3),
    inter=st.integers(1, 64),
    vocab=st.integers(1, 80),
    lower_bound=st.booleans(),
)
def test_info_sizes_agree_with_the_model_structure(
    d: int, layers: int, inter: int, vocab: int, lower_bound: bool
) -> None:
    """Counts and packed bytes from the config equal those of the module tree (built on the meta device)."""
    config = HGRNBitConfig(
        hidden_size=d,
        num_hidden_layers=layers,
        intermediate_size=inter,
        vocab_size=vocab,
        use_lower_bound=lower_bound,
    )
    with torch.device("meta"):
        model = HGRNBitForCausalLM(config)
    shapes = [tuple(m.weight.shape) for m in model.modules() if isinstance(m, BitLinear)]
    facts = info_cmd.describe(config, info_cmd.ModelSource("preset", preset="x"))
    assert facts["parameters"] == model.num_parameters()
    assert facts["ternary_parameters"] == sum(n * k for n, k in shapes)
    for fmt in ("2bit", "base3"):
        assert facts["weight_bytes"][fmt] == sum(n * packed_row_bytes(k, fmt) for n, k in shapes)
    assert facts["weight_bytes"]["scales_fp32"] == 4 * len(shapes)
    assert facts["weight_bytes"]["embedding_bf16"] == 2 * model.model.embeddings.weight.numel()


def test_info_packed_sizes_equal_the_packer(tiny: HGRNBitForCausalLM) -> None:
    """The sizes ``info`` predicts are the sizes the real packer produces for the tiny model's trits."""
    facts = info_cmd.describe(tiny.config, info_cmd.ModelSource("preset", preset="tiny"))
    for fmt in ("2bit", "base3"):
        packed = sum(
            pack(m.ternary()[0].numpy(), fmt).nbytes for m in tiny.modules() if isinstance(m, BitLinear)
        )
        assert facts["weight_bytes"][fmt] == packed


def test_info_model_dir(
    tiny: HGRNBitForCausalLM, tiny_dir: Path, tiny_quant_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = run_cli(["info", "--model", str(tiny_dir)], capsys)
    assert rc == 0, err
    assert f"parameters {tiny.num_parameters():,}" in out
    assert "float masters" in out and "pre-quantized" not in out
    rc, out, err = run_cli(["info", "--model", str(tiny_quant_dir)], capsys)
    assert rc == 0, err
    assert "pre-quantized" in out
    for directory, quantized in ((tiny_dir, False), (tiny_quant_dir, True)):
        rc, out, err = run_cli(["info", "--model", str(directory), "--json"], capsys)
        facts = json.loads(out)
        assert facts["source"]["quantized"] is quantized
        assert facts["source"]["safetensors_bytes"] == (directory / "model.safetensors").stat().st_size
        assert facts["parameters"] == tiny.num_parameters()


def test_info_reads_a_non_preset_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = preset_config("tiny").replace(hidden_size=96, num_hidden_layers=3, intermediate_size=None)
    config.save_pretrained(tmp_path)
    rc, out, err = run_cli(["info", "--model", str(tmp_path), "--json"], capsys)
    assert rc == 0, err
    facts = json.loads(out)
    assert (facts["hidden_size"], facts["num_hidden_layers"]) == (96, 3)
    assert facts["intermediate_size"] == config.intermediate_size
    assert facts["parameters"] == config.num_parameters


# ------------------------------------------------------------------------------------------ generate


def test_generate_greedy_equals_model_generate(
    tiny: HGRNBitForCausalLM, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = ",".join(map(str, TINY_PROMPT))
    rc, out, err = run_cli(
        ["generate", "--preset", "tiny", "--prompt-ids", ids, "--max-new-tokens", "12", "--json"], capsys
    )
    assert rc == 0, err
    result = json.loads(out)
    expected = greedy_reference(tiny, TINY_PROMPT, 12)
    assert result["new_ids"] == expected
    assert result["prompt_ids"] == TINY_PROMPT
    assert result["ids"] == TINY_PROMPT + expected
    assert result["text"] is None and result["sampling"] is None
    assert result["timing"]["prefill_tokens"] == len(TINY_PROMPT)
    assert result["timing"]["decode_steps"] == len(expected) - 1
    # the plain output carries the same ids, and the timing goes to stderr
    rc, out, err = run_cli(
        ["generate", "--preset", "tiny", "--prompt-ids", ids, "--max-new-tokens", "12"], capsys
    )
    assert rc == 0
    assert out.strip() == "new ids: " + ",".join(map(str, expected))
    assert "prefill" in err and "ms/token" in err


def test_generate_init_seed_picks_the_preset_weights(capsys: pytest.CaptureFixture[str]) -> None:
    model = HGRNBitForCausalLM.from_preset("tiny", seed=7)
    argv = [
        "generate",
        "--preset",
        "tiny",
        "--init-seed",
        "7",
        "--prompt-ids",
        "1,2,3",
        "--max-new-tokens",
        "8",
    ]
    rc, out, err = run_cli(argv + ["--json"], capsys)
    assert rc == 0, err
    assert json.loads(out)["new_ids"] == greedy_reference(model, [1, 2, 3], 8)


def test_generate_from_a_checkpoint_and_as_artifact(
    tiny: HGRNBitForCausalLM, tiny_dir: Path, tiny_quant_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = greedy_reference(tiny, TINY_PROMPT, 10)
    ids = ",".join(map(str, TINY_PROMPT))
    for model_args in (["--model", str(tiny_dir)], [str(tiny_dir)], ["--model", str(tiny_quant_dir)]):
        rc, out, err = run_cli(
            ["generate", *model_args, "--prompt-ids", ids, "--max-new-tokens", "10", "--json"], capsys
        )
        assert rc == 0, err
        assert json.loads(out)["new_ids"] == expected


def test_generate_sampling_is_seeded(tiny: HGRNBitForCausalLM, capsys: pytest.CaptureFixture[str]) -> None:
    def sample(*flags: str) -> list[int]:
        argv = [
            "generate",
            "--preset",
            "tiny",
            "--prompt-ids",
            "1,5,9",
            "--max-new-tokens",
            "16",
            "--json",
            *flags,
        ]
        rc, out, err = run_cli(argv, capsys)
        assert rc == 0, err
        return json.loads(out)["new_ids"]

    first = sample("--temperature", "1.5", "--seed", "3")
    assert sample("--temperature", "1.5", "--seed", "3") == first
    assert sample("--temperature", "1.5", "--seed", "4") != first
    assert (
        first
        == tiny.generate(
            torch.tensor([[1, 5, 9]]), max_new_tokens=16, do_sample=True, temperature=1.5, seed=3
        )[0, 3:].tolist()
    )
    # top-k 1 keeps only the argmax: sampling must then reproduce greedy decoding
    assert sample("--top-k", "1", "--seed", "11") == greedy_reference(tiny, [1, 5, 9], 16)
    top_p = sample("--top-p", "0.9", "--seed", "3")
    assert (
        top_p
        == tiny.generate(torch.tensor([[1, 5, 9]]), max_new_tokens=16, do_sample=True, top_p=0.9, seed=3)[
            0, 3:
        ].tolist()
    )


def test_generate_stops_at_eos_unless_ignored(
    tiny: HGRNBitForCausalLM, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint whose eos is the first greedy token stops after one token; --ignore-eos runs on."""
    first = greedy_reference(tiny, TINY_PROMPT, 1)[0]
    eos_model = HGRNBitForCausalLM.from_preset("tiny", seed=0)
    eos_model.config.eos_token_id = first
    eos_model.save_pretrained(tmp_path / "eos")
    argv = ["generate", "--model", str(tmp_path / "eos"), "--prompt-ids", ",".join(map(str, TINY_PROMPT))]
    argv += ["--max-new-tokens", "6", "--json"]
    rc, out, err = run_cli(argv, capsys)
    assert rc == 0, err
    stopped = json.loads(out)
    assert stopped["new_ids"] == [first] and stopped["stopped_at_eos"] is True
    rc, out, err = run_cli(argv + ["--ignore-eos"], capsys)
    assert rc == 0, err
    ran_on = json.loads(out)
    assert ran_on["new_ids"] == greedy_reference(tiny, TINY_PROMPT, 6, eos_token_id=None)
    assert len(ran_on["new_ids"]) == 6 and ran_on["stopped_at_eos"] is False


class FakeTokenizer:
    """Characters as token ids (mod the vocabulary), BOS first: enough to drive the text path."""

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size

    def encode(self, text: str) -> list[int]:
        return [1] + [3 + ord(c) % (self.vocab_size - 3) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(65 + i % 26) for i in ids)


def test_generate_with_a_text_prompt(
    tiny: HGRNBitForCausalLM,
    tiny_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeTokenizer(tiny.config.vocab_size)
    monkeypatch.setattr(checkpoint_mod, "load_tokenizer", lambda directory: fake)
    argv = ["generate", "--model", str(tiny_dir), "--prompt", "Hello", "--max-new-tokens", "5"]
    rc, out, err = run_cli(argv + ["--json"], capsys)
    assert rc == 0, err
    result = json.loads(out)
    assert result["prompt_ids"] == fake.encode("Hello")
    assert result["new_ids"] == greedy_reference(tiny, fake.encode("Hello"), 5)
    assert result["text"] == fake.decode(result["ids"])
    assert result["new_text"] == fake.decode(result["new_ids"])
    rc, out, err = run_cli(argv, capsys)
    assert rc == 0, err
    assert out.splitlines()[0] == result["text"]


def test_tokenizer_files_without_a_library_say_what_to_install(
    tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("tokenizers", "sentencepiece", "transformers"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import name` raise ImportError
    directory = tmp_path / "with-tokenizer"
    directory.mkdir()
    for f in tiny_dir.iterdir():
        (directory / f.name).write_bytes(f.read_bytes())
    (directory / "tokenizer.json").write_text("{}")
    rc, out, err = run_cli(["generate", "--model", str(directory), "--prompt", "hi"], capsys)
    assert_user_error(rc, out, err)
    assert "tokenizers" in err and "--prompt-ids" in err


# ------------------------------------------------------------------------------------------ mistakes


# Each user mistake by name, as an argv template: {tiny} is a good float checkpoint, {missing} a path that
# does not exist, and the other {names} are the broken folders made by the `broken` fixture.
_IDS = ["--prompt-ids", "1,2,3"]
_GEN = ["generate", "--preset", "tiny"]
MISTAKES: dict[str, list[str]] = {
    "unknown top-level flag": ["--frobnicate"],
    "info: missing dir": ["info", "--model", "{missing}"],
    "info: dir without config.json": ["info", "--model", "{no_config}"],
    "info: config.json not JSON": ["info", "--model", "{bad_json}"],
    "info: unsupported config value": ["info", "--model", "{unsupported}"],
    "info: unknown preset": ["info", "--preset", "7b"],
    "info: no model": ["info"],
    "info: two models": ["info", "--preset", "tiny", "--model", "{tiny}"],
    "info: bad flag": ["info", "--preset", "tiny", "--bogus"],
    "generate: missing dir": ["generate", "--model", "{missing}", *_IDS],
    "generate: missing artifact": ["generate", "{missing}", *_IDS],
    "generate: dir without config.json": ["generate", "--model", "{no_config}", *_IDS],
    "generate: artifact of neither kind": ["generate", "{no_config}", *_IDS],
    "generate: compiled artifact": ["generate", "{compiled}", *_IDS],
    "generate: artifact and preset": ["generate", "{tiny}", "--preset", "tiny", *_IDS],
    "generate: no weights": ["generate", "--model", "{no_weights}", *_IDS],
    "generate: corrupt weights": ["generate", "--model", "{corrupt}", *_IDS],
    "generate: no model": ["generate", *_IDS],
    "generate: no prompt": [*_GEN],
    "generate: prompt and ids": [*_GEN, "--prompt", "x", *_IDS],
    "generate: --prompt on a preset": [*_GEN, "--prompt", "Hello"],
    "generate: --prompt without tokenizer": ["generate", "--model", "{tiny}", "--prompt", "Hello"],
    "generate: id out of range": [*_GEN, "--prompt-ids", "1,2,1024"],
    "generate: negative id": [*_GEN, "--prompt-ids=-1,2"],
    "generate: ids not integers": [*_GEN, "--prompt-ids", "1,two"],
    "generate: empty ids": [*_GEN, "--prompt-ids", ""],
    "generate: top-p above 1": [*_GEN, *_IDS, "--top-p", "1.5"],
    "generate: top-p zero": [*_GEN, *_IDS, "--top-p", "0"],
    "generate: temperature zero": [*_GEN, *_IDS, "--temperature", "0"],
    "generate: top-k zero": [*_GEN, *_IDS, "--top-k", "0"],
    "generate: negative max-new-tokens": [*_GEN, *_IDS, "--max-new-tokens", "-1"],
    "generate: bad flag": [*_GEN, *_IDS, "--beam-width", "4"],
}


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> dict[str, str]:
    """Paths for the {placeholders} of MISTAKES."""
    root = tmp_path_factory.mktemp("broken")
    good_config = (tiny_dir / "config.json").read_text()
    dirs = {
        name: root / name
        for name in ("no_config", "bad_json", "unsupported", "no_weights", "corrupt", "compiled")
    }
    for d in dirs.values():
        d.mkdir()
    (dirs["bad_json"] / "config.json").write_text("{not json")
    (dirs["unsupported"] / "config.json").write_text(
        json.dumps({**json.loads(good_config), "use_short_conv": True})
    )
    (dirs["no_weights"] / "config.json").write_text(good_config)
    (dirs["corrupt"] / "config.json").write_text(good_config)
    (dirs["corrupt"] / "model.safetensors").write_bytes(b"\x00" * 64)
    (dirs["compiled"] / "manifest.json").write_text("{}")
    return {
        "tiny": str(tiny_dir),
        "missing": str(root / "does-not-exist"),
        **{k: str(v) for k, v in dirs.items()},
    }


def mistake(name: str, paths: dict[str, str]) -> list[str]:
    return [arg.format(**paths) for arg in MISTAKES[name]]


@pytest.mark.parametrize("name", list(MISTAKES))
def test_user_mistake_is_one_line_and_exit_2(
    name: str, broken: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = run_cli(mistake(name, broken), capsys)
    assert_user_error(rc, out, err)


@pytest.mark.parametrize(
    "name",
    ["generate: missing dir", "generate: corrupt weights", "generate: top-p above 1", "info: unknown preset"],
)
def test_user_mistake_in_a_real_process(name: str, broken: dict[str, str]) -> None:
    proc = run_process(mistake(name, broken))
    assert_user_error(proc.returncode, proc.stdout, proc.stderr)


def test_messages_name_the_problem(broken: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """Spot checks that the one line says what is wrong (key, id, path, what to do instead)."""
    expect = {
        "info: unsupported config value": "use_short_conv",
        "generate: id out of range": "1024",
        "generate: --prompt on a preset": "--prompt-ids",
        "generate: --prompt without tokenizer": "--prompt-ids",
        "generate: compiled artifact": "not an mmfc artifact manifest",
        "info: missing dir": "does-not-exist",
        "generate: top-p above 1": "--top-p",
    }
    for name, needle in expect.items():
        rc, out, err = run_cli(mistake(name, broken), capsys)
        assert needle in err, (name, err)


def test_no_subcommand_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_cli([], capsys)
    assert rc == 2
    assert "usage" in out


def test_ci_script_is_executable_and_runs_make_test() -> None:
    script = Path(__file__).resolve().parents[2] / ".ci" / "run"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert "set -euo pipefail" in text and "make test" in text


def test_generate_with_a_real_tokenizer_file(
    tiny: HGRNBitForCausalLM, tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The text path end to end through ``tokenizer.json`` (the optional ``tokenizers`` package)."""
    tokenizers = pytest.importorskip("tokenizers")
    vocab = {f"w{i}": i for i in range(tiny.config.vocab_size)}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="w0"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    directory = tmp_path / "with-tokenizer"
    directory.mkdir()
    for f in tiny_dir.iterdir():
        (directory / f.name).write_bytes(f.read_bytes())
    tok.save(str(directory / "tokenizer.json"))
    rc, out, err = run_cli(
        ["generate", str(directory), "--prompt", "w1 w17 w230", "--max-new-tokens", "6", "--json"], capsys
    )
    assert rc == 0, err
    result = json.loads(out)
    assert result["prompt_ids"] == [1, 17, 230]
    assert result["new_ids"] == greedy_reference(tiny, [1, 17, 230], 6)
    assert result["text"] == tok.decode(result["ids"])
    rc, out, err = run_cli(["info", "--model", str(directory), "--json"], capsys)
    assert json.loads(out)["source"]["tokenizer"] is True
