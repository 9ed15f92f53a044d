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
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEAM_SCRIPT = ROOT / "examples" / "team" / "start_mlflow_server.sh"
START_WAIT_S = 120  # a loaded 2-core CI machine takes tens of seconds to start mlflow server
STOP_WAIT_S = 60  # SIGTERM to SIGKILL: MLflow's workers can take many seconds to exit
KILL_WAIT_S = 30  # after SIGKILL, for the kernel to end the group's processes
# MLflow 3.17 starts, beside uvicorn, a job runner with 7 huey consumer processes (for its
# GenAI jobs, which reprokit never uses): 8 more imports of mlflow while the server starts.
# On 2 cores that roughly doubled the start; the tests turn it off.
NO_JOB_RUNNER = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


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


def run_team_script(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(TEAM_SCRIPT), *args],
        cwd=cwd,
        env=script_env() | (env or {}),
        capture_output=True,
        text=True,
        timeout=START_WAIT_S + 60,
        check=False,
    )


def group_running(pgid: int) -> list[str]:
    """The processes of group ``pgid`` that are still running (``pid stat command``).

    Zombies are left out: they have exited, and wait only for init to reap them.
    """
    out = subprocess.run(
        ["ps", "-A", "-o", "pgid=", "-o", "pid=", "-o", "stat=", "-o", "args="],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    running = []
    for line in out.splitlines():
        fields = line.split(None, 3)
        if len(fields) >= 3 and fields[0] == str(pgid) and not fields[2].startswith("Z"):
            running.append(" ".join(fields[1:]))
    return running


def wait_group(pgid: int, timeout_s: float) -> list[str]:
    """Wait at most ``timeout_s`` for group ``pgid`` to end; what still runs then."""
    deadline = time.monotonic() + timeout_s
    while (running := group_running(pgid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return running


def stop_team_server(folder: Path, pid: int) -> None:
    """Stop the server of ``folder`` with the team script's ``--stop`` and check that its whole
    process group is gone. A server slow to exit is not a failure (the script SIGKILLs its
    group after its wait); only processes that outlive SIGKILL of the group are."""
    try:
        stopped = run_team_script(
            "--stop", "--stop-wait", str(STOP_WAIT_S), "--dir", str(folder), cwd=folder
        )
    except subprocess.TimeoutExpired as exc:
        stopped = subprocess.CompletedProcess(exc.cmd, -1, "", f"--stop timed out: {exc}")
    left = wait_group(pid, KILL_WAIT_S)
    if left:  # the script failed or gave up: SIGKILL the group ourselves
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        left = wait_group(pid, KILL_WAIT_S)
    assert not left, f"mlflow server processes outlived SIGKILL of their group: {left}"
    assert stopped.returncode == 0 and not (folder / "server.pid").exists(), stopped.stderr


@contextlib.contextmanager
def team_server(folder: Path, *options: str) -> Iterator[str]:
    """The team script's server with its store in ``folder`` (or the database of
    ``--database-url URL`` in ``options``); yields the tracking URI. On exit it is stopped with
    ``--stop``, and the stop is checked (pid file gone, process group gone)."""
    where = ("--dir", str(folder), "--port", str(free_port()), "--wait", str(START_WAIT_S))
    started = run_team_script(*where, *options, cwd=folder, env=NO_JOB_RUNNER)
    pidfile = folder / "server.pid"
    pid = int(pidfile.read_text()) if pidfile.is_file() else None
    try:
        if started.returncode != 0:
            pytest.fail(f"team script failed to start mlflow server: {started.stderr[-3000:]}")
        (export,) = started.stdout.splitlines()  # only the export line goes to stdout
        assert export.startswith("export MLFLOW_TRACKING_URI=http://127.0.0.1:"), export
        yield export.split("=", 1)[1]
    finally:
        if pid is not None:
            stop_team_server(folder, pid)
