"""``run``: execute notebooks, each in its own kernel, folder and MLflow run.

For every notebook: load it (text formats converted in memory), check the parameters against
its ``parameters`` cell, execute it with papermill in a fresh kernel whose working directory is
the notebook's folder, write the executed notebook into its own output folder, and record an
MLflow run from it. Everything that can be wrong with the input is checked for every notebook
before the first kernel starts.

Output layout (``output_dir`` defaults to ``<project root>/.reprokit/runs/<UTC>-<6 hex>``)::

    <output_dir>/<notebook stem>/<notebook name>.ipynb     the executed notebook
    <output_dir>/<notebook stem>/<notebook name>.kernel.log the kernel's stdout/stderr
    <output_dir>/<notebook stem>/<UTC>-<6 hex>/            the kernel's run folder (results,
                                                            snapshot, arrays)
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from reprokit._fsutil import atomic_write_text
from reprokit.exceptions import InputError, PathError, RunInterrupted, UsageError
from reprokit.runner import kernels
from reprokit.runner.device import DeviceChoice, resolve_device
from reprokit.runner.execute import (
    CellFailure,
    Limits,
    execute_notebook,
    kernel_of,
    make_output_folder,
)
from reprokit.runner.notebooks import declared_parameters, discover_notebooks, load_notebook
from reprokit.runner.params import check_declared, check_secrets

RUNNER_ENV = {"REPROKIT_MLFLOW": "off"}


@dataclass(frozen=True)
class RunOutcome:
    """One notebook's execution: status ok | failed | timeout | kernel_died | interrupted
    (``interrupted`` with no output file: the runner was stopped before it started)."""

    notebook: str
    status: str
    output_path: str
    output_dir: str
    duration_s: float
    device: str
    parameters: dict[str, Any] = field(default_factory=dict)
    failure: CellFailure | None = None
    message: str = ""
    run_id: str | None = None  # MLflow run, when recorded
    record_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class PlannedRun:
    """A notebook ready to execute: loaded, checked, with its folder and kernel environment."""

    source: Path
    node: Any
    output_dir: Path
    parameters: dict[str, Any]
    env: dict[str, str]
    secret_names: tuple[str, ...] = ()  # their values are in RunnerSettings, never here
    kernel: str = "python3"
    device: str = "cpu"

    @property
    def output_path(self) -> Path:
        return self.output_dir / (self.source.stem + ".ipynb")


@dataclass(frozen=True)
class CellProgress:
    """A notebook's progress: cell ``position`` of ``total`` started ``elapsed_s`` after it."""

    position: int
    total: int
    elapsed_s: float


Progress = Callable[[str, PlannedRun, "RunOutcome | CellProgress | None"], None]
"""``progress(event, plan, info)``: ``"plan"`` (before any kernel starts) and ``"start"`` (info
None), ``"cell"`` (a :class:`CellProgress`) and ``"done"`` (the :class:`RunOutcome`)."""


@dataclass(frozen=True)
class RunnerSettings:
    """Settings of executing commands that ``run``'s callers need not thread through:
    secret parameters (name -> value), the whole-notebook time limit (seconds) and the
    kernel's memory limit (bytes). The CLI sets them for a whole command with
    :func:`runner_settings`; an explicit argument of :func:`run` wins."""

    secret_parameters: Mapping[str, str] = field(default_factory=dict)
    notebook_timeout: float | None = None
    memory_limit: int | None = None


_settings = RunnerSettings()


@contextlib.contextmanager
def runner_settings(settings: RunnerSettings) -> Iterator[None]:
    """Use ``settings`` for every :func:`run` inside (also from other threads), and stop
    kernels on ``SIGINT``/``SIGTERM`` while inside (see :mod:`reprokit.runner.kernels`)."""
    global _settings
    previous, _settings = _settings, settings
    try:
        with kernels.stop_kernels_on_signals():
            yield
    finally:
        _settings = previous


def run(
    notebooks: Iterable[str | os.PathLike[str]],
    *,
    device: str = "auto",
    parameters: Mapping[str, Any] | None = None,
    jobs: int = 1,
    timeout: float | None = None,
    kernel: str | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    record: bool = True,
    progress: Progress | None = None,
    secret_parameters: Mapping[str, str] | None = None,
    notebook_timeout: float | None = None,
    memory_limit: int | None = None,
) -> list[RunOutcome]:
    """Execute ``notebooks`` (files or folders), ``jobs`` at once; one outcome each, in order.

    Raises :class:`~reprokit.exceptions.UsageError` (bad device, bad jobs, a parameter a
    notebook does not declare) or :class:`~reprokit.exceptions.PathError` (missing or corrupt
    notebook) before anything executes. A failing notebook is an outcome, not an exception.
    ``secret_parameters`` reach the kernel but are never written into a notebook, MLflow or a
    lock. On ``SIGINT``/``SIGTERM`` every kernel is stopped, the partial notebooks are kept and
    recorded as KILLED, then :class:`~reprokit.exceptions.RunInterrupted` is raised.
    """
    settings = RunnerSettings(
        dict(_settings.secret_parameters if secret_parameters is None else secret_parameters),
        _settings.notebook_timeout if notebook_timeout is None else notebook_timeout,
        _settings.memory_limit if memory_limit is None else memory_limit,
    )
    _check_numbers(jobs, timeout, settings)
    choice = resolve_device(device)
    sources = discover_notebooks(notebooks)
    if not sources:
        raise UsageError("no notebooks found in the given paths")
    base = Path(output_dir) if output_dir is not None else default_output_dir(sources[0])
    plans = plan_runs(
        sources, base, choice, dict(parameters or {}), kernel, settings.secret_parameters
    )
    for plan in plans:  # an unwritable output folder stops everything before any kernel
        make_output_folder(plan.output_dir)
    with kernels.stop_kernels_on_signals():
        outcomes = _run_plans(plans, choice, jobs, timeout, kernel, record, progress, settings)
        signum = kernels.interrupting_signal()
        if signum is None and kernels.interrupted():
            signum = signal.SIGINT  # interrupt_all() called by the embedding program
        if signum is not None:
            kept = tuple(o.output_path for o in outcomes if Path(o.output_path).is_file())
            raise RunInterrupted(int(signum), kept)
    return outcomes


def _check_numbers(jobs: int, timeout: float | None, settings: RunnerSettings) -> None:
    if jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}", jobs=jobs)
    for option, value in (
        ("--timeout", timeout),
        ("--notebook-timeout", settings.notebook_timeout),
        ("--memory-limit", settings.memory_limit),
    ):
        if value is not None and value <= 0:
            raise UsageError(f"{option} must be a positive number, got {value}")


def _run_plans(
    plans: list[PlannedRun],
    choice: DeviceChoice,
    jobs: int,
    timeout: float | None,
    kernel: str | None,
    record: bool,
    progress: Progress | None,
    settings: RunnerSettings,
) -> list[RunOutcome]:
    if progress is not None:
        for plan in plans:  # what will run, said before anything runs
            progress("plan", plan, None)
    limits = Limits(settings.notebook_timeout, settings.memory_limit)

    # recording runs on one thread of its own: MLflow is imported there while the first
    # kernel starts, and notebook k is recorded while notebook k+1 executes
    recorder = ThreadPoolExecutor(1, "reprokit-record") if record else None
    if recorder is not None:
        recorder.submit(_import_mlflow)

    def finish(plan: PlannedRun, executed: Executed) -> RunOutcome:
        outcome = executed.outcome if recorder is None else _recorded(plan, executed)
        if progress is not None:
            progress("done", plan, outcome)
        return outcome

    def one(plan: PlannedRun) -> Future[RunOutcome]:
        if kernels.interrupted():  # stopped before this one started: nothing to record
            done: Future[RunOutcome] = Future()
            done.set_result(_not_started(plan, choice))
            return done
        on_cell = None
        if progress is not None:
            progress("start", plan, None)
            on_cell = _cell_reporter(progress, plan)
        executed = execute_planned(
            plan,
            choice,
            kernel=kernel,
            timeout=timeout,
            limits=limits,
            secrets=settings.secret_parameters,
            on_cell=on_cell,
        )
        if recorder is not None:
            return recorder.submit(finish, plan, executed)
        finished: Future[RunOutcome] = Future()
        finished.set_result(finish(plan, executed))
        return finished

    try:
        if jobs == 1 or len(plans) == 1:
            futures = [one(plan) for plan in plans]
        else:
            with ThreadPoolExecutor(jobs, thread_name_prefix="reprokit-run") as pool:
                futures = list(pool.map(one, plans))
        return [future.result() for future in futures]
    finally:
        if recorder is not None:
            recorder.shutdown(wait=True)


def _cell_reporter(progress: Progress, plan: PlannedRun) -> Callable[[int, int], None]:
    started = time.perf_counter()

    def report(position: int, total: int) -> None:
        progress("cell", plan, CellProgress(position, total, time.perf_counter() - started))

    return report


def _not_started(plan: PlannedRun, choice: DeviceChoice) -> RunOutcome:
    return RunOutcome(
        notebook=str(plan.source),
        status="interrupted",
        output_path=str(plan.output_path),
        output_dir=str(plan.output_dir),
        duration_s=0.0,
        device=choice.device,
        parameters=plan.parameters,
        message="not started: the runner was interrupted",
    )


def _import_mlflow() -> None:
    import mlflow.tracking  # noqa: F401  (warm-up only: later imports are free)


def default_output_dir(first: Path) -> Path:
    """``<project root>/.reprokit/runs/<UTC time>-<6 hex>`` (``.reprokit`` is git-ignored)."""
    from reprokit.recording.target import find_project_root

    hidden = find_project_root(first.resolve().parent) / ".reprokit"
    make_output_folder(hidden)
    if not (hidden / ".gitignore").exists():
        try:
            atomic_write_text(hidden / ".gitignore", "*\n")
        except OSError as exc:
            raise PathError(str(hidden), f"cannot write here: {exc.strerror}") from None
    key = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
    return hidden / "runs" / key


def plan_runs(
    sources: Sequence[Path],
    base: Path,
    choice: DeviceChoice,
    parameters: dict[str, Any],
    kernel: str | None = None,
    secret_parameters: Mapping[str, str] | None = None,
) -> list[PlannedRun]:
    """Load and check every notebook; give each its own folder and environment."""
    plans: list[PlannedRun] = []
    used: set[str] = set()
    secret_names = tuple(secret_parameters or {})
    for source in sources:
        node = load_notebook(source)
        kernel_name = kernel or kernel_of(node)
        check_kernel(str(source), kernel_name)
        declared = declared_parameters(node)
        check_declared(str(source), parameters, declared)
        check_secrets(str(source), secret_names, parameters, declared)
        injected = dict(parameters)
        if declared and "device" in declared and "device" not in injected:
            injected["device"] = choice.device  # the device reaches the notebook as a parameter
        folder = base / _unique(source.stem, used)
        env = kernel_env(source, folder, choice, injected)
        plans.append(
            PlannedRun(
                source, node, folder, injected, env, secret_names, kernel_name, choice.device
            )
        )
    return plans


def describe_plan(plan: PlannedRun) -> str:
    """One line saying what will run: notebook, kernel, device, parameters (secret ones by
    name only). Printed before anything executes, so that nothing runs unannounced."""
    shown = ", ".join(f"{k}={v!r}" for k, v in sorted(plan.parameters.items())) or "none"
    if plan.secret_names:
        shown += f"; secret: {', '.join(sorted(plan.secret_names))}"
    return f"will run  {plan.source}  kernel {plan.kernel}  device {plan.device}  ({shown})"


@functools.cache
def _kernel_names() -> frozenset[str]:
    from jupyter_client.kernelspec import KernelSpecManager

    return frozenset(KernelSpecManager().find_kernel_specs())


def check_kernel(notebook: str, name: str) -> None:
    """A kernel that is not installed is a usage error, found before anything runs."""
    names = _kernel_names()
    if name not in names:
        raise UsageError(
            f"{notebook}: no Jupyter kernel named {name!r} is installed "
            f"(installed: {', '.join(sorted(names)) or 'none'}); choose one with --kernel",
            path=notebook,
            kernel=name,
        )


def _unique(stem: str, used: set[str]) -> str:
    name, count = stem, 1
    while name in used:  # two notebooks of one name in different folders
        count += 1
        name = f"{stem}-{count}"
    used.add(name)
    return name


def kernel_env(
    source: Path, folder: Path, choice: DeviceChoice, parameters: Mapping[str, Any]
) -> dict[str, str]:
    """The variables a kernel gets on top of the runner's environment."""
    seed = parameters.get("seed")
    return {
        **RUNNER_ENV,
        **choice.env,
        "REPROKIT_DEVICE": choice.device,
        "REPROKIT_PARAMS": json.dumps(dict(parameters), default=str, sort_keys=True),
        "REPROKIT_OUTPUT_DIR": str(folder.resolve()),
        "REPROKIT_NOTEBOOK": str(source.resolve()),
        "PYTHONHASHSEED": str(seed) if isinstance(seed, int) and seed >= 0 else "0",
    }


@dataclass(frozen=True)
class Executed:
    """An execution's outcome with what recording it needs."""

    outcome: RunOutcome
    results: Any  # NotebookResults, or None when the notebook could not be read back
    start_ms: int


def execute_planned(
    plan: PlannedRun,
    choice: DeviceChoice,
    *,
    kernel: str | None,
    timeout: float | None,
    limits: Limits | None = None,
    secrets: Mapping[str, str] | None = None,
    on_cell: Callable[[int, int], None] | None = None,
) -> Executed:
    """Execute one planned notebook and complete its run folder (nothing recorded yet)."""
    from reprokit.recording.writer import now_ms

    start_ms = now_ms()
    executed = execute_notebook(
        plan.node,
        plan.output_path,
        cwd=plan.source.resolve().parent,
        env=plan.env,
        parameters=plan.parameters,
        kernel_name=kernel,
        timeout=timeout,
        limits=limits,
        secrets=secrets,
        on_cell=on_cell,
    )
    results = _read_results(plan.output_path)
    _complete_run_folders(results)
    outcome = RunOutcome(
        notebook=str(plan.source),
        status=executed.status,
        output_path=executed.output_path,
        output_dir=str(plan.output_dir),
        duration_s=executed.duration_s,
        device=choice.device,
        parameters=plan.parameters,
        failure=executed.failure,
        message=executed.message,
    )
    return Executed(outcome, results, start_ms)


def _recorded(plan: PlannedRun, executed: Executed) -> RunOutcome:
    from reprokit.runner.record import record_execution

    outcome = executed.outcome
    tags = {"reprokit.runner": "reprokit run", "reprokit.runner.status": outcome.status}
    if outcome.failure is not None:
        tags["reprokit.runner.failed_cell"] = str(outcome.failure.index)
        tags["reprokit.runner.error"] = f"{outcome.failure.ename}: {outcome.failure.evalue}"[:500]
    recorded = record_execution(
        notebook=plan.source.resolve(),
        output_dir=plan.output_dir,
        status=outcome.status,
        start_ms=executed.start_ms,
        device=outcome.device,
        parameters=plan.parameters,
        results=executed.results,
        extra_tags=tags,
    )
    return replace(outcome, run_id=recorded.run_id, record_error=recorded.error)


def _read_results(output: Path) -> Any:
    from reprokit.results.notebook import read_notebook

    try:
        return read_notebook(output)
    except InputError:  # no output notebook (papermill failed before writing) or a bad payload
        return None


def _complete_run_folders(results: Any) -> None:
    """Write ``results.json`` into the kernel's run folder.

    The kernel is killed at once after the last cell (no graceful shutdown), so its exit
    hook, which would write it, does not run; the results are in the notebook anyway.
    """
    if results is None or not results.runs:
        return
    from reprokit._serde import to_json

    local = results.runs[-1].get("local_dir")
    if isinstance(local, str) and Path(local).is_dir():
        target = Path(local) / "results.json"
        if not target.exists():
            atomic_write_text(target, to_json(results.results))
