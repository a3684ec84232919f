"""Fuzzing ``mmfc opt`` with mutated IR: it always ends, quickly, with exit 0 or a one-line diagnostic.

Seeds are a few valid modules (func/arith/tensor/linalg) plus every ``tests/filecheck/dialects/*.mlir``
file present (the ternary dialect's tests). Each example applies 1-4 random mutations -- delete,
duplicate or swap characters, tokens or lines; insert punctuation that confuses a lexer (``"``,
``<``, ``{``, ``%``, ``@``, ...); truncate -- and runs ``mmfc opt`` on the result (in-process, and a
handful through the installed script). Properties:

* the exit code is 0 or 2 and nothing prints a traceback;
* exit 2 comes with exactly one ``FILE:LINE:COL: message`` line on stderr, the line within the input;
* exit 0 prints IR that ``mmfc opt`` reads back to the same text (a print/parse fixed point);
* every run ends within a bound (the parse time limit is set to 2 s here).
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import textwrap
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from mmfc.cli import main

REPO = Path(__file__).resolve().parents[2]
PARSE_TIMEOUT_S = 2.0
#: a run must end within this (the parse limit plus verify/print of a small module on a slow machine)
RUN_BOUND_S = PARSE_TIMEOUT_S + 8.0

BUILTIN_SEEDS = {
    "func-arith": textwrap.dedent(
        """\
        func.func @f(%a: i32, %b: i32) -> i32 {
          %c = arith.constant 3 : i32
          %0 = arith.addi %a, %b : i32
          %1 = arith.muli %0, %c : i32
          %2 = arith.cmpi slt, %1, %a : i32
          %3 = arith.select %2, %1, %a : i32
          func.return %3 : i32
        }
        """
    ),
    "tensor": textwrap.dedent(
        """\
        func.func @g(%x: tensor<4x8xf32>, %i: index) -> (tensor<4x8xf32>, f32) {
          %e = tensor.empty() : tensor<4x8xf32>
          %y = arith.addf %x, %x : tensor<4x8xf32>
          %c0 = arith.constant 0 : index
          %v = tensor.extract %y[%c0, %i] : tensor<4x8xf32>
          %cst = arith.constant dense<1.500000e+00> : tensor<4x8xf32>
          %z = arith.mulf %y, %cst : tensor<4x8xf32>
          func.return %z, %v : tensor<4x8xf32>, f32
        }
        """
    ),
    "calls-and-attrs": textwrap.dedent(
        """\
        builtin.module attributes {mmfc.weights = "w.safetensors", test.flag} {
          func.func private @ext(f32) -> f32
          func.func @h(%a: f32) -> f32 attributes {note = "a \\"quoted\\" string"} {
            %0 = func.call @ext(%a) : (f32) -> f32
            %1 = "arith.negf"(%0) <{fastmath = #arith.fastmath<none>}> : (f32) -> f32
            func.return %1 : f32
          }
        }
        """
    ),
    "linalg": textwrap.dedent(
        """\
        func.func @l(%a: tensor<8xf32>, %b: tensor<8xf32>) -> tensor<8xf32> {
          %out = tensor.empty() : tensor<8xf32>
          %r = linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>,
              affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]}
              ins(%a, %b : tensor<8xf32>, tensor<8xf32>) outs(%out : tensor<8xf32>) {
          ^bb0(%x: f32, %y: f32, %o: f32):
            %s = arith.addf %x, %y : f32
            linalg.yield %s : f32
          } -> tensor<8xf32>
          func.return %r : tensor<8xf32>
        }
        """
    ),
}


@dataclass(frozen=True)
class Seed:
    name: str
    text: str
    valid: bool  # the unmutated text must exit 0
    split: bool  # run with --split-input-file (the file has "// -----" chunks)


def _discovered_seeds() -> list[Seed]:
    """The filecheck tests of mmfc's dialects; a test of error messages is a seed but not 'valid'."""
    seeds = []
    for path in sorted((REPO / "tests" / "filecheck" / "dialects").glob("*.mlir")):
        text = path.read_text()
        run_lines = " ".join(re.findall(r"//\s*RUN:(.*)", text))
        expects_errors = re.search(r"verify-diagnostics|parsing-diagnostics|(^|\|)\s*not\s", run_lines)
        seeds.append(Seed(path.name, text, valid=not expects_errors, split="// -----" in text))
    return seeds


SEEDS = [Seed(name, text, True, False) for name, text in BUILTIN_SEEDS.items()] + _discovered_seeds()

PUNCTUATION = list('"<>{}()[]%@^#!:,=-.?*x0')
TOKEN = re.compile(r"\s+|\w+|[^\w\s]")


def _argv(seed: Seed, extra: list[str] | None = None) -> list[str]:
    argv = ["opt", "-", "--parse-timeout", str(PARSE_TIMEOUT_S)]
    return argv + (["--split-input-file"] if seed.split else []) + (extra or [])


def run_in_process(argv: list[str], stdin: str) -> tuple[int, str, str, float]:
    """``(exit code, stdout, stderr, seconds)`` of ``mmfc argv`` in this process, ``stdin`` as input."""
    out, err = io.StringIO(), io.StringIO()
    saved_stdin = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8", "surrogatepass")))
    start = time.monotonic()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                rc = main(argv)
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdin = saved_stdin
    return rc, out.getvalue(), err.getvalue(), time.monotonic() - start


# ---------------------------------------------------------------------------------------- mutations


KINDS = ["char", "token", "line", "insert", "truncate"]
ACTIONS = ["delete", "duplicate", "swap"]
#: one mutation: (kind, action, i, j); i and j pick places modulo the text's length when applied
Mutation = tuple[str, str, int, int]


def mutations(seeds: list[Seed]) -> st.SearchStrategy[tuple[int, list[Mutation]]]:
    """A seed's index and 1-4 mutations, drawn as plain values (no text): a failing example is a short
    line, and the mutated text is built by :func:`mutated` inside the test."""
    one = st.tuples(st.sampled_from(KINDS), st.sampled_from(ACTIONS), st.integers(0, 2**16), st.integers(0, 2**16))
    return st.tuples(st.integers(0, len(seeds) - 1), st.lists(one, min_size=1, max_size=4))


def _splice(parts: list[str], action: str, i: int, j: int) -> list[str]:
    """Delete, duplicate or swap one element of ``parts`` (characters, tokens or lines)."""
    if not parts:
        return parts
    i %= len(parts)
    if action == "delete":
        return parts[:i] + parts[i + 1 :]
    if action == "duplicate":
        return parts[: i + 1] + parts[i:]
    j %= len(parts)
    parts = list(parts)
    parts[i], parts[j] = parts[j], parts[i]
    return parts


def mutated(seeds: list[Seed], case: tuple[int, list[Mutation]]) -> tuple[Seed, str]:
    """The seed ``case`` names and its text after the mutations."""
    index, changes = case
    seed = seeds[index]
    text = seed.text
    for kind, action, i, j in changes:
        if kind == "char":
            text = "".join(_splice(list(text), action, i, j))
        elif kind == "token":
            text = "".join(_splice(TOKEN.findall(text), action, i, j))
        elif kind == "line":
            text = "".join(_splice(text.splitlines(keepends=True), action, i, j))
        elif kind == "insert":
            at = i % (len(text) + 1)
            text = text[:at] + PUNCTUATION[j % len(PUNCTUATION)] + text[at:]
        else:
            text = text[: i % (len(text) + 1)]
    return seed, text


def check_outcome(seed: Seed, text: str, rc: int, out: str, err: str, seconds: float) -> None:
    assert "Traceback" not in out + err, err
    assert rc in (0, 2), (rc, err)
    assert seconds < RUN_BOUND_S, f"took {seconds:.1f} s"
    if rc == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        match = re.match(r"mmfc: error: <stdin>:(\d+):(\d+): \S", lines[0])
        assert match is not None, lines[0]
        assert 1 <= int(match.group(1)) <= text.count("\n") + 1, lines[0]
        assert out == ""
    else:
        assert err == ""
        if not seed.split:  # a split file's output is several modules; each is checked as its own seed
            rc2, again, err2, _ = run_in_process(_argv(seed), out)
            assert (rc2, err2) == (0, ""), err2
            assert again == out, "printed IR does not read back to the same text"


# ------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("seed", SEEDS, ids=[s.name for s in SEEDS])
def test_unmutated_seeds(seed: Seed) -> None:
    rc, out, err, seconds = run_in_process(_argv(seed), seed.text)
    check_outcome(seed, seed.text, rc, out, err, seconds)
    if seed.valid:
        assert rc == 0, err


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutations(SEEDS))
def test_mutated_inputs_in_process(case: tuple[int, list[Mutation]]) -> None:
    seed, text = mutated(SEEDS, case)
    note(f"seed {seed.name}, mutated text:\n{text}")
    rc, out, err, seconds = run_in_process(_argv(seed), text)
    check_outcome(seed, text, rc, out, err, seconds)


def _mmfc_command() -> list[str]:
    script = Path(sys.executable).parent / "mmfc"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mmfc"]


@settings(max_examples=5, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutations(SEEDS))
def test_mutated_inputs_through_the_script(case: tuple[int, list[Mutation]]) -> None:
    seed, text = mutated(SEEDS, case)
    note(f"seed {seed.name}, mutated text:\n{text}")
    start = time.monotonic()
    proc = subprocess.run(
        _mmfc_command() + _argv(seed), input=text, capture_output=True, text=True, timeout=120, check=False
    )
    seconds = time.monotonic() - start
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.returncode in (0, 2), proc.stderr
    assert seconds < RUN_BOUND_S + 20, f"took {seconds:.1f} s"  # plus interpreter and xDSL start-up
    if proc.returncode == 2:
        assert re.fullmatch(r"mmfc: error: <stdin>:\d+:\d+: \S.*\n", proc.stderr), proc.stderr


def test_the_fuzzer_finds_both_outcomes() -> None:
    """Guard against a fuzzer that only ever makes valid (or only invalid) input: mutations of the
    built-in seeds include some that ``mmfc opt`` rejects and some, changed, that it accepts."""
    from hypothesis import Phase, find

    builtin = SEEDS[: len(BUILTIN_SEEDS)]
    found_is_enough = settings(phases=[Phase.generate], max_examples=1000)  # an example, not the smallest

    def exit_code(case: tuple[int, list[Mutation]]) -> int:
        seed, text = mutated(builtin, case)
        return run_in_process(_argv(seed), text)[0]

    def changed(case: tuple[int, list[Mutation]]) -> bool:
        seed, text = mutated(builtin, case)
        return text != seed.text

    rejected = find(mutations(builtin), lambda case: exit_code(case) == 2, settings=found_is_enough)
    assert exit_code(rejected) == 2
    accepted = find(
        mutations(builtin), lambda case: changed(case) and exit_code(case) == 0, settings=found_is_enough
    )
    assert exit_code(accepted) == 0 and changed(accepted)
