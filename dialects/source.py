"""IR text in, ``FILE:LINE:COL: message`` out: parsing and verifying with source positions.

xDSL 0.75 reports a parse error with a multi-line excerpt, a verifier error with no position at all,
lets any other exception escape as a traceback, and can hang on some malformed input (an unclosed
string literal makes its lexer's regex backtrack exponentially). This module wraps its parser so that
every failure to read a module becomes one :class:`SourceError`:

* :func:`parse_module` records where each operation starts while parsing (a :class:`SourceMap`), turns
  a ``ParseError`` -- or any other exception raised while parsing -- into a ``SourceError`` at the last
  position the parser reached, and bounds the parse by a time limit (:func:`parse_time_limit`);
* :func:`verify_module` verifies innermost operations first and reports the first failure at the
  failing operation's position (or its nearest parsed ancestor, for operations a pass created);
* :class:`OpError` is the exception a pass raises to report a problem at an operation.

Positions are 1-based lines and columns; columns count Unicode code points, as xDSL's spans do.
"""

from __future__ import annotations

import bisect
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation
from xdsl.parser import Parser, ParserState
from xdsl.utils.exceptions import ParseError, PassFailedException, VerifyException
from xdsl.utils.lexer import Input, Position, Span
from xdsl.utils.mlir_lexer import MLIRLexer, MLIRToken

from mmfc.dialects.diagnostics import UserError

STDIN_NAME = "<stdin>"

#: parse-time budget: a fixed allowance plus a per-character one (xDSL parses well over 100k chars/s on
#: one core; the budget leaves a wide margin for slow CI machines and only stops runaway parses)
PARSE_TIME_BASE_S = 5.0
PARSE_TIME_PER_CHAR_S = 50e-6


class SourceError(UserError):
    """A problem in IR text, reported as ``FILE:LINE:COL: message`` (one line; CLI exit code 2)."""

    def __init__(self, file: str, line: int, col: int, message: str) -> None:
        self.file, self.line, self.col, self.message = file, line, col, one_line(message)
        super().__init__(f"{file}:{line}:{col}: {self.message}")


class OpError(PassFailedException):
    """Raised by a pass (or a checker) to report a problem at ``op``.

    The driver turns it into a :class:`SourceError` at the position of ``op`` -- or of its nearest
    ancestor that came from the source text, when the pass created ``op``.
    """

    def __init__(self, op: Operation, message: str) -> None:
        super().__init__(message)
        self.op = op
        self.message = message


def one_line(message: str) -> str:
    """Collapse a (possibly multi-line) xDSL message into one line."""
    return " ".join(part.strip() for part in str(message).strip().splitlines() if part.strip())


@dataclass
class SourceMap:
    """Where the operations of one parsed module came from.

    ``line_offset`` is added to every line number: a chunk of a ``--split-input-file`` input reports
    lines of the whole file.
    """

    name: str
    text: str
    line_offset: int = 0
    op_offsets: dict[Operation, Position] = field(default_factory=dict[Operation, Position])
    _line_starts: list[int] | None = field(default=None, repr=False)

    def line_col(self, offset: Position) -> tuple[int, int]:
        """1-based (line, column) of a 0-based character offset into ``text`` (clamped to the text)."""
        if self._line_starts is None:
            # computed once, on the first error: O(n) here instead of O(n) per reported position
            self._line_starts = [0] + [m.end() for m in re.finditer("\n", self.text)]
        offset = max(0, min(offset, len(self.text)))
        index = bisect.bisect_right(self._line_starts, offset) - 1
        return index + 1 + self.line_offset, offset - self._line_starts[index] + 1

    def op_offset(self, op: Operation) -> Position | None:
        """Offset where ``op`` starts, or where its nearest parsed ancestor starts; None if neither."""
        node: Operation | None = op
        while node is not None:
            if (offset := self.op_offsets.get(node)) is not None:
                return offset
            node = node.parent_op()
        return None

    def error_at(self, where: Position | Operation | None, message: str) -> SourceError:
        """A :class:`SourceError` at an offset, at an operation, or (None, unknown) at the first line."""
        if isinstance(where, Operation):
            where = self.op_offset(where)
        line, col = self.line_col(where) if where is not None else (1 + self.line_offset, 1)
        return SourceError(self.name, line, col, message)


# ------------------------------------------------------------------------------------------- lexer


class _SafeLexer(MLIRLexer):
    """xDSL's MLIR lexer, with a string-literal rule that fails in linear time.

    xDSL 0.75 matches ``"(?:[^"\\\\\\n]+|escape)*"``: on a quote that is never closed on its line, the
    nested repetition backtracks exponentially in the line's length. The possessive quantifiers below
    accept exactly the same literals (a run of plain characters can never be followed by another plain
    character) but never backtrack into a run.
    """

    _unescaped_characters_regex = re.compile(r'"(?:[^"\\\n\v\f]++|\\(?:["nt\\]|[0-9A-Fa-f]{2}))*+"')

    #: start of the token being lexed right now, or None between tokens (the last known position when a
    #: time limit interrupts the lexer itself)
    lexing_at: Position | None = None

    def lex(self) -> MLIRToken:
        self.lexing_at = self.pos
        token = super().lex()
        self.lexing_at = None  # not in a finally: an interrupted lex must leave its position behind
        return token

    def token_start_after(self, pos: Position) -> Position:
        """Where the next token starts at or after ``pos`` (skipping whitespace and comments)."""
        match = self._whitespace_regex.match(self.input.content, pos)
        return match.end() if match is not None else pos

    def _lex_string_literal(self, start_pos: Position) -> MLIRToken:
        if self._unescaped_characters_regex.match(self.input.content, start_pos) is None:
            end = self.input.get_end_of_line(start_pos)
            message = (
                "string literal is not closed before the end of the line"
                if end < len(self.input.content)
                else "string literal is not closed before the end of the input"
            )
            raise ParseError(Span(start_pos, start_pos + 1, self.input), message)
        return super()._lex_string_literal(start_pos)


# ------------------------------------------------------------------------------------------ parser


class _PositionRecordingParser(Parser):
    """xDSL's parser, recording the offset where each parsed operation starts.

    Every operation -- top level, nested in a region, or parsed by a dialect's custom format -- goes
    through ``parse_operation``, so overriding it sees them all. The offset is that of the statement's
    first token (its result list when it has one), as in mlir-opt.
    """

    def __init__(self, ctx: Context, text: str, name: str) -> None:
        super().__init__(ctx, "", name)
        # replace the lexer that Parser.__init__ built over "" by the safe one over the real text
        self._parser_state = ParserState(_SafeLexer(Input(text, name)))
        self.op_offsets: dict[Operation, Position] = {}

    def parse_operation(self) -> Operation:
        start = self._current_token.span.start
        op = super().parse_operation()
        self.op_offsets[op] = start
        return op

    def last_offset(self) -> Position:
        """The furthest position the parser is known to have reached (for an interrupted parse)."""
        lexer = self.lexer
        if isinstance(lexer, _SafeLexer) and lexer.lexing_at is not None:
            return max(lexer.token_start_after(lexer.lexing_at), self._current_token.span.start)
        return self._current_token.span.start

    def _get_op_by_name(self, name: str) -> type[Operation]:
        # xDSL reports an unknown operation after its name, with a terse message; point at the name
        if op_type := self.ctx.get_optional_op(name, dialect_stack=self._parser_state.dialect_stack):
            return op_type
        at = self.lexer.input.content.rfind(name, 0, self._current_token.span.start)
        dialect = name.split(".", 1)[0]
        known = "." not in name or dialect in self.ctx.registered_dialect_names
        reason = "" if known else f" (no dialect '{dialect}' is registered)"
        self.raise_error(f"unknown operation '{name}'{reason}", at if at >= 0 else None)


# -------------------------------------------------------------------------------------- time limit


class _TimeLimitExpired(BaseException):
    """Raised inside the parse when its time is up (BaseException: xDSL's ``except Exception`` must not
    swallow it)."""


def default_parse_time_limit(n_chars: int) -> float:
    """The default parse-time budget in seconds for an input of ``n_chars`` characters."""
    return PARSE_TIME_BASE_S + PARSE_TIME_PER_CHAR_S * n_chars


def time_limit_available() -> bool:
    """Whether :func:`parse_time_limit` can bound the current thread (SIGALRM, main thread only)."""
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextmanager
def parse_time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`_TimeLimitExpired` in the body once ``seconds`` of wall time have passed.

    Uses a one-shot ``ITIMER_REAL``/SIGALRM, which interrupts Python code and the ``re`` engine alike.
    Signals are delivered to the main thread only, so elsewhere (and for ``seconds`` None or <= 0) the
    body runs unbounded. A timer armed by the caller (pytest-timeout, say) is re-armed on exit with
    the time it had left.
    """
    if seconds is None or seconds <= 0 or not time_limit_available():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise _TimeLimitExpired()

    started = time.monotonic()
    # None: a handler installed outside Python; SIG_DFL is the closest thing to put back
    previous_handler = signal.signal(signal.SIGALRM, expire) or signal.SIG_DFL
    previous_delay, previous_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        # nested so that the handler is restored even if the alarm fires while the timer is cleared
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
        finally:
            signal.signal(signal.SIGALRM, previous_handler)
            if previous_delay > 0:
                left = previous_delay - (time.monotonic() - started)
                signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3), previous_interval)


# ----------------------------------------------------------------------------------------- parsing


def parse_module(
    ctx: Context,
    text: str,
    name: str = STDIN_NAME,
    *,
    line_offset: int = 0,
    time_limit_s: float | None = None,
) -> tuple[ModuleOp, SourceMap]:
    """Parse MLIR text into a module (not yet verified) and the positions of its operations.

    ``name`` is the file name diagnostics carry; ``line_offset`` is added to their line numbers.
    ``time_limit_s``: None for :func:`default_parse_time_limit`, <= 0 for no limit.
    Raises :class:`SourceError` for every failure: a syntax error, an unknown operation, an invalid
    attribute, an exception from inside xDSL, or the time limit running out.
    """
    source = SourceMap(name, text, line_offset)
    if not text.strip() or _only_comments(text):
        return ModuleOp([]), source  # as mlir-opt: an empty input is an empty module
    limit = default_parse_time_limit(len(text)) if time_limit_s is None else time_limit_s
    parser: _PositionRecordingParser | None = None
    try:
        with parse_time_limit(limit):
            parser = _PositionRecordingParser(ctx, text, name)
            module = parser.parse_module()
    except _TimeLimitExpired:
        where = parser.last_offset() if parser is not None else 0
        raise source.error_at(
            where, f"parsing exceeded the time limit of {limit:g} s (stopped here)"
        ) from None
    except ParseError as exc:
        raise source.error_at(exc.span.start, _parse_message(exc, text)) from None
    except RecursionError:
        where = parser.last_offset() if parser is not None else 0
        raise source.error_at(where, "input is nested too deeply to parse") from None
    except Exception as exc:  # noqa: BLE001 -- any failure inside xDSL is a diagnostic, not a traceback
        where = parser.last_offset() if parser is not None else 0
        raise source.error_at(where, describe_exception(exc)) from None
    source.op_offsets = parser.op_offsets
    return module, source


#: xDSL 0.75 parse messages that say little (or carry a placeholder it forgot to fill), reworded
_PARSE_MESSAGES = {
    "Could not parse entire input!": "expected an operation",
    "in block definition": "expected a block label (^name)",
}


def _parse_message(exc: ParseError, text: str) -> str:
    message = one_line(exc.msg)
    message = _PARSE_MESSAGES.get(message, message)
    if "{first_char}" in message:
        message = message.replace("{first_char}", repr(text[exc.span.start : exc.span.start + 1]))
    return message


def _only_comments(text: str) -> bool:
    match = MLIRLexer._whitespace_regex.match(text)
    return match is not None and match.end() == len(text)


def describe_exception(exc: BaseException) -> str:
    """One-line text of an exception xDSL raised: its message, or its type when it has none."""
    text = one_line(str(exc))
    if isinstance(exc, VerifyException | ParseError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --------------------------------------------------------------------------------------- verifying


def verify_module(module: ModuleOp, source: SourceMap, context: str = "") -> None:
    """Verify ``module``; raise a :class:`SourceError` at the first operation that fails.

    Operations are verified innermost first (post-order), each without its nested operations, so that
    the failing operation is known; an empty block that needs a terminator is reported at the
    operation that holds it. ``context`` (e.g. ``"after pass 'cse'"``) prefixes the message.
    """
    prefix = f"{context}: " if context else ""
    for op in module.walk(region_first=True):
        try:
            for region in op.regions:
                for block in region.blocks:
                    if block.first_op is None:
                        block.verify()  # only the "empty block needs a terminator" rule applies
            op.verify(verify_nested_ops=False)
        except RecursionError:
            raise source.error_at(op, f"{prefix}'{op.name}' op is nested too deeply to verify") from None
        except Exception as exc:  # noqa: BLE001 -- a verifier crash is a diagnostic at its op too
            raise source.error_at(op, f"{prefix}'{op.name}' op {describe_exception(exc)}") from None


def op_error(source: SourceMap, exc: BaseException, context: str = "") -> SourceError:
    """The :class:`SourceError` for a diagnostic exception raised by a pass (at its op if it names one)."""
    prefix = f"{context}: " if context else ""
    if isinstance(exc, OpError):
        return source.error_at(exc.op, f"{prefix}'{exc.op.name}' op {one_line(exc.message)}")
    return source.error_at(None, f"{prefix}{describe_exception(exc)}")
