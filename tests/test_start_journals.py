"""The journal the runner opens as a notebook starts: completed by the notebook's record into
one run, replayed as KILLED when the runner ended first, never opened for a run already
recorded. A real SQLite store; no kernel (the runner's side is in test_faults_execution)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import mlflow_client, tracking_uri

from reprokit.api.run import _StartJournals
from reprokit.api.status import disk_status
from reprokit.api.sync import sync
from reprokit.recording.executed import (
    PendingRecord,
    abandon_journal,
    begin_journal,
    begin_record,
)
from reprokit.recording.journal import Journal, journal_folder, read_journal
from reprokit.runner.plan import PlannedRun


def _output(project: Path, name: str = "nb") -> Path:
    output = project / ".reprokit" / "runs" / "batch" / name
    output.mkdir(parents=True)
    (output / f"{name}.ipynb").write_text("{}")
    return output


def _journals(project: Path) -> list[Path]:
    return sorted(journal_folder(project).glob("*.jsonl"))


def _plan(project: Path, output: Path) -> PlannedRun:
    return PlannedRun(project / "nb.ipynb", None, output, {"alpha": 0.5}, {})


def _started(project: Path, output: Path, parameters: dict[str, Any] | None = None) -> Journal:
    journal = begin_journal(
        notebook=project / "nb.ipynb", output_dir=output, device="cpu", parameters=parameters or {}
    )
    assert journal is not None
    return journal


def _recorded(
    project: Path, output: Path, journal: Journal, parameters: dict[str, Any], tags: dict[str, str]
) -> PendingRecord:
    """The record of the notebook's execution (ok, started at 1 s), completing ``journal``."""
    return begin_record(
        notebook=project / "nb.ipynb",
        output_dir=output,
        status="ok",
        start_ms=1_000,
        device="cpu",
        parameters=parameters,
        results=None,
        extra_tags=tags,
        journal=journal,
    )


def test_the_record_completes_the_journal_opened_at_the_start(project: Path) -> None:
    output = _output(project)
    journal = _started(project, output, {"a": 1})
    assert _journals(project) == [journal.path]
    started = read_journal(journal.path)
    assert started.status is None and started.params == {"device": "cpu", "a": "1"}
    assert started.uploads == {} and started.folder == str(output)  # nothing scrubbed yet
    assert started.tags["reprokit.runner"] == "reprokit run"

    pending = _recorded(project, output, journal, {"a": 1}, {"reprokit.runner.status": "ok"})
    assert _journals(project) == [journal.path]  # the same journal, no second one
    folded = read_journal(journal.path)
    assert (folded.status, folded.start_ms, folded.run_name) == ("FINISHED", 1_000, "nb")
    assert folded.tags["reprokit.runner.status"] == "ok"
    assert folded.uploads == {"reprokit": str(output)}
    recorded = pending.finish()
    assert recorded.error is None and recorded.run_id is not None
    client = mlflow_client(tracking_uri(project))
    runs = client.search_runs([client.get_experiment_by_name("proj").experiment_id])
    assert [(r.info.run_id, r.info.status) for r in runs] == [(recorded.run_id, "FINISHED")]
    assert runs[0].data.params == {"device": "cpu", "a": "1"}
    assert _journals(project) == []


def test_a_start_journal_left_behind_is_recorded_as_killed_when_its_folder_last_changed(
    project: Path,
) -> None:
    """Not uploaded: the runner had not scrubbed secret values from the partial notebook and
    the kernel's log yet. Ended when the runner last wrote, not when the replay ran."""
    output = _output(project)
    (output / "nb.kernel.log").write_text("the kernel's last words\n")
    journal = _started(project, output)
    journal.release()  # the runner is gone
    died = time.time() - 3600
    os.utime(journal.path, (died - 60, died - 60))
    for path in output.iterdir():
        os.utime(path, (died - 10, died - 10))
    os.utime(output / "nb.kernel.log", (died, died))
    [replay] = sync(project)
    assert (replay.status, replay.run_status) == ("replayed", "KILLED")
    client = mlflow_client(tracking_uri(project))
    run = client.get_run(replay.run_id)
    assert run.info.run_name == "nb" and run.data.tags["reprokit.runner"] == "reprokit run"
    assert abs(run.info.end_time - died * 1000) < 1000
    assert client.list_artifacts(replay.run_id) == []
    assert (output / "nb.kernel.log").is_file()  # kept where it was
    assert _journals(project) == []
    # where gc looks for the run of the folder: a lock naming the run keeps the folder
    info = json.loads((output.parent / "nb.run.json").read_text())
    assert info["run_id"] == replay.run_id


def test_a_run_whose_record_failed_is_replayed_with_its_execution_status(project: Path) -> None:
    journal = _started(project, _output(project))
    abandon_journal(journal, "ok")
    [replay] = sync(project)
    assert (replay.status, replay.run_status) == ("replayed", "FINISHED")


def test_no_start_journal_for_outputs_outside_the_project_dot_reprokit(project: Path) -> None:
    output = project / "out" / "nb"
    output.mkdir(parents=True)
    journal = begin_journal(
        notebook=project / "nb.ipynb", output_dir=output, device="cpu", parameters={}
    )
    assert journal is None and _journals(project) == []


def test_a_start_heard_of_after_the_result_opens_no_journal(project: Path) -> None:
    """A Dask executor may hear that a task started after its result came back: the run is
    recorded then in a journal of its own, and a start journal would replay a second run."""
    journals = _StartJournals()
    plan = _plan(project, _output(project))
    assert journals.take(plan) is None
    journals.open(plan)
    assert _journals(project) == []
    journals.close()


def test_start_journals_are_taken_once_and_let_go_on_close(project: Path) -> None:
    journals = _StartJournals()
    first, second = _plan(project, _output(project, "a")), _plan(project, _output(project, "b"))
    journals.open(first)
    journals.open(second)
    assert len(_journals(project)) == 2
    taken = journals.take(first)
    assert taken is not None and journals.take(first) is None
    taken.discard()
    journals.close()  # the second one is left for the next command to replay
    [left] = _journals(project)
    assert read_journal(left).params == {"device": "cpu", "alpha": "0.5"}
    assert [r.status for r in sync(project)] == ["replayed"]


def test_a_journal_that_cannot_be_deleted_is_left_marked_synced(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its folder made read-only while the notebook ran (``chattr +i``, a remount): the run is
    in MLflow, the command goes on, and later commands find the journal done, not a crash."""
    output = _output(project)
    journal = _started(project, output)
    unlink = Path.unlink

    def refused(path: Path, missing_ok: bool = False) -> None:
        if path.suffix == ".jsonl":
            raise PermissionError(1, "Operation not permitted", str(path))
        unlink(path, missing_ok)

    with monkeypatch.context() as patched:
        patched.setattr(Path, "unlink", refused)
        pending = _recorded(project, output, journal, {}, {})
        recorded = pending.finish()
        assert recorded.error is None and recorded.run_id is not None
        [left] = _journals(project)
        assert read_journal(left).synced
        size = left.stat().st_size
        [replay] = sync(project)  # named, not said to be removed
        assert replay.status == "failed" and "in MLflow" in str(replay.detail)
        assert left.stat().st_size == size  # not marked again at each sync
        assert disk_status(project).journals == 0  # its run is not waiting
    assert [r.status for r in sync(project)] == ["empty"]  # deleted once it can be
    assert _journals(project) == []
    client = mlflow_client(tracking_uri(project))
    experiment = client.get_experiment_by_name("proj").experiment_id
    assert [r.info.status for r in client.search_runs([experiment])] == ["FINISHED"]


def test_a_journal_that_cannot_be_opened_is_named_by_sync_not_a_crash(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another user's journal (mode 0600) in a shared project, an immutable file, a read-only
    mount: every command that opens the store replays journals first, and crashed on it."""
    journal = _started(project, _output(project))
    journal.release()
    opened = os.open

    def refused(path: Any, flags: int, *args: Any) -> int:
        if str(path).endswith(".jsonl") and flags & os.O_WRONLY:
            raise PermissionError(1, "Operation not permitted", str(path))
        return opened(path, flags, *args)

    with monkeypatch.context() as patched:
        patched.setattr(os, "open", refused)
        [replay] = sync(project)
    assert replay.status == "failed" and "cannot open it for writing" in str(replay.detail)
    assert [r.status for r in sync(project)] == ["replayed"]
