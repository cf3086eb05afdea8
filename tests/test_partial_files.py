"""The one atomic writer (``lipdub.pipeline.partial_files.writing``): a file appears whole under
its name or not at all, what a failed or killed writer leaves is removed, and ``durable`` flushes
the file and its folder to the disk."""

from __future__ import annotations

import errno
import os
import stat
import subprocess

import numpy as np
import pytest

from lipdub.pipeline.partial_files import (
    commit,
    partial_name,
    remove_stale_partials,
    write_image,
    write_text,
    writing,
)


def test_success_renames_into_place_and_leaves_no_partial(tmp_path):
    target = tmp_path / "made" / "here" / "out.json"  # the folders are made
    with writing(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".")
        assert not target.exists(), "nothing under the final name while writing"
        tmp.write_text("{}")
    assert target.read_text() == "{}"
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]


def test_an_error_leaves_neither_target_nor_partial(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError, match="half way"), writing(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed half way")
    assert list(tmp_path.iterdir()) == []


def test_an_error_leaves_an_existing_target_untouched(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"the good one")
    with pytest.raises(KeyboardInterrupt), writing(target) as tmp:  # a signal, too
        tmp.write_bytes(b"half of the new one")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"the good one"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_the_partial_name_keeps_the_suffix_for_writers_that_choose_by_it(tmp_path):
    target = tmp_path / "units.npz"
    with writing(target) as tmp:
        assert tmp.suffix == ".npz"
        np.savez(tmp, a=np.arange(3))  # would write tmp + ".npz" for any other suffix
    with np.load(target) as data:
        assert data["a"].tolist() == [0, 1, 2]
    picture = write_image(tmp_path / "p.png", np.zeros((4, 6, 3), np.uint8))
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png", "units.npz"]


def test_a_dead_writers_partial_is_swept_and_a_live_ones_is_not(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    target = tmp_path / "film.mov"
    with writing(target) as tmp:
        tmp.write_bytes(b"left by a killed run")
        left = tmp.with_name(tmp.name.replace(f"-{os.getpid()}-", f"-{dead.pid}-"))
        os.link(tmp, left)  # what a SIGKILLed writer of the same file would have left
        assert remove_stale_partials(tmp_path) == [left], "ours (alive) stays, the dead one goes"
    assert not left.exists() and left.suffix == ".mov"
    assert [p.name for p in tmp_path.iterdir()] == ["film.mov"]


def _record_fsyncs(monkeypatch) -> list[str]:
    """Monkeypatch ``os.fsync`` to record what each call flushed: "file" or "folder"."""
    calls: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        calls.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def test_durable_flushes_the_file_then_its_folder(tmp_path, monkeypatch):
    calls = _record_fsyncs(monkeypatch)
    write_text(tmp_path / "a.txt", "kept")
    assert calls == [], "not durable: no flush"
    write_text(tmp_path / "b.txt", "kept", durable=True)
    assert calls == ["file", "folder"]
    assert (tmp_path / "b.txt").read_text() == "kept"


def test_durable_flushes_before_the_rename(tmp_path, monkeypatch):
    """The file's flush must come before the rename, or a power cut can leave an empty file
    under the final name."""
    target = tmp_path / "checkpoint.pth"
    seen: list[bool] = []
    monkeypatch.setattr(os, "fsync", lambda fd: seen.append(target.exists()))
    with writing(target, durable=True) as tmp:
        tmp.write_bytes(b"weights")
    assert seen == [False, True]


def test_a_folder_that_refuses_fsync_does_not_fail_the_write(tmp_path, monkeypatch):
    """Some network filesystems refuse fsync on a folder: the file is written all the same."""
    real = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "Invalid argument")
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    target = tmp_path / "x.otio"
    write_text(target, "{}", durable=True)
    assert target.read_text() == "{}"


def test_commit_is_the_rename_of_a_writer_that_opens_and_closes_itself(tmp_path):
    target = tmp_path / "out.mkv"
    tmp = partial_name(target)
    tmp.write_bytes(b"video")
    commit(tmp, target)
    assert target.read_bytes() == b"video" and not tmp.exists()
