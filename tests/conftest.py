"""Shared fixtures: a throw-away project with a migrated SQLite MLflow store, real kernels.

Creating MLflow's schema costs about a second, so one migrated database is made per test
session (per xdist worker) and copied into each test's project. A copied database keeps the
absolute artifact location of its ``Default`` experiment: reprokit never logs there (it creates
its experiments with explicit locations), and tests must not either.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings


def pytest_configure(config: pytest.Config) -> None:
    """A suite started in the background of a shell without job control inherits Ctrl-C
    ignored (SIG_IGN), which Python keeps, as do the processes the tests start: the tests
    that interrupt hashing, a run or a cluster would then see nothing. Put Python's own
    handler back (a process started from here gets the default action again at exec)."""
    import signal

    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# CI explores the same examples every run (no flaky failures from fresh random draws);
# a developer's run keeps exploring new ones. Failures found locally get an @example.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# variables that would point a test at a real store or change what reprokit records
_ISOLATED_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_EXPERIMENT_NAME",
    "REPROKIT_DEVICE",
    "REPROKIT_PARAMS",
    "REPROKIT_OUTPUT_DIR",
    "REPROKIT_NOTEBOOK",
    "REPROKIT_FLUSH_TIMEOUT",
    "JPY_SESSION_NAME",
)


@functools.cache
def cuda_device_missing() -> str | None:
    """Why no CUDA device is usable here (``None`` when one is), without importing torch here.

    NVML (nvidia-ml-py, a reprokit dependency) answers in milliseconds whether the driver sees an
    NVIDIA GPU. Only when it does is torch asked, in a subprocess (its import costs seconds and
    would initialise CUDA state in this process): it honours CUDA_VISIBLE_DEVICES, and a
    CPU-only build of torch sees no device even on a GPU machine.
    """
    try:
        import pynvml
    except ImportError:
        return "nvidia-ml-py (pynvml) not installed: cannot look for a GPU"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return f"NVML: {exc} (no NVIDIA driver)"
    try:
        count = pynvml.nvmlDeviceGetCount()
    except pynvml.NVMLError as exc:
        return f"NVML: {exc}"
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()
    if count == 0:
        return "NVML sees no NVIDIA GPU"
    code = "import torch; print(torch.cuda.is_available(), torch.version.cuda)"
    probe = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if probe.returncode != 0:
        return f"NVML sees {count} GPU(s) but torch cannot be imported: {probe.stderr[-300:]}"
    available, _, cuda = probe.stdout.strip().partition(" ")
    if available != "True":
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        return (
            f"NVML sees {count} GPU(s) but torch.cuda.is_available() is False "
            f"(torch CUDA build: {cuda}; CUDA_VISIBLE_DEVICES={visible!r})"
        )
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip and order the collected tests (the same on every xdist worker).

    - ``@pytest.mark.gpu`` tests run only where a CUDA device is visible: the one place that
      decides it (the probe runs only when such a test is collected).
    - Modules with ``slow`` tests come first, so that with ``--dist loadfile
      --no-loadscope-reorder`` (pyproject.toml) the long modules start early instead of ending
      the run on one worker while the other is idle. The order within a module is kept.
    """
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if gpu_items and (missing := cuda_device_missing()) is not None:
        skip = pytest.mark.skip(reason=f"gpu test, no CUDA device: {missing}")
        for item in gpu_items:
            item.add_marker(skip)
    slow_files = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: False (slow) first


@pytest.fixture(scope="session", autouse=True)
def _private_hash_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test reads or writes the user's hash cache (~/.cache/reprokit)."""
    previous = os.environ.get("REPROKIT_CACHE_DIR")
    os.environ["REPROKIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("hash-cache"))
    yield
    if previous is None:
        os.environ.pop("REPROKIT_CACHE_DIR", None)
    else:
        os.environ["REPROKIT_CACHE_DIR"] = previous


@pytest.fixture
def restore_seeding(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every generator, switch and variable ``seed_everything`` (``%repro seed``) touches in
    this process is put back afterwards: a later test on the same worker, and the kernels it
    starts, would otherwise inherit them."""
    import random

    import numpy

    from reprokit.capturing import seeds

    try:
        import torch
    except ImportError:
        torch = None
    for name in seeds.DETERMINISTIC_ENV:  # set first, so that teardown removes them again
        monkeypatch.setenv(name, "x")
        monkeypatch.delenv(name)
    saved = (random.getstate(), numpy.random.get_state())
    switches = None if torch is None else _torch_switches(torch)
    rng = None if torch is None else torch.get_rng_state()
    yield
    seeds._uninstall_hook()
    random.setstate(saved[0])
    numpy.random.set_state(saved[1])
    if torch is not None and switches is not None:
        torch.set_rng_state(rng)
        det, warn_only, cudnn_det, cudnn_bench = switches
        if _torch_switches(torch)[:2] != (det, warn_only):  # the first call costs ~1.5 s
            torch.use_deterministic_algorithms(det, warn_only=warn_only)
        torch.backends.cudnn.deterministic = cudnn_det
        torch.backends.cudnn.benchmark = cudnn_bench


def _torch_switches(torch: Any) -> tuple[bool, bool, bool, bool]:
    return (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )


@pytest.fixture(scope="session")
def mlflow_template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database with MLflow's schema, made once per session (copy it, never use it)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder = tmp_path_factory.mktemp("mlflow-template")
    database = folder / "mlflow.db"
    store = SqlAlchemyStore(f"sqlite:///{database}", str(folder / "unused-artifacts"))
    store.engine.dispose()
    return database


@pytest.fixture(scope="session")
def postgres_uri() -> Iterator[str]:
    """A PostgreSQL superuser's URI: ``$REPROKIT_TEST_POSTGRES_URI`` (``.ci/run`` exports it),
    else a throw-away cluster started here (root and Debian's PostgreSQL needed; else the test
    skips, saying why). Tests make their own database in it (``pg_helpers.fresh_database``)."""
    from pg_helpers import postgres_cluster

    with postgres_cluster() as uri:
        yield uri


def reset_session() -> None:
    """End any active run and forget session state, so tests do not leak into each other."""
    import warnings

    from reprokit.api import session

    if session._active is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            session.end()
    session._active = None
    session._last_run = None
    session._last_status = None
    session._pending_seed = None


@pytest.fixture
def project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_template_db: Path
) -> Iterator[Path]:
    """A project folder (pyproject.toml + copied mlflow.db) that is the working directory."""
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    shutil.copy(mlflow_template_db, root / "mlflow.db")
    for name in _ISOLATED_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    monkeypatch.setenv("REPROKIT_CACHE_DIR", str(tmp_path / "hash-cache"))  # not the user's
    monkeypatch.chdir(root)
    reset_session()
    yield root
    reset_session()


def tracking_uri(root: Path) -> str:
    return f"sqlite:///{root / 'mlflow.db'}"


def mlflow_client(uri: str) -> Any:
    """A client of the store at ``uri``, once the background writers of every run ended in its
    project are done (``%repro end`` returns before MLflow has a slow run: see
    ``reprokit.recording.handoff``)."""
    from mlflow.tracking import MlflowClient

    from reprokit.recording.handoff import wait_for_writers

    if uri.startswith("sqlite:///"):
        wait_for_writers(Path(uri.removeprefix("sqlite:///")).parent, 120)
    else:  # a server: the writers of the project the test works in (its working folder)
        wait_for_writers(Path.cwd(), 120)

    return MlflowClient(tracking_uri=uri)


def only_run(uri: str, experiment: str) -> Any:
    """The single run of ``experiment`` in the store at ``uri``."""
    client = mlflow_client(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r}"
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


def execute_notebook(
    cells: list[str], cwd: Path, *, allow_errors: bool = False, timeout: int = 120
) -> Any:
    """Run ``cells`` in a fresh real kernel (nbclient) in ``cwd``; return the executed notebook.

    The kernel is shut down before this returns (so atexit handlers have run). A cell error
    stops execution as in papermill; the partial notebook is still returned. The kernel gets
    60 s to exit instead of jupyter_client's 5 s (SIGTERM at 2.5 s, SIGKILL at 5 s), so that a
    loaded CI machine tests the exit path, not its own speed.
    """
    import nbformat
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    client = NotebookClient(
        nb,
        km=KernelManager(kernel_name="python3", shutdown_wait_time=60),
        timeout=timeout,
        kernel_name="python3",
        allow_errors=allow_errors,
        record_timing=True,
        resources={"metadata": {"path": str(cwd)}},
    )
    with contextlib.suppress(CellExecutionError):
        client.execute(cleanup_kc=True)  # shut the kernel down: it was given, not owned
    return nb
