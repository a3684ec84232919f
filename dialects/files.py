"""Atomic writes: a reader sees a target as it was or as it is meant to be, never half written.

One way for every writer of mmfc (weight stores, configs, checkpoints, IR files, ``mmfc run`` outputs,
compiled artifacts):

* a file is written to a temporary file beside its target (same folder, so the same filesystem),
  flushed to disk, given the mode a plain ``open()`` would give (an existing target's mode, else
  ``0o666`` less the umask), then renamed over the target with ``os.replace``;
* several files (:func:`atomic_files`) are all written first and renamed only when every one is
  complete: a failure while writing changes none of the targets;
* a folder (:func:`atomic_dir`) is built as a temporary folder beside (or inside) the target and then
  renamed into place, replacing the target whole, or, with ``merge=True``, moving its files into an
  existing target one rename at a time and keeping the target's other files.

On any failure the temporary files and folders are removed and the exception propagates unchanged
(``OSError`` for what the system refused; callers turn it into their own one-line error). A folder
that does not exist, or a target that is a folder, fails before anything is written
(``FileNotFoundError``, ``IsADirectoryError``); :func:`check_writable` asks the same of a target
before any work starts (it creates and removes a probe file: only trying tells whether a folder takes
new files, e.g. for root on a read-only mount).

**Temporaries of a writer that died.** A writer killed before it could clean up (SIGKILL, a power
cut) leaves its temporary file or folder. Temporaries are named
``.<target>.mmfc-<tmp|old>-<host>-<pid>-<random>``, and every writer first removes, in the folder it
writes to, those whose writer ran on this host and is no longer alive (:func:`clean_stale`); an
``old`` one (a target moved aside while its replacement was renamed in) is put back when its target
is missing, so that even a kill between the two renames loses nothing.

**Interrupts.** Ctrl-C (SIGINT) or SIGTERM arriving while the renames that commit a write run is held
back until they are done (:func:`deferred_interrupts`); then SIGTERM is delivered again and Ctrl-C
raised as :class:`InterruptedAfterCommit`: the write is complete, and the message says so.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: ``0o666`` less the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


#: a short tag of this host, so that a writer only ever cleans up after writers of its own machine
#: (a folder on a shared filesystem may hold the temporaries of a live writer elsewhere)
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
_TEMP = re.compile(r"^\.(?P<name>.*)\.mmfc-(?P<kind>tmp|old)-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{8}$")


def _temp_name(target: Path, kind: str = "tmp") -> Path:
    """``.<name>.mmfc-<kind>-<host>-<pid>-<random>`` beside ``target`` (see "Temporaries" above)."""
    return target.parent / f".{target.name}.mmfc-{kind}-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user
        return True
    return True


def clean_stale(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove from ``folder`` the temporaries (files or folders) of mmfc writers of this host that are
    no longer running; an ``old`` one whose target is missing is renamed back to the target instead.
    Returns what was removed or restored; problems (a folder that cannot be listed, an entry that
    cannot be removed) are ignored: cleaning up is a courtesy, never a reason to fail a write."""
    done: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return done
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m is None or m["host"] != _HOST or _alive(int(m["pid"])):
            continue
        path = Path(entry.path)
        target = path.parent / m["name"]
        try:
            if m["kind"] == "old" and m["name"] and not os.path.lexists(target):
                os.replace(path, target)
            elif entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            continue
        done.append(path)
    return done


def check_writable(target: str | os.PathLike[str]) -> None:
    """Raise the ``OSError`` that writing ``target`` (a file or a folder, replaced whole) would meet:
    its folder is missing (``FileNotFoundError``) or not a folder, or takes no new entry (a probe
    file beside ``target`` is created and removed: permissions alone do not tell, e.g. for root on a
    read-only filesystem). Changes nothing else."""
    target = Path(target)
    folder = target.parent
    if not folder.is_dir():
        if folder.exists():
            raise NotADirectoryError(errno.ENOTDIR, f"{folder} is not a folder", str(target))
        raise FileNotFoundError(errno.ENOENT, f"folder {folder} does not exist", str(target))
    probe = _temp_name(target)
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    os.unlink(probe)


class InterruptedAfterCommit(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) arrived while a write was being committed: the write was completed first.
    ``str()`` says what was written."""


@contextmanager
def deferred_interrupts(what: str) -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while the block runs (the renames that commit a write); if one
    arrived, raise :class:`InterruptedAfterCommit` (``what`` names what was written) once the block
    completed. Outside the main thread, signals cannot be held: the block just runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def hold(signum: int, frame: Any) -> None:
        caught.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if signal.SIGTERM in caught:
        os.kill(os.getpid(), signal.SIGTERM)  # delivered now, to whatever handles it
    if caught:
        raise InterruptedAfterCommit(f"{what} was written completely before the interrupt")


def _check_target(target: Path) -> None:
    folder = target.parent
    if not folder.is_dir():
        raise FileNotFoundError(errno.ENOENT, f"folder {folder} does not exist", str(target))
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory", str(target))


class AtomicFiles:
    """The files of one :func:`atomic_files` block: ``open`` hands out a temporary file per target."""

    def __init__(self, fsync: bool) -> None:
        self._fsync = fsync
        self._pending: list[tuple[Path, Path, IO[Any]]] = []  # (temp, target, file)

    def open(self, target: str | os.PathLike[str], mode: str = "wb", encoding: str | None = None) -> IO[Any]:
        """A new file that becomes ``target`` when the block ends without an exception. ``mode`` is
        ``"wb"`` or ``"w"`` (text: ``encoding`` defaults to UTF-8)."""
        if mode not in ("w", "wb"):
            raise ValueError(f"atomic files are written whole: mode 'w' or 'wb', not {mode!r}")
        target = Path(target)
        _check_target(target)
        clean_stale(target.parent)
        temp = _temp_name(target)
        # os.open with 0o666 lets the umask decide, as a plain open() of a new file does
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            if mode == "w":
                f: IO[Any] = os.fdopen(fd, "w", encoding=encoding or "utf-8")
            else:
                f = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            temp.unlink(missing_ok=True)
            raise
        self._pending.append((temp, target, f))
        return f

    def pending_path(self, target: str | os.PathLike[str]) -> Path:
        """The temporary file that becomes ``target`` at commit (``target`` must have been opened):
        what a reader may open before the block ends."""
        for temp, pending, _ in self._pending:
            if pending == Path(target):
                return temp
        raise KeyError(f"{target} was not opened in this atomic_files block")

    def write_bytes(self, target: str | os.PathLike[str], data: bytes) -> None:
        with self.open(target, "wb") as f:
            f.write(data)

    def write_text(self, target: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
        with self.open(target, "w", encoding) as f:
            f.write(text)

    def _commit(self) -> None:
        for temp, target, f in self._pending:
            if not f.closed:
                f.flush()
            if self._fsync:
                if f.closed:
                    with open(temp, "rb") as again:
                        os.fsync(again.fileno())
                else:
                    os.fsync(f.fileno())
            f.close()
            if target.exists():  # a plain open() keeps an existing file's mode
                os.chmod(temp, target.stat().st_mode & 0o7777)
        what = ", ".join(str(target) for _, target, _ in self._pending)
        with deferred_interrupts(what):
            for temp, target, _ in self._pending:
                os.replace(temp, target)
            self._pending = []

    def _discard(self) -> None:
        for temp, _, f in self._pending:
            try:
                f.close()
            finally:
                temp.unlink(missing_ok=True)
        self._pending = []


@contextmanager
def atomic_files(*, fsync: bool = True) -> Iterator[AtomicFiles]:
    """Write several files all or nothing::

        with atomic_files() as files:
            for i, array in enumerate(results):
                np.save(files.open(out / f"out{i}.npy"), array)

    Every target is renamed into place only after the block ended and every file was flushed (and
    ``fsync``-ed); an exception in the block, or while flushing, leaves every target as it was.
    (The renames themselves follow one another: a failure between two of them is not undone.)"""
    files = AtomicFiles(fsync)
    try:
        yield files
        files._commit()
    finally:
        files._discard()


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", encoding: str | None = None) -> Iterator[IO[Any]]:
    """One file written atomically: ``with atomic_open(path, "wb") as f: f.write(...)``."""
    with atomic_files() as files:
        yield files.open(path, mode, encoding)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    with atomic_files() as files:
        files.write_bytes(path, data)


def write_text_atomic(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see the module docstring)."""
    with atomic_files() as files:
        files.write_text(path, text, encoding)


# ------------------------------------------------------------------------------------------ folders


def replace_dir(new: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Rename the folder ``new`` to ``target``; an existing ``target`` is moved aside first, put back
    if the rename fails, and removed after it succeeded."""
    new, target = Path(new), Path(target)
    if not target.exists():
        os.replace(new, target)
        return
    old = _temp_name(target, "old")
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def merge_dir(new: str | os.PathLike[str], target: str | os.PathLike[str], order: Callable[[str], Any] | None = None) -> None:
    """Move the entries of the folder ``new`` into ``target`` (a new ``target``: one rename), one
    ``os.replace`` each, sorted by ``order(name)`` then name; ``target``'s other entries stay."""
    new, target = Path(new), Path(target)
    if not target.exists():
        os.replace(new, target)
        return
    key = order or (lambda name: 0)
    for entry in sorted(new.iterdir(), key=lambda e: (key(e.name), e.name)):
        os.replace(entry, target / entry.name)


@contextmanager
def atomic_dir(
    target: str | os.PathLike[str], *, merge: bool = False, order: Callable[[str], Any] | None = None
) -> Iterator[Path]:
    """Build a folder atomically: yields an empty temporary folder on ``target``'s filesystem; when
    the block ends without an exception it becomes ``target``:

    * ``merge=False``: it replaces ``target`` whole (:func:`replace_dir`); the temporary folder sits
      beside ``target``;
    * ``merge=True``: its files move into an existing ``target`` (:func:`merge_dir`, in ``order``),
      whose other files are kept; the temporary folder sits inside an existing ``target`` (whose
      parent may be read-only), else beside it.

    The folder gets the mode a plain ``mkdir`` gives (the umask decides). It is created when the block
    starts, so a folder that takes no new entry fails before the block's work. On an exception it is
    removed and ``target`` is left as it was; the commit (the renames, and removing the replaced
    folder) completes before a Ctrl-C is raised (:func:`deferred_interrupts`). ``target``'s parent
    folder must exist (``FileNotFoundError``)."""
    target = Path(target)
    parent = target.parent
    if not parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, f"folder {parent} does not exist", str(target))
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "exists and is not a folder", str(target))
    inside = merge and target.is_dir()
    clean_stale(parent)
    if inside:
        clean_stale(target)
    temp = _temp_name(target / "merge") if inside else _temp_name(target)
    temp.mkdir()
    try:
        yield temp
        with deferred_interrupts(str(target)):
            if merge:
                merge_dir(temp, target, order)
            else:
                replace_dir(temp, target)
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)


__all__ = [
    "AtomicFiles",
    "InterruptedAfterCommit",
    "atomic_dir",
    "atomic_files",
    "atomic_open",
    "check_writable",
    "clean_stale",
    "default_file_mode",
    "deferred_interrupts",
    "merge_dir",
    "replace_dir",
    "write_bytes_atomic",
    "write_text_atomic",
]
