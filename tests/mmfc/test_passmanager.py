"""mmfc/passmanager.py through ``mmfc opt``: --print-ir-after-all / --print-ir-after, --dump-dir (files,
numbering, weight-store paths), --timing, verification after each pass, internal errors (exit 3), and
the named pipelines -O0 / -O2.

Test passes are registered by monkeypatching ``mmfc.pipeline.available_passes`` (as test_opt.py does).
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from xdsl.context import Context
from xdsl.dialects import func
from xdsl.dialects.builtin import IntegerAttr, ModuleOp
from xdsl.passes import ModulePass

from mmfc import pipeline
from mmfc.cli import main
from mmfc.dialects import weights as W
from mmfc.dialects.context import mmfc_context
from mmfc.dialects.diagnostics import UserError
from mmfc.dialects.source import SourceError, parse_module
from mmfc.passmanager import EXIT_INTERNAL_ERROR, PassInternalError, PassManager

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
RETURN_LINE = 7  # the line of func.return in FUNC_ARITH

DIAGNOSTIC = re.compile(r"^mmfc: error: (?P<file>.+):(?P<line>\d+):(?P<col>\d+): (?P<message>.+)$")
DUMP_HEADER = re.compile(r"^// -----// IR Dump After (\S+) //----- //\n", re.MULTILINE)


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse usage errors
        rc = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return rc, out, err


def write(folder: Path, text: str, name: str = "in.mlir") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------ test passes


@dataclass(frozen=True)
class BreakReturn(ModulePass):
    """Produces invalid IR: drops the operands of every func.return (the function still returns i32)."""

    name = "break-return"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for inner in op.walk():
            if isinstance(inner, func.ReturnOp):
                inner.operands = []


@dataclass(frozen=True)
class Crash(ModulePass):
    """A buggy pass: raises ZeroDivisionError."""

    name = "crash"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        _ = 1 // len(op.attributes)  # the module has no attributes: division by zero


@dataclass(frozen=True)
class Stamp(ModulePass):
    """Sets ``test.stamp = <value>`` on the module (visible in printed IR)."""

    name = "stamp"
    value: int = 1

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        op.attributes["test.stamp"] = IntegerAttr(self.value, 64)


@dataclass(frozen=True)
class AddTensor(ModulePass):
    """Writes weights the way a pass must: derive a store over the module's, put, bind."""

    name = "add-tensor"
    tensor: str = "new"
    value: float = 1.0

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        store = W.resolve_store(op).derive()
        store.put(self.tensor, np.full((2, 3), self.value, np.float32))
        W.bind(op, store)


TEST_PASSES = {p.name: p for p in (BreakReturn, Crash, Stamp, AddTensor)}


@pytest.fixture(autouse=True)
def test_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    real = pipeline.available_passes
    monkeypatch.setattr(
        pipeline,
        "available_passes",
        lambda: {**real(), **{name: (lambda cls=cls: cls) for name, cls in TEST_PASSES.items()}},
    )


# ------------------------------------------------------------------------------ printing the IR


def dumps_of(err: str) -> list[tuple[str, str]]:
    """``(pass name, IR)`` of each ``IR Dump After`` section on stderr."""
    parts = DUMP_HEADER.split(err)
    assert parts[0] == "", err  # nothing before the first dump
    return [(parts[i], parts[i + 1]) for i in range(1, len(parts), 2)]


def test_print_ir_after_all_prints_each_pass_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = str(write(tmp_path, FUNC_ARITH))
    pipe = "stamp{value=5},cse,stamp{value=6}"
    rc, out, err = run_cli(["opt", src, "-p", pipe, "--print-ir-after-all"], capsys)
    assert rc == 0
    dumps = dumps_of(err)
    assert [name for name, _ in dumps] == ["stamp", "cse", "stamp"]
    # each dump is the IR as it was after that pass
    assert "test.stamp = 5" in dumps[0][1] and dumps[0][1].count("arith.addi") == 2
    assert "test.stamp = 5" in dumps[1][1] and dumps[1][1].count("arith.addi") == 1
    assert "test.stamp = 6" in dumps[2][1]
    assert dumps[2][1] == out  # the last dump is the output


def test_print_ir_after_selected_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = str(write(tmp_path, FUNC_ARITH))
    pipe = "stamp{value=1},cse,dce,stamp{value=2}"
    for flags in (["--print-ir-after", "stamp,dce"], ["--print-ir-after", "stamp", "--print-ir-after=dce"]):
        rc, _, err = run_cli(["opt", src, "-p", pipe, *flags], capsys)
        assert rc == 0
        assert [name for name, _ in dumps_of(err)] == ["stamp", "dce", "stamp"]  # every occurrence
    rc, _, err = run_cli(["opt", src, "-p", "cse", "--print-ir-after", "canonicalize"], capsys)
    assert rc == 2 and "Traceback" not in err
    assert err == "mmfc: error: --print-ir-after: 'canonicalize' not in the pipeline (its passes: cse)\n"


# ---------------------------------------------------------------------------------------- dumps


def test_dump_dir_numbering_and_contents(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = str(write(tmp_path, FUNC_ARITH))
    dump = tmp_path / "dumps"
    rc, out, _ = run_cli(["opt", src, "-p", "cse,stamp{value=3},dce", "--dump-dir", str(dump)], capsys)
    assert rc == 0
    names = sorted(p.name for p in dump.iterdir())
    assert names == ["00-input.mlir", "01-cse.mlir", "02-stamp.mlir", "03-dce.mlir"]
    # 00 is the input as read; each later file is what the pipeline up to that pass prints
    assert (dump / "00-input.mlir").read_text() == run_cli(["opt", src], capsys)[1]
    assert (dump / "01-cse.mlir").read_text() == run_cli(["opt", src, "-p", "cse"], capsys)[1]
    upto_stamp = run_cli(["opt", src, "-p", "cse,stamp{value=3}"], capsys)[1]
    assert (dump / "02-stamp.mlir").read_text() == upto_stamp
    assert (dump / "03-dce.mlir").read_text() == out


def test_dump_dir_numbers_keep_their_order_past_nine_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = str(write(tmp_path, FUNC_ARITH))
    rc, _, _ = run_cli(["opt", src, "-p", ",".join(["cse"] * 11), "--dump-dir", str(tmp_path / "d")], capsys)
    assert rc == 0
    names = sorted(p.name for p in (tmp_path / "d").iterdir())
    assert names == ["00-input.mlir"] + [f"{i:02d}-cse.mlir" for i in range(1, 12)]


def test_dump_dir_per_chunk_with_split_input_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = str(write(tmp_path, FUNC_ARITH + "// -----\n" + FUNC_ARITH))
    argv = ["opt", src, "--split-input-file", "-p", "cse", "--dump-dir", str(tmp_path / "d")]
    rc, _, _ = run_cli(argv, capsys)
    assert rc == 0
    for chunk in ("chunk-00", "chunk-01"):
        assert sorted(p.name for p in (tmp_path / "d" / chunk).iterdir()) == ["00-input.mlir", "01-cse.mlir"]


def read_store(mlir: Path) -> W.WeightStore:
    """The store a ``.mlir`` file names, resolved from the file's own folder, as a later tool would."""
    module, _ = parse_module(mmfc_context(), mlir.read_text(), str(mlir))
    W.set_mlir_path(module, mlir)
    return W.resolve_store(module)


def test_dump_dir_weight_store_paths_are_valid_from_the_dump_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stores created in memory are written once into the dump folder; the final output is layered
    over the input's store, not over a dump."""
    (tmp_path / "a").mkdir()
    W.MemoryStore({"orig": np.arange(4, dtype=np.float32)}).save(tmp_path / "a" / "w.safetensors")
    src = write(tmp_path / "a", 'builtin.module attributes {mmfc.weights = "w.safetensors"} {\n}\n')
    dump, out = tmp_path / "dumps", tmp_path / "out" / "o.mlir"
    out.parent.mkdir()
    pipe = "cse,add-tensor{tensor=first},cse,add-tensor{tensor=second value=2.0},cse"
    rc, _, err = run_cli(["opt", str(src), "-p", pipe, "--dump-dir", str(dump), "-o", str(out)], capsys)
    assert (rc, err) == (0, "")
    files = sorted(p.name for p in dump.iterdir())
    assert files == [
        "00-input.mlir",
        "01-cse.mlir",
        "02-add-tensor.mlir",
        "02-add-tensor.weights.safetensors",
        "03-cse.mlir",
        "04-add-tensor.mlir",
        "04-add-tensor.weights.safetensors",
        "05-cse.mlir",
    ]  # one store file per pass that made one: the unchanged store is not written again
    attr = {
        name: W.get_store_attr(parse_module(mmfc_context(), (dump / name).read_text())[0])
        for name in files
        if name.endswith(".mlir")
    }
    assert attr["00-input.mlir"] == attr["01-cse.mlir"] == "../a/w.safetensors"
    assert attr["02-add-tensor.mlir"] == attr["03-cse.mlir"] == "02-add-tensor.weights.safetensors"
    assert attr["04-add-tensor.mlir"] == attr["05-cse.mlir"] == "04-add-tensor.weights.safetensors"
    # every dump's store resolves from the dump folder and holds what the IR had after that pass
    assert read_store(dump / "01-cse.mlir").names() == ["orig"]
    assert read_store(dump / "03-cse.mlir").names() == ["first", "orig"]
    second = read_store(dump / "05-cse.mlir")
    assert second.names() == ["first", "orig", "second"]
    np.testing.assert_array_equal(second.get("second"), np.full((2, 3), 2.0, np.float32))
    # the output: its own store beside it, layered directly over the input's store (not a dump)
    assert 'mmfc.weights = "o.weights.safetensors"' in out.read_text()
    final = read_store(out)
    assert final.names() == ["first", "orig", "second"]
    assert final.base is not None and final.base.path is not None
    assert final.base.path.resolve() == (tmp_path / "a" / "w.safetensors").resolve()


def test_dump_dir_that_is_a_file_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_text("")
    src = str(write(tmp_path, FUNC_ARITH))
    rc, out, err = run_cli(["opt", src, "-p", "cse", "--dump-dir", str(tmp_path / "f")], capsys)
    assert rc == 2 and out == "" and err.startswith("mmfc: error: --dump-dir") and "not a directory" in err


# --------------------------------------------------------------------------------------- timing


def test_timing_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = str(write(tmp_path, FUNC_ARITH))
    rc, out, err = run_cli(["opt", src, "-p", "cse,canonicalize,cse", "--timing"], capsys)
    assert rc == 0 and out.startswith("builtin.module")
    lines = err.strip().splitlines()
    assert lines[0].split() == ["step", "ms", "%"]
    rows = {}
    for line in lines[1:]:
        match = re.fullmatch(r"(.+?)\s+(\d+\.\d\d)\s+(\d+\.\d)", line)
        assert match is not None, line
        rows[match.group(1)] = (float(match.group(2)), float(match.group(3)))
    assert list(rows) == [
        "parse",
        "verify",
        "cse #1",
        "verify (after passes)",
        "canonicalize",
        "cse #2",
        "write weights",
        "print",
        "total",
    ]
    steps = [ms for step, (ms, _) in rows.items() if step != "total"]
    # each row and the total are printed rounded to 0.01 ms: they agree within half a unit per row
    assert rows["total"][0] == pytest.approx(sum(steps), abs=0.005 * (len(steps) + 1) + 1e-9)
    assert sum(share for step, (_, share) in rows.items() if step != "total") == pytest.approx(100, abs=0.5)


# ------------------------------------------------------------------------------ verify and errors


def test_verify_each_names_the_pass_that_broke_the_ir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = str(write(tmp_path, FUNC_ARITH))
    rc, out, err = run_cli(["opt", src, "-p", "cse,break-return,dce"], capsys)
    assert rc == 2 and out == "" and "Traceback" not in err
    match = DIAGNOSTIC.match(err.strip())
    assert match is not None and len(err.strip().splitlines()) == 1, err
    assert (match["file"], match["line"], match["col"]) == (src, str(RETURN_LINE), "3")
    assert match["message"].startswith("after pass 'break-return': 'func.return' op")


def test_no_verify_each_still_verifies_the_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = str(write(tmp_path, FUNC_ARITH))
    rc, out, err = run_cli(["opt", src, "-p", "break-return,stamp", "--no-verify-each"], capsys)
    assert rc == 2 and out == ""
    match = DIAGNOSTIC.match(err.strip())
    assert match is not None and match["message"].startswith("after the pipeline: 'func.return' op"), err


def test_a_crashing_pass_is_an_internal_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    src = str(write(tmp_path, FUNC_ARITH))
    dst = tmp_path / "out.mlir"
    monkeypatch.delenv("MMFC_DEBUG", raising=False)
    rc, out, err = run_cli(["opt", src, "-p", "cse,crash", "-o", str(dst)], capsys)
    assert (rc, out) == (EXIT_INTERNAL_ERROR, "") and rc == 3
    assert err == (
        "mmfc: internal error in pass 'crash': ZeroDivisionError: integer division or modulo by zero: "
        "please report\n"
    )
    assert not dst.exists()
    monkeypatch.setenv("MMFC_DEBUG", "1")
    rc, _, err = run_cli(["opt", src, "-p", "crash"], capsys)
    assert rc == 3
    assert err.startswith("Traceback") and "ZeroDivisionError" in err and "in apply" in err
    assert err.splitlines()[-1].startswith("mmfc: internal error in pass 'crash': ZeroDivisionError")


def test_a_user_error_inside_a_pass_names_the_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pass that needs the weight store of a module whose store is missing: exit 2, not 3."""
    src = write(tmp_path, 'builtin.module attributes {mmfc.weights = "missing.safetensors"} {\n}\n')
    rc, _, err = run_cli(["opt", str(src), "-p", "add-tensor"], capsys)
    assert rc == 2 and "Traceback" not in err
    assert err.startswith("mmfc: error: pass 'add-tensor': ") and "weight store not found" in err


# ------------------------------------------------------------------------------ the Python API


def test_pass_manager_without_source_text() -> None:
    """A module built in Python (no text): diagnostics carry the message without a position."""
    module, _ = parse_module(mmfc_context(), FUNC_ARITH)
    manager = PassManager([Stamp(value=2), BreakReturn()])
    with pytest.raises(UserError) as info:
        manager.run(mmfc_context(), module)
    assert not isinstance(info.value, SourceError)
    assert str(info.value).startswith("after pass 'break-return': 'func.return' op")
    assert [step for step, _ in manager.timings] == ["stamp", "verify (after passes)", "break-return"]
    with pytest.raises(PassInternalError, match="internal error in pass 'crash'"):
        PassManager([Crash()]).run(mmfc_context(), parse_module(mmfc_context(), FUNC_ARITH)[0])


def test_pass_manager_takes_a_pipeline_string() -> None:
    manager = PassManager("stamp{value=4},cse")
    assert [(p.name, getattr(p, "value", None)) for p in manager.passes] == [("stamp", 4), ("cse", None)]
    with pytest.raises(UserError, match="unknown pass 'nope'"):
        PassManager("nope")


# ---------------------------------------------------------------------------- named pipelines


O2_NAMES = [
    "fold-weight-quant",
    "pack-weights",
    "fuse-bitlinear",
    "fuse-recurrence",
    "fuse-glu",
    "canonicalize",
    "cse",
    "dce",
    "check-matmul-free",
]


def test_named_pipelines_are_what_the_docs_say() -> None:
    assert pipeline.NAMED_PIPELINES["O0"] == ""
    o2 = pipeline.NAMED_PIPELINES["O2"]
    assert [p.split("{")[0] for p in o2.split(",")] == O2_NAMES
    assert "pack-weights{format=2bit}" in o2


def test_every_pass_of_o2_is_registered() -> None:
    """A typo in a named pipeline, or an entry point missing from pyproject.toml, fails here."""
    assert set(O2_NAMES) <= set(pipeline.pass_origins())


def recording_registry(applied: list[tuple[str, dict[str, object]]]) -> dict[str, pipeline.PassFactory]:
    """Stand-ins for O2's passes that record their name and options when applied."""
    registry: dict[str, pipeline.PassFactory] = {}
    for name in O2_NAMES:
        fields = {"format": "2bit"} if name == "pack-weights" else {}

        def make(name: str = name, fields: dict[str, object] = fields) -> type[ModulePass]:
            def apply(self: ModulePass, ctx: Context, op: ModuleOp) -> None:
                applied.append((self.name, {k: getattr(self, k) for k in fields}))

            namespace = {"name": name, "apply": apply, "__annotations__": {k: str for k in fields}, **fields}
            return dataclass(frozen=True)(type(f"Fake_{name}", (ModulePass,), namespace))

        registry[name] = make
    return registry


def test_o2_runs_its_passes_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    applied: list[tuple[str, dict[str, object]]] = []
    monkeypatch.setattr(pipeline, "available_passes", lambda: recording_registry(applied))
    rc, _, err = run_cli(["opt", str(write(tmp_path, FUNC_ARITH)), "-O2"], capsys)
    assert (rc, err) == (0, "")
    assert [name for name, _ in applied] == O2_NAMES
    assert dict(applied)["pack-weights"] == {"format": "2bit"}


def test_o0_runs_no_pass_and_bad_levels_are_user_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = str(write(tmp_path, FUNC_ARITH))
    plain = run_cli(["opt", src], capsys)
    # nothing runs, so nothing is printed after a pass
    assert run_cli(["opt", src, "-O0", "--print-ir-after-all"], capsys) == plain
    rc, out, err = run_cli(["opt", src, "-O3"], capsys)
    assert (rc, out) == (2, "") and err == "mmfc: error: unknown optimization level '-O3' (known: -O0, -O2)\n"
    rc, _, err = run_cli(["opt", src, "-O2", "-p", "cse"], capsys)
    assert rc == 2 and "not allowed with argument" in err and "Traceback" not in err


def test_help_lists_the_pass_manager_flags(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_cli(["opt", "--help"], capsys)
    assert rc == 0
    flags = ("-O LEVEL", "--print-ir-after-all", "--print-ir-after NAME", "--dump-dir DIR", "--no-verify-each")
    for flag in (*flags, "--timing"):
        assert flag in out, flag
