"""The same notebook, unchanged, records through a real ``mlflow server`` over HTTP.

The server is the one a team starts with ``examples/team/start_mlflow_server.sh`` (SQLite
backend, artifacts served by the server), so these tests exercise that script too, stop included.
Needs full ``mlflow`` (the server needs Flask, which mlflow-skinny lacks): skipped without it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import execute_notebook, mlflow_client, only_run, tracking_uri
from run_helpers import write_notebook
from server_helpers import run_team_script, script_env, team_server

pytestmark = pytest.mark.slow
pytest.importorskip("flask", reason="`mlflow server` needs full mlflow (the test extra)")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server_root(tmp_path_factory: pytest.TempPathFactory, mlflow_template_db: Path) -> Path:
    """A project folder holding ``mlflow.db``: where a user would run ``mlflow ui``."""
    folder = tmp_path_factory.mktemp("server")
    (folder / "pyproject.toml").write_text("[project]\nname = 'served'\n")
    shutil.copy(mlflow_template_db, folder / "mlflow.db")
    return folder


@pytest.fixture(scope="module")
def mlflow_server(server_root: Path) -> Iterator[str]:
    """``mlflow server`` over ``server_root/mlflow.db`` (artifacts served from
    ``server_root/mlartifacts``) on a free loopback port, started and stopped with the team
    script ``examples/team/start_mlflow_server.sh``; yields its URL."""
    with team_server(server_root) as url:
        yield url


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_notebook_records_through_a_tracking_server(
    mlflow_server: str, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "data.csv").write_text("a\n1\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    cells = [
        "%load_ext reprokit",
        "%repro start --experiment served --seed 1 --data data.csv",
        "import reprokit\nreprokit.result('acc', 0.5, rtol=0.1)\n"
        "reprokit.result('cfg', {'lr': 0.1})",
        "%repro end",
    ]
    nb = execute_notebook(cells, project)
    errors = [o for c in nb.cells for o in c.outputs if o.get("output_type") == "error"]
    assert not errors, errors
    run = only_run(mlflow_server, "served")
    assert run.info.status == "FINISHED"
    assert run.data.metrics == {"acc": 0.5} and run.data.params["seed"] == "1"
    assert run.data.tags["reprokit.tracking_uri"] == mlflow_server
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["data.csv"]
    client = mlflow_client(mlflow_server)
    names = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "reprokit")}
    assert {"snapshot.json", "results.json", "requirements.txt"} <= names
    assert mlflow_client(tracking_uri(project)).get_experiment_by_name("served") is None


def test_run_left_open_is_finished_over_http_when_the_kernel_exits(
    mlflow_server: str, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    cells = ["%load_ext reprokit", "%repro start --experiment open-http", "%repro result x 2"]
    execute_notebook(cells, project)
    run = only_run(mlflow_server, "open-http")
    assert run.info.status == "FINISHED" and run.data.metrics == {"x": 2.0}
    client = mlflow_client(mlflow_server)
    names = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "reprokit")}
    assert "results.json" in names


def test_mlflow_ui_in_the_project_root_serves_embedded_runs_and_artifacts(
    mlflow_server: str, server_root: Path, project: Path
) -> None:
    """A run recorded to the embedded default store is visible, artifacts included, through
    the UI's own REST endpoints of ``mlflow ui`` started beside the database."""
    from reprokit.api import session

    session.start(experiment="embedded", tracking_uri=f"sqlite:///{server_root / 'mlflow.db'}")
    session.result("acc", 0.25)
    ended = session.end()
    assert session.flush(120)  # end may hand the run to a background writer: wait for it
    assert ended.errors == ()
    run_id = only_run(f"sqlite:///{server_root / 'mlflow.db'}", "embedded").info.run_id
    query = f"run_uuid={run_id}&run_id={run_id}"
    listed = _get_json(f"{mlflow_server}/ajax-api/2.0/mlflow/artifacts/list?{query}&path=reprokit")
    names = {Path(f["path"]).name for f in listed["files"]}
    assert {"snapshot.json", "results.json", "requirements.txt"} <= names
    with urllib.request.urlopen(
        f"{mlflow_server}/get-artifact?path=reprokit/results.json&{query}", timeout=10
    ) as response:
        assert json.loads(response.read())["acc"]["value"] == 0.25


def test_reprokit_record_goes_to_the_team_server(
    mlflow_server: str, server_root: Path, tmp_path: Path
) -> None:
    """The quickstart, recorded with MLFLOW_TRACKING_URI set as the team script printed it."""
    pytest.importorskip("numpy", reason="the quickstart notebook needs numpy")
    project = tmp_path / "team"
    project.mkdir()
    (project / "pyproject.toml").write_text("[project]\nname = 'team'\n")
    shutil.copy(ROOT / "examples" / "quickstart.ipynb", project / "quickstart.ipynb")
    shutil.copytree(ROOT / "examples" / "data", project / "data")
    record = subprocess.run(
        [sys.executable, "-m", "reprokit", "record", "quickstart.ipynb", "--device", "cpu"],
        cwd=project,
        env=script_env() | {"MLFLOW_TRACKING_URI": mlflow_server},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert record.returncode == 0, record.stdout[-2000:] + record.stderr[-2000:]
    client = mlflow_client(mlflow_server)
    experiment = client.get_experiment_by_name("team")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["seed"] == "0"
    assert {"r2", "n_samples"} <= set(run.data.metrics)
    # artifacts went through the server into its own folder; nothing into the project's store
    served = server_root / "mlartifacts"
    assert any(run.info.run_id in str(path) for path in served.rglob("results.json"))
    assert not (project / "mlflow.db").exists() and not (project / "mlartifacts").exists()


def test_team_script_bad_options_exit_2(tmp_path: Path) -> None:
    done = run_team_script("--port", "http", cwd=tmp_path)
    assert done.returncode == 2 and "--port must be a number" in done.stderr
    done = run_team_script("--database-url", "mysql://u:secret@db/x", cwd=tmp_path)
    assert done.returncode == 2 and "postgresql://" in done.stderr
    assert "secret" not in done.stderr + done.stdout  # a database URL may hold a password
    done = run_team_script("--stop", "--dir", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and "no server started" in done.stderr


URI_PASSWORD = "canary-served-uri-password-362"


def test_credentials_in_the_tracking_uri_are_never_printed(
    mlflow_server: str, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow prints "View run … at URL" when a run ends, built from the URI with its
    ``user:password@``: neither the notebook (``%repro end``) nor ``record`` may show it."""
    uri = mlflow_server.replace("http://", f"http://lab:{URI_PASSWORD}@")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    cells = [
        "%load_ext reprokit",
        "%repro start --experiment creds --seed 1",
        "import reprokit\nreprokit.result('acc', 0.5)",
        "%repro end",
    ]
    nb = execute_notebook(cells, project)
    assert only_run(mlflow_server, "creds").info.status == "FINISHED"
    assert URI_PASSWORD not in json.dumps(nb)
    source = write_notebook(project / "served.ipynb", ["import reprokit\nreprokit.result('n', 1)"])
    done = subprocess.run(
        [sys.executable, "-m", "reprokit", "record", str(source), "--device", "cpu"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "MLflow run" in done.stdout + done.stderr
    assert URI_PASSWORD not in done.stdout + done.stderr
