"""Nothing lost: every record goes to a run journal first, and a store is never half-made.

Real kernels (nbclient with its own 5 s shutdown, a SIGKILLed kernel), real processes and a real
SQLite MLflow store: a run whose kernel died before MLflow had everything is completed from its
journal by the next command (``reprokit sync`` here), with the right status and its results; a
store is created once, atomically, by eight processes at once; a half-made store is repaired
when it holds no run, refused in one line when it does.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import mlflow_client, tracking_uri
from fault_helpers import WAIT_S, Unavailable, kill_quietly, run_cli, unavailable_server, wait_for

from reprokit.api.gc import gc
from reprokit.api.sync import sync
from reprokit.recording.journal import Journal, JournalState, journal_folder, read_journal
from reprokit.recording.store import (
    STALE_CREATION_S,
    ensure_store,
    file_lock,
    remove_stale_creations,
    store_problem,
)
from reprokit.recording.target import resolve_target

pytestmark = [pytest.mark.faults, pytest.mark.filterwarnings("ignore:PYTHONHASHSEED")]


def _runs(root: Path, experiment: str) -> list[Any]:
    client = mlflow_client(tracking_uri(root))
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


def _dead_journal(root: Path, *, end: str | None = None, cell_error: bool = False) -> Path:
    """A journal as a killed process leaves it: written, then its lock released."""
    target = resolve_target(start=root, experiment="dead")
    journal = Journal.create(root)
    state = JournalState(journal.path, "dead", target.display_uri, "dead-run", 1_700_000_000_000)
    state.params, state.metrics = {"k": "1"}, [("acc", 0.5, 1_700_000_000_001, 0)]
    state.status = end
    journal.write(state)
    if cell_error:
        journal.append("cell", error="failed")
    journal.release()
    return journal.path


# --- the journal, replayed ---------------------------------------------------------------------


def test_replay_is_idempotent_and_tolerates_a_torn_last_line(project: Path) -> None:
    path = _dead_journal(project)
    with path.open("a") as handle:
        handle.write('{"event": "log", "metrics": [["lost", 1')  # cut short by the kill
    assert read_journal(path).metrics == [("acc", 0.5, 1_700_000_000_001, 0)]

    first = sync(project)
    assert [(r.status, r.run_status) for r in first] == [("replayed", "KILLED")]
    assert not path.exists()
    assert sync(project) == []  # nothing left: a second sync replays nothing
    (run,) = _runs(project, "dead")
    assert run.info.status == "KILLED" and run.info.run_name == "dead-run"
    assert run.data.metrics == {"acc": 0.5} and run.data.params == {"k": "1"}


def test_a_journal_that_reached_mlflow_once_is_not_a_second_run(project: Path) -> None:
    path = _dead_journal(project, end="FINISHED")
    copy = path.read_bytes()
    (first,) = sync(project)
    path.write_bytes(copy + json.dumps({"event": "opened", "run_id": first.run_id}).encode())
    (again,) = sync(project)  # a replay killed before it deleted the journal, say
    assert again.run_id == first.run_id
    path.write_bytes(copy)  # killed even before it wrote ``opened``: found by its tag
    (third,) = sync(project)
    assert third.run_id == first.run_id
    (run,) = _runs(project, "dead")
    assert run.info.status == "FINISHED"


def test_a_replay_names_its_run_in_the_session_folder_and_uploads_no_partial_write(
    project: Path,
) -> None:
    """A live session that ended before MLflow opened its run left ``run_id: null`` in its
    ``run.json``: ``gc`` then deleted the folder although a lock named the run. And a kernel
    killed mid-write left a temporary file that was uploaded as an artifact."""
    from reprokit.api.gc import gc
    from reprokit.recording.retention import runs_folder

    folder = runs_folder(project) / "20260101T000000Z-aaaaaa"
    folder.mkdir(parents=True)
    (folder / "snapshot.json").write_text("{}")
    (folder / "run.json").write_text(json.dumps({"notebook": "nb.ipynb", "run_id": None}))
    (folder / ".results.json.k2j4.tmp").write_text("{")
    path = _dead_journal(project, end="FINISHED")
    with path.open("a") as handle:
        handle.write(
            json.dumps({"event": "upload", "artifact_path": "reprokit", "folder": str(folder)})
        )
        handle.write("\n")
    (replayed,) = sync(project)
    assert json.loads((folder / "run.json").read_text()) == {
        "notebook": "nb.ipynb",
        "run_id": replayed.run_id,
    }
    client = mlflow_client(tracking_uri(project))
    names = {Path(f.path).name for f in client.list_artifacts(replayed.run_id, "reprokit")}
    assert names == {"run.json", "snapshot.json"}
    (project / "nb.repro.json").write_text(json.dumps({"run_id": replayed.run_id}))
    assert gc(project, keep=0).removed == () and folder.is_dir()


def test_a_replay_names_its_run_beside_a_runners_output_folder(project: Path) -> None:
    """A runner killed before it wrote ``<stem>.run.json``: ``sync`` opens the run from the
    journal, and gc must see the run id there (it deleted a folder a lock named)."""
    from reprokit.recording.retention import find_runs, runs_folder

    unit = runs_folder(project) / "20260101T000000Z-aaaaaa" / "a"
    unit.mkdir(parents=True)
    (unit / "a.ipynb").write_text("{}")
    notebook = str(project / "a.ipynb")
    path = _dead_journal(project, end="FINISHED")
    with path.open("a") as handle:
        handle.write(
            json.dumps({"event": "upload", "artifact_path": "reprokit", "folder": str(unit)})
        )
        handle.write("\n")
        handle.write(json.dumps({"event": "log", "tags": {"mlflow.source.name": notebook}}))
        handle.write("\n")
    (replayed,) = sync(project)
    info = json.loads((unit.parent / "a.run.json").read_text())
    assert info == {"notebook": notebook, "run_id": replayed.run_id}
    assert [(e.notebook, e.run_id) for e in find_runs(project)] == [(notebook, replayed.run_id)]


def test_a_folder_or_fifo_named_as_a_journal_is_not_one(project: Path) -> None:
    """A stranger's ``mkdir``/``mkfifo`` there: sync printed a traceback, gc and sync hung."""
    folder = journal_folder(project)
    folder.mkdir(parents=True)
    (folder / "20200101T000002Z-dir.jsonl").mkdir()
    os.mkfifo(folder / "20200101T000009Z-33333333.jsonl")
    for args in (["sync"], ["gc", "--dry-run"]):
        done = run_cli(args, project)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr


def test_a_failed_cell_makes_the_replayed_run_failed_and_a_live_journal_is_left_alone(
    project: Path,
) -> None:
    _dead_journal(project, cell_error=True)
    live = Journal.create(project)  # locked by this (live) process
    live.append("start", experiment="live", uri="x", run_name=None, start_ms=0)
    replays = {r.journal: r for r in sync(project)}
    assert replays[str(live.path)].status == "running"
    assert [r.run_status for r in replays.values() if r.status == "replayed"] == ["FAILED"]
    assert live.path.exists()
    live.release()


def test_sync_cli_names_an_unreadable_journal_and_exits_2(project: Path) -> None:
    folder = journal_folder(project)
    folder.mkdir(parents=True)
    (folder / "bad.jsonl").write_bytes(b'{"event": "start"}\n\xff\xfe\n')
    done = run_cli(["sync"], project)
    assert done.returncode == 2, done.stderr
    assert "bad.jsonl" in done.stderr and "Traceback" not in done.stderr
    done = run_cli(["sync", "--json"], project)
    assert json.loads(done.stdout.splitlines()[0])["status"] == "unreadable"


# --- real kernels -------------------------------------------------------------------------------

CELLS = ["%load_ext reprokit", "%repro start --experiment nb --seed 0", "import reprokit"]


def _nbclient(cells: list[str], cwd: Path) -> None:
    """nbclient as a user runs it (its own 5 s graceful shutdown), never reprokit's runner."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    client = NotebookClient(nb, timeout=120, kernel_name="python3")
    client.resources = {"metadata": {"path": str(cwd)}}
    with contextlib.suppress(CellExecutionError):  # a failing cell is part of the scenario
        client.execute()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("last", "status"), [("x = 1", "FINISHED"), ("raise ValueError('boom')", "FAILED")]
)
def test_nbclient_without_end_in_a_fresh_project_loses_no_run(
    project: Path, last: str, status: str
) -> None:
    (project / "mlflow.db").unlink()  # a fresh project: the kernel creates the store
    _nbclient([*CELLS, "reprokit.result('acc', 0.75)", last], project)
    sync(project)
    (run,) = _runs(project, "nb")
    assert run.info.status == status
    assert run.data.metrics == {"acc": 0.75}
    assert store_problem(project / "mlflow.db") is None
    assert not list(journal_folder(project).glob("*.jsonl"))


@pytest.mark.slow
def test_a_kernel_killed_right_after_a_result_is_completed_killed(project: Path) -> None:
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3", cwd=str(project))
    try:
        results = "reprokit.result('acc', 0.25); reprokit.result('lst', [1, 2])\n"
        for cell in [*CELLS, results + "reprokit.result('s', 'a')"]:
            reply = client.execute_interactive(cell, timeout=WAIT_S, output_hook=lambda _: None)
            assert reply["content"]["status"] == "ok", reply["content"]
        os.kill(manager.provisioner.process.pid, signal.SIGKILL)
        wait_for(lambda: not manager.is_alive(), "the kernel's death")
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    (replay,) = [r for r in sync(project) if r.status == "replayed"]
    assert replay.run_status == "KILLED"
    (run,) = _runs(project, "nb")
    assert run.info.status == "KILLED" and run.data.metrics == {"acc": 0.25}
    assert run.data.params["seed"] == "0"
    store = mlflow_client(tracking_uri(project))  # results.json, written at the end, made anew
    written = store.download_artifacts(run.info.run_id, "reprokit/results.json", str(project))
    assert sorted(json.loads(Path(written).read_text())) == ["acc", "lst", "s"]


# --- the store ----------------------------------------------------------------------------------


def _record_one(root: str, k: int) -> None:
    """One process's first use of the store: connect (create it if needed), record one run."""
    from reprokit.recording.target import resolve_target
    from reprokit.recording.writer import MlflowRunWriter, now_ms

    writer = MlflowRunWriter(resolve_target(start=root, experiment="eight"))
    writer.connect()
    writer.open_run(run_name=f"r{k}", tags={}, params={"k": str(k)}, start_ms=now_ms())
    writer.log_batch(metrics=[("score", float(k), now_ms(), 0)])
    writer.close("FINISHED", now_ms())


@pytest.mark.slow
def test_eight_processes_creating_the_store_at_once_record_every_run(project: Path) -> None:
    import mlflow.tracking  # noqa: F401  (imported once, before the fork: the children are cheap)

    (project / "mlflow.db").unlink()
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_record_one, args=(str(project), k)) for k in range(8)]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join(WAIT_S * 2)
    finally:
        kill_quietly([p.pid for p in processes if p.is_alive() and p.pid is not None])
    assert [p.exitcode for p in processes] == [0] * 8
    assert store_problem(project / "mlflow.db") is None
    runs = _runs(project, "eight")
    assert sorted(int(r.data.metrics["score"]) for r in runs) == list(range(8))  # 8/8


CREATE = "import sys; from pathlib import Path; from reprokit.recording.store import ensure_store; "


@pytest.mark.slow
def test_a_creation_killed_midway_leaves_no_store(project: Path) -> None:
    database = project / "mlflow.db"
    database.unlink()
    code = CREATE + "ensure_store(Path(sys.argv[1]))"
    child = subprocess.Popen([sys.executable, "-c", code, str(database)], start_new_session=True)
    try:
        wait_for(lambda: any(project.glob(".mlflow.db.*.creating")), "the migration to start")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(WAIT_S)
    finally:
        kill_quietly([child.pid])
    assert not database.exists()  # either no store or a complete one: here, none yet
    ensure_store(database)  # the next command makes it, whole
    assert store_problem(database) is None
    assert not list(project.glob(".mlflow.db.*"))  # and removes the killed one's copy


def _dead_pid() -> int:
    """The pid of a process that ended and was reaped (nothing has it until it is reused)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(WAIT_S)
    return child.pid


def _leftover(database: Path, pid: int, age_s: float = 0.0) -> list[Path]:
    """The temporary store (and its -journal) a creator of pid ``pid`` left, ``age_s`` old."""
    made = [database.with_name(f".{database.name}.{pid}.creating{end}") for end in ("", "-journal")]
    for path in made:
        path.write_bytes(b"x" * 1000)
        os.utime(path, (time.time() - age_s,) * 2)
    return made


def test_a_killed_creators_temporary_store_goes_and_a_live_ones_stays(project: Path) -> None:
    """Kernels killed while creating the store left ``.mlflow.db.<pid>.creating`` files that
    nothing removed (only a creator's own pid's was); one of a live process stays, unless it
    is older than any creation (its pid reused since)."""
    database = project / "mlflow.db"
    dead = _leftover(database, _dead_pid())
    alive = _leftover(database, os.getppid())  # a live process, of the same user
    database.unlink()
    ensure_store(database)  # a creation
    assert store_problem(database) is None
    assert [p for p in dead if p.exists()] == [] and all(p.exists() for p in alive)
    for path in alive:
        os.utime(path, (time.time() - STALE_CREATION_S - 60,) * 2)
    assert remove_stale_creations(database) == 2000
    assert not list(project.glob(".mlflow.db.*"))


def test_sync_and_gc_remove_a_killed_creators_temporary_store(project: Path) -> None:
    database = project / "mlflow.db"
    dead = _leftover(database, _dead_pid())
    with file_lock(project / "mlflow.db.lock"):  # a live creator at work: nothing goes
        assert remove_stale_creations(database) == 0
        assert sync(project) == [] and all(p.exists() for p in dead)
    assert gc(project, dry_run=True).bytes_freed == 2000 and all(p.exists() for p in dead)
    assert gc(project).bytes_freed == 2000 and not any(p.exists() for p in dead)
    dead = _leftover(database, _dead_pid())
    assert sync(project) == [] and not any(p.exists() for p in dead)
    assert run_cli(["gc"], project).returncode == 0  # nothing left, nothing to say about it


def test_an_empty_store_file_is_no_store(project: Path) -> None:
    """A 0-byte ``mlflow.db`` (a kill as some other program created it) is not taken for a
    store: the next command creates one in its place, whole."""
    database = project / "mlflow.db"
    database.write_bytes(b"")
    assert store_problem(database) == "absent"
    ensure_store(database)
    assert store_problem(database) is None and database.stat().st_size > 0


def _half_made(database: Path) -> None:
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE _alembic_tmp_experiments (experiment_id INTEGER)")
    connection.close()


def test_a_half_made_store_without_runs_is_made_again(project: Path) -> None:
    database = project / "mlflow.db"
    _half_made(database)
    assert "_alembic_tmp_experiments" in (store_problem(database) or "")
    ensure_store(database)
    assert store_problem(database) is None
    assert list(project.glob("mlflow.db.half-made-*"))  # moved aside, not deleted


def test_a_half_made_store_with_runs_is_refused_in_one_line(project: Path) -> None:
    database = project / "mlflow.db"
    _record_one(str(project), 0)
    _half_made(database)
    before = database.read_bytes()
    done = run_cli(["sync"], project)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "half-made" in lines[0] and "mlflow db upgrade" in lines[0] and "1 run" in lines[0]
    assert database.read_bytes() == before  # untouched


def test_store_check_needs_no_mlflow_for_a_complete_store(
    project: Path, mlflow_template_db: Path
) -> None:
    code = CREATE + "ensure_store(Path(sys.argv[1])); print('mlflow' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code, str(project / "mlflow.db")],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )
    assert done.stdout.strip() == "False", done.stderr
    shutil.copy(mlflow_template_db, project / "copy.db")
    assert store_problem(project / "copy.db") is None


def test_a_dataset_row_raced_by_another_writer_is_logged_on_a_second_try(project: Path) -> None:
    """Two writers logging the same dataset at once race on its row: on PostgreSQL the loser
    gets a unique-key violation (seen with 4 concurrent ``record`` processes). The store is
    real; only that one lost race is made to happen, on the first call."""
    from reprokit.recording.mapping import DatasetSpec
    from reprokit.recording.target import resolve_target
    from reprokit.recording.writer import MlflowRunWriter, now_ms

    writer = MlflowRunWriter(resolve_target(start=project, experiment="race"))
    writer.connect()
    writer.open_run(run_name="r", tags={}, params={}, start_ms=now_ms())
    real, calls = writer.client.log_inputs, []

    def racing(*args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError('duplicate key value violates unique constraint "dataset_pk"')
        real(*args, **kwargs)

    writer.client.log_inputs = racing
    writer.log_datasets([DatasetSpec("data.csv", "abc", "local", "data.csv", "{}")])
    writer.close("FINISHED", now_ms())
    (run,) = _runs(project, "race")
    assert len(calls) == 2 and run.info.status == "FINISHED"
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["data.csv"]


def test_a_store_that_does_not_answer_is_tried_for_one_journal_only(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each leftover journal waited through MLflow's retries again (about 9 s each) while the
    server was down: every command that opens the store paid it once per journal. After the
    first replay the store did not answer, the others fail at once, kept for the next try."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # the test's own bound: fast
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    with unavailable_server() as uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        paths = [_dead_journal(project) for _ in range(3)]
        replays = sync(project)
        assert Unavailable.requests > 0 and sorted(r.journal for r in replays) == sorted(
            map(str, paths)
        )
        assert all(r.status == "failed" for r in replays)
        tried, *untried = replays
        assert tried.unavailable and "503" in (tried.detail or "")
        assert all(
            (r.detail or "").startswith("not tried: the store did not answer") for r in untried
        )
        assert all(p.exists() for p in paths)  # kept for the next command
