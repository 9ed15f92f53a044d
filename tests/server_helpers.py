"""Start and stop a real ``mlflow server`` on loopback for tests (not a test module).

Servers are started with the team script users run, ``examples/team/start_mlflow_server.sh``,
so the tests of the tracking server and of the script share one (slow) server start. Every
wait is bounded, and the server's whole process group is stopped whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEAM_SCRIPT = ROOT / "examples" / "team" / "start_mlflow_server.sh"
START_WAIT_S = 120  # a loaded 2-core CI machine takes tens of seconds to start mlflow server


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def script_env() -> dict[str, str]:
    """This interpreter's environment, without anything pointing at another store or device."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "REPROKIT_DEV"))}
    return env | {
        "PYTHON": sys.executable,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    }


def run_team_script(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(TEAM_SCRIPT), *args],
        cwd=cwd,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=START_WAIT_S + 60,
        check=False,
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def team_server(folder: Path) -> Iterator[str]:
    """The team script's server with its store in ``folder``; yields the tracking URI. On exit
    it is stopped with ``--stop``, and the stop is checked (pid file gone, process gone)."""
    started = run_team_script(
        "--dir", str(folder), "--port", str(free_port()), "--wait", str(START_WAIT_S), cwd=folder
    )
    pidfile = folder / "server.pid"
    pid = int(pidfile.read_text()) if pidfile.is_file() else None
    try:
        if started.returncode != 0:
            pytest.fail(f"team script failed to start mlflow server: {started.stderr[-3000:]}")
        (export,) = started.stdout.splitlines()  # only the export line goes to stdout
        assert export.startswith("export MLFLOW_TRACKING_URI=http://127.0.0.1:"), export
        yield export.split("=", 1)[1]
    finally:
        stopped = run_team_script("--stop", "--dir", str(folder), cwd=folder)
        left = pid is not None and alive(pid)
        if left and pid is not None:
            os.killpg(pid, signal.SIGKILL)  # never leave a server behind a failed stop
    assert stopped.returncode == 0 and not left and not pidfile.exists(), stopped.stderr
