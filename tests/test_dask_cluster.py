"""The dask executor for real: a ``dask scheduler`` and two ``dask worker`` processes on
127.0.0.1 (random ports, stopped after; the second declares a GPU resource, the one thing
faked), and the embedded ``LocalCluster``. Real kernels on the
workers, a real SQLite MLflow store written by the client only."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import nbformat
import psutil
import pytest
from conftest import tracking_uri
from fault_helpers import WAIT_S, kill_quietly, run_cli, start_cli, wait_for, wait_gone
from run_helpers import write_notebook

pytest.importorskip("distributed")

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:PYTHONHASHSEED")]

MARK = "REPROKIT_KERNEL_MARK"


class Cluster:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.address = ""

    def _start(self, name: str, args: list[str]) -> None:
        log = open(self.folder / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", *args], stdout=log, stderr=log, start_new_session=True
        )

    def start(self, workers: int) -> None:
        info = self.folder / "scheduler.json"
        self._start(
            "scheduler",
            ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard", "--scheduler-file", str(info)],
        )  # fmt: skip
        wait_for(info.is_file, "the scheduler to start")
        wait_for(lambda: bool(info.read_text().strip()), "the scheduler file")
        self.address = json.loads(info.read_text())["address"]
        for k in range(workers):
            self._start(
                f"worker{k}",
                ["distributed.cli.dask_worker", self.address, "--nthreads", "1",
                 "--nworkers", "1", "--no-dashboard", "--host", "127.0.0.1",
                 "--name", f"worker{k}", *(["--resources", "GPU=1"] if k == 1 else [])],
            )  # fmt: skip
        wait_for(lambda: len(self.workers()) == workers, f"{workers} workers")

    def workers(self) -> dict[str, str]:
        """Worker address -> name, as the scheduler sees them."""
        from distributed import Client

        with Client(self.address, timeout=WAIT_S) as client:
            seen = client.scheduler_info(n_workers=-1)["workers"]
        return {address: str(info["name"]) for address, info in seen.items()}

    def kill(self, name: str) -> None:
        """A lost machine: the worker's whole process group, at once."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.processes[name].pid, signal.SIGKILL)
        self.processes[name].wait(timeout=WAIT_S)

    def stop(self) -> None:
        for name in list(self.processes):
            self.kill(name)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path)
    try:
        running.start(workers=2)
        yield running
    finally:
        running.stop()


def _notebooks(project: Path, count: int, cell: str = "") -> list[Path]:
    return [
        write_notebook(
            project / "nbs" / f"nb{k}.ipynb",
            [cell, f"import reprokit\nreprokit.result('value', {k} * scale)"],
            parameters="scale = 2",
        )
        for k in range(count)
    ]


def _run_statuses(project: Path) -> list[str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri(project))
    experiments = client.search_experiments()
    runs = client.search_runs([e.experiment_id for e in experiments])
    return [run.info.status for run in runs]


def test_six_notebooks_verified_through_a_scheduler_name_their_workers(
    project: Path, cluster: Cluster
) -> None:
    _notebooks(project, 6)
    dask = ["--executor", "dask", "--scheduler", cluster.address]
    recorded = run_cli(["record", "nbs", *dask, "--device", "cpu"], project)
    assert recorded.returncode == 0, recorded.stderr
    # each run's journal, opened as its task started (on the client's event loop), was
    # completed by its record: none left over, to be replayed as a second run
    assert list((project / ".reprokit" / "journal").glob("*.jsonl")) == []
    verified = run_cli(
        ["verify", "nbs", *dask, "--device", "cpu", "--junit", "junit.xml", "--output-dir", "out"],
        project,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    workers = cluster.workers()
    suites = ET.parse(project / "junit.xml").getroot().findall("testsuite")
    assert len([case for suite in suites for case in suite.iter("testcase")]) == 6
    for suite in suites:
        by = {p.get("name"): p.get("value") for p in suite.iter("property")}["executed_by"]
        assert any(f"({address})" in str(by) for address in workers), by
    for k in range(6):
        executed = nbformat.read(project / "out" / f"nb{k}" / f"nb{k}.ipynb", as_version=4)
        assert executed.metadata["reprokit"]["executed_by"]["worker"] in workers
    assert _run_statuses(project) == ["FINISHED"] * 12  # written by the client alone
    # a CUDA notebook goes only to the worker that declares a GPU (faked: worker1 has none)
    gpu = [address for address, name in workers.items() if name == "worker1"]
    four = [f"nbs/nb{k}.ipynb" for k in range(4)]  # 1 in 16 to land there by chance
    ran = run_cli(
        ["run", *four, *dask, "--device", "cuda", "--no-record", "--output-dir", "gpu"], project
    )
    assert ran.returncode == 0, ran.stderr
    for k in range(4):
        executed = nbformat.read(project / "gpu" / f"nb{k}" / f"nb{k}.ipynb", as_version=4)
        assert [executed.metadata["reprokit"]["executed_by"]["worker"]] == gpu


def test_a_kernel_that_died_is_retried_and_its_log_kept(project: Path, cluster: Cluster) -> None:
    """The attempt whose kernel died keeps its kernel log (it may say why), beside the log of
    the attempt that ran the notebook."""
    mark = project / "died-once"
    dies_once = (
        "import os, pathlib\n"
        f"mark = pathlib.Path({str(mark)!r})\n"
        "if not mark.exists():\n"
        "    mark.write_text('')\n"
        "    os.write(2, b'dying on purpose\\n')\n"
        "    os._exit(1)"
    )
    write_notebook(project / "nbs" / "dies.ipynb", [dies_once], parameters="seed = 0")
    dask = ["--executor", "dask", "--scheduler", cluster.address, "--device", "cpu"]
    ran = run_cli(["run", "nbs/dies.ipynb", *dask, "--no-record", "--output-dir", "out"], project)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "retried 1 time (the kernel died on" in ran.stdout + ran.stderr
    assert ran.stderr.count("running  nbs/dies.ipynb") == 1  # once, as the local executor
    folder = project / "out" / "dies"
    assert b"dying on purpose" in (folder / "dies.kernel.attempt-1.log").read_bytes()
    assert b"dying on purpose" not in (folder / "dies.kernel.log").read_bytes()


def _kernels_below(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if MARK in child.environ():
                    found.append(child.pid)
    return found


def test_a_worker_lost_mid_notebook_ends_verified_or_clearly_failed(
    project: Path, cluster: Cluster
) -> None:
    _notebooks(project, 3)
    dask = ["--executor", "dask", "--scheduler", cluster.address, "--device", "cpu"]
    assert run_cli(["record", "nbs", *dask], project).returncode == 0
    for notebook in (project / "nbs").glob("*.ipynb"):  # now slow enough to be caught running
        node = nbformat.read(notebook, as_version=4)
        node.cells[1].source = "import time\ntime.sleep(6)"
        nbformat.write(node, notebook)
    runner = start_cli(["verify", "nbs", *dask], project)
    try:
        victim = cluster.processes["worker0"].pid
        wait_for(lambda: bool(_kernels_below(victim)), "a kernel on worker0")
        orphans = _kernels_below(victim)
        cluster.kill("worker0")
        out, err = runner.communicate(timeout=WAIT_S * 2)
    finally:
        kill_quietly([runner.pid])
    assert runner.returncode in (0, 1, 3), err  # verified, not reproduced or failed: an outcome
    assert "Traceback" not in err
    assert "was lost" in out + err  # the retried notebook says why
    assert "REPRODUCED" in out
    assert "RUNNING" not in _run_statuses(project)
    assert wait_gone(orphans) == []  # a kernel whose worker died ends itself


def test_a_clean_run_on_the_embedded_cluster_prints_no_traceback(project: Path) -> None:
    """Each task watched the cancel Event with a wait held on the scheduler: one still held as
    the cluster closed was logged as an error, with a CancelledError traceback."""
    _notebooks(project, 4)
    done = run_cli(["run", "nbs", "--executor", "dask", "--jobs", "2", "--no-record"], project)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "ERROR" not in done.stderr, done.stderr


def test_the_embedded_cluster_runs_and_a_sigint_leaves_nothing_behind(project: Path) -> None:
    markers = project / "markers"
    markers.mkdir()
    hang = (
        "import os, pathlib, time\n"
        "pathlib.Path(os.environ['MARKERS'], str(os.getpid())).write_text('')\n"
        "time.sleep(300)"
    )
    for name in ("one", "two"):
        write_notebook(project / "nbs" / f"{name}.ipynb", [hang], parameters="seed = 0")
    runner = start_cli(
        ["run", "nbs", "--executor", "dask", "--jobs", "2", "--output-dir", "out"],
        project,
        env={**os.environ, "MARKERS": str(markers)},
    )
    kernels: list[int] = []
    try:
        wait_for(lambda: len(list(markers.iterdir())) == 2, "both kernels on the workers")
        kernels = [int(marker.name) for marker in markers.iterdir()]
        os.killpg(runner.pid, signal.SIGINT)  # Ctrl-C: the workers are in its process group
        _, err = runner.communicate(timeout=WAIT_S)
    finally:
        kill_quietly([runner.pid, *kernels])
    assert runner.returncode == 130, err
    assert "interrupted by SIGINT" in err and "Traceback" not in err
    assert wait_gone(kernels) == []
    for name in ("one", "two"):
        executed = nbformat.read(project / "out" / name / f"{name}.ipynb", as_version=4)
        assert executed.metadata["reprokit"]["execution"]["status"] == "interrupted"
        assert "worker" in executed.metadata["reprokit"]["executed_by"]
    assert sorted(_run_statuses(project)) == ["KILLED", "KILLED"]
