"""Fault injection, execution side: kernels that die, hang, eat memory or flood their output,
and a runner that gets SIGINT/SIGTERM. Real kernels, real signals, a real SQLite store."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
import psutil
import pytest
from conftest import tracking_uri
from fault_helpers import WAIT_S, kill_quietly, run_cli, runs_by_name, start_cli, wait_for
from fault_helpers import wait_gone as still_alive
from run_helpers import write_notebook

pytestmark = [pytest.mark.faults, pytest.mark.filterwarnings("ignore:PYTHONHASHSEED")]

BEFORE = "print('before the fault')"
AFTER = "print('never printed')"
FAULTS = {
    "exits": "import os\nos._exit(3)",
    "sigkill": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
    "segfault": "import ctypes\nctypes.string_at(0)",
    "hangs": "import time\ntime.sleep(600)",
}


def _execution(output: Path) -> dict[str, object]:
    return dict(nbformat.read(output, as_version=4).metadata["reprokit"]["execution"])


def _texts(cell: dict[str, object]) -> str:
    outputs = cell.get("outputs", [])
    assert isinstance(outputs, list)
    return "".join(str(out.get("text", "")) + str(out.get("evalue", "")) for out in outputs)


@pytest.mark.slow
def test_dying_and_hanging_kernels_exit_three_keep_partial_notebooks_and_fail_runs(
    project: Path,
) -> None:
    for name, fault in FAULTS.items():
        write_notebook(project / "nbs" / f"{name}.ipynb", [BEFORE, fault, AFTER])
    done = run_cli(
        ["run", "nbs", "--device", "cpu", "--jobs", "2", "--timeout", "8", "--output-dir", "out"],
        project,
    )
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert "(4 of 4 notebooks failed)" in done.stderr
    runs = runs_by_name(tracking_uri(project), "proj")
    for name in FAULTS:
        output = project / "out" / name / f"{name}.ipynb"
        cells = nbformat.read(output, as_version=4).cells
        assert "before the fault" in _texts(cells[0])  # kept up to the failing cell
        assert _texts(cells[2]) == ""  # nothing after it ran
        mark = _execution(output)
        expected = "timeout" if name == "hangs" else "kernel_died"
        assert mark["status"] == expected and mark["failed_cell"] == 1, mark
        ename = "CellTimeoutError" if name == "hangs" else "DeadKernelError"
        assert mark["ename"] == ename
        assert [o["ename"] for o in cells[1].outputs if o.output_type == "error"] == [ename]
        assert f"{name}.ipynb: {'TIMEOUT' if name == 'hangs' else 'KERNEL DIED'}" in done.stderr
        assert runs[name].info.status == "FAILED"
        # messages and tags number cells from 1: index 1 is "cell 2"
        assert runs[name].data.tags["reprokit.runner.failed_cell"] == "2"
    assert len(re.findall(r"^  cell 2(?: \(In \[\d+\]\))?: ", done.stderr, re.M)) == 4


@pytest.mark.slow
def test_a_notebook_past_its_time_limit_is_stopped_and_named(project: Path) -> None:
    write_notebook(
        project / "long.ipynb",
        [BEFORE, "import time\nfor _ in range(6000):\n    time.sleep(0.1)", AFTER],
    )
    # the limit counts the kernel's start too: long enough for it and cell 1 under load
    done = run_cli(["run", "long.ipynb", "--device", "cpu", "--notebook-timeout", "20"], project)
    assert done.returncode == 3, done.stderr
    assert "cell 2" in done.stderr
    assert "the notebook ran past its limit of 20 s" in done.stderr
    [output] = (project / ".reprokit" / "runs").glob("*/long/long.ipynb")
    assert _execution(output)["status"] == "timeout"
    assert runs_by_name(tracking_uri(project), "proj")["long"].info.status == "FAILED"


def test_a_kernel_over_its_memory_limit_gets_memory_error_and_output_floods_are_cut(
    project: Path,
) -> None:
    write_notebook(
        project / "greedy.ipynb",
        [
            # 100 MB of log lines, flushed as a long job's log is (ipykernel sends a burst
            # without flushes as one message, which the runner must then receive whole)
            "for _ in range(100):\n    print('x' * 1_000_000, flush=True)",
            "print('the kernel is still answering')",
            "hog = bytearray(3 * 1024**3)",
            AFTER,
        ],
    )
    runner = start_cli(
        ["run", "greedy.ipynb", "--device", "cpu", "--no-record", "--memory-limit", "1G"],
        project,
    )
    try:
        peak = _peak_rss(runner)
        _, stderr = runner.communicate(timeout=WAIT_S)
    finally:
        kill_quietly([runner.pid])
    assert runner.returncode == 3, stderr
    assert "cell 3" in stderr and "MemoryError" in stderr
    [output] = (project / ".reprokit" / "runs").glob("*/greedy/greedy.ipynb")
    assert output.stat().st_size < 6 * 1024 * 1024  # 4 MiB kept of 100 MB, plus the rest
    cells = [c for c in nbformat.read(output, as_version=4).cells if c.cell_type == "code"]
    assert "[reprokit: output truncated" in _texts(cells[0])
    assert "the kernel is still answering" in _texts(cells[1])
    # the runner never held the flood: its own peak memory stays far below 100 MB on top
    assert peak < 200 * 1024 * 1024, peak


def _peak_rss(process: subprocess.Popen[str]) -> int:
    """The largest resident size of ``process`` itself (not its kernel), sampled until exit."""
    import time

    watched = psutil.Process(process.pid)
    peak, deadline = 0, time.monotonic() + WAIT_S
    while process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
            peak = max(peak, watched.memory_info().rss)
        time.sleep(0.02)
    return peak


SLOW = [
    "import os, pathlib, subprocess\nchild = subprocess.Popen(['sleep', '300'])\nprint('started')",
    # the marker is written from the cell that then hangs, so the signal always lands in it
    "import time\n"
    "pathlib.Path(os.environ['MARKERS'], NAME).write_text(f'{os.getpid()} {child.pid}')\n"
    "time.sleep(300)",
    AFTER,
]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signalled_runner_stops_its_kernels_keeps_outputs_and_kills_runs(
    project: Path, sig: signal.Signals, code: int
) -> None:
    markers = project / "markers"
    markers.mkdir()
    for name in ("one", "two"):
        write_notebook(project / "nbs" / f"{name}.ipynb", SLOW, parameters=f"NAME = {name!r}")
    runner = start_cli(
        ["run", "nbs", "--device", "cpu", "--jobs", "2", "--output-dir", "out"],
        project,
        env={**os.environ, "MARKERS": str(markers)},
    )
    pids: list[int] = []
    try:
        wait_for(lambda: len(list(markers.iterdir())) == 2, "both kernels to start")
        pids = [int(p) for m in markers.iterdir() for p in m.read_text().split()]
        runner.send_signal(sig)
        _, stderr = runner.communicate(timeout=WAIT_S)
    finally:
        kill_quietly([runner.pid, *pids])
    assert runner.returncode == code, stderr
    assert f"interrupted by {sig.name}" in stderr and "Traceback" not in stderr
    assert still_alive(pids) == []  # kernels and what they started: no orphans
    runs = runs_by_name(tracking_uri(project), "proj")
    for name in ("one", "two"):
        output = project / "out" / name / f"{name}.ipynb"
        assert f"out/{name}/{name}.ipynb" in stderr
        cells = nbformat.read(output, as_version=4).cells
        assert "started" in _texts(cells[1])  # kept: the cell after the parameters cell
        assert [o.ename for o in cells[2].outputs if o.output_type == "error"] == [
            "RunInterrupted"
        ]  # marked: the cell it stopped in
        assert _execution(output)["status"] == "interrupted"
        assert runs[name].info.status == "KILLED"


def _threads_taking(pid: int, sig: signal.Signals) -> list[int]:
    """The runner's threads other than its main one that do not block ``sig``."""
    taking = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        status = (task / "status").read_text()
        mask = next(line for line in status.splitlines() if line.startswith("SigBlk:"))
        blocked = int(mask.split()[1], 16)
        if int(task.name) != pid and not blocked >> (sig - 1) & 1:
            taking.append(int(task.name))
    return taking


def _one_slow_notebook(
    project: Path, args: list[str], send: Callable[[subprocess.Popen[str]], None]
) -> tuple[subprocess.Popen[str], str, list[int]]:
    """``reprokit run`` of one slow notebook (``args`` added), ``send`` called once its kernel
    is in the cell that hangs; the runner, its error output and the kernel's processes
    (killed if still there), once it has exited."""
    markers = project / "markers"
    markers.mkdir()
    write_notebook(project / "nbs" / "one.ipynb", SLOW, parameters="NAME = 'one'")
    runner = start_cli(
        ["run", "nbs", "--device", "cpu", *args],
        project,
        env={**os.environ, "MARKERS": str(markers)},
    )
    pids: list[int] = []
    try:
        wait_for((markers / "one").exists, "the kernel to start")
        pids = [int(p) for p in (markers / "one").read_text().split()]
        send(runner)
        _, stderr = runner.communicate(timeout=WAIT_S)
    finally:
        kill_quietly([runner.pid, *pids])
    return runner, stderr, pids


def _signalled_while_one_notebook_runs(
    project: Path, args: list[str], send: Callable[[subprocess.Popen[str]], None]
) -> str:
    """:func:`_one_slow_notebook`'s error output, once the runner has exited 143 leaving no
    process of the kernel's behind."""
    runner, stderr, pids = _one_slow_notebook(project, args, send)
    assert runner.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert still_alive(pids) == []
    return stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tgkill is Linux")
def test_a_signal_another_thread_takes_still_stops_the_runner(project: Path) -> None:
    """The kernel gives a process's signal to any thread that does not block it, and CPython
    runs the handler only on the main thread, once that thread runs Python again: a runner
    whose main thread waited without a limit ignored such a SIGTERM until a notebook ended
    (a CI run hung for 90 s). Sent here to a worker thread on purpose."""
    import ctypes

    def to_a_worker_thread(runner: subprocess.Popen[str]) -> None:
        thread = _threads_taking(runner.pid, signal.SIGTERM)[0]
        assert ctypes.CDLL(None).tgkill(runner.pid, thread, signal.SIGTERM) == 0  # glibc 2.30

    args = ["--no-record", "--output-dir", "out"]
    stderr = _signalled_while_one_notebook_runs(project, args, to_a_worker_thread)
    assert "interrupted by SIGTERM" in stderr


def test_a_second_signal_ends_the_command_at_once_and_loses_no_record(project: Path) -> None:
    """The second SIGTERM, sent as soon as the first one has stopped the kernel, lands before
    the record of the stopped run is written: the run's journal, opened as the notebook
    started, still has it for `sync`."""

    def twice(runner: subprocess.Popen[str]) -> None:
        kernel = psutil.Process(int((project / "markers" / "one").read_text().split()[0]))
        runner.send_signal(signal.SIGTERM)
        with contextlib.suppress(psutil.NoSuchProcess, psutil.TimeoutExpired):
            kernel.wait(timeout=WAIT_S)  # a zombie until the runner reaps it: a few ms more
        runner.send_signal(signal.SIGTERM)  # while the first is being handled

    stderr = _signalled_while_one_notebook_runs(project, [], twice)
    assert "interrupted again: exiting now" in stderr or "interrupted by SIGTERM" in stderr
    synced = run_cli(["sync"], project)
    assert synced.returncode == 0, synced.stderr
    run = runs_by_name(tracking_uri(project), "proj")["one"]
    assert run.info.status == "KILLED"
    assert run.data.params["device"] == "cpu"
    assert list((project / ".reprokit" / "journal").glob("*.jsonl")) == []


def test_a_runner_killed_mid_notebook_leaves_its_run_to_the_next_command(project: Path) -> None:
    """SIGKILL gives the runner no time to record anything: the journal it opened as the
    notebook started makes the next command record the run, KILLED, ended when the runner
    last wrote; its files stay in the output folder, not uploaded (never scrubbed)."""
    runner, _, _ = _one_slow_notebook(project, ["-p", "NAME=one"], lambda r: r.kill())
    assert runner.returncode == -signal.SIGKILL
    killed_ms = time.time() * 1000
    assert len(list((project / ".reprokit" / "journal").glob("*.jsonl"))) == 1
    status = run_cli(["status"], project)
    assert "journals 1 run(s) not in MLflow yet" in status.stdout, status.stdout
    time.sleep(1.0)
    synced = run_cli(["sync"], project)
    assert synced.returncode == 0, synced.stderr
    assert "Traceback" not in synced.stderr
    run = runs_by_name(tracking_uri(project), "proj")["one"]
    assert run.info.status == "KILLED"
    assert run.info.end_time <= killed_ms
    assert run.data.params == {"device": "cpu", "NAME": "one"}
    assert run.data.tags["mlflow.source.name"] == str((project / "nbs" / "one.ipynb").resolve())
    assert run.data.tags["reprokit.runner"] == "reprokit run"
    from mlflow.tracking import MlflowClient

    assert MlflowClient(tracking_uri=tracking_uri(project)).list_artifacts(run.info.run_id) == []
    assert len(list((project / ".reprokit" / "runs").glob("*/one/one.kernel.log"))) == 1
    assert list((project / ".reprokit" / "journal").glob("*.jsonl")) == []
    assert "journals" not in run_cli(["status"], project).stdout


def test_a_finished_notebook_whose_record_failed_is_recorded_later_as_finished(
    project: Path,
) -> None:
    """The project's configuration broken while the notebook ran: the record fails (exit 2,
    said), and the run's journal keeps the execution's status for the next command."""
    go = project / "go"
    write_notebook(
        project / "nbs" / "one.ipynb",
        [
            "import os, pathlib, time\npathlib.Path(os.environ['MARKERS'], 'one').touch()",
            f"while not pathlib.Path({str(go)!r}).exists():\n    time.sleep(0.05)",
        ],
    )
    (project / "markers").mkdir()
    pyproject = (project / "pyproject.toml").read_text()
    runner = start_cli(
        ["run", "nbs", "--device", "cpu"],
        project,
        env={**os.environ, "MARKERS": str(project / "markers")},
    )
    try:
        wait_for((project / "markers" / "one").exists, "the kernel to start")
        (project / "pyproject.toml").write_text("[project\n")
        go.touch()
        _, stderr = runner.communicate(timeout=WAIT_S)
    finally:
        kill_quietly([runner.pid])
    assert runner.returncode == 2, stderr
    assert "Traceback" not in stderr and "pyproject.toml" in stderr
    (project / "pyproject.toml").write_text(pyproject)
    synced = run_cli(["sync"], project)
    assert synced.returncode == 0, synced.stderr
    assert runs_by_name(tracking_uri(project), "proj")["one"].info.status == "FINISHED"


def test_a_run_recorded_after_its_start_journal_is_recorded_once(project: Path) -> None:
    """The journal opened as a notebook starts is the one its record completes: one run in
    MLflow, FINISHED, with the notebook's metrics and the start's params, no journal left."""
    write_notebook(
        project / "nbs" / "ok.ipynb",
        ["import reprokit\nreprokit.result('answer', 42.0)"],
        parameters="NAME = 'x'",
    )
    done = run_cli(["run", "nbs", "--device", "cpu", "-p", "NAME=y"], project)
    assert done.returncode == 0, done.stderr
    runs = runs_by_name(tracking_uri(project), "proj")
    assert list(runs) == ["ok"]
    assert runs["ok"].info.status == "FINISHED"
    assert runs["ok"].data.params["NAME"] == "y"
    assert list((project / ".reprokit" / "journal").glob("*.jsonl")) == []


def test_interrupt_between_notebooks_starts_no_new_kernel(project: Path) -> None:
    """A signal while notebook 1 runs: notebook 2 never starts, and says so."""
    markers = project / "markers"
    markers.mkdir()
    for name in ("a_first", "b_second"):
        write_notebook(project / "nbs" / f"{name}.ipynb", SLOW, parameters=f"NAME = {name!r}")
    runner = start_cli(
        ["run", "nbs", "--device", "cpu", "--no-record", "--output-dir", "out"],
        project,
        env={**os.environ, "MARKERS": str(markers)},
    )
    try:
        wait_for((markers / "a_first").exists, "the first kernel to start")
        pids = [int(p) for p in (markers / "a_first").read_text().split()]
        runner.send_signal(signal.SIGTERM)
        _, stderr = runner.communicate(timeout=WAIT_S)
    finally:
        kill_quietly([runner.pid])
    assert runner.returncode == 143, stderr
    assert still_alive(pids) == []
    assert not (markers / "b_second").exists()
    assert not (project / "out" / "b_second" / "b_second.ipynb").exists()


def _kernels_of(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.NoSuchProcess):
        children = psutil.Process(pid).children()
        return [c for c in children if "ipykernel" in " ".join(c.cmdline())]
    return []


def test_interrupt_while_a_kernel_waits_ahead_records_it_as_not_started(project: Path) -> None:
    """--jobs 2 with a third notebook: its kernel starts ahead and waits; a signal then stops
    it too, and the third notebook is not started (no notebook kept, no MLflow run)."""
    markers = project / "markers"
    markers.mkdir()
    write_notebook(project / "nbs" / "0_quick.ipynb", ["print('done')"])  # ok before the signal
    for name in ("a_one", "b_two", "c_three"):
        write_notebook(project / "nbs" / f"{name}.ipynb", SLOW, parameters=f"NAME = {name!r}")
    runner = start_cli(
        ["run", "nbs", "--device", "cpu", "--jobs", "2", "--output-dir", "out"],
        project,
        env={**os.environ, "MARKERS": str(markers)},
    )
    kernels: list[psutil.Process] = []
    try:
        wait_for(lambda: len(list(markers.iterdir())) == 2, "two notebooks to execute")
        wait_for(lambda: len(_kernels_of(runner.pid)) == 3, "the third kernel to start ahead")
        kernels = _kernels_of(runner.pid)
        runner.send_signal(signal.SIGTERM)
        _, stderr = runner.communicate(timeout=WAIT_S)
    finally:
        kill_quietly([runner.pid, *(k.pid for k in kernels)])
    assert runner.returncode == 143, stderr
    assert still_alive([k.pid for k in kernels]) == []
    assert sorted(m.name for m in markers.iterdir()) == ["a_one", "b_two"]  # c ran no cell
    assert not (project / "out" / "c_three" / "c_three.ipynb").exists()
    assert "out/c_three/c_three.ipynb" not in stderr
    assert "ok  nbs/0_quick.ipynb" in stderr
    kept = next(line for line in stderr.splitlines() if "partial notebooks kept" in line)
    assert "0_quick" not in kept and "out/a_one/a_one.ipynb" in kept  # finished: not partial
    runs = runs_by_name(tracking_uri(project), "proj")
    assert "c_three" not in runs and runs["a_one"].info.status == "KILLED"


def test_a_kernel_started_ahead_that_dies_while_it_waits_is_started_anew(project: Path) -> None:
    """The OOM killer takes the kernel waiting for a slot: its notebook still runs, in a fresh
    kernel, and says it was retried."""
    markers = project / "markers"
    markers.mkdir()
    quick = [
        "import os, pathlib, time\n"
        "pathlib.Path(os.environ['MARKERS'], NAME).write_text(str(os.getpid()))",
        # busy until the test says go: the third kernel waits for a slot until then
        "go = pathlib.Path(os.environ['MARKERS']).with_name('go')\n"
        "while not go.exists():\n    time.sleep(0.05)",
    ]
    for name in ("a_one", "b_two", "c_three"):
        write_notebook(project / "nbs" / f"{name}.ipynb", quick, parameters=f"NAME = {name!r}")
    runner = start_cli(
        ["run", "nbs", "--device", "cpu", "--jobs", "2", "--no-record", "--output-dir", "out"],
        project,
        env={**os.environ, "MARKERS": str(markers)},
    )
    try:
        wait_for(lambda: len(list(markers.iterdir())) == 2, "two notebooks to execute")
        wait_for(lambda: len(_kernels_of(runner.pid)) == 3, "the third kernel to start ahead")
        busy = {int(line.split()[0]) for line in _pids_of_started(markers)}
        waiting = [k for k in _kernels_of(runner.pid) if k.pid not in busy]
        assert len(waiting) == 1
        waiting[0].kill()
        (project / "go").touch()
        _, stderr = runner.communicate(timeout=WAIT_S)
    finally:
        kill_quietly([runner.pid])
    assert runner.returncode == 0, stderr
    assert len(list(markers.iterdir())) == 3  # the third notebook ran, in a new kernel
    assert "retried 1 time (the kernel died while it waited for its first cell)" in stderr


def _pids_of_started(markers: Path) -> list[str]:
    return [path.read_text() for path in markers.iterdir()]


def test_what_will_run_is_printed_before_anything_runs(project: Path) -> None:
    nb = write_notebook(project / "plan.ipynb", ["print(n)"], parameters="n = 1\ntoken = 'unset'")
    done = run_cli(
        ["run", str(nb), "--device", "cpu", "--no-record", "-p", "n=2"],
        project,
        env={**os.environ, "token": "s3cr3t-canary"},
    )
    assert done.returncode == 0, done.stderr
    assert f"will run  {nb}  kernel python3  device cpu  (n=2)" in done.stderr
    assert done.stderr.index("will run") < done.stderr.index("running  ")
    with_secret = run_cli(
        ["run", str(nb), "--device", "cpu", "--no-record", "--secret-param", "token"],
        project,
        env={**os.environ, "token": "s3cr3t-canary"},
    )
    assert "(secret: token)" in with_secret.stderr
    assert "s3cr3t-canary" not in with_secret.stdout + with_secret.stderr
    assert json.dumps("s3cr3t-canary") not in with_secret.stderr


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--memory-limit", "lots"], "--memory-limit 'lots': expected a size such as 512M"),
        (["--memory-limit", "0G"], "--memory-limit '0G'"),
        (["--notebook-timeout", "-1"], "--notebook-timeout must be a positive number"),
        (["--notebook-timeout", "inf"], "--notebook-timeout must be a positive number"),
        (["--timeout", "inf"], "--timeout must be a positive number (and finite), got inf"),
        (["--start-timeout", "1e400"], "--start-timeout must be a positive number"),
        (["--start-timeout", "nan"], "--start-timeout must be a positive number"),
        (["--secret-param", "token"], "no value given and no environment variable token"),
        (["--secret-param", "1x=2"], "expected NAME=VALUE or NAME with a Python name"),
        (["--secret-param", "n=2", "-p", "n=3"], "n given both as -p and as --secret-param"),
        (["--secret-param", "other=2"], "other not declared"),
    ],
)
def test_bad_runner_options_exit_two_before_anything_runs(
    project: Path, option: list[str], message: str
) -> None:
    from click.testing import CliRunner

    from reprokit.cli import main

    nb = write_notebook(project / "p.ipynb", ["print(n)"], parameters="n = 1")
    out = CliRunner().invoke(main, ["run", str(nb), "--no-record", *option], env={"token": None})
    assert out.exit_code == 2, out.output
    assert message in out.output and "Traceback" not in out.output
    assert not (project / ".reprokit" / "runs").exists()


# A kernel launcher that, for its first LAUNCHES_TAKEN launches, holds the shell port of the
# connection file before it starts ipykernel: the port race of a busy machine (another process
# took the port between jupyter_client's choice and the kernel's bind), with the real error.
_TAKEN_PORT_LAUNCHER = """\
import json, pathlib, socket, subprocess, sys
count = pathlib.Path(sys.argv[1])
launches = int(count.read_text()) if count.exists() else 0
count.write_text(str(launches + 1))
args = [sys.executable, "-m", "ipykernel_launcher", *sys.argv[2:]]
if launches >= int(sys.argv[2 + sys.argv[2:].index("--taken") + 1]):
    args = args[: args.index("--taken")]
    sys.exit(subprocess.call(args))
port = json.loads(pathlib.Path(sys.argv[sys.argv.index("-f") + 1]).read_text())["shell_port"]
holder = socket.socket()
holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
holder.bind(("127.0.0.1", port))
holder.listen()
sys.exit(subprocess.call(args[: args.index("--taken")]))
"""


def _taken_port_kernel(root: Path, taken: int) -> dict[str, str]:
    """A kernelspec ``taken-port`` under ``root`` whose first ``taken`` launches die on
    "Address already in use"; the environment that finds it (and counts its launches)."""
    spec = root / "kernels" / "taken-port"
    spec.mkdir(parents=True)
    launcher = root / "launcher.py"
    launcher.write_text(_TAKEN_PORT_LAUNCHER)
    argv = [sys.executable, str(launcher), str(root / "launches"), "-f", "{connection_file}"]
    argv += ["--taken", str(taken)]
    spec_json = {"argv": argv, "display_name": "Taken port", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(spec_json))
    return {**os.environ, "JUPYTER_PATH": str(root)}


@pytest.mark.slow
def test_a_kernel_that_dies_while_it_starts_is_started_anew_then_given_up(project: Path) -> None:
    """A kernel whose port was taken dies before its first cell: nothing of the notebook ran,
    so it is started again (at most MAX_RETRIES times), and the outcome says so."""
    write_notebook(project / "nbs" / "once.ipynb", ["print('ran')"])
    env = _taken_port_kernel(project / "jupyter", taken=1)
    args = ["run", "nbs", "--device", "cpu", "--kernel", "taken-port", "--no-record"]
    done = run_cli([*args, "--output-dir", "out"], project, env=env)
    assert done.returncode == 0, done.stderr
    assert (project / "jupyter" / "launches").read_text() == "2"
    said = "retried 1 time (the kernel died while it started, before its first cell)"
    assert said in done.stderr
    cells = nbformat.read(project / "out" / "once" / "once.ipynb", as_version=4).cells
    assert "ran" in _texts(cells[0])

    (project / "jupyter" / "launches").unlink()
    env = _taken_port_kernel(project / "always", taken=99)
    done = run_cli([*args, "--start-timeout", "4", "--output-dir", "out2"], project, env=env)
    assert done.returncode == 3, done.stderr
    assert (project / "always" / "launches").read_text() == "3"  # 1 + MAX_RETRIES
    assert "Traceback" not in done.stderr
    assert f"retried 2 times ({said.split('(', 1)[1]}" in done.stderr  # the reason once
    assert "Address already in use" in done.stderr  # the kernel's last words, from its log
    assert _execution(project / "out2" / "once" / "once.ipynb")["status"] == "kernel_died"


_SILENT_LAUNCHER = """\
import pathlib, subprocess, sys, time
count = pathlib.Path(sys.argv[1])
launches = int(count.read_text()) if count.exists() else 0
count.write_text(str(launches + 1))
if launches < int(sys.argv[2]):
    print("waiting for the licence server", file=sys.stderr, flush=True)
    time.sleep(600)
sys.exit(subprocess.call([sys.executable, "-m", "ipykernel_launcher", *sys.argv[3:]]))
"""


@pytest.mark.slow
def test_a_kernel_silent_as_it_starts_is_started_anew_then_given_up(project: Path) -> None:
    """A kernel that gives no answer within --start-timeout (a loaded machine, a start that
    hangs) is stopped and started again, at most MAX_RETRIES times: none of its cells ran."""
    write_notebook(project / "nbs" / "once.ipynb", ["print('ran')"])
    launcher = project / "silent.py"
    launcher.write_text(_SILENT_LAUNCHER)
    for root, silent in (("jupyter", 1), ("always", 99)):
        spec = project / root / "kernels" / "silent"
        spec.mkdir(parents=True)
        argv = [sys.executable, str(launcher), str(project / root / "launches"), str(silent)]
        spec_json = {"argv": [*argv, "-f", "{connection_file}"], "display_name": "S"}
        (spec / "kernel.json").write_text(json.dumps({**spec_json, "language": "python"}))
    args = ["run", "nbs", "--device", "cpu", "--kernel", "silent", "--no-record"]
    env = {**os.environ, "JUPYTER_PATH": str(project / "jupyter")}
    # long enough for the real kernel of the second launch on a loaded machine
    done = run_cli([*args, "--start-timeout", "15", "--output-dir", "out"], project, env=env)
    assert done.returncode == 0, done.stderr
    assert (project / "jupyter" / "launches").read_text() == "2"
    assert "retried 1 time (the kernel did not answer as it started)" in done.stderr
    assert "ran" in _texts(nbformat.read(project / "out" / "once" / "once.ipynb", 4).cells[0])

    env = {**os.environ, "JUPYTER_PATH": str(project / "always")}
    done = run_cli([*args, "--start-timeout", "4", "--output-dir", "out2"], project, env=env)
    assert done.returncode == 3, done.stderr
    assert (project / "always" / "launches").read_text() == "3"  # 1 + MAX_RETRIES
    assert "Traceback" not in done.stderr
    assert "retried 2 times (the kernel did not answer as it started)" in done.stderr
    assert "the kernel did not start: no answer within 4 s" in done.stderr
    assert _execution(project / "out2" / "once" / "once.ipynb")["status"] == "timeout"
    log = (project / "out2" / "once" / "once.kernel.log").read_text()
    assert "waiting for the licence server" in log  # kept, with the earlier attempts'
    assert (project / "out2" / "once" / "once.kernel.attempt-2.log").is_file()


def test_a_kernelspec_whose_program_is_gone_fails_in_one_line(project: Path) -> None:
    """Kernelspecs as broken setups leave them: a deleted environment's program, a program
    that is not executable, a kernel.json with no command, one that is not JSON. No
    traceback; the notebook fails (exit 3) naming what is wrong and is not started again, or
    (a kernel.json that cannot be read) nothing runs (exit 2)."""
    write_notebook(project / "nbs" / "once.ipynb", ["print('ran')"])
    not_executable = project / "not-executable"
    not_executable.write_text("#!/bin/sh\n")
    kernels = project / "jupyter" / "kernels"
    for name, program in (("gone", "/nonexistent/env/bin/python"), ("noexec", not_executable)):
        (kernels / name).mkdir(parents=True)
        argv = [str(program), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        spec_json = {"argv": argv, "display_name": name, "language": "python"}
        (kernels / name / "kernel.json").write_text(json.dumps(spec_json))
    for name, text in (("noargv", "{}"), ("notjson", "{not json")):
        (kernels / name).mkdir(parents=True)
        (kernels / name / "kernel.json").write_text(text)
    env = {**os.environ, "JUPYTER_PATH": str(project / "jupyter")}
    cases = (
        ("gone", 3, "the kernel could not be started: /nonexistent/env/bin/python: No such file"),
        ("noexec", 3, "Permission denied"),
        ("noargv", 3, "noargv/kernel.json gives no command (argv)"),
        ("notjson", 2, "the kernel 'notjson' is installed but "),
    )
    for name, code, why in cases:
        args = ["run", "nbs", "--device", "cpu", "--kernel", name, "--no-record"]
        done = run_cli(args, project, env=env)
        assert done.returncode == code, done.stderr
        assert "Traceback" not in done.stderr and "retried" not in done.stderr
        assert why in done.stderr


def test_a_dead_kernels_last_words_are_whole_lines_redacted_before_they_are_cut(
    tmp_path: Path,
) -> None:
    """The kernel log's last line joins the message; a secret in it is redacted whole (never
    cut first, which would leave a part no pattern matches), and a line the log's tail starts
    in the middle of is left out."""
    from reprokit.runner._outputs import redact_error
    from reprokit.runner.execute import KERNEL_DIED_STARTING, _capped, _with_last_words

    secret = "hunter2-very-private-password-xyz"
    log = tmp_path / "k.log"
    log.write_text("starting\n" + "x" * 280 + f" conn {secret} tail\n")  # across 300
    message = _capped(redact_error(_with_last_words(KERNEL_DIED_STARTING, log), {"DB": secret}))
    assert message.startswith(KERNEL_DIED_STARTING) and len(message) <= 400
    assert "hunter2" not in message and "very-pri" not in message
    log.write_text("y" * 3000 + f"npm_{'A' * 36}" + "z" * 2000)  # one line, cut by the tail
    assert _with_last_words(KERNEL_DIED_STARTING, log) == KERNEL_DIED_STARTING
    log.write_text("early\n" * 10 + "zmq.error.ZMQError: Address already in use\n\n")
    said = _with_last_words(KERNEL_DIED_STARTING, log)
    assert said == f"{KERNEL_DIED_STARTING}: zmq.error.ZMQError: Address already in use"


_TERMINATED_WHILE_PLANNING = """
import os, signal, sys
from reprokit.api import run as api_run
from reprokit.cli import main

planned = api_run.number_copies

def signalled(plans):  # SIGTERM while the notebooks are planned, before any kernel
    os.kill(os.getpid(), signal.SIGTERM)
    return planned(plans)

api_run.number_copies = signalled
main(sys.argv[1:], prog_name="reprokit")
"""


def test_sigterm_before_any_kernel_is_said_and_exits_143(project: Path) -> None:
    """Outside the stretch where kernels run, SIGTERM killed the command by its default
    action: no message, the parent saw a death by signal (-15), folders half made."""
    write_notebook(project / "one.ipynb", ["print('never')"])
    done = subprocess.run(
        [sys.executable, "-c", _TERMINATED_WHILE_PLANNING, "run", "one.ipynb", "--no-record"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 143, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "reprokit: interrupted by SIGTERM"
    assert "Traceback" not in done.stderr and "never" not in done.stdout
