"""dialects/source.py: operation positions, positioned parse/verify errors, the parse time limit."""

from __future__ import annotations

import re
import signal
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from xdsl.dialects import arith
from xdsl.dialects.builtin import i32
from xdsl.utils.mlir_lexer import MLIRLexer

from mmfc.dialects import source
from mmfc.dialects.context import mmfc_context
from mmfc.dialects.source import (
    OpError,
    SourceError,
    SourceMap,
    default_parse_time_limit,
    op_error,
    parse_module,
    parse_time_limit,
    verify_module,
)

NESTED = """\
// a comment line
func.func @f(%a: i32) -> i32 {
  %0 = arith.addi %a, %a : i32
    %1, %2 = "test.op"(%0) : (i32) -> (i32, i32)
  func.return %1 : i32
}
"""


def positions(text: str, line_offset: int = 0) -> dict[str, tuple[int, int]]:
    module, smap = parse_module(
        mmfc_context(allow_unregistered=True), text, "t.mlir", line_offset=line_offset
    )
    found = {}
    for op in module.walk():
        offset = smap.op_offsets.get(op)
        if offset is not None:
            found[op.name] = smap.line_col(offset)
    return found


def test_every_parsed_op_has_the_position_of_its_first_token() -> None:
    assert positions(NESTED) == {
        "func.func": (2, 1),
        "arith.addi": (3, 3),
        "test.op": (4, 5),  # the result list starts the statement, as in mlir-opt
        "func.return": (5, 3),
    }


def test_line_offset_shifts_lines_only() -> None:
    assert positions(NESTED, line_offset=10)["arith.addi"] == (13, 3)


def test_an_op_created_later_reports_its_nearest_parsed_ancestor() -> None:
    module, smap = parse_module(mmfc_context(allow_unregistered=True), NESTED, "t.mlir")
    func = next(op for op in module.walk() if op.name == "func.func")
    new = arith.ConstantOp.from_int_and_width(1, i32)
    func.body.block.insert_op_before(new, func.body.block.first_op)
    assert smap.op_offset(new) == smap.op_offsets[func]
    error = smap.error_at(new, "message")
    assert (error.line, error.col) == (2, 1)


def test_line_col_clamps_and_counts_code_points() -> None:
    smap = SourceMap("t", "ab\nçd\n")
    assert smap.line_col(0) == (1, 1)
    assert smap.line_col(4) == (2, 2)
    assert smap.line_col(10**6) == (3, 1)


@pytest.mark.parametrize(
    "text, line, col, message",
    [
        ("func.func @f( {\n", 1, 15, "Expected argument or type"),
        (
            "func.func @f() {\n  nope.op\n}\n",
            2,
            3,
            "unknown operation 'nope.op' (no dialect 'nope' is registered)",
        ),
        ("func.func @f() {\n}\n}\n", 3, 1, "expected an operation"),
        (
            '%0 = arith.constant "abc : i32\n',
            1,
            21,
            "string literal is not closed before the end of the line",
        ),
        ("%0 = arith.constant 1 : !\n", 1, 25, "Expected suffix identifier after '!'"),
    ],
)
def test_parse_errors_are_positioned(text: str, line: int, col: int, message: str) -> None:
    with pytest.raises(SourceError) as info:
        parse_module(mmfc_context(), text, "t.mlir")
    assert (info.value.line, info.value.col, info.value.message) == (line, col, message)
    assert str(info.value) == f"t.mlir:{line}:{col}: {message}"


def test_any_exception_inside_the_parser_is_a_diagnostic(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: object, *args: object) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(arith.AddiOp, "parse", classmethod(broken))
    with pytest.raises(SourceError) as info:
        parse_module(mmfc_context(), NESTED, "t.mlir")
    assert str(info.value) == "t.mlir:3:19: KeyError: 'boom'"  # where the parser stood: after the name


def test_verify_reports_the_first_failing_op_with_context() -> None:
    text = """\
func.func @f(%a: i32) -> i64 {
  %0 = arith.addi %a, %a : i32
    %1 = "arith.muli"(%0, %a) : (i32, i32) -> i64
  func.return %0 : i32
}
"""
    module, smap = parse_module(mmfc_context(), text, "t.mlir")
    with pytest.raises(SourceError) as info:
        verify_module(module, smap, "after pass 'x'")
    # arith.muli fails (result type); func.return (i32 returned for i64) would fail after it
    assert (info.value.line, info.value.col) == (3, 5)
    assert info.value.message.startswith("after pass 'x': 'arith.muli' op ")


def test_verify_reports_an_empty_block_at_its_op() -> None:
    module, smap = parse_module(
        mmfc_context(),
        '"func.func"() ({\n^bb0:\n}) {sym_name = "f", function_type = () -> ()} : () -> ()\n',
        "t.mlir",
    )
    with pytest.raises(SourceError) as info:
        verify_module(module, smap)
    assert (info.value.line, info.value.col) == (1, 1) and "empty block" in info.value.message


def test_op_error_is_positioned_at_its_op() -> None:
    module, smap = parse_module(mmfc_context(allow_unregistered=True), NESTED, "t.mlir")
    addi = next(op for op in module.walk() if op.name == "arith.addi")
    error = op_error(smap, OpError(addi, "not here\nsecond line"), "pass 'p'")
    assert str(error) == "t.mlir:3:3: pass 'p': 'arith.addi' op not here second line"


# ------------------------------------------------------------------------------------ string lexer

_STRINGISH = st.text(alphabet='"\\ntx0F\n', max_size=14)


@given(_STRINGISH)
def test_safe_string_regex_accepts_exactly_what_xdsl_accepts(body: str) -> None:
    text = '"' + body
    ours = source._SafeLexer._unescaped_characters_regex.match(text)
    theirs = MLIRLexer._unescaped_characters_regex.match(text)  # short input: no blow-up
    assert (ours and ours.group(0)) == (theirs and theirs.group(0))


def test_unclosed_string_fails_in_linear_time() -> None:
    start = time.monotonic()
    with pytest.raises(SourceError, match="string literal is not closed"):
        parse_module(mmfc_context(), '%0 = arith.constant "' + "a<b " * 50_000 + "\n", "t.mlir")
    assert time.monotonic() - start < 5


# -------------------------------------------------------------------------------------- time limit


def test_default_limit_grows_with_input_size() -> None:
    assert default_parse_time_limit(0) >= 1
    assert default_parse_time_limit(10_000_000) > default_parse_time_limit(1000) + 100


def test_time_limit_interrupts_and_restores_the_previous_handler_and_timer() -> None:
    def previous(signum: int, frame: object) -> None:
        raise AssertionError("the outer timer fired during the test")

    old = signal.signal(signal.SIGALRM, previous)
    signal.setitimer(signal.ITIMER_REAL, 100.0)
    try:
        with pytest.raises(source._TimeLimitExpired):
            with parse_time_limit(0.05):
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:  # a runaway parse
                    pass
            pytest.fail("the time limit did not interrupt the loop")
        assert signal.getsignal(signal.SIGALRM) is previous
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 90 < remaining <= 100  # the outer timer is re-armed with what it had left
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_no_limit_arms_no_timer() -> None:
    for seconds in (None, 0, -1):
        with parse_time_limit(seconds):
            assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_time_limit_off_the_main_thread_runs_unbounded() -> None:
    outcome: list[object] = []

    def work() -> None:
        try:
            with parse_time_limit(0.01):
                time.sleep(0.05)
            module, _ = parse_module(
                mmfc_context(allow_unregistered=True), NESTED, "t.mlir", time_limit_s=0.01
            )
            outcome.append(module)
        except BaseException as exc:  # noqa: BLE001 -- reported to the main thread
            outcome.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(30)
    assert len(outcome) == 1 and not isinstance(outcome[0], BaseException), outcome


def test_parse_timeout_is_reported_where_the_parser_stood(monkeypatch: pytest.MonkeyPatch) -> None:
    real = source._PositionRecordingParser.parse_operation
    calls = []

    def slow_second_op(self: source._PositionRecordingParser):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            time.sleep(10)  # interrupted by the limit (a broken guard makes the test slow, not stuck)
        return real(self)

    monkeypatch.setattr(source._PositionRecordingParser, "parse_operation", slow_second_op)
    start = time.monotonic()
    with pytest.raises(SourceError) as info:
        parse_module(mmfc_context(allow_unregistered=True), NESTED, "t.mlir", time_limit_s=0.3)
    assert time.monotonic() - start < 5
    assert (info.value.line, info.value.col) == (3, 3)  # the second operation
    assert re.fullmatch(r"parsing exceeded the time limit of 0\.3 s .*", info.value.message)
