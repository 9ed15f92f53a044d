"""The same notebook, unchanged, records through a real ``mlflow server`` over HTTP.

Needs full ``mlflow`` (the server needs Flask, which mlflow-skinny lacks): skipped without it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import execute_notebook, mlflow_client, only_run, tracking_uri

pytestmark = pytest.mark.slow
pytest.importorskip("flask", reason="`mlflow server` needs full mlflow (the test extra)")

START_TIMEOUT_S = 90


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mlflow server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"mlflow server not healthy after {START_TIMEOUT_S} s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def server_root(tmp_path_factory: pytest.TempPathFactory, mlflow_template_db: Path) -> Path:
    """A project folder holding ``mlflow.db``: where a user would run ``mlflow ui``."""
    folder = tmp_path_factory.mktemp("server")
    (folder / "pyproject.toml").write_text("[project]\nname = 'served'\n")
    shutil.copy(mlflow_template_db, folder / "mlflow.db")
    return folder


@pytest.fixture(scope="module")
def mlflow_server(server_root: Path) -> Iterator[str]:
    """``mlflow server --backend-store-uri sqlite:///mlflow.db`` started in the project root, as
    ``mlflow ui`` would be, on a free loopback port; yields its URL."""
    port = _free_port()
    log = server_root / "server.log"
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", "sqlite:///mlflow.db",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=server_root, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, log)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the server and its uvicorn worker
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


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
    from reprokit import session

    session.start(experiment="embedded", tracking_uri=f"sqlite:///{server_root / 'mlflow.db'}")
    session.result("acc", 0.25)
    ended = session.end()
    assert ended.errors == () and ended.run_id is not None
    query = f"run_uuid={ended.run_id}&run_id={ended.run_id}"
    listed = _get_json(f"{mlflow_server}/ajax-api/2.0/mlflow/artifacts/list?{query}&path=reprokit")
    names = {Path(f["path"]).name for f in listed["files"]}
    assert {"snapshot.json", "results.json", "requirements.txt"} <= names
    with urllib.request.urlopen(
        f"{mlflow_server}/get-artifact?path=reprokit/results.json&{query}", timeout=10
    ) as response:
        assert json.loads(response.read())["acc"]["value"] == 0.25
