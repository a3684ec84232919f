"""Progress of long steps (quantizing, packing and writing the weights of a large model).

Code at any floor reports progress through :func:`progress`; nothing is shown unless the driver
installed a reporter (:func:`set_reporter`: the CLI draws a bar on stderr, see
``mmfc/progress_bar.py``). Without one, reporting costs a function call per tensor::

    with progress("quantize", total=len(names), unit="tensor") as advance:
        for name in names:
            ...
            advance(1)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


class Reporter(Protocol):
    """Opens one progress display: ``reporter(description, total, unit)`` is a context manager whose
    value is the function that advances it by some amount of ``unit``."""

    def __call__(self, description: str, total: float, unit: str) -> AbstractContextManager[Callable[[float], None]]: ...


_reporter: Reporter | None = None


def set_reporter(reporter: Reporter | None) -> Reporter | None:
    """Install ``reporter`` (None: show nothing); returns the one it replaces."""
    global _reporter
    previous, _reporter = _reporter, reporter
    return previous


def _ignore(amount: float) -> None:
    pass


@contextmanager
def progress(description: str, total: float, unit: str = "tensor") -> Iterator[Callable[[float], None]]:
    """A progress display of ``total`` ``unit``s (see the module docstring); thread-safe to advance
    when the reporter is (the CLI's is)."""
    if _reporter is None or total <= 0:
        yield _ignore
        return
    with _reporter(description, total, unit) as advance:
        yield advance


__all__ = ["Reporter", "progress", "set_reporter"]
