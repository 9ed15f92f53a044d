"""``end`` hands a run MLflow has not finished to a background writer process and returns;
waiting for it (``reprokit.flush()``, ``reprokit sync --wait``) shows the run; a writer killed
before it wrote anything loses nothing (``reprokit sync`` replays the journal)."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import mlflow_client, tracking_uri

from reprokit.api import session
from reprokit.api.sync import sync
from reprokit.exceptions import ReprokitWarning
from reprokit.recording.handoff import wait_for_writers, writer_log
from reprokit.recording.worker import Call


def _runs(project: Path) -> list[object]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri(project))  # no waiting for writers
    experiments = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(experiments)) if experiments else []


def _start_with_mlflow_held_up(project: Path) -> threading.Event:
    """A run whose recorder thread is blocked (as by a slow MLflow import) until the event."""
    session.start(experiment="handoff")
    session.result("accuracy", 0.75)
    assert session.flush(60)  # connected and opened: what follows is the end's own work
    go_on = threading.Event()
    assert session._active is not None
    session._active.recorder.submit(Call("held up", lambda: go_on.wait(60)))
    return go_on


@pytest.mark.slow  # the writer process imports MLflow: seconds
def test_end_returns_before_mlflow_has_the_run_and_waiting_shows_it(project: Path) -> None:
    go_on = _start_with_mlflow_held_up(project)
    ended = session.end()
    assert ended.background and ended.status == "FINISHED"
    (journal,) = (project / ".reprokit" / "journal").glob("*.jsonl")
    assert [r.info.status for r in _runs(project)] == ["RUNNING"]  # not closed yet
    go_on.set()
    assert session.flush(120)
    assert not journal.exists()
    (run,) = _runs(project)
    assert run.info.status == "FINISHED"
    assert run.data.metrics == {"accuracy": 0.75}
    assert run.data.tags["reprokit.results"] == "1"
    assert not writer_log(journal).exists()  # the log of a writer that succeeded is removed


@pytest.mark.slow  # the writer process imports MLflow and tries three times: seconds
def test_a_writer_that_fails_makes_flush_false_and_status_say_why(project: Path) -> None:
    """``flush`` returned True when the writer had failed: its error was only in its log."""
    import sqlite3

    from reprokit.api.status import disk_status
    from reprokit.report.disk import describe_disk

    go_on = _start_with_mlflow_held_up(project)
    assert session.end().background
    with sqlite3.connect(project / "mlflow.db") as db:  # the writer finds it half-made: refused
        db.execute("CREATE TABLE _alembic_tmp_experiments (experiment_id INTEGER)")
    db.close()
    go_on.set()
    with pytest.warns(ReprokitWarning, match="did not reach MLflow at sqlite:") as caught:
        assert not session.flush(120)
    (line,) = [str(w.message) for w in caught if "did not reach" in str(w.message)]
    assert "half-made" in line and "is kept: `reprokit sync` records it" in line
    (failure,) = disk_status(project).writer_failures
    assert failure.reason is not None and "half-made" in failure.reason
    assert any(
        text.startswith("failed   .reprokit/journal/")
        for text in describe_disk(disk_status(project), project)
    )


def test_a_killed_writer_loses_nothing(project: Path) -> None:
    go_on = _start_with_mlflow_held_up(project)
    session.end()
    (journal,) = (project / ".reprokit" / "journal").glob("*.jsonl")
    log = writer_log(journal)
    deadline = time.monotonic() + 60
    while not re.search(r"writer process (\d+)", log.read_text()):
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    pid = int(re.findall(r"writer process (\d+)", log.read_text())[0])
    # started as a module the package does not import: runpy has nothing to warn about
    assert "Warning" not in log.read_text(), log.read_text()
    os.kill(pid, signal.SIGKILL)  # while it waits for the journal
    os.waitpid(pid, 0)
    go_on.set()
    assert session._last_run is not None
    assert session._last_run.recorder.flush(60)  # the kernel's thread let go of the journal
    assert wait_for_writers(project, 60)
    assert journal.exists()  # the writer died: the journal is kept
    assert [r.info.status for r in _runs(project)] == ["RUNNING"]
    (replay,) = sync(project, wait=60)
    assert (replay.status, replay.run_status) == ("replayed", "FINISHED")
    assert not log.exists()  # the killed writer's log goes with the journal it was for
    (run,) = _runs(project)
    assert run.info.status == "FINISHED" and run.data.metrics == {"accuracy": 0.75}


@pytest.mark.slow  # two kernels and the helper's MLflow import
def test_run_with_jobs_records_every_notebook_through_the_helper(project: Path) -> None:
    """A fresh ``reprokit run --jobs 2`` (no MLflow imported in it: the helper process
    writes) records every notebook, FINISHED with its results."""
    from run_helpers import reprokit_cli, write_notebook

    for k in range(2):
        write_notebook(project / f"nb{k}.ipynb", [f"import reprokit\nreprokit.result('k', {k})"])
    env = {"MLFLOW_TRACKING_URI": tracking_uri(project)}
    done = reprokit_cli("run", ".", "--jobs", "2", "--device", "cpu", cwd=project, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    client = mlflow_client(tracking_uri(project))
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted((r.info.status, r.data.metrics.get("k")) for r in runs) == [
        ("FINISHED", 0.0),
        ("FINISHED", 1.0),
    ]
    assert not list((project / ".reprokit" / "journal").glob("*.jsonl"))


def test_a_helper_that_died_leaves_the_recording_to_the_runner(project: Path) -> None:
    from reprokit.recording.executed import Connections, record_execution
    from reprokit.recording.target import resolve_target

    connections = Connections()
    connections.start_helper(resolve_target(start=project))
    helper = connections.helper(resolve_target(start=project))
    assert helper is not None
    helper._process.kill()
    helper._process.wait()
    output = project / ".reprokit" / "runs" / "batch" / "nb"
    output.mkdir(parents=True)
    (output / "nb.ipynb").write_text("{}")
    recorded = record_execution(
        notebook=project / "nb.ipynb",
        output_dir=output,
        status="ok",
        start_ms=0,
        device="cpu",
        parameters={},
        results=None,
        extra_tags={},
        connections=connections,
    )
    connections.close()
    assert recorded.run_id is not None and recorded.error is None
    assert mlflow_client(tracking_uri(project)).get_run(recorded.run_id).info.status == "FINISHED"
