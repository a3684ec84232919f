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
