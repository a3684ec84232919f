"""The ``mmfc`` console script (``python -m mmfc`` too): Ctrl-C from the first instant is one line.

Importing this module (only the console script and ``mmfc/__main__.py`` do) makes Ctrl-C be held
while the CLI's own modules import; :func:`main` then stops holding it, and reports one that already
arrived as ``mmfc: interrupted`` with exit code 130, as :func:`mmfc.cli.main` does for any later one.
Once the command is over, Ctrl-C is ignored (the process only exits).
"""

from __future__ import annotations

# Hold Ctrl-C before anything else is imported: ``_signal`` is built in (``signal`` itself builds its
# enums first, which takes long enough for a Ctrl-C to land in it).
import _signal

_held: list[int] = []


def _hold(signum: int, frame: object) -> None:
    _held.append(signum)


_signal.signal(_signal.SIGINT, _hold)

import os  # noqa: E402 -- after the handler, on purpose
import signal  # noqa: E402
import sys  # noqa: E402


#: where a KeyboardInterrupt must not be raised: inside an import, native code (torch's pybind11
#: modules) runs Python code, and an exception that comes back into it aborts the whole process
#: ("terminate called after throwing ... KeyboardInterrupt")
_IMPORTING = "<frozen importlib"


def _interrupt(signum: int, frame: object) -> None:
    """Ctrl-C: a KeyboardInterrupt where the main thread is, unless that is inside an import; then
    the signal is sent again 10 ms later, until it lands where the exception unwinds cleanly."""
    f = frame
    while f is not None:
        if f.f_code.co_filename.startswith(_IMPORTING):  # type: ignore[attr-defined]
            import threading

            timer = threading.Timer(0.01, os.kill, (os.getpid(), signal.SIGINT))
            timer.daemon = True
            timer.start()
            return
        f = f.f_back  # type: ignore[attr-defined]
    raise KeyboardInterrupt


def main() -> int:
    """The ``mmfc`` command: :func:`mmfc.cli.main` on ``sys.argv``."""
    try:
        from mmfc.cli import EXIT_INTERRUPTED, main as cli_main
    finally:
        signal.signal(signal.SIGINT, _interrupt)
    code = EXIT_INTERRUPTED if _held else cli_main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command is over: a late Ctrl-C changes nothing
    if _held:
        sys.stderr.write("mmfc: interrupted\n")
    if code == EXIT_INTERRUPTED:
        # CPython remembers a KeyboardInterrupt that surfaced in C-run code (torch runs Python while it
        # imports) and kills the process with SIGINT at exit, however it was handled: leave directly
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
