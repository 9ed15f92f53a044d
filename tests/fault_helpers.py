"""Helpers of the fault-injection suite: the reprokit CLI as a real process, process checks."""

from __future__ import annotations

import contextlib
import http.server
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil

WAIT_S = 90.0  # every wait is bounded; generous for a loaded 2-core CI machine


def start_cli(args: Sequence[str], cwd: Path, **popen: Any) -> subprocess.Popen[str]:
    """``python -m reprokit ARGS`` in its own session (a signal to it never reaches pytest)."""
    return subprocess.Popen(
        [sys.executable, "-m", "reprokit", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **popen,
    )


def run_cli(args: Sequence[str], cwd: Path, **popen: Any) -> subprocess.CompletedProcess[str]:
    process = start_cli(args, cwd, **popen)
    out, err = process.communicate(timeout=WAIT_S * 2)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be reaped."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(pids: Sequence[int], timeout: float = 15.0) -> list[int]:
    """The pids still alive after ``timeout`` (SIGKILL is asynchronous: allow a moment)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [pid for pid in pids if alive(pid)]
        if not left:
            return []
        time.sleep(0.1)
    return [pid for pid in pids if alive(pid)]


def kill_quietly(pids: Sequence[int]) -> None:
    """Clean up after a failed test: only the pids this test started, and the process group
    of each that leads one (a kernel's: what its cells started)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, 9)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, 9)


def runs_by_name(uri: str, experiment: str) -> dict[str, Any]:
    """Every run of ``experiment``, by run name (one run per notebook stem expected)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r}"
    return {run.info.run_name: run for run in client.search_runs([found.experiment_id])}


class Unavailable(http.server.BaseHTTPRequestHandler):
    """A tracking server that answers every request with HTTP 503; counts them."""

    requests = 0

    def do_GET(self) -> None:
        type(self).requests += 1
        self.send_response(503)
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def unavailable_server() -> Iterator[str]:
    """The URI of a server answering 503 to everything (:class:`Unavailable`, its count reset)."""
    Unavailable.requests = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
