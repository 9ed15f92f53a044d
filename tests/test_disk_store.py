"""The content-addressed store: run folders and local MLflow artifacts share one read-only copy
of each file (hard links), and no write through one name can change another."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
from conftest import only_run, tracking_uri

from reprokit._fsutil import atomic_write_bytes, has_partial_writes
from reprokit.recording.objects import (
    intern_file,
    intern_tree,
    link_tree,
    local_artifact_dir,
    unreferenced_objects,
)


def _inode(path: Path) -> int:
    return path.stat().st_ino


def test_equal_files_of_two_runs_become_one_read_only_object(tmp_path: Path) -> None:
    store = tmp_path / "objects"
    first, second = tmp_path / "run1" / "a.npy", tmp_path / "run2" / "a.npy"
    for path in (first, second):
        path.parent.mkdir()
        path.write_bytes(b"x" * 100_000)
    assert intern_tree(first.parent, store) == 1
    assert intern_tree(second.parent, store) == 1
    assert _inode(first) == _inode(second)
    objects = list(store.rglob("*"))
    assert [p for p in objects if p.is_file()] == [
        p for p in objects if p.is_file() and _inode(p) == _inode(first)
    ]
    assert stat.S_IMODE(first.stat().st_mode) == 0o444
    assert first.stat().st_nlink == 3


def test_a_rewrite_through_one_name_leaves_every_other_link_intact(tmp_path: Path) -> None:
    store, run, artifacts = tmp_path / "objects", tmp_path / "run", tmp_path / "artifacts"
    run.mkdir()
    (run / "results.json").write_text("old")
    intern_tree(run, store)
    linked = link_tree(run, artifacts)
    assert (linked.linked, linked.copied) == (1, 0)
    assert _inode(run / "results.json") == _inode(artifacts / "results.json")
    atomic_write_bytes(run / "results.json", b"new")  # how reprokit writes every file
    assert (artifacts / "results.json").read_text() == "old"
    assert (run / "results.json").read_text() == "new"
    assert not os.access(artifacts / "results.json", os.W_OK) or os.geteuid() == 0


def test_a_writable_file_is_copied_never_shared(tmp_path: Path) -> None:
    run, artifacts = tmp_path / "run", tmp_path / "artifacts"
    run.mkdir()
    (run / "kernel.log").write_text("log")
    linked = link_tree(run, artifacts)
    assert (linked.linked, linked.copied) == (0, 1)
    assert _inode(run / "kernel.log") != _inode(artifacts / "kernel.log")


def test_an_object_nobody_links_is_garbage(tmp_path: Path) -> None:
    store, run = tmp_path / "objects", tmp_path / "run"
    run.mkdir()
    (run / "a").write_text("a")
    obj = intern_file(run / "a", store)
    assert obj is not None and list(unreferenced_objects(store)) == []
    (run / "a").unlink()
    assert list(unreferenced_objects(store)) == [(obj, 1)]
    # a store folder linked elsewhere, or files put in it: only objects' names are garbage
    (store / "notes.txt").write_text("mine")
    (store / obj.name[:2] / "copy.csv").write_text("mine")
    (store / "ff" / ("0" * 64)).parent.mkdir()
    (store / "ff" / ("0" * 64)).write_text("not where its name says")
    assert list(unreferenced_objects(store)) == [(obj, 1)]


def test_only_file_uris_are_local_artifact_folders() -> None:
    assert local_artifact_dir("file:///p/ml%20artifacts/1") == Path("/p/ml artifacts/1")
    assert local_artifact_dir("/p/mlartifacts/1") == Path("/p/mlartifacts/1")
    assert local_artifact_dir("s3://bucket/1") is None
    assert local_artifact_dir("mlflow-artifacts:/1/abc/artifacts") is None


def test_a_recorded_run_shares_its_files_with_the_local_mlflow_artifacts(project: Path) -> None:
    import numpy as np

    from reprokit.api import session

    session.start()
    assert session.flush(120)  # the snapshot's upload, then the whole folder's again at the end
    session.result("a", np.arange(100_000, dtype="float64"))
    ended = session.end()
    assert session.flush(120)
    assert ended.local_dir is not None
    arrays = list(Path(ended.local_dir, "arrays").glob("*.npy"))
    assert len(arrays) == 1
    artifact = next((project / "mlartifacts").rglob(f"arrays/{arrays[0].name}"))
    assert _inode(artifact) == _inode(arrays[0])
    assert stat.S_IMODE(artifact.stat().st_mode) == 0o444
    assert any(_inode(p) == _inode(artifact) for p in (project / ".reprokit/objects").rglob("*"))
    assert not has_partial_writes(project / "mlartifacts")  # no temporary link among them


def test_linking_over_a_link_to_the_same_file_leaves_no_temporary(tmp_path: Path) -> None:
    """A folder uploaded twice: each artifact is already a link to its object, and a rename of
    a link over another link to the same file does nothing (POSIX), which left the temporary
    link (``.data.json.<hex>.link``) among the run's MLflow artifacts."""
    store, run, artifacts = tmp_path / "objects", tmp_path / "run", tmp_path / "artifacts"
    run.mkdir()
    (run / "data.json").write_text("{}")
    intern_tree(run, store)
    link_tree(run, artifacts)
    assert _inode(artifacts / "data.json") == _inode(run / "data.json")
    assert link_tree(run, artifacts).linked == 1  # the same inode on both sides
    assert [p.name for p in artifacts.iterdir()] == ["data.json"]
    assert intern_tree(run, store) == 1
    assert sorted(p.name for p in run.iterdir()) == ["data.json"]


def _damage(path: Path, *, chmod_back: bool) -> None:
    """A write through a link (a tool that ``chmod``s it back, or a bit flipped on disk)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    os.chmod(path, 0o644)
    with path.open("r+b") as file:
        file.seek(40)
        file.write(b"\xff")
    if not chmod_back:
        os.chmod(path, mode)


@pytest.mark.parametrize("chmod_back", [True, False], ids=["made-writable", "bit-flip"])
def test_a_damaged_object_is_replaced_not_linked_to(tmp_path: Path, chmod_back: bool) -> None:
    """A damaged object spread its bytes to every later run of the same content (the MLflow
    artifact included), and verify said NOT REPRODUCED for a notebook that reproduces."""
    store, first, second = tmp_path / "objects", tmp_path / "run1" / "a", tmp_path / "run2" / "a"
    for path in (first, second):
        path.parent.mkdir()
        path.write_bytes(bytes(range(256)) * 400)
    obj = intern_file(first, store)
    assert obj is not None
    _damage(first, chmod_back=chmod_back)
    assert intern_file(second, store) == obj
    assert second.read_bytes() == bytes(range(256)) * 400
    assert _inode(obj) == _inode(second) != _inode(first)  # the good file is the object now
    assert stat.S_IMODE(obj.stat().st_mode) == 0o444
    assert sorted(p.name for p in obj.parent.iterdir()) == [obj.name]  # no temporary left


def test_an_object_of_another_size_is_replaced(tmp_path: Path) -> None:
    store, run = tmp_path / "objects", tmp_path / "run"
    run.mkdir()
    (run / "a").write_text("abc")
    obj = intern_file(run / "a", store)
    assert obj is not None
    obj.unlink()
    obj.write_text("abcd")  # truncated, appended to, or another file put there
    os.chmod(obj, 0o444)
    (run / "b").write_text("abc")
    assert intern_file(run / "b", store) == obj
    assert obj.read_text() == "abc" and _inode(obj) == _inode(run / "b")


def test_a_store_that_cannot_be_written_leaves_the_file_as_it_is(tmp_path: Path) -> None:
    """The store only saves space: a store that is read-only, full or not a folder at all
    leaves the run's file as it was (then copied into MLflow's artifacts), never an error."""
    run, store = tmp_path / "run", tmp_path / "objects"
    run.mkdir()
    (run / "a").write_text("a")
    store.write_text("not a folder")  # mkdir fails: FileExistsError / NotADirectoryError
    assert intern_file(run / "a", store) is None
    assert stat.S_IMODE((run / "a").stat().st_mode) & 0o200
    assert link_tree(run, tmp_path / "artifacts").copied == 1


@pytest.mark.parametrize("error", [errno.EROFS, errno.ENOSPC, errno.EACCES, errno.EIO])
def test_any_error_of_the_store_leaves_the_file_writable_and_unlinked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: int
) -> None:
    run, store = tmp_path / "run", tmp_path / "objects"
    run.mkdir()
    (run / "a").write_text("a")

    def refused(*args: object, **kwargs: object) -> None:
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(os, "link", refused)
    assert intern_file(run / "a", store) is None
    assert (run / "a").read_text() == "a"
    assert stat.S_IMODE((run / "a").stat().st_mode) & 0o200  # mode put back: copied, not shared
    assert (run / "a").stat().st_nlink == 1


def test_a_run_whose_store_cannot_be_written_is_recorded_with_copies(project: Path) -> None:
    """A read-only (or full) ``.reprokit/objects``: the run was FAILED in MLflow with no
    artifacts, though the store only saves space."""
    import numpy as np

    from reprokit.api import session

    (project / ".reprokit").mkdir()
    (project / ".reprokit/objects").write_text("not a folder: every write in it fails")
    session.start()
    session.result("a", np.arange(100_000, dtype="float64"))
    ended = session.end()
    assert session.flush(120)
    assert ended.local_dir is not None
    assert only_run(tracking_uri(project), project.name).info.status == "FINISHED"
    arrays = list(Path(ended.local_dir, "arrays").glob("*.npy"))
    artifact = next((project / "mlartifacts").rglob(f"arrays/{arrays[0].name}"))
    assert _inode(artifact) != _inode(arrays[0])  # a copy
    assert artifact.read_bytes() == arrays[0].read_bytes()
