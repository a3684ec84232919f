"""Errors the interpreter raises for problems a user can cause."""

from __future__ import annotations

from xdsl.ir import Operation

from mmfc.dialects.diagnostics import UserError


class InterpError(UserError):
    """A run that cannot go on because of its inputs, its weights or its IR: dims that disagree at
    run time, a token id out of range, a weight whose stored shape or dtype differs from the IR, an
    op the interpreter does not know.

    ``op`` is the operation that failed (None when not known): the CLI reports the error at its
    position in the ``.mlir`` file. ``input_index``: the caller's input at fault, when one is (the CLI
    names its file). The message itself is one line.
    """

    def __init__(self, message: str, op: Operation | None = None, *, input_index: int | None = None) -> None:
        super().__init__(message)
        self.op = op
        self.input_index = input_index
