"""Eight writers on one SQLite MLflow store at once: ``reprokit run`` processes and in-notebook
sessions (the API the ``%repro`` magic calls), each a real process. Every run must be there,
complete and closed; none lost, none left RUNNING."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import mlflow_client, tracking_uri
from fault_helpers import WAIT_S, kill_quietly, start_cli
from run_helpers import write_notebook

pytestmark = [pytest.mark.faults, pytest.mark.filterwarnings("ignore:PYTHONHASHSEED")]

RUNNERS = 4
SESSIONS = 4

NOTEBOOK = "import reprokit\nreprokit.start(seed=0)\nreprokit.result('score', float(k))"
SESSION = """\
import sys
import reprokit
k = int(sys.argv[1])
reprokit.start(seed=k, params={"k": k})
reprokit.result("score", float(k))
reprokit.end()
"""


@pytest.mark.slow
def test_eight_concurrent_writers_lose_no_run(project: Path) -> None:
    (project / "session.py").write_text(SESSION)
    for k in range(RUNNERS):
        write_notebook(project / f"nb{k}" / f"nb{k}.ipynb", [NOTEBOOK], parameters="k = 0")
    processes = [
        start_cli(["run", f"nb{k}", "--device", "cpu", "-p", f"k={k}"], project)
        for k in range(RUNNERS)
    ] + [
        subprocess.Popen(
            [sys.executable, "session.py", str(RUNNERS + k)],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            env={**os.environ, "REPROKIT_FLUSH_TIMEOUT": "120"},
        )
        for k in range(SESSIONS)
    ]
    try:
        logs = [p.communicate(timeout=WAIT_S * 2) for p in processes]
    finally:
        kill_quietly([p.pid for p in processes])
    assert [p.returncode for p in processes] == [0] * 8, [err for _, err in logs]
    assert not any("not recorded" in err or "database is locked" in err for _, err in logs)

    client = mlflow_client(tracking_uri(project))
    runs = [
        run
        for experiment in client.search_experiments()
        for run in client.search_runs([experiment.experiment_id])
    ]
    written = sorted(int(run.data.metrics["score"]) for run in runs)
    assert written == list(range(RUNNERS + SESSIONS)), written  # runs written / expected: 8/8
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.params["k"] == str(int(run.data.metrics["score"]))
        assert client.list_artifacts(run.info.run_id, "reprokit"), run.info.run_id
