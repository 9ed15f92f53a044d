"""Fault injection: a tracking server that answers every request with HTTP 503. MLflow's own
defaults retry such a server for about 4 minutes per call; the runner must not hang that long
with nothing said. Real CLI processes, real kernels, a real (stub) HTTP server."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_helpers import kill_quietly, start_cli
from run_helpers import write_notebook

pytestmark = [pytest.mark.faults, pytest.mark.slow]

CELLS = ["%load_ext reprokit\n%repro start", "import reprokit\nreprokit.result('a', 1)"]
# without a bound, one record waited about 250 s; with it, about 10 s: this is far from both
LIMIT_S = 90


class _Unavailable(http.server.BaseHTTPRequestHandler):
    requests = 0

    def do_GET(self) -> None:
        type(self).requests += 1
        self.send_response(503)
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def unavailable() -> Iterator[str]:
    """The URI of a server answering 503 to everything."""
    _Unavailable.requests = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


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
