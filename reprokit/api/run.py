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

import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from reprokit.exceptions import RunInterrupted, UsageError
from reprokit.notebook.files import discover_notebooks, mark_output_folder
from reprokit.options import ExecutionOptions
from reprokit.recording.executed import Connections, warm_up
from reprokit.recording.retention import write_run_info, writing
from reprokit.recording.target import resolve_target
from reprokit.runner import kernels
from reprokit.runner.device import DeviceChoice, resolve_device
from reprokit.runner.execute import (
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

__all__ = ["run"]


def run(
    notebooks: Iterable[str | os.PathLike[str]],
    *,
    parameters: Mapping[str, Any] | None = None,
    execution: ExecutionOptions | None = None,
    record: bool = True,
    progress: Progress | None = None,
) -> list[RunOutcome]:
    """Execute ``notebooks`` (files or folders), ``execution.jobs`` at once; one outcome each,
    in order.

    Raises :class:`~reprokit.exceptions.UsageError` (bad device, a parameter a notebook does
    not declare) or :class:`~reprokit.exceptions.PathError` (missing or corrupt notebook)
    before anything executes. A failing notebook is an outcome, not an exception. Secret
    parameters (:attr:`ExecutionOptions.secret_parameters`) reach the kernel but are never
    written into a notebook, MLflow or a lock. On ``SIGINT``/``SIGTERM`` every kernel is
    stopped, the partial notebooks are kept and recorded as KILLED, then
    :class:`~reprokit.exceptions.RunInterrupted` is raised.
    """
    options = execution if execution is not None else ExecutionOptions()
    choice = resolve_device(options.device)
    sources = discover_notebooks(notebooks)
    if not sources:
        raise UsageError("no notebooks found in the given paths")
    base = Path(options.output_dir) if options.output_dir else default_output_dir(sources[0])
    plans = plan_runs(
        sources, base, choice, dict(parameters or {}), options.kernel, options.secret_parameters
    )
    for plan in plans:  # an unwritable output folder stops everything before any kernel
        make_output_folder(plan.output_dir)
    if not any(base.resolve() in source.resolve().parents for source in sources):
        mark_output_folder(base)  # executed copies are never discovered as the project's
    with kernels.stop_kernels_on_signals(), writing(base):  # gc leaves base alone meanwhile
        outcomes = _run_plans(plans, choice, options, record, progress)
        _raise_if_interrupted(outcomes)
    return outcomes


def _raise_if_interrupted(outcomes: list[RunOutcome]) -> None:
    signum = kernels.interrupting_signal()
    if signum is None and kernels.interrupted():
        signum = signal.SIGINT  # interrupt_all() called by the embedding program
    if signum is not None:
        kept = tuple(o.output_path for o in outcomes if Path(o.output_path).is_file())
        raise RunInterrupted(int(signum), kept)


def _run_plans(
    plans: list[PlannedRun],
    choice: DeviceChoice,
    options: ExecutionOptions,
    record: bool,
    progress: Progress | None,
) -> list[RunOutcome]:
    if progress is not None:
        for plan in plans:  # what will run, said before anything runs
            progress("plan", plan, None)
    parallel = options.jobs > 1 and len(plans) > 1
    connections = Connections()  # MLflow's store opened once for all the notebooks
    for plan in plans if record and parallel else ():
        connections.start_helper(resolve_target(start=plan.source.resolve().parent))

    def begin(plan: PlannedRun, executed: Executed) -> Callable[[], RunOutcome]:
        complete = _begin_recording(plan, executed, connections) if record else None

        def finish() -> RunOutcome:
            outcome = executed.outcome if complete is None else complete()
            if progress is not None:
                progress("done", plan, outcome)
            return outcome

        return finish

    recording = _Recording(begin, record=record, parallel=parallel)

    def one(plan: PlannedRun) -> Future[RunOutcome]:
        if kernels.interrupted():  # stopped before this one started: nothing to record
            return _done(_not_started(plan, choice))
        on_cell = None
        if progress is not None:
            progress("start", plan, None)
            on_cell = _cell_reporter(progress, plan)
        return recording.submit(plan, execute_planned(plan, choice, options, on_cell=on_cell))

    try:
        if options.jobs == 1 or len(plans) == 1:
            futures = [one(plan) for plan in plans]
        else:
            with ThreadPoolExecutor(options.jobs, thread_name_prefix="reprokit-run") as pool:
                futures = list(pool.map(one, plans))
        recording.release()
        return [future.result() for future in futures]
    finally:
        recording.shutdown()
        connections.close()


Begin = Callable[[PlannedRun, Executed], Callable[[], RunOutcome]]


class _Recording:
    """When the executed notebooks are recorded into MLflow.

    One kernel at a time: on a thread of its own (MLflow imported there while the first kernel
    starts, notebook k recorded while k+1 executes), on the core the kernel leaves free.
    Several at once: the kernels take every core, so MLflow (its import is seconds of CPU, and
    it would hold this process's GIL against the threads that drive the kernels) works in a
    helper process of lower priority (:mod:`reprokit.recording.helper`): each run is handed to
    it as its notebook is done, and the run ids are collected after the last kernel
    (:meth:`release`).
    """

    def __init__(self, begin: Begin, *, record: bool, parallel: bool) -> None:
        self._begin = begin
        self._thread = ThreadPoolExecutor(1, "reprokit-record") if record else None
        self._held: list[tuple[Callable[[], RunOutcome], Future[RunOutcome]]] = []
        self._holding = threading.Lock()  # runs are handed over in the order they are held
        self._parallel = parallel
        if self._thread is not None and not parallel:
            self._thread.submit(warm_up)

    def submit(self, plan: PlannedRun, executed: Executed) -> Future[RunOutcome]:
        if self._thread is None:
            return _done(self._begin(plan, executed)())
        if not self._parallel:
            return self._thread.submit(self._begin(plan, executed))  # journaled now
        future: Future[RunOutcome] = Future()
        with self._holding:
            self._held.append((self._begin(plan, executed), future))
        return future

    def release(self) -> None:
        for finish, future in self._held:
            future.set_result(finish())
        self._held.clear()

    def shutdown(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=True)


def _done(outcome: RunOutcome) -> Future[RunOutcome]:
    future: Future[RunOutcome] = Future()
    future.set_result(outcome)
    return future


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


def _begin_recording(
    plan: PlannedRun, executed: Executed, connections: Connections
) -> Callable[[], RunOutcome]:
    """Journal the run (and hand it to a helper, if there is one); the returned call waits
    until MLflow has it and gives the outcome with its run id."""
    from reprokit.capturing.redact import redact_text
    from reprokit.recording.executed import begin_record

    outcome = executed.outcome
    tags = {"reprokit.runner": "reprokit run", "reprokit.runner.status": outcome.status}
    if outcome.failure is not None:
        tags["reprokit.runner.failed_cell"] = str(outcome.failure.index + 1)  # as messages say
        error = f"{outcome.failure.ename}: {outcome.failure.evalue}"
        tags["reprokit.runner.error"] = redact_text(error)[:500]  # the runner redacted it too
    pending = begin_record(
        notebook=plan.source.resolve(),
        output_dir=plan.output_dir,
        status=outcome.status,
        start_ms=executed.start_ms,
        device=outcome.device,
        parameters=plan.parameters,
        results=executed.results,
        extra_tags=tags,
        note=_note(plan, executed),
        connections=connections,
    )

    def complete() -> RunOutcome:
        recorded = pending.finish()
        write_run_info(plan.output_dir, str(plan.source.resolve()), recorded.run_id)
        return replace(outcome, run_id=recorded.run_id, record_error=recorded.error)

    return complete


def _note(plan: PlannedRun, executed: Executed) -> str:
    """The run's Markdown description for the MLflow UI (none without a snapshot)."""
    snapshot = executed.results.snapshot if executed.results is not None else None
    if snapshot is None:
        return ""
    from reprokit.report.render import run_note_markdown

    return run_note_markdown(snapshot, notebook=str(plan.source.resolve()))
