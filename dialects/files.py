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
(``FileNotFoundError``, ``IsADirectoryError``).
"""

from __future__ import annotations

import errno
import os
import shutil
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


def _temp_name(target: Path, suffix: str = ".tmp") -> Path:
    return target.parent / f".{target.name}.{uuid.uuid4().hex[:12]}{suffix}"


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
    old = _temp_name(target, ".old")
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

    The folder gets the mode a plain ``mkdir`` gives. On an exception it is removed and ``target`` is
    left as it was. ``target``'s parent folder must exist (``FileNotFoundError``)."""
    target = Path(target)
    parent = target.parent
    if not parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, f"folder {parent} does not exist", str(target))
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "exists and is not a folder", str(target))
    inside = merge and target.is_dir()
    temp = (target / f".mmfc-tmp-{uuid.uuid4().hex[:12]}") if inside else _temp_name(target)
    temp.mkdir()
    try:
        yield temp
        if merge:
            merge_dir(temp, target, order)
        else:
            replace_dir(temp, target)
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)


__all__ = [
    "AtomicFiles",
    "atomic_dir",
    "atomic_files",
    "atomic_open",
    "default_file_mode",
    "merge_dir",
    "replace_dir",
    "write_bytes_atomic",
    "write_text_atomic",
]
