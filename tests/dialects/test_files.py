"""Atomic writes (``mmfc.dialects.files``): all or nothing, no temporary file left, plain-open() modes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from mmfc.dialects import files


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_file_gets_the_mode_of_a_plain_open(tmp_path: Path) -> None:
    with open(tmp_path / "plain.txt", "w") as f:
        f.write("x")
    files.write_text_atomic(tmp_path / "atomic.txt", "héllo\n")
    assert (tmp_path / "atomic.txt").read_text(encoding="utf-8") == "héllo\n"
    assert mode_of(tmp_path / "atomic.txt") == mode_of(tmp_path / "plain.txt") == files.default_file_mode()
    files.write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atomic.txt", "b.bin", "plain.txt"]


def test_replacing_keeps_the_existing_mode(tmp_path: Path) -> None:
    target = tmp_path / "t.txt"
    target.write_text("old")
    os.chmod(target, 0o640)
    files.write_text_atomic(target, "new")
    assert target.read_text() == "new" and mode_of(target) == 0o640


def test_a_failure_changes_no_target(tmp_path: Path) -> None:
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, np.zeros(3))
    before = a.read_bytes()
    with pytest.raises(RuntimeError, match="disk full"):
        with files.atomic_files() as out:
            np.save(out.open(a), np.ones(3))
            f = out.open(b)
            f.write(b"partial")
            raise RuntimeError("disk full")
    assert a.read_bytes() == before and not b.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]  # no temporary file left
    with files.atomic_files() as out:
        np.save(out.open(a), np.ones(3))
        np.save(out.open(b), np.full(2, 7))
        assert not b.exists()  # nothing lands before the block ends
    assert np.load(a).tolist() == [1, 1, 1] and np.load(b).tolist() == [7, 7]
    with pytest.raises(ZeroDivisionError):
        with files.atomic_open(a, "wb") as f:
            f.write(b"half")
            1 / 0
    assert np.load(a).tolist() == [1, 1, 1]


def test_bad_targets_fail_before_writing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        files.write_text_atomic(tmp_path / "no" / "x.txt", "x")
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError):
        files.write_text_atomic(tmp_path / "d", "x")
    with pytest.raises(ValueError, match="mode"):
        with files.atomic_files() as out:
            out.open(tmp_path / "x", "a")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"] and not any((tmp_path / "d").iterdir())


def tree(path: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(path.iterdir())}


def test_atomic_dir_replaces_a_folder(tmp_path: Path) -> None:
    target = tmp_path / "art"
    with files.atomic_dir(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        (tmp / "one").write_text("1")
    assert tree(target) == {"one": "1"}
    (tmp_path / "plain").mkdir()
    assert mode_of(target) == mode_of(tmp_path / "plain")  # what a plain mkdir gives
    (tmp_path / "plain").rmdir()
    with pytest.raises(RuntimeError):
        with files.atomic_dir(target) as tmp:
            (tmp / "two").write_text("2")
            raise RuntimeError("stop")
    assert tree(target) == {"one": "1"} and [p.name for p in tmp_path.iterdir()] == ["art"]
    with files.atomic_dir(target) as tmp:
        (tmp / "two").write_text("2")
    assert tree(target) == {"two": "2"} and [p.name for p in tmp_path.iterdir()] == ["art"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        with files.atomic_dir(tmp_path / "file"):
            pass
    with pytest.raises(FileNotFoundError):
        with files.atomic_dir(tmp_path / "no" / "art"):
            pass


def test_atomic_dir_merges_into_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "ckpt"
    with files.atomic_dir(target, merge=True) as tmp:  # a new target: one rename
        (tmp / "config.json").write_text("c1")
    assert tree(target) == {"config.json": "c1"}
    (target / "README.md").write_text("mine")
    moved: list[str] = []
    real_replace = os.replace

    def spy(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        moved.append(Path(dst).name)
        real_replace(src, dst)

    with files.atomic_dir(target, merge=True, order=lambda name: name == "config.json") as tmp:
        assert tmp.parent == target  # inside an existing target
        (tmp / "config.json").write_text("c2")
        (tmp / "weights").write_text("w2")
        monkeypatch.setattr(os, "replace", spy)
    monkeypatch.undo()
    assert moved == ["weights", "config.json"]
    assert tree(target) == {"README.md": "mine", "config.json": "c2", "weights": "w2"}
    with pytest.raises(RuntimeError):
        with files.atomic_dir(target, merge=True) as tmp:
            (tmp / "config.json").write_text("c3")
            raise RuntimeError("stop")
    assert tree(target) == {"README.md": "mine", "config.json": "c2", "weights": "w2"}


# ------------------------------------------------------------------------------------------ issue 12


def dead_pid() -> int:
    """The pid of a process that has exited (a writer killed before it cleaned up)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def stale_name(target: Path, kind: str, pid: int) -> Path:
    """The name a writer with ``pid`` on this host gives its temporary of ``target``."""
    return target.parent / f".{target.name}.mmfc-{kind}-{files._HOST}-{pid}-0123abcd"


def test_a_dead_writers_temporaries_are_removed_by_the_next_writer(tmp_path: Path) -> None:
    pid = dead_pid()
    out = tmp_path / "art"
    stale_dir = stale_name(out, "tmp", pid)
    stale_dir.mkdir()
    (stale_dir / "weights.safetensors").write_bytes(b"x" * 1000)  # as big as the artifact, once
    stale_file = stale_name(tmp_path / "m.mlir", "tmp", os.getpid() + 10**7)  # no such pid either
    stale_file.write_text("half")
    live = stale_name(tmp_path / "other", "tmp", os.getpid())  # this process is alive: kept
    live.write_text("mine")
    elsewhere = tmp_path / ".x.mmfc-tmp-00000000-1-0123abcd"  # another host's: kept
    elsewhere.write_text("theirs")
    with files.atomic_dir(out) as tmp:
        (tmp / "a").write_text("1")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["art", live.name, elsewhere.name])
    files.write_text_atomic(tmp_path / "t.txt", "x")  # files clean up the same way


def test_a_dead_writers_moved_aside_target_is_put_back(tmp_path: Path) -> None:
    """Killed between moving the old artifact aside and renaming the new one in: nothing is lost."""
    out = tmp_path / "art"
    old = stale_name(out, "old", dead_pid())
    old.mkdir()
    (old / "manifest.json").write_text("the old artifact")
    assert files.clean_stale(tmp_path) == [old]
    assert (out / "manifest.json").read_text() == "the old artifact" and not old.exists()
    old.mkdir()  # now the target exists: the moved-aside copy is the stale one
    assert files.clean_stale(tmp_path) == [old] and not old.exists() and out.is_dir()


def test_ctrl_c_during_the_commit_completes_it_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    out = tmp_path / "art"
    with files.atomic_dir(out) as tmp:
        (tmp / "v").write_text("1")
    real_replace = os.replace

    def interrupted_replace(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C lands in the middle of the renames
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", interrupted_replace)
    with pytest.raises(files.InterruptedAfterCommit, match="art was written completely"):
        with files.atomic_dir(out) as tmp:
            (tmp / "v").write_text("2")
    monkeypatch.undo()
    assert tree(out) == {"v": "2"}
    assert [p.name for p in tmp_path.iterdir()] == ["art"]  # no moved-aside folder left behind
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):  # outside a commit, Ctrl-C is Ctrl-C again
        os.kill(os.getpid(), signal.SIGINT)
        import time

        time.sleep(1)


def test_folders_follow_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        with files.atomic_dir(tmp_path / "art") as tmp:
            files.write_text_atomic(tmp / "f", "x")
    finally:
        os.umask(previous)
    assert mode_of(tmp_path / "art") == 0o750 and mode_of(tmp_path / "art" / "f") == 0o640


def test_check_writable_probes_without_leaving_anything(tmp_path: Path) -> None:
    files.check_writable(tmp_path / "new")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError):
        files.check_writable(tmp_path / "missing" / "new")
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError):
        files.check_writable(tmp_path / "f" / "new")
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o555)
    try:
        if os.geteuid() != 0:  # root writes anywhere but on read-only filesystems
            with pytest.raises(PermissionError):
                files.check_writable(readonly / "new")
        elif Path("/sys").is_dir():
            with pytest.raises(OSError):
                files.check_writable(Path("/sys") / "mmfc-probe")
    finally:
        readonly.chmod(0o755)
