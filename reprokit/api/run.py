"""``run``: execute notebooks, each in its own kernel, folder and MLflow run.

For every notebook: load it (text formats converted in memory), check the parameters against
its ``parameters`` cell, execute it with papermill in a fresh kernel whose working directory is
the notebook's folder, write the executed notebook into its own output folder, and record an
MLflow run from it. Everything that can be wrong with the input is checked for every notebook
before the first kernel starts.

Output layout (``output_dir`` defaults to ``<project root>/.reprokit/runs/<UTC>-<6 hex>``)::

    <output_dir>/<notebook stem>/<notebook name>.ipynb     the executed notebook
    <output_dir>/<notebook stem>/<notebook name>.kernel.log the kernel's stdout/stderr
    <output_dir>/<notebook stem>/<stem>.kernel.attempt-N.log that of an attempt whose kernel
                                                            died and that was retried
    <output_dir>/<notebook stem>/<UTC>-<6 hex>/            the kernel's run folder (results,
                                                            snapshot, arrays)
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from reprokit.api.check import warn_edited_pairs
from reprokit.exceptions import ReprokitError, RunInterrupted, UsageError
from reprokit.notebook.files import discover_notebooks, mark_output_folder
from reprokit.options import ExecutionOptions
from reprokit.recording.executed import (
    RUNNER,
    RUNNER_TAG,
    Connections,
    abandon_journal,
    begin_journal,
    journaled,
    warm_up,
)
from reprokit.recording.journal import Journal
from reprokit.recording.retention import write_run_info, writing
from reprokit.recording.target import resolve_target
from reprokit.runner import kernels
from reprokit.runner.device import DeviceChoice
from reprokit.runner.execute import make_output_folder
from reprokit.runner.executors import Finished, device_choice, open_executor
from reprokit.runner.plan import (
    Executed,
    PlannedRun,
    Progress,
    RunOutcome,
    default_output_dir,
    number_copies,
    plan_runs,
)

if TYPE_CHECKING:
    from reprokit.results.notebook import NotebookResults

__all__ = ["execute_notebooks", "run"]

T = TypeVar("T")


def run(
    notebooks: Iterable[str | os.PathLike[str]],
    *,
    parameters: Mapping[str, Any] | None = None,
    execution: ExecutionOptions | None = None,
    record: bool = True,
    progress: Progress | None = None,
    copies: int = 1,
) -> list[RunOutcome]:
    """Execute ``notebooks`` (files or folders), ``execution.jobs`` at once (on
    ``execution.executor``); one outcome each, in order. ``copies``: each notebook runs that
    many times (``record --repeat``), each copy in its own kernel and folder; the outcomes of
    one notebook come one after the other.

    Raises :class:`~reprokit.exceptions.UsageError` (bad device, a parameter a notebook does
    not declare) or :class:`~reprokit.exceptions.PathError` (missing or corrupt notebook)
    before anything executes. A failing notebook is an outcome, not an exception. Secret
    parameters (:attr:`ExecutionOptions.secret_parameters`) reach the kernel but are never
    written into a notebook, MLflow or a lock. On ``SIGINT``/``SIGTERM`` every kernel is
    stopped, the partial notebooks are kept and recorded as KILLED (the records MLflow has not
    taken :data:`INTERRUPT_GRACE_S` after the signal are left in their journals), then
    :class:`~reprokit.exceptions.RunInterrupted` is raised.
    """
    options = execution if execution is not None else ExecutionOptions()
    sources = discover_notebooks(notebooks)
    if not sources:
        raise UsageError("no notebooks found in the given paths")
    warn_edited_pairs(sources)
    given = dict(parameters or {})
    requests = [(s, given, options) for s in sources for _ in range(max(1, copies))]
    return execute_notebooks(requests, options, record, progress, _same)


def _same(outcome: RunOutcome) -> RunOutcome:
    return outcome


Request = tuple[Path, dict[str, Any], ExecutionOptions]
"""A notebook to execute, its parameters, and the options of its kernel (``kernel``,
``kernel_dir``, ``deterministic``, ``secret_parameters``: a verification gives each notebook
its lock's); where and how many execute at once is the call's ``options``."""


def execute_notebooks(
    requests: Sequence[Request],
    options: ExecutionOptions,
    record: bool,
    progress: Progress | None,
    collect: Callable[[RunOutcome], T],
) -> list[T]:
    """The one path of every verb that executes: plan each request (every check before any
    kernel starts), execute the plans on ``options.executor``, record each as it completes
    (while others execute) and pass its outcome to ``collect``; the collected values come
    back in the order of ``requests``. A notebook requested N times runs N times (copy k/N)."""
    choice = device_choice(options)
    base = Path(options.output_dir) if options.output_dir else default_output_dir(requests[0][0])
    used: set[str] = set()
    plans = number_copies(
        [plan for request in requests for plan in _planned(request, base, choice, used)]
    )
    with writing(base):  # gc leaves base alone from before its folders exist
        for plan in plans:  # an unwritable output folder stops everything before any kernel
            make_output_folder(plan.output_dir)
        if not any(base.resolve() in request[0].resolve().parents for request in requests):
            mark_output_folder(base)  # executed copies are never discovered as the project's
        with kernels.stop_kernels_on_signals():
            collecting = _Collecting(record, progress, collect)
            collected = _execute(plans, choice, options, collecting)
            _raise_if_interrupted(plans, collecting.partial, collecting.unrecorded)
    return collected


def _planned(
    request: Request, base: Path, choice: DeviceChoice, used: set[str]
) -> list[PlannedRun]:
    source, given, kernel = request
    return plan_runs(
        [source], base, choice, given, kernel.kernel, kernel.secret_parameters,
        kernel.kernel_dir, used, deterministic=kernel.deterministic,
        hash_seed=kernel.hash_seed,
    )  # fmt: skip


class _StartJournals:
    """The journals opened as notebooks start (:func:`begin_journal`), until their runs are
    recorded: a runner that ends first (a second Ctrl-C, a kill) leaves every started run to
    the next command that opens the store. Closed, it lets go of those never taken (an
    exception ended the runner's work): they are replayed, as KILLED, by that command."""

    def __init__(self) -> None:
        self._held: dict[Path, Journal] = {}
        self._taken: set[Path] = set()  # plans whose execution came back
        self._lock = threading.Lock()
        self.closed = False

    def open(self, plan: PlannedRun) -> None:
        """Executors call this as ``plan``'s notebook starts executing (a Dask executor on its
        event loop, where the news of a start can come after the task's result)."""
        with self._lock:
            if plan.output_path in self._taken:
                return
        journal = begin_journal(
            notebook=plan.source.resolve(),
            output_dir=plan.output_dir,
            device=plan.device,
            parameters=plan.parameters,
        )
        if journal is None:
            return
        with self._lock:
            late = plan.output_path in self._taken
            if not late:
                self._held[plan.output_path] = journal
        if late:  # recorded meanwhile, in a journal of its own
            journal.discard()

    def take(self, plan: PlannedRun) -> Journal | None:
        """The journal opened as ``plan`` started, once its execution came back (None if it
        has none); none is opened for it after this."""
        with self._lock:
            self._taken.add(plan.output_path)
            return self._held.pop(plan.output_path, None)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            held, self._held = list(self._held.values()), {}
        for journal in held:
            journal.release()


@dataclass(frozen=True)
class _Collecting(Generic[T]):
    """What happens to each execution on this machine once it is done."""

    record: bool
    progress: Progress | None
    collect: Callable[[RunOutcome], T]
    connections: Connections | None = None  # MLflow's store (or helper) shared by the runs
    partial: set[str] = field(default_factory=set)  # executed notebooks an interruption cut
    unrecorded: set[str] = field(default_factory=set)  # records a signal did not wait for
    journals: _StartJournals = field(default_factory=_StartJournals)

    def executed(self, finished: Finished) -> None:
        """On the main thread, as the execution comes back (its record may wait for a
        recording thread): an interrupted one is partial; the progress says it is recorded."""
        if not finished.started:
            return
        if finished.executed.outcome.status == "interrupted":
            self.partial.add(finished.executed.outcome.output_path)
        if self.progress is not None:
            self.progress("executed", finished.plan, None)

    def __call__(self, finished: Finished) -> T:
        outcome = finished.executed.outcome
        journal = self.journals.take(finished.plan)
        if self.journals.closed:  # the runner gave up waiting (a signal): journals keep it
            if journal is not None:
                journal.release()
            return self.collect(outcome)
        if self.record and finished.started:
            connections = self.connections or Connections()
            try:
                pending = _begin_recording(finished.plan, finished.executed, connections, journal)
            except BaseException:  # a configuration broken meanwhile, say: said by the caller
                if journal is not None:
                    abandon_journal(journal, outcome.status)
                raise
            outcome = pending()
        elif journal is not None:  # it never started after all: nothing to record
            journal.discard()
        if self.progress is not None:
            self.progress("done", finished.plan, outcome)
        return self.collect(outcome)


def _raise_if_interrupted(plans: list[PlannedRun], partial: set[str], unrecorded: set[str]) -> None:
    """Raise :class:`RunInterrupted` naming the notebooks the interruption cut short (not
    those that had finished, nor those never started), and those whose records it did not
    wait for."""
    signum = kernels.interrupting_signal()
    if signum is None and kernels.interrupted():
        signum = signal.SIGINT  # interrupt_all() called by the embedding program
    if signum is not None:
        paths = [str(plan.output_path) for plan in plans]
        kept = tuple(p for p in paths if p in partial)
        given_up = [plan for plan in plans if str(plan.output_path) in unrecorded]
        lost = tuple(str(plan.output_path) for plan in given_up if not _journaled(plan))
        left = tuple(str(plan.output_path) for plan in given_up)
        raise RunInterrupted(int(signum), kept, left, lost)


def _journaled(plan: PlannedRun) -> bool:
    """Whether ``plan``'s run was journaled as it started (its outputs in the project's
    ``.reprokit``), so that ``reprokit sync`` can record it."""
    try:
        root = resolve_target(start=plan.source.resolve().parent).project_root
    except ReprokitError:
        return False
    return journaled(root, plan.output_dir)


def _execute(
    plans: list[PlannedRun],
    choice: DeviceChoice,
    options: ExecutionOptions,
    collecting: _Collecting[T],
) -> list[T]:
    # a cluster's width is its workers', not --jobs: give its results every recording thread
    width = options.jobs if options.scheduler is None else _COLLECTORS
    threads = max(1, min(width, len(plans), _COLLECTORS))
    order = {id(plan): index for index, plan in enumerate(plans)}
    futures: dict[int, Future[T]] = {}
    connections = _connections(plans, options, collecting.record)
    collecting = replace(collecting, connections=connections)
    # the executor first: a cluster that cannot be reached stops everything at once
    on_start = collecting.journals.open if collecting.record else None
    with (
        contextlib.closing(connections),
        contextlib.closing(collecting.journals),
        open_executor(options, choice, collecting.progress, len(plans), on_start) as executor,
    ):
        if collecting.progress is not None:
            for plan in plans:  # what will run, said before anything runs
                collecting.progress("plan", plan, None)
        # recording and comparing run on threads of their own: MLflow is imported there while
        # the first kernel starts, and notebook k is recorded while notebook k+1 executes
        collector = ThreadPoolExecutor(threads, "reprokit-record")
        try:
            if collecting.record and not _side_by_side(plans, options):
                collector.submit(warm_up)  # else MLflow is the helper process's
            for plan in plans:
                executor.submit(plan)
            for finished in executor.finished():
                collecting.executed(finished)
                futures[order[id(finished.plan)]] = collector.submit(collecting, finished)
            return _collected([futures[index] for index in range(len(plans))], plans, collecting)
        finally:  # records given up on (a signal) are not waited for: their journals keep them
            given_up = bool(collecting.unrecorded)
            collector.shutdown(wait=not given_up, cancel_futures=given_up)
            if given_up:
                connections.let_go()


_COLLECTORS = 4  # recording threads at most: MLflow writes, not kernels, are their work
INTERRUPT_GRACE_S = 10.0
"""How long a signalled runner still waits for the records being written (KILLED runs closed
in MLflow); what is not written by then stays in its journal, for ``reprokit sync``."""


def _collected(
    futures: list[Future[T]], plans: list[PlannedRun], collecting: _Collecting[T]
) -> list[T]:
    """The collected values in order, waited for; after a signal only for
    :data:`INTERRUPT_GRACE_S` more: the notebooks whose records were not done by then are
    ``collecting.unrecorded`` (the runner raises :class:`RunInterrupted` next)."""
    left = kernels.wait_unless_interrupted(futures, INTERRUPT_GRACE_S)
    for plan, future in zip(plans, futures, strict=True):
        if future in left:
            collecting.unrecorded.add(str(plan.output_path))
    return [future.result() for future in futures if future not in left]


def _side_by_side(plans: list[PlannedRun], options: ExecutionOptions) -> bool:
    """Whether kernels run at once and MLflow is not imported here yet: then MLflow works in a
    helper process (a fresh import there costs seconds of CPU; in a process that already has
    MLflow, e.g. a notebook or a test session calling the API, writing here is cheaper)."""
    parallel = (options.jobs > 1 or options.executor == "dask") and len(plans) > 1
    return parallel and "mlflow" not in sys.modules


def _connections(plans: list[PlannedRun], options: ExecutionOptions, record: bool) -> Connections:
    """MLflow's store opened once for all the runs. With kernels running side by side, MLflow
    (its import is seconds of CPU, and it would hold this process's GIL against the threads
    that drive the kernels) works in a helper process of lower priority
    (:mod:`reprokit.recording.helper`): each run is handed to it as its notebook is done."""
    connections = Connections()
    for plan in plans if record and _side_by_side(plans, options) else ():
        connections.start_helper(resolve_target(start=plan.source.resolve().parent))
    return connections


def _begin_recording(
    plan: PlannedRun, executed: Executed, connections: Connections, journal: Journal | None
) -> Callable[[], RunOutcome]:
    """Journal the run (in ``journal``, opened as it started, if any) and hand it to a helper
    if there is one; the returned call waits until MLflow has it and gives the outcome with
    its run id."""
    from reprokit.capturing.redact import redact_text
    from reprokit.recording.executed import begin_record

    outcome = executed.outcome
    tags = {RUNNER_TAG: RUNNER, "reprokit.runner.status": outcome.status}
    if outcome.failure is not None:
        tags["reprokit.runner.failed_cell"] = str(outcome.failure.index + 1)  # as messages say
        error = f"{outcome.failure.ename}: {outcome.failure.evalue}"
        tags["reprokit.runner.error"] = redact_text(error)[:500]  # the runner redacted it too
    if plan.copy[1] > 1:  # record/verify --repeat: which of the runs this is
        tags["reprokit.repeat"] = f"{plan.copy[0]}/{plan.copy[1]}"
    if outcome.retries:
        tags["reprokit.runner.retries"] = redact_text("; ".join(outcome.retries))[:500]
    if outcome.executed_by:
        tags["reprokit.runner.executed_by"] = outcome.executed_by
    results = _whole(executed.results)
    pending = begin_record(
        notebook=plan.source.resolve(),
        output_dir=plan.output_dir,
        status=outcome.status,
        start_ms=executed.start_ms,
        device=outcome.device,
        parameters=plan.parameters,
        results=results,
        extra_tags=tags,
        note=_note(plan, results),
        connections=connections,
        journal=journal,
    )

    def complete() -> RunOutcome:
        recorded = pending.finish()
        write_run_info(plan.output_dir, str(plan.source.resolve()), recorded.run_id)
        return replace(outcome, run_id=recorded.run_id, record_error=recorded.error)

    return complete


def _whole(results: NotebookResults | None) -> NotebookResults | None:
    """The results with the whole snapshot the kernel's run folder has: its data file lists
    and the GPU/CUDA facts taken again as the run ended (the MLflow tags, the run's note).
    Read here, on a recording thread, not as the notebook finishes: over 100k data files
    it is 11 MB of JSON."""
    from reprokit.results.notebook import restore_snapshot

    return None if results is None else restore_snapshot(results)


def _note(plan: PlannedRun, results: NotebookResults | None) -> str:
    """The run's Markdown description for the MLflow UI (none without a snapshot)."""
    snapshot = results.snapshot if results is not None else None
    if snapshot is None:
        return ""
    from reprokit.report.render import run_note_markdown

    return run_note_markdown(snapshot, notebook=str(plan.source.resolve()))
