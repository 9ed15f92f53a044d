"""Where notebooks execute: an executor takes planned notebooks and hands back each one's
execution as it completes.

- ``local`` (:class:`LocalExecutor`): ``jobs`` threads of this process, each driving one
  kernel on this machine (the default); with ``jobs`` of 2 or more and notebooks waiting, one
  more kernel is started ahead and executes as soon as a running notebook is done;
- ``dask`` (:mod:`reprokit.runner.dask_executor`): one task per notebook on a Dask cluster,
  an embedded ``LocalCluster`` or an existing scheduler.

The API verbs stay the only orchestrators: they plan every notebook, :meth:`Executor.submit`
each plan and consume :meth:`Executor.finished` in completion order, then record, compare and
report on this machine. An executor only executes.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from reprokit.options import ExecutionOptions
from reprokit.runner import kernels
from reprokit.runner.device import DeviceChoice, resolve_device
from reprokit.runner.plan import (
    CellProgress,
    Executed,
    OnStart,
    PlannedRun,
    Progress,
    RunOutcome,
    execute_planned,
)

__all__ = [
    "MAX_RETRIES",
    "Executor",
    "Finished",
    "LocalExecutor",
    "device_choice",
    "keep_attempt_log",
    "not_started",
    "open_executor",
    "required_resources",
    "retry_reason",
]

MAX_RETRIES = 2
"""How many times a notebook is executed again: on this machine, when its kernel died before
its first cell ran; on Dask, when its kernel died or its worker was lost."""


@dataclass(frozen=True)
class Finished:
    """One plan's execution; ``started`` is False for a plan the runner never started
    (interrupted first): there is nothing to record."""

    plan: PlannedRun
    executed: Executed
    started: bool = True


class Executor(Protocol):
    def submit(self, plan: PlannedRun) -> None:
        """Queue ``plan`` for execution."""

    def finished(self) -> Iterator[Finished]:
        """Every submitted plan once, in the order they complete."""

    def close(self) -> None:
        """Stop: wait for running notebooks (stopped by an interruption), free the workers."""


@contextlib.contextmanager
def open_executor(
    options: ExecutionOptions,
    choice: DeviceChoice,
    progress: Progress | None,
    tasks: int,
    on_start: OnStart | None = None,
) -> Iterator[Executor]:
    """The executor ``options.executor`` names, for ``tasks`` notebooks; closed on the way out.
    ``on_start(plan)`` is called once as each notebook starts executing (when ``progress`` is
    told ``"start"``), on the thread that starts it."""
    executor: Executor
    if options.executor == "dask":
        from reprokit.runner.dask_executor import DaskExecutor

        executor = DaskExecutor(options, choice, progress, on_start)
    else:
        workers = max(1, min(options.jobs, tasks))
        ahead = 1 if workers > 1 and tasks > workers else 0  # --jobs 1 keeps one kernel
        executor = LocalExecutor(options, choice, progress, workers, ahead=ahead, on_start=on_start)
    try:
        yield executor
    finally:
        executor.close()


def device_choice(options: ExecutionOptions) -> DeviceChoice:
    """The device notebooks get. With an existing Dask cluster, ``cuda`` is the workers'
    business (they declare a GPU resource), not this machine's: it is not probed here."""
    if options.scheduler is not None and options.device.strip().lower() == "cuda":
        return resolve_device(options.device, probe=lambda: True)
    return resolve_device(options.device)


def required_resources(device: str, embedded: bool) -> dict[str, float] | None:
    """The Dask resources a notebook's task needs: a CUDA notebook runs only on a worker
    started with ``--resources GPU=1`` (an embedded cluster's workers share this machine,
    whose GPU was checked when the device was chosen)."""
    if device == "cuda" and not embedded:
        return {"GPU": 1}
    return None


def retry_reason(executed: Executed, retries: int) -> str | None:
    """Why to execute a notebook once more, or None: only a kernel that died on its own (not
    killed for a limit or an interruption) or did not answer as it started, at most
    :data:`MAX_RETRIES` times."""
    if retries >= MAX_RETRIES or kernels.interrupted():
        return None
    outcome = executed.outcome
    silent = kernels.before_first_cell(outcome.status, outcome.message)
    if outcome.status != "kernel_died":
        return silent
    return "the kernel died"


def keep_attempt_log(output_path: Path, attempt: int) -> None:
    """Keep the kernel log of an attempt about to be retried as
    ``<stem>.kernel.attempt-N.log``: the next attempt writes its own ``<stem>.kernel.log``, and
    this one's may say why its kernel died."""
    log = output_path.with_name(output_path.stem + ".kernel.log")
    with contextlib.suppress(OSError):
        log.replace(log.with_name(f"{output_path.stem}.kernel.attempt-{attempt}.log"))


def _before_first_cell(executed: Executed) -> str | None:
    """Why a notebook's execution ended before any of its cells ran, or None."""
    return kernels.before_first_cell(executed.outcome.status, executed.outcome.message)


def not_started(plan: PlannedRun, device: str, why: str = "the runner was interrupted") -> Finished:
    outcome = RunOutcome(
        notebook=str(plan.source),
        status="interrupted",
        output_path=str(plan.output_path),
        output_dir=str(plan.output_dir),
        duration_s=0.0,
        device=device,
        parameters=plan.parameters,
        message=f"not started: {why}",
        started=False,
    )
    return Finished(plan, Executed(outcome, None, 0), started=False)


class LocalExecutor:
    """``workers`` threads, each executing one notebook at a time in a kernel of this machine.

    With ``ahead`` (1), that many more kernels start while ``workers`` notebooks execute: such
    a kernel waits, ready, at a slot (:class:`Turns`) and its notebook executes once one of the
    running ones is done, so the next kernel's start-up overlaps their last cells instead of
    following them. At most ``workers`` notebooks execute cells at once either way, and they
    start in the order they were submitted."""

    def __init__(
        self,
        options: ExecutionOptions,
        choice: DeviceChoice,
        progress: Progress | None,
        workers: int,
        *,
        ahead: int = 0,
        on_start: OnStart | None = None,
    ) -> None:
        self.options, self.choice, self.progress = options, choice, progress
        self.on_start = on_start
        self._turns = Turns(workers) if ahead else None
        self._pool = ThreadPoolExecutor(workers + ahead, thread_name_prefix="reprokit-run")
        self._futures: list[Future[Finished]] = []

    def submit(self, plan: PlannedRun) -> None:
        ticket = len(self._futures)
        self._futures.append(self._pool.submit(self._execute, plan, ticket))

    def finished(self) -> Iterator[Finished]:
        for future in kernels.completed(self._futures):  # a signal is handled meanwhile
            yield future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _execute(self, plan: PlannedRun, ticket: int) -> Finished:
        if kernels.interrupted():  # stopped before this one started: nothing to record
            return not_started(plan, self.choice.device)
        reporter = _Reporter(self.progress, plan, self.on_start)
        retries: tuple[str, ...] = ()
        while True:
            slot = Slot(self._turns, ticket, reporter.start) if self._turns is not None else None
            executed = self._once(plan, slot, reporter)
            waited = slot is not None and not slot.entered
            if waited and executed.outcome.status == "interrupted":
                plan.output_path.unlink(missing_ok=True)  # its kernel started, no cell ran
                return not_started(plan, self.choice.device)
            reason = _before_first_cell(executed)
            if reason is None or len(retries) >= MAX_RETRIES or kernels.interrupted():
                return with_retries(Finished(plan, executed), retries, None)
            keep_attempt_log(plan.output_path, len(retries) + 1)
            retries += (reason,)  # nothing of the notebook ran: started anew

    def _once(self, plan: PlannedRun, slot: Slot | None, reporter: _Reporter) -> Executed:
        if slot is None:
            reporter.start()
        on_cell = reporter if self.progress is not None else None
        try:
            return execute_planned(plan, self.choice, self.options, on_cell=on_cell, gate=slot)
        finally:
            if slot is not None:
                slot.leave()  # also when execution failed before its kernel was started


class Turns:
    """The ``jobs`` slots of a :class:`LocalExecutor`, taken in the order the notebooks were
    submitted: a ready kernel takes one only if the earlier notebooks still waiting for theirs
    leave one free (so notebook 1 never waits behind notebook 3 whose kernel was quicker)."""

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiting: set[int] = set()
        self._lock = threading.Lock()

    def wait(self, ticket: int) -> None:
        with self._lock:
            self._waiting.add(ticket)

    def take(self, ticket: int) -> bool:
        with self._lock:
            earlier = sum(1 for other in self._waiting if other < ticket)
            if self._free <= earlier:
                return False
            self._free -= 1
            self._waiting.discard(ticket)
            return True

    def give_back(self, ticket: int, taken: bool) -> None:
        with self._lock:
            self._waiting.discard(ticket)
            self._free += 1 if taken else 0


class Slot:
    """One notebook's place among the ``jobs`` executing at once (a
    :class:`~reprokit.runner.execute.Gate`); ``on_enter`` is called once it has one (its
    notebook is said to start then)."""

    def __init__(self, turns: Turns, ticket: int, on_enter: Callable[[], None]) -> None:
        self._turns, self._ticket, self._on_enter = turns, ticket, on_enter
        self.entered = self._left = False
        turns.wait(ticket)

    def try_enter(self) -> bool:
        if self.entered:
            return True
        if self._left or not self._turns.take(self._ticket):
            return False
        self.entered = True
        self._on_enter()
        return True

    def leave(self) -> None:
        if not self._left:
            self._left = True
            self._turns.give_back(self._ticket, self.entered)


class _Reporter:
    """A notebook's progress: ``start`` once it executes, then each cell with the time since."""

    def __init__(
        self, progress: Progress | None, plan: PlannedRun, on_start: OnStart | None = None
    ) -> None:
        self.progress, self.plan, self.on_start = progress, plan, on_start
        self.started = 0.0

    def start(self) -> None:
        said = self.started
        self.started = time.perf_counter()
        if said:  # once, also when its kernel is started anew
            return
        if self.on_start is not None:
            self.on_start(self.plan)
        if self.progress is not None:
            self.progress("start", self.plan, None)

    def __call__(self, position: int, total: int) -> None:
        if self.progress is not None:
            elapsed = time.perf_counter() - self.started
            self.progress("cell", self.plan, CellProgress(position, total, elapsed))


def with_retries(finished: Finished, retries: tuple[str, ...], by: str | None) -> Finished:
    """``finished`` with the reasons of its earlier attempts and where it executed."""
    outcome = replace(finished.executed.outcome, retries=retries, executed_by=by)
    return replace(finished, executed=replace(finished.executed, outcome=outcome))
