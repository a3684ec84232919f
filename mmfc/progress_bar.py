"""The CLI's progress bar: draws ``dialects.progress`` reports on stderr with tqdm.

Shown when stderr is a terminal (``MMFC_PROGRESS=1`` forces it, ``MMFC_PROGRESS=0`` turns it off),
and only for a step that lasts over a second, so that small models compile without one. A bar is
removed when its step ends: what stays on the terminal is the command's own report.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: environment variable: ``1`` shows progress bars even when stderr is not a terminal, ``0`` never
PROGRESS_ENV = "MMFC_PROGRESS"
#: seconds a step runs before its bar appears
DELAY_S = 1.0


def wanted() -> bool:
    """Whether to draw progress bars (see the module docstring)."""
    setting = os.environ.get(PROGRESS_ENV, "").strip()
    if setting in ("0", "1"):
        return setting == "1"
    return sys.stderr.isatty()


@contextmanager
def tqdm_bar(description: str, total: float, unit: str) -> Iterator[Callable[[float], None]]:
    """A ``dialects.progress`` reporter: one tqdm bar on stderr (bytes shown in decimal units)."""
    from tqdm import tqdm

    forced = os.environ.get(PROGRESS_ENV, "").strip() == "1"
    with tqdm(
        total=total,
        desc=description,
        unit=unit,
        unit_scale=unit == "B",
        unit_divisor=1000,
        file=sys.stderr,
        delay=0.0 if forced else DELAY_S,
        leave=False,
        dynamic_ncols=True,
    ) as bar:
        yield bar.update


def install() -> None:
    """Draw progress on stderr from now on when :func:`wanted`, else show none."""
    from mmfc.dialects.progress import set_reporter

    set_reporter(tqdm_bar if wanted() else None)


__all__ = ["DELAY_S", "PROGRESS_ENV", "install", "tqdm_bar", "wanted"]
