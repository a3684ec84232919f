"""``mmfc opt``: parse/verify/print round trips, -o, stdin, pipelines, and ``FILE:LINE:COL`` diagnostics.

Most tests call ``mmfc.cli.main`` in-process; the ones about what a user really sees (no traceback,
bounded time on the input that hangs xDSL 0.75) also run the installed ``mmfc`` script.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from xdsl.context import Context
from xdsl.dialects.builtin import IntegerAttr, ModuleOp
from xdsl.passes import ModulePass

from mmfc.cli import main

FUNC_ARITH = textwrap.dedent(
    """\
    func.func @f(%a: i32, %b: i32) -> i32 {
      %c = arith.constant 3 : i32
      %0 = arith.addi %a, %b : i32
      %1 = arith.addi %a, %b : i32
      %2 = arith.muli %0, %1 : i32
      %3 = arith.subi %2, %c : i32
      func.return %3 : i32
    }
    """
)

TENSOR_FUNC = textwrap.dedent(
    """\
    func.func @g(%x: tensor<4xf32>) -> tensor<4xf32> {
      %e = tensor.empty() : tensor<4xf32>
      %y = arith.addf %x, %x : tensor<4xf32>
      func.return %y : tensor<4xf32>
    }
    """
)

#: xDSL 0.75 never returns from parsing this (an unclosed string literal; see dialects/source.py)
HANG_INPUT = textwrap.dedent(
    """\
    func.func @f(%a: tensor<4xf32>, %w: "tensor<8xi8>) -> tensor<4xi32> {
      func.return
    }
    """
)

#: parses (the generic form does not unify operand types) but fails arith.addi's verifier on line 3
VERIFY_FAILURE = textwrap.dedent(
    """\
    func.func @f(%a: i32, %b: i64) -> i32 {
      %c = arith.constant 1 : i32
      %0 = "arith.addi"(%a, %b) : (i32, i64) -> i32
      func.return %0 : i32
    }
    """
)

DIAGNOSTIC = re.compile(r"^mmfc: error: (?P<file>.+):(?P<line>\d+):(?P<col>\d+): (?P<message>.+)$")


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``(exit code, stdout, stderr)`` of ``mmfc argv`` run in-process."""
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse usage errors
        rc = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return rc, out, err


def mmfc_command() -> list[str]:
    script = Path(sys.executable).parent / "mmfc"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mmfc"]


def diagnostic(rc: int, out: str, err: str) -> dict[str, str]:
    """Assert the contract for bad IR (exit 2, one ``FILE:LINE:COL: message`` line, no traceback)."""
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in err + out
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    match = DIAGNOSTIC.match(lines[0])
    assert match is not None, lines[0]
    return match.groupdict()


def write(tmp_path: Path, text: str, name: str = "in.mlir") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def set_stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))


# ------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("text", [FUNC_ARITH, TENSOR_FUNC], ids=["func-arith", "tensor"])
def test_print_parse_print_is_a_fixed_point(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    rc, first, err = run_cli(["opt", str(write(tmp_path, text))], capsys)
    assert rc == 0 and err == ""
    assert first.startswith("builtin.module {")
    rc, second, err = run_cli(["opt", str(write(tmp_path, first, "again.mlir"))], capsys)
    assert rc == 0 and err == ""
    assert second == first
    # every operation of the input survives (no pipeline: nothing is folded away)
    for op in ("arith.addi", "arith.muli", "arith.subi", "arith.constant", "tensor.empty", "arith.addf"):
        assert text.count(op) == first.count(op)


def test_generic_form_round_trips_to_the_same_custom_form(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, custom, _ = run_cli(["opt", str(write(tmp_path, FUNC_ARITH))], capsys)
    rc_g, generic, _ = run_cli(["opt", str(write(tmp_path, FUNC_ARITH)), "--print-op-generic"], capsys)
    assert rc == rc_g == 0
    assert '"arith.addi"(' in generic and '"func.func"()' in generic and '"builtin.module"()' in generic
    assert "arith.addi %" not in generic
    rc, back, _ = run_cli(["opt", str(write(tmp_path, generic, "generic.mlir"))], capsys)
    assert rc == 0 and back == custom


def test_stdin_dash_and_no_file_read_stdin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rc, expected, _ = run_cli(["opt", str(write(tmp_path, FUNC_ARITH))], capsys)
    for argv in (["opt", "-"], ["opt"]):
        set_stdin(monkeypatch, FUNC_ARITH)
        rc, out, err = run_cli(argv, capsys)
        assert (rc, err) == (0, "") and out == expected


def test_stdin_errors_are_named_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    set_stdin(monkeypatch, VERIFY_FAILURE)
    d = diagnostic(*run_cli(["opt"], capsys))
    assert (d["file"], d["line"], d["col"]) == ("<stdin>", "3", "3")


def test_pipeline_runs_xdsl_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_cli(["opt", str(write(tmp_path, FUNC_ARITH)), "-p", "cse,canonicalize,dce"], capsys)
    assert rc == 0 and err == ""
    assert out.count("arith.addi") == 1  # cse merged the two identical additions
    assert "arith.muli %0, %0" in out


@dataclass(frozen=True)
class TagModule(ModulePass):
    """A test pass with an option: sets the module attribute ``test.tag = <times> : i64``."""

    name = "tag-module"
    times: int = 1

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        op.attributes["test.tag"] = IntegerAttr(self.times, 64)


def test_pipeline_options_are_passed_to_the_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mmfc import pipeline

    real = pipeline.available_passes
    monkeypatch.setattr(pipeline, "available_passes", lambda: {**real(), "tag-module": lambda: TagModule})
    path = str(write(tmp_path, FUNC_ARITH))
    rc, out, _ = run_cli(["opt", path, "-p", "cse,tag-module{times=7}"], capsys)
    assert rc == 0 and "test.tag = 7 : i64" in out
    rc, out, err = run_cli(["opt", path, "-p", "tag-module{no_such_option=1}"], capsys)
    assert rc == 2 and out == "" and "Traceback" not in err
    assert err.startswith("mmfc: error: pass 'tag-module':") and "no_such_option" in err


def test_empty_input_is_an_empty_module(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_cli(["opt", str(write(tmp_path, "// only a comment\n\n"))], capsys)
    assert (rc, err) == (0, "") and out.startswith("builtin.module {") and "func" not in out


# ------------------------------------------------------------------------------------------- -o


def test_output_file_gets_what_stdout_would(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write(tmp_path, FUNC_ARITH)
    rc, expected, _ = run_cli(["opt", str(src)], capsys)
    dst = tmp_path / "out.mlir"
    rc, out, err = run_cli(["opt", str(src), "-o", str(dst)], capsys)
    assert (rc, out, err) == (0, "", "")
    assert dst.read_text() == expected


def test_output_file_is_untouched_on_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dst = tmp_path / "out.mlir"
    dst.write_text("previous contents\n")
    for bad in (VERIFY_FAILURE, HANG_INPUT, "func.func @f( {"):
        diagnostic(*run_cli(["opt", str(write(tmp_path, bad)), "-o", str(dst)], capsys))
        assert dst.read_text() == "previous contents\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mlir", "out.mlir"]  # no temp file left


def test_output_into_missing_folder_is_a_user_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = run_cli(
        ["opt", str(write(tmp_path, FUNC_ARITH)), "-o", str(tmp_path / "no" / "o.mlir")], capsys
    )
    assert rc == 2 and out == "" and err.startswith("mmfc: error:") and "does not exist" in err


def test_output_in_another_folder_rewrites_the_weight_store_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    src = write(tmp_path / "a", 'builtin.module attributes {mmfc.weights = "w.safetensors"} {\n}\n')
    rc, _, err = run_cli(["opt", str(src), "-o", str(tmp_path / "b" / "out.mlir")], capsys)
    assert (rc, err) == (0, "")
    assert 'mmfc.weights = "../a/w.safetensors"' in (tmp_path / "b" / "out.mlir").read_text()
    rc, _, _ = run_cli(["opt", str(src), "-o", str(tmp_path / "a" / "same.mlir")], capsys)
    assert 'mmfc.weights = "w.safetensors"' in (tmp_path / "a" / "same.mlir").read_text()


# --------------------------------------------------------------------------------- diagnostics


def test_syntax_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "func.func @f() {\n  %0 = arith.constant 1 : i32 i32\n  func.return\n}\n")
    d = diagnostic(*run_cli(["opt", str(path)], capsys))
    assert (d["file"], d["line"]) == (str(path), "2")


def test_unknown_op_points_at_its_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "func.func @f() {\n  %0 = mystery.op : i32\n  func.return\n}\n")
    d = diagnostic(*run_cli(["opt", str(path)], capsys))
    assert (d["line"], d["col"]) == ("2", "8")
    assert "unknown operation 'mystery.op'" in d["message"]


def test_verifier_failure_is_reported_at_the_ops_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, VERIFY_FAILURE)
    d = diagnostic(*run_cli(["opt", str(path)], capsys))
    assert (d["file"], d["line"], d["col"]) == (str(path), "3", "3")
    assert d["message"].startswith("'arith.addi' op") and "i64" in d["message"]


def test_verifier_failure_of_a_terminator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "func.func @f(%a: i32) -> i64 {\n  func.return %a : i32\n}\n"
    d = diagnostic(*run_cli(["opt", str(write(tmp_path, text))], capsys))
    assert (d["line"], d["col"]) == ("2", "3") and "'func.return' op" in d["message"]


def test_unknown_pass_lists_close_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_cli(["opt", str(write(tmp_path, FUNC_ARITH)), "-p", "cse,canonicalise"], capsys)
    assert rc == 2 and out == "" and "Traceback" not in err
    assert (
        err.strip()
        == "mmfc: error: unknown pass 'canonicalise' (did you mean canonicalize, canonicalize-dmp?)"
    )


def test_pipeline_syntax_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_cli(["opt", str(write(tmp_path, FUNC_ARITH)), "-p", "cse{"], capsys)
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "invalid pass pipeline 'cse{' at column 5" in err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_cli(["opt", str(tmp_path / "absent.mlir")], capsys)
    assert rc == 2 and out == "" and "Traceback" not in err
    assert err.strip() == f"mmfc: error: {tmp_path / 'absent.mlir'}: no such file"


def test_invalid_utf8_is_a_positioned_diagnostic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.mlir"
    path.write_bytes(b"func.func @f() {\n  \xff\n}\n")
    d = diagnostic(*run_cli(["opt", str(path)], capsys))
    assert (d["line"], d["col"]) == ("2", "3") and "UTF-8" in d["message"]


def test_split_input_file_keeps_whole_file_line_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = FUNC_ARITH + "// -----\n" + VERIFY_FAILURE
    path = write(tmp_path, text)
    d = diagnostic(*run_cli(["opt", str(path), "--split-input-file"], capsys))
    assert d["line"] == str(FUNC_ARITH.count("\n") + 1 + 3)
    # --verify-diagnostics: the failing chunk prints its diagnostic, the others their IR; exit 0
    rc, out, err = run_cli(["opt", str(path), "--split-input-file", "--verify-diagnostics"], capsys)
    assert (rc, err) == (0, "")
    first, second = out.split("// -----\n")
    assert "arith.muli" in first
    assert second.startswith(f"{path}:{FUNC_ARITH.count(chr(10)) + 4}:3: 'arith.addi' op")


def test_parsing_diagnostics_prints_parse_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "func.func @f( {\n")
    rc, out, err = run_cli(["opt", str(path), "--parsing-diagnostics"], capsys)
    assert (rc, err) == (0, "") and out.startswith(f"{path}:1:")


def test_pass_diagnostic_is_positioned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass that raises OpError is reported at the op's position (what mmfc's own checkers will use)."""
    from mmfc import pipeline
    from mmfc.dialects.source import OpError

    @dataclass(frozen=True)
    class RejectMuli(ModulePass):
        name = "reject-muli"

        def apply(self, ctx: Context, op: ModuleOp) -> None:
            for inner in op.walk():
                if inner.name == "arith.muli":
                    raise OpError(inner, "multiplication is not allowed here")

    real = pipeline.available_passes
    monkeypatch.setattr(pipeline, "available_passes", lambda: {**real(), "reject-muli": lambda: RejectMuli})
    d = diagnostic(*run_cli(["opt", str(write(tmp_path, FUNC_ARITH)), "-p", "cse,reject-muli"], capsys))
    assert (d["line"], d["col"]) == ("5", "3")
    assert d["message"] == "pass 'reject-muli': 'arith.muli' op multiplication is not allowed here"


def test_hang_input_ends_with_a_diagnostic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Regression: xDSL 0.75's string-literal regex backtracks forever on this input."""
    path = write(tmp_path, HANG_INPUT)
    start = time.monotonic()
    d = diagnostic(*run_cli(["opt", str(path)], capsys))
    assert time.monotonic() - start < 5
    assert (d["line"], d["col"]) == ("1", "37")  # the opening quote
    assert "string literal is not closed" in d["message"]


def test_hang_input_in_a_subprocess(tmp_path: Path) -> None:
    path = write(tmp_path, HANG_INPUT)
    proc = subprocess.run(
        mmfc_command() + ["opt", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith(f"mmfc: error: {path}:1:37: ")


def test_time_limit_stops_a_runaway_parse(tmp_path: Path) -> None:
    """With xDSL's own (exponential) string regex put back, the time limit ends the parse.

    Runs in a subprocess so that a broken guard fails this test (timeout) instead of hanging pytest.
    """
    path = write(tmp_path, HANG_INPUT)
    script = textwrap.dedent(
        f"""
        from xdsl.utils.mlir_lexer import MLIRLexer
        from mmfc.dialects import source
        source._SafeLexer._unescaped_characters_regex = MLIRLexer._unescaped_characters_regex
        from mmfc.cli import main
        raise SystemExit(main(["opt", {str(path)!r}, "--parse-timeout", "0.5"]))
        """
    )
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert re.fullmatch(
        rf"mmfc: error: {re.escape(str(path))}:1:37: parsing exceeded the time limit of 0.5 s .*\n",
        proc.stderr,
    ), proc.stderr
    assert elapsed < 30  # 0.5 s of parsing plus interpreter start-up


def test_help_lists_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_cli(["opt", "--help"], capsys)
    assert rc == 0
    for flag in (
        "-p",
        "-o",
        "--print-op-generic",
        "--verify-diagnostics",
        "--split-input-file",
        "--parse-timeout",
    ):
        assert flag in out


def test_no_traceback_from_the_installed_script(tmp_path: Path) -> None:
    for text in (VERIFY_FAILURE, "func.func @f( {\n", "%0 = mystery.op : i32\n"):
        proc = subprocess.run(
            mmfc_command() + ["opt", str(write(tmp_path, text))],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert DIAGNOSTIC.match(proc.stderr.strip()), proc.stderr


def test_opt_does_not_import_torch(tmp_path: Path) -> None:
    path = write(tmp_path, FUNC_ARITH)
    script = textwrap.dedent(
        f"""
        import sys
        from mmfc.cli import main
        rc = main(["opt", {str(path)!r}, "-p", "cse"])
        assert "torch" not in sys.modules, "torch was imported"
        raise SystemExit(rc)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
