"""``reprokit gc``: the last N runs per notebook stay, and so does every run a lock names and
every folder still being written; ``--dry-run`` deletes nothing; unlinked objects go."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from reprokit.api.gc import gc
from reprokit.api.status import disk_status
from reprokit.notebook.files import mark_output_folder
from reprokit.recording.objects import intern_tree, objects_folder
from reprokit.recording.retention import find_runs, runs_folder, write_run_info, writing
from reprokit.report.disk import describe_gc


def _runner_run(root: Path, key: str, notebook: str, run_id: str, size: int = 1000) -> Path:
    """A folder as ``reprokit run`` leaves it: runs/<batch>/<stem>/ and <stem>.run.json."""
    unit = runs_folder(root) / key / Path(notebook).stem
    unit.mkdir(parents=True)
    mark_output_folder(unit.parent)  # as the runner marks its batch folder
    (unit / f"{Path(notebook).name}").write_bytes(key.encode() * size)
    (unit / "arrays.npy").write_bytes(b"same content in every run" * 100)
    intern_tree(unit, objects_folder(root))
    write_run_info(unit, str(root / notebook), run_id)
    return unit


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    made = {
        f"a{k}": _runner_run(tmp_path, f"2026010{k}T000000Z-aaaaaa", "a.ipynb", f"a{k}")
        for k in range(1, 5)
    }
    made |= {
        f"b{k}": _runner_run(tmp_path, f"2026020{k}T000000Z-bbbbbb", "b.ipynb", f"b{k}")
        for k in (1, 2)
    }
    return made


def test_the_last_runs_of_each_notebook_stay(tmp_path: Path, runs: dict[str, Path]) -> None:
    result = gc(tmp_path, keep=2)
    assert sorted(Path(e.path).parent.name[:9] for e in result.removed) == [
        "20260101T",
        "20260102T",
    ]
    assert not runs["a1"].exists() and not runs["a2"].exists()
    assert not runs["a1"].parent.exists()  # the emptied batch folder too
    assert all(runs[k].exists() for k in ("a3", "a4", "b1", "b2"))
    assert {reason for _, reason in result.kept} == {"recent"}


def test_a_run_named_by_a_lock_stays_however_old(tmp_path: Path, runs: dict[str, Path]) -> None:
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "a.repro.json").write_text(json.dumps({"run_id": "a1"}))
    result = gc(tmp_path, keep=1)
    assert runs["a1"].exists() and not runs["a2"].exists()
    assert ("a1", "locked") in {(e.run_id, reason) for e, reason in result.kept}


def _conflicted(lock: Path) -> None:
    lock.write_text(
        '{\n<<<<<<< HEAD\n "created_at": "a",\n=======\n "created_at": "b",\n'
        '>>>>>>> other\n "run_id": "a1"\n}\n'
    )


def _truncated(lock: Path) -> None:
    lock.write_text(json.dumps({"notebook": {"path": "a.ipynb"}, "run_id": "a1"})[:20])


def _fifo(lock: Path) -> None:
    os.mkfifo(lock)


def _link_outside(lock: Path) -> None:
    root = lock.parent.parent  # the project
    outside = root.parent / f"{root.name}-outside.repro.json"
    outside.write_text(json.dumps({"run_id": "a1"}))
    lock.symlink_to(outside)


def _run_id_not_a_string(lock: Path) -> None:
    lock.write_text(json.dumps({"run_id": ["a1"]}))


_UNREADABLE = {
    "merge-conflicted": (_conflicted, "merge-conflict markers (line 2)"),
    "truncated": (_truncated, "not valid JSON"),
    "a FIFO": (_fifo, "not a regular file"),
    "a link outside the project": (_link_outside, "leads outside"),
    "a run_id not a string": (_run_id_not_a_string, "(run_id): run_id must be a string"),
}


@pytest.mark.parametrize("case", sorted(_UNREADABLE))
def test_a_lock_gc_cannot_read_stops_it_before_it_removes_anything(
    tmp_path: Path, runs: dict[str, Path], case: str
) -> None:
    """A lock gc could not read was taken for no lock: ``gc --keep 0`` removed the run folder
    a merge-conflicted lock still named, and said nothing. Such a lock may name any run."""
    from click.testing import CliRunner

    from reprokit.cli import main

    make, why = _UNREADABLE[case]
    lock = tmp_path / "nested" / "a.repro.json"
    lock.parent.mkdir()
    make(lock)
    before = sorted(tmp_path.rglob("*"))
    for dry_run in ([], ["--dry-run"]):
        result = CliRunner().invoke(main, ["gc", str(tmp_path), "--keep", "0", *dry_run])
        assert result.exit_code == 2, result.output
        [line] = result.output.splitlines()
        assert line.startswith(f"reprokit: error: {lock}") and why in line, line
        assert "gc removed nothing" in line
    assert sorted(tmp_path.rglob("*")) == before and all(p.exists() for p in runs.values())


def test_a_lock_naming_no_run_does_not_stop_gc(tmp_path: Path, runs: dict[str, Path]) -> None:
    (tmp_path / "a.repro.json").write_text(json.dumps({"run_id": None, "results": {}}))
    (tmp_path / "b.repro.json").write_text(json.dumps({"results": {}}))
    assert len(gc(tmp_path, keep=0).removed) == 6


def _snapshot_json(captured_at: str) -> bytes:
    """A run folder's snapshot.json as reprokit lays it out (sorted keys, one space indent)."""
    snapshot = {"accelerator": {"available": False, "devices": []}, "captured_at": captured_at}
    return json.dumps({**snapshot, "data": None}, indent=1, sort_keys=True).encode()


def test_a_run_a_lock_recorded_without_mlflow_came_from_stays(
    tmp_path: Path, runs: dict[str, Path]
) -> None:
    """``record`` with the tracking server down wrote ``run_id: null``; ``sync`` then named the
    run in the folder, not in the lock, and ``gc --keep 1`` removed the folder the lock was
    recorded from. The lock's snapshot time names that folder (a runner's or a session's)."""
    session = runs["a2"] / "20260102T000001Z-cccccc"  # the kernel's session inside the unit
    session.mkdir()
    (session / "snapshot.json").write_bytes(_snapshot_json("2026-01-02T00:00:01.123+00:00"))
    (runs["a3"] / "20260103T000001Z-dddddd").mkdir()
    (runs["a3"] / "20260103T000001Z-dddddd" / "snapshot.json").write_bytes(
        _snapshot_json("2026-01-03T00:00:01.999+00:00")  # another run: not kept for it
    )
    alone, newer = (
        _session_folder(
            tmp_path, f"2026010{k}T000000Z-eeeeee", {"snapshot.json": _snapshot_json(at)}
        )
        for k, at in ((1, "2026-01-01T1"), (5, "2026-01-05T1"))
    )
    for name, at in (("a", "2026-01-02T00:00:01.123+00:00"), ("s", "2026-01-01T1")):
        lock = {"run_id": None, "snapshot": {"captured_at": at, "git": {}}}
        (tmp_path / f"{name}.repro.json").write_text(json.dumps(lock, indent=1, sort_keys=True))
    dry = gc(tmp_path, keep=1, dry_run=True)
    kept = {Path(e.path): reason for e, reason in dry.kept}
    assert kept[runs["a2"]] == "locked" and kept[alone] == "locked"
    assert kept[runs["a4"]] == kept[newer] == "recent" and runs["a3"] not in kept
    gc(tmp_path, keep=1)
    assert runs["a2"].exists() and alone.exists() and not runs["a3"].exists()
    (tmp_path / "a.repro.json").write_text(json.dumps({"run_id": "a4", "snapshot": {}}))
    gc(tmp_path, keep=0)  # recorded again, now with MLflow: the old folder goes
    assert not runs["a2"].exists() and runs["a4"].exists()


def test_a_dry_run_lists_and_counts_but_deletes_nothing(
    tmp_path: Path, runs: dict[str, Path]
) -> None:
    before = sorted(p for p in tmp_path.rglob("*"))
    result = gc(tmp_path, keep=0, dry_run=True)
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert len(result.removed) == 6 and result.dry_run
    notebooks = sum(
        (u / f"{n}.ipynb").stat().st_size for u, n in ((u, u.name) for u in runs.values())
    )
    assert result.bytes_freed == notebooks + 2500  # the shared array once
    assert describe_gc(result)[-1].startswith("would remove 6 run folder(s)")
    done = gc(tmp_path, keep=0)
    assert done.bytes_freed == result.bytes_freed
    assert not list(objects_folder(tmp_path).rglob("*.*")) and disk_status(tmp_path).objects == 0


def test_a_folder_being_written_is_never_touched(tmp_path: Path, runs: dict[str, Path]) -> None:
    with writing(runs["a1"].parent):
        result = gc(tmp_path, keep=0)
        assert runs["a1"].exists()
        assert ("a1", "active") in {(e.run_id, reason) for e, reason in result.kept}
    gc(tmp_path, keep=0)
    assert not runs["a1"].exists()


def test_a_folder_that_could_not_be_deleted_is_kept_and_its_bytes_not_claimed(
    tmp_path: Path, runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from reprokit.recording import retention

    real = retention.shutil.rmtree

    def refuse(path: Path, ignore_errors: bool = False) -> None:
        if Path(path) != runs["a1"]:  # a1 stays, as with a file this user may not delete
            real(path, ignore_errors=ignore_errors)

    plan = gc(tmp_path, keep=0, dry_run=True)
    monkeypatch.setattr(retention.shutil, "rmtree", refuse)
    result = gc(tmp_path, keep=0)
    assert runs["a1"].exists() and len(result.removed) == 5
    assert ("a1", "undeletable") in {(e.run_id, reason) for e, reason in result.kept}
    notebook = (runs["a1"] / "a.ipynb").stat().st_size
    # neither a1's notebook nor the array it still links is freed
    assert result.bytes_freed == plan.bytes_freed - notebook - 2500
    assert result.objects_removed == plan.objects_removed - 2
    lines = describe_gc(result, tmp_path, verbose=True)
    assert any("could not be deleted" in line for line in lines)
    assert lines[-1].startswith("removed 5 run folder(s)") and "kept 1 run folder(s)" in lines[-1]


def test_an_object_mlflow_still_links_stays(tmp_path: Path, runs: dict[str, Path]) -> None:
    artifact = tmp_path / "mlartifacts" / "a.npy"
    artifact.parent.mkdir()
    artifact.hardlink_to(runs["a1"] / "arrays.npy")
    gc(tmp_path, keep=0)
    assert artifact.read_bytes() == b"same content in every run" * 100
    assert disk_status(tmp_path).objects == 1


def test_a_live_session_folder_stays_until_its_run_ended(project: Path) -> None:
    from reprokit.api import session

    session.start()
    folder = Path(session.status().local_dir or "")
    assert gc(project, keep=0).removed == ()
    assert folder.is_dir()
    session.end()
    session.flush(60)
    gc(project, keep=0)
    assert not folder.exists()
    assert disk_status(project).runs == 0


def test_gc_while_record_writes_its_lock_leaves_the_run_folder_it_names(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder stays marked as being written until the lock naming it is written, not
    only while its notebook runs (a stranger removed it with gc in between)."""
    from run_helpers import write_notebook

    import reprokit.api.record as recording

    write_notebook(
        project / "nb.ipynb",
        ["%load_ext reprokit\n%repro start --seed 0", "import reprokit\nreprokit.result('x', 1)"],
    )
    removed: list[object] = []
    write_lock = recording.write_lock

    def gc_first(lock: object, target: Path) -> object:
        removed.extend(gc(project, keep=0).removed)
        return write_lock(lock, target)  # type: ignore[arg-type]

    monkeypatch.setattr(recording, "write_lock", gc_first)
    [outcome] = recording.record([project / "nb.ipynb"])
    assert outcome.lock_path is not None and removed == []
    assert Path(outcome.run.output_path).is_file()
    assert not list(runs_folder(project).glob("*.active"))  # released once record is done


@pytest.mark.parametrize("command", ["gc", "status", "sync"])
def test_a_mistyped_path_is_a_usage_error_not_zero_bytes(tmp_path: Path, command: str) -> None:
    """docs/cli.md: a missing path exits 2. It used to print "0 B" (or remove nothing), exit 0."""
    from click.testing import CliRunner

    from reprokit.cli import main

    (tmp_path / "file.txt").write_text("x")
    for path, why in (("nope", "no such folder"), ("file.txt", "not a folder")):
        result = CliRunner().invoke(main, [command, str(tmp_path / path)])
        assert result.exit_code == 2, result.output
        assert result.output.strip() == f"reprokit: error: {tmp_path / path}: {why}"


def _session_folder(root: Path, key: str, files: dict[str, bytes]) -> Path:
    folder = runs_folder(root) / key
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def test_a_session_killed_before_its_first_file_was_whole_is_one_run_and_goes_whole(
    tmp_path: Path,
) -> None:
    """A kernel killed right after ``%repro start`` leaves a partial write and ``arrays/``: that
    used to be taken for a runner's batch, its ``arrays/`` for a run, and never went."""
    folder = _session_folder(
        tmp_path,
        "20260101T000000Z-aaaaaa",
        {".snapshot.json.k2j4.tmp": b"{", "arrays/.write.x8.tmp": b"\x93NUMPY"},
    )
    bare = _session_folder(tmp_path, "20260101T000001Z-bbbbbb", {"arrays/r.npy": b"x"})
    found = find_runs(tmp_path)
    assert [(Path(e.path), e.notebook) for e in found] == [
        (folder, "(no notebook)"),
        (bare, "(no notebook)"),
    ]
    assert disk_status(tmp_path).runs == 2
    gc(tmp_path, keep=0)
    assert not folder.exists() and not bare.exists()


def test_of_two_runs_started_in_one_second_the_later_stays(tmp_path: Path) -> None:
    """Run folders are named by the second they started in and a random suffix: the suffix
    used to decide which of two runs of one second was the last."""
    info = b'{"notebook": "nb.ipynb", "run_id": null}'
    later = _session_folder(tmp_path, "20260101T000000Z-000000", {"run.json": info})
    earlier = _session_folder(tmp_path, "20260101T000000Z-ffffff", {"run.json": info})
    os.utime(earlier, ns=(1_000_000_000, 1_000_000_000))
    os.utime(later, ns=(2_000_000_000, 2_000_000_000))
    result = gc(tmp_path, keep=1)
    assert [Path(e.path) for e in result.removed] == [earlier]
    assert later.exists()


def test_gc_never_follows_a_link_in_the_runs_folder(tmp_path: Path, runs: dict[str, Path]) -> None:
    """A stranger linked a folder of the project's data (and one outside it) into the runs
    folder: gc took the link for a batch and deleted the data it led to."""
    data = tmp_path / "data"
    (data / "raw").mkdir(parents=True)
    (data / "raw" / "a.csv").write_text("keep me")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    (outside / "important").mkdir(parents=True)
    (outside / "important" / "b.csv").write_text("keep me too")
    base = runs_folder(tmp_path)
    (base / "20200102T000000Z-linked").symlink_to(data, target_is_directory=True)
    (base / "20200103T000000Z-away").symlink_to(outside, target_is_directory=True)
    (runs["a1"].parent / "unit").symlink_to(outside / "important", target_is_directory=True)
    listed = {Path(e.path) for e in find_runs(tmp_path)}
    assert listed == set(runs.values())
    assert disk_status(tmp_path).runs == 6
    result = gc(tmp_path, keep=0)
    assert {Path(e.path) for e in result.removed} == set(runs.values())
    assert (data / "raw" / "a.csv").read_text() == "keep me"
    assert (outside / "important" / "b.csv").read_text() == "keep me too"


def test_an_empty_run_folder_and_a_stale_marker_go(tmp_path: Path) -> None:
    """A kernel killed right after ``%repro start`` made its folder: an empty folder (and a
    marker nobody holds) that status did not count and gc never removed."""
    empty = runs_folder(tmp_path) / "20260101T000000Z-aaaaaa"
    empty.mkdir(parents=True)
    marker = runs_folder(tmp_path) / "20260101T000000Z-aaaaaa.active"
    orphan = runs_folder(tmp_path) / "20260101T000001Z-bbbbbb.active"
    young = runs_folder(tmp_path) / "20260101T000002Z-cccccc.active"
    for path in (marker, orphan, young):
        path.touch()
    for path in (marker, orphan):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    assert disk_status(tmp_path).runs == 1
    assert [Path(e.path) for e in gc(tmp_path, keep=0).removed] == [empty]
    assert not empty.exists() and not marker.exists() and not orphan.exists()
    assert young.exists()  # may be a marker made just before its folder


def test_a_removed_folder_is_shown_on_one_line(tmp_path: Path) -> None:
    from reprokit.report.disk import describe_gc

    _runner_run(tmp_path, "20260101T000000Z-aaaaaa", "nb\nx.ipynb", "r1")
    lines = describe_gc(gc(tmp_path, keep=0), tmp_path)
    assert lines[0] == "removed  .reprokit/runs/20260101T000000Z-aaaaaa/nb\\nx"


def test_a_run_named_by_a_replay_stays_however_its_folder_looks(tmp_path: Path) -> None:
    """A reviewer's cases: a session killed before its first file (only ``arrays/``) got its
    run id written where gc does not read it; a notebook named ``data.json.ipynb`` made its
    runner batch look like a session, whose units' run ids gc then ignored."""
    from reprokit.recording.retention import name_run

    session = _session_folder(tmp_path, "20260101T000000Z-aaaaaa", {"arrays/x.npy": b"x"})
    name_run(session, "s1", "nb.ipynb")
    unit = _runner_run(tmp_path, "20260101T000001Z-bbbbbb", "data.json.ipynb", "u1")
    (tmp_path / "a.repro.json").write_text(json.dumps({"run_id": "s1"}))
    (tmp_path / "b.repro.json").write_text(json.dumps({"run_id": "u1"}))
    assert {(Path(e.path), e.run_id) for e in find_runs(tmp_path)} == {
        (session, "s1"),
        (unit, "u1"),
    }
    assert gc(tmp_path, keep=0).removed == ()


def test_a_link_a_killed_interning_left_in_the_store_goes_once_it_is_stale(
    tmp_path: Path, runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from reprokit.capturing.hashing import hash_file

    late = runs["a1"] / "late.bin"  # killed between os.link and os.replace in intern_file
    late.write_bytes(b"x" * 5000)
    digest = hash_file(late)
    (objects_folder(tmp_path) / digest[:2]).mkdir(exist_ok=True)
    temporary = objects_folder(tmp_path) / digest[:2] / f".{digest}.0123abcd.link"
    os.link(late, temporary)
    mine = objects_folder(tmp_path) / digest[:2] / ".notes.link"  # not a name gc gives
    mine.write_text("someone's")
    gc(tmp_path, keep=0)  # the link is young: it may be an interning under way
    assert temporary.exists() and not runs["a1"].exists()
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 120)
    assert gc(tmp_path, keep=0, dry_run=True).bytes_freed == 5000
    assert gc(tmp_path, keep=0).bytes_freed == 5000
    assert not temporary.exists() and mine.read_text() == "someone's"


def test_a_killed_runners_folder_stays_while_its_start_journal_waits(
    tmp_path: Path, runs: dict[str, Path]
) -> None:
    """A runner killed mid-notebook leaves the journal it opened as the notebook started; the
    next sync records the run from it, beside its output folder: gc keeps that folder."""
    from reprokit.recording.executed import begin_journal

    unit = runs_folder(tmp_path) / "20260301T000000Z-cccccc" / "c"
    unit.mkdir(parents=True)
    mark_output_folder(unit.parent)
    (unit / "c.ipynb").write_text("{}")  # the partial notebook; no run.json yet
    journal = begin_journal(
        notebook=tmp_path / "c.ipynb", output_dir=unit, device="cpu", parameters={}
    )
    assert journal is not None
    journal.release()  # the runner is gone
    result = gc(tmp_path, keep=0)
    assert unit.is_dir() and (unit / "c.ipynb").is_file()
    assert str(unit) not in {entry.path for entry in result.removed}
    journal.path.unlink()  # recorded meanwhile (say): the folder is an old run like any other
    gc(tmp_path, keep=0)
    assert not unit.exists()


def test_a_dead_writers_log_goes_once_its_journal_is_gone(tmp_path: Path) -> None:
    """A writer killed after its run's end left its log for ever (sync and gc kept it)."""
    import fcntl

    from reprokit.recording.handoff import writer_log
    from reprokit.recording.journal import journal_folder

    folder = journal_folder(tmp_path)
    folder.mkdir(parents=True)
    (tmp_path / ".git").mkdir()
    orphan, waiting, at_work = (writer_log(folder / f"{k}.jsonl") for k in ("a", "b", "c"))
    for log in (orphan, waiting, at_work):
        log.write_text("writer process 1 started\n")
    (folder / "b.jsonl").write_text("")  # its journal waits for `reprokit sync`: kept
    held = os.open(at_work, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)  # a writer at work (it removes its own log)
    try:
        assert gc(tmp_path, dry_run=True).bytes_freed == orphan.stat().st_size
        assert orphan.exists()
        assert gc(tmp_path).bytes_freed == len("writer process 1 started\n")
        assert not orphan.exists() and waiting.exists() and at_work.exists()
    finally:
        os.close(held)
    gc(tmp_path)
    assert not at_work.exists() and waiting.exists()
