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
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from reprokit.exceptions import RunInterrupted, UsageError
from reprokit.notebook.files import discover_notebooks
from reprokit.runner import kernels
from reprokit.runner.device import DeviceChoice, resolve_device
from reprokit.runner.execute import (
    Limits,
    make_output_folder,
)
from reprokit.runner.plan import (
    CellProgress,
    Executed,
    PlannedRun,
    Progress,
    RunOutcome,
    default_output_dir,
    execute_planned,
    plan_runs,
)

__all__ = ["RunnerSettings", "run", "runner_settings"]


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
        raise UsageError(f"--jobs must be at least 1, got {jobs}", option="--jobs", value=str(jobs))
    for option, value in (
        ("--timeout", timeout),
        ("--notebook-timeout", settings.notebook_timeout),
        ("--memory-limit", settings.memory_limit),
    ):
        if value is not None and value <= 0:
            raise UsageError(
                f"{option} must be a positive number, got {value}",
                option=option,
                value=str(value),
            )


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


def _recorded(plan: PlannedRun, executed: Executed) -> RunOutcome:
    from reprokit.recording.executed import record_execution

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
