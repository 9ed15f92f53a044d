"""Atomic writes leave either the old file or the new one, never a partial one."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import BinaryIO

import pytest

from reprokit._fsutil import (
    atomic_write_bytes,
    atomic_write_text,
    complete_files,
    has_partial_writes,
    is_partial_write,
    partial_prefix,
    write_then_name,
)


def test_atomic_write_replaces_content(tmp_path: Path) -> None:
    target = tmp_path / "lock.json"
    target.write_text("old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["lock.json"]


@pytest.mark.parametrize(
    "name",
    [
        "实验" * 41 + ".ipynb",  # 252 bytes: a legal name, which a ".<name>.<random>.tmp" is not
        "a" * 255,
        "é" * 127,  # cut inside a character: the half is left out
        "short.ipynb",
    ],
)
def test_files_with_names_near_the_limit_are_written_atomically(tmp_path: Path, name: str) -> None:
    """A temporary file's name keeps within 255 bytes, whatever the target's (a notebook of
    80 CJK characters failed with "File name too long")."""
    from reprokit.recording.objects import link_tree

    target = tmp_path / "a" / name
    target.parent.mkdir()
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and [p.name for p in target.parent.iterdir()] == [name]
    prefix = partial_prefix(name)
    assert prefix.startswith(".") and len(prefix.encode()) + 8 + len(".copy") <= 255
    assert is_partial_write(prefix + "abcdefgh.tmp")
    target.chmod(0o444)  # an object: shared by a hard link
    assert link_tree(tmp_path / "a", tmp_path / "b").linked == 1
    assert (tmp_path / "b" / name).read_text() == "new"


def test_failed_write_keeps_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "lock.json"
    target.write_text("old")

    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["lock.json"]


def test_atomic_write_uses_ordinary_permissions(tmp_path: Path) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic = tmp_path / "atomic.txt"
    atomic_write_text(atomic, "x")
    assert atomic.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_write_then_name_gives_the_file_the_name_its_content_chose(tmp_path: Path) -> None:
    def fill(handle: BinaryIO) -> str:
        handle.write(b"payload")
        return "named-after-content.bin"

    written = write_then_name(tmp_path, fill)
    assert written == tmp_path / "named-after-content.bin"
    assert written.read_bytes() == b"payload"
    assert [p.name for p in tmp_path.iterdir()] == ["named-after-content.bin"]


def test_write_then_name_leaves_nothing_when_writing_fails(tmp_path: Path) -> None:
    def fill(handle: BinaryIO) -> str:
        handle.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_then_name(tmp_path, fill)
    assert list(tmp_path.iterdir()) == []


def test_a_file_locked_by_another_process_is_seen_as_held(tmp_path: Path) -> None:
    import subprocess
    import sys

    from reprokit._fsutil import locked_by_another

    marker = tmp_path / "held.active"
    marker.write_text("")
    assert not locked_by_another(marker) and not locked_by_another(tmp_path / "missing")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl,sys,time; f=open(sys.argv[1]); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)", str(marker)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert locked_by_another(marker)
    finally:
        holder.kill()
        holder.wait()
    assert not locked_by_another(marker)


def test_a_folder_is_handed_over_without_the_partial_writes_in_it(tmp_path: Path) -> None:
    """What MLflow gets of a run folder: a killed writer's temporary file is not a file of
    the run (it was uploaded as one)."""
    folder = tmp_path / "run"
    (folder / "arrays").mkdir(parents=True)
    (folder / "results.json").write_text("{}")
    (folder / "arrays" / "a.npy").write_bytes(b"whole")
    assert not has_partial_writes(folder)
    (folder / ".snapshot.json.k2j4.tmp").write_text("{")
    (folder / "arrays" / ".write.x8.tmp").write_bytes(b"half")
    (folder / ".a.npy.1f2e.link").write_bytes(b"half")
    (folder / "outside").symlink_to(tmp_path)
    assert has_partial_writes(folder)
    assert [str(p.relative_to(folder)) for p in complete_files(folder)] == [
        "results.json",
        "arrays/a.npy",
    ]


def test_a_finished_or_zombie_process_does_not_exist() -> None:
    """What tells a killed writer's leftover from a live one's (``.mlflow.db.<pid>.creating``)."""
    import signal
    import subprocess
    import sys

    from reprokit._fsutil import process_exists

    assert process_exists(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert process_exists(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while process_exists(child.pid) and time.monotonic() < deadline:
            time.sleep(0.05)  # a zombie until reaped: it does not count as a process
        assert not process_exists(child.pid)
    finally:
        child.kill()
        child.wait(30)
    assert not process_exists(child.pid)  # reaped
