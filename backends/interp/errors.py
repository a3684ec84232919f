"""Errors the interpreter raises for problems a user can cause."""

from __future__ import annotations

from xdsl.ir import Operation

from mmfc.dialects.diagnostics import UserError


class InterpError(UserError):
    """A run that cannot go on because of its inputs, its weights or its IR: dims that disagree at
    run time, a token id out of range, a weight whose stored shape or dtype differs from the IR, an
    op the interpreter does not know.

    ``op`` is the operation that failed (None when not known): the CLI reports the error at its
    position in the ``.mlir`` file. The message itself is one line and names the op.
    """

    def __init__(self, message: str, op: Operation | None = None) -> None:
        super().__init__(message)
        self.op = op
