"""Processes a notebook leaves behind do not outlive its run: a double fork and a child in a
session of its own (both escape the kernel's process group) are killed when the notebook ends,
and nothing outside the runner's own process tree is touched. Real kernels, real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from fault_helpers import alive, kill_quietly, wait_gone
from run_helpers import write_notebook

from reprokit.api.run import run
from reprokit.options import ExecutionOptions
from reprokit.runner.reaper import MARK_ENV, kill_marked

pytestmark = pytest.mark.faults
LONG = "313"  # seconds: no other test's process sleeps this long, so orphans are told apart

DOUBLE_FORK = f"""\
import os, time
if os.fork() == 0:              # child: a session of its own, fork the grandchild, exit
    os.setsid()
    if os.fork() == 0:          # grandchild: re-parented when its parent exits
        with open('double.tmp', 'w') as f:
            f.write(str(os.getpid()))
        os.rename('double.tmp', 'double.pid')
        os.execvp('sleep', ['sleep', '{LONG}'])
    os._exit(0)
os.wait()
while not os.path.exists('double.pid'):
    time.sleep(0.01)
"""
NEW_SESSION = f"""\
import subprocess
child = subprocess.Popen(['sleep', '{LONG}'], start_new_session=True)
open('session.pid', 'w').write(str(child.pid))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_CHILD_SUBREAPER is Linux")
def test_processes_that_escape_the_kernel_are_killed_when_the_notebook_ends(
    project: Path,
) -> None:
    double = write_notebook(project / "double.ipynb", [DOUBLE_FORK])
    session = write_notebook(project / "session.ipynb", [NEW_SESSION])
    outcomes = run([double, session], execution=ExecutionOptions(device="cpu"), record=False)
    written = [project / name for name in ("double.pid", "session.pid")]
    pids = [int(path.read_text()) for path in written if path.exists()]
    try:
        assert [o.status for o in outcomes] == ["ok", "ok"], outcomes
        gone = wait_gone(pids)
        assert gone == [], [psutil.Process(p).as_dict(["ppid", "cmdline"]) for p in gone]
    finally:
        kill_quietly(pids)  # failed: no orphan left for the next run to find
    assert not any(
        p.info["cmdline"] == ["sleep", LONG] and p.info["ppid"] == 1
        for p in psutil.process_iter(["cmdline", "ppid"])
        if p.info["cmdline"]
    )


def test_only_descendants_of_the_runner_with_the_kernels_mark_are_killed() -> None:
    env = {**os.environ, MARK_ENV: "mark-under-test"}
    # a stranger with the same mark, outside this process's tree (its parent has exited)
    outside = subprocess.run(
        ["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        start_new_session=True,
    )
    stranger = int(outside.stdout)
    ours = subprocess.Popen(["sleep", "300"], env=env)
    unmarked = subprocess.Popen(["sleep", "300"])
    try:
        assert psutil.Process(stranger).ppid() != os.getpid()
        assert kill_marked("mark-under-test") == [ours.pid]
        ours.wait(timeout=30)
        assert alive(stranger) and unmarked.poll() is None
    finally:
        for pid in (stranger, unmarked.pid):
            psutil.Process(pid).kill()
        unmarked.wait(timeout=30)
