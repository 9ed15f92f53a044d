"""Fault injection: a tracking server that answers every request with HTTP 503. MLflow's own
defaults retry such a server for about 4 minutes per call; the runner must neither hang that
long with nothing said nor swallow the first signal while it waits. Real CLI processes, real
kernels, a real (stub) HTTP server."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_helpers import WAIT_S, Unavailable, kill_quietly, start_cli, unavailable_server, wait_for
from run_helpers import write_notebook

pytestmark = [pytest.mark.faults, pytest.mark.slow]

CELLS = ["%load_ext reprokit\n%repro start", "import reprokit\nreprokit.result('a', 1)"]
# without a bound, one record waited about 250 s; with it, about 10 s: this is far from both
LIMIT_S = 90


@pytest.fixture
def unavailable() -> Iterator[str]:
    """The URI of a server answering 503 to everything."""
    with unavailable_server() as uri:
        yield uri


def _journals(project: Path) -> list[Path]:
    return list((project / ".reprokit" / "journal").glob("*.jsonl"))


def test_a_server_answering_503_costs_seconds_and_the_run_waits_in_its_journal(
    project: Path, unavailable: str
) -> None:
    write_notebook(project / "nb.ipynb", CELLS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_")}
    runner = start_cli(
        ["run", "nb.ipynb", "--device", "cpu"],
        project,
        env={**env, "MLFLOW_TRACKING_URI": unavailable},
    )
    try:
        _, stderr = runner.communicate(timeout=LIMIT_S)  # MLflow's defaults: minutes
    finally:
        kill_quietly([runner.pid])
    assert runner.returncode == 0, stderr  # the notebook ran; its record waits
    assert "ok  nb.ipynb" in stderr and "not recorded" in stderr and "503" in stderr
    assert "Traceback" not in stderr
    assert len(_journals(project)) == 1  # `reprokit sync` records it once MLflow answers


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_the_first_signal_stops_a_runner_waiting_for_mlflow(
    project: Path, unavailable: str, sig: signal.Signals, code: int
) -> None:
    """MLflow's retries as their defaults (set by the user, so kept): the record of the
    finished notebook would take minutes. The first signal ends the runner in seconds, its
    run left in the journal, said as every interruption is."""
    write_notebook(project / "nb.ipynb", CELLS)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": unavailable,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "7",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "2",
    }
    runner = start_cli(["run", "nb.ipynb", "--device", "cpu"], project, env=env)
    try:
        wait_for(lambda: Unavailable.requests > 0, "the record to reach the server", WAIT_S)
        runner.send_signal(sig)
        signalled = time.monotonic()
        _, stderr = runner.communicate(timeout=LIMIT_S)
        waited = time.monotonic() - signalled
    finally:
        kill_quietly([runner.pid])
    assert runner.returncode == code, stderr
    assert f"interrupted by {sig.name}" in stderr and "`reprokit sync` records them" in stderr
    assert "interrupted again" not in stderr and "Traceback" not in stderr
    assert waited < LIMIT_S
    assert len(_journals(project)) == 1
