"""Declared results are journaled when declared: a kernel killed before ``%repro end`` (which
writes ``results.json``) loses none of them. Its replay writes ``results.json`` from the journal
into the run folder before the upload, so the run's ``reprokit/results.json`` artifact holds
every result and ``record --from-run`` locks them (saying that the run was KILLED).

A kernel's death is played in this process: the run's journal is let go without an end, as the
kernel's exit leaves it (the kernel itself: ``test_faults_journal``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import mlflow_client, tracking_uri
from run_helpers import write_notebook

from reprokit.api import session
from reprokit.api.record import record_from_run
from reprokit.api.sync import sync
from reprokit.exceptions import InputError, ReprokitWarning
from reprokit.recording.journal import read_journal
from reprokit.recording.lock import read_lock

pytestmark = pytest.mark.filterwarnings("ignore:PYTHONHASHSEED")

BIG = np.arange(20_000.0)  # 160 kB: a sidecar file, by reference


def _declare_and_die(*values: tuple[str, object]) -> Path:
    """Start a run, declare ``values``, and leave the journal as a killed kernel does."""
    session.start(experiment="dead", seed=0)
    for name, value in values:
        session.result(name, value)
    run = session._active
    assert run is not None and run.journal is not None and session.flush(60)
    path = run.journal.path
    run.recorder.stop()
    run.journal.release()  # the kernel is gone: its lock with it, no end event
    session._active = None
    return path


def test_every_declared_result_is_journaled_with_its_encoded_form(project: Path) -> None:
    path = _declare_and_die(("acc", 0.5), ("lst", [1, 2, 3]), ("s", "hello"), ("big", BIG))
    state = read_journal(path)
    assert sorted(state.results) == ["acc", "big", "lst", "s"]
    assert state.results["lst"]["value"] == [1, 2, 3]
    assert [m[:2] for m in state.metrics] == [("acc", 0.5)]  # one metric, not one per result
    sidecar = state.results["big"]["array"]
    assert sidecar["inline"] is None  # by reference: the file was written when declared
    assert (Path(sidecar["location"]) / sidecar["file"]).is_file()


def test_a_killed_runs_results_reach_mlflow_and_its_lock(project: Path) -> None:
    """Only the scalar's metric reached MLflow, and ``record --from-run`` refused the run as
    one reprokit had not recorded."""
    _declare_and_die(("acc", 0.5), ("lst", [1, 2, 3]), ("arr", np.arange(5.0)), ("big", BIG))
    (replay,) = sync(project)
    assert (replay.status, replay.run_status) == ("replayed", "KILLED")
    client = mlflow_client(tracking_uri(project))
    folder = Path(client.download_artifacts(replay.run_id, "reprokit/results.json", "."))
    assert sorted(json.loads(folder.read_text())) == ["acc", "arr", "big", "lst"]
    notebook = write_notebook(project / "nb.ipynb", ["x = 1"])
    with pytest.warns(ReprokitWarning, match=r"ended KILLED: the lock holds the 4 result\(s\)"):
        lock = read_lock(record_from_run(str(replay.run_id), notebook=notebook))
    assert sorted(lock.results) == ["acc", "arr", "big", "lst"]
    assert lock.results["lst"].value == [1, 2, 3]
    big = lock.results["big"].array
    assert big is not None and big.file is not None and (project / big.file).is_file()


def test_a_results_file_written_at_the_end_is_kept(project: Path) -> None:
    path = _declare_and_die(("acc", 0.5))
    folder = Path(read_journal(path).uploads["reprokit"])
    (folder / "results.json").write_text('{"written": "at the end"}\n')
    sync(project)
    assert json.loads((folder / "results.json").read_text()) == {"written": "at the end"}


def test_a_killed_run_without_results_says_so_naming_its_status(project: Path) -> None:
    _declare_and_die()
    (replay,) = sync(project)
    notebook = write_notebook(project / "nb.ipynb", ["x = 1"])
    with pytest.raises(InputError, match=r"\(KILLED\) has no reprokit results .*before it"):
        record_from_run(str(replay.run_id), notebook=notebook)
