"""The ``dask`` executor: one Dask task per notebook, on an embedded ``LocalCluster`` or on an
existing cluster's scheduler.

What a task carries to the worker (:class:`NotebookTask`): the planned notebook (its JSON,
its path, its clear parameters, the kernel's environment additions), the device and the
execution options; secret parameters and the parameters redaction hides travel apart in a
:class:`Sealed` value whose ``repr`` shows no value, so nothing in a task's key, a Dask log line
or the dashboard shows them. They are inside the pickled task the scheduler relays to the
worker (held in its memory until the task ends, never written to disk by reprokit); on a
network, use a ``tls://`` scheduler.

What the worker does (:func:`execute_task`): it executes the notebook exactly as the local
runner does (its own kernel, the notebook's folder as working directory, limits, secret
cells, the reaper) and sends back a :class:`TaskResult`: the executed notebook as bytes, how
the execution ended, the tail of the kernel's log, and which worker and host ran it. It never
raises (a raising task would have Dask log its arguments). The worker reads the notebook's
folder and writes the run folder at the *same paths* as this machine: a shared filesystem
(the loopback cluster, an HPC cluster's home or project filesystem).

What stays here: this machine writes the executed notebook into the run folder (marked with
``metadata.reprokit.executed_by``), reads its results back as untrusted input, records MLflow
runs, compares and reports; workers need no tracking store.

Failures: a kernel that died is executed again (a new task, anywhere), a worker lost while
running a task is replaced by the scheduler (``allowed-failures``), each at most
:data:`~reprokit.runner.executors.MAX_RETRIES` times for the embedded cluster; the outcome
says why in ``retries``. An interruption sets a Dask ``Event`` that every running task
watches (its kernel is killed, its partial notebook comes back), cancels the tasks not yet
started, and stops the embedded cluster; kernels its workers left are killed.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import queue
import secrets
import signal
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from reprokit.exceptions import ReprokitError, UsageError
from reprokit.options import ExecutionOptions
from reprokit.runner import kernels, reaper
from reprokit.runner.device import DeviceChoice
from reprokit.runner.executors import (
    MAX_RETRIES,
    Finished,
    keep_attempt_log,
    not_started,
    required_resources,
    retry_reason,
    with_retries,
)
from reprokit.runner.failure import CellFailure
from reprokit.runner.plan import (
    Executed,
    OnStart,
    PlannedRun,
    Progress,
    RunOutcome,
    complete_run_folders,
    early_stop,
    execute_planned,
    read_results,
)
from reprokit.statuses import ExecutionStatus

__all__ = ["DaskExecutor", "NotebookTask", "Sealed", "TaskResult", "execute_task"]

CONNECT_TIMEOUT_S = 10.0
_LOG_TAIL = 1 << 20  # bytes of the kernel log sent back
_POLL_S = 0.2


def import_distributed() -> ModuleType:
    """``distributed``, or a usage error naming the extra that installs it."""
    try:
        import distributed
    except ImportError:
        raise UsageError(
            "--executor dask needs Dask's distributed package: pip install 'reprokit-nb[dask]'",
            option="--executor",
            value="dask",
        ) from None
    return distributed


@dataclass(frozen=True, repr=False)
class Sealed:
    """Values that must not be shown: secret parameters and parameters that redaction hides."""

    parameters: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"<reprokit sealed: {len(self.parameters) + len(self.secrets)} values>"

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled masked by a one-time pad that travels with it: no value is readable in
        the task's bytes (which Dask logs whole when a worker cannot load them). Masked, not
        encrypted: whoever holds the bytes and this code can unmask them."""
        payload = pickle.dumps((self.parameters, self.secrets))
        pad = secrets.token_bytes(len(payload))
        return (_unseal, (pad, bytes(a ^ b for a, b in zip(payload, pad, strict=True))))


def _unseal(pad: bytes, masked: bytes) -> Sealed:
    parameters, hidden = pickle.loads(bytes(a ^ b for a, b in zip(masked, pad, strict=True)))
    return Sealed(parameters, hidden)


@dataclass(frozen=True)
class NotebookTask:
    plan: PlannedRun  # its parameters: the clear ones only
    choice: DeviceChoice
    options: ExecutionOptions  # without secret parameters
    sealed: Sealed
    topic: str  # the Dask event topic a task announces its start on
    cancel: str  # the name of the Dask Event that cancels every task of the session


@dataclass(frozen=True)
class TaskResult:
    """What a worker sends back: small and picklable."""

    status: ExecutionStatus
    duration_s: float
    start_ms: int
    worker: str
    host: str
    failure: CellFailure | None = None
    message: str = ""
    notebook: bytes | None = None  # the executed notebook
    kernel_log: bytes | None = None  # its last MiB

    @property
    def executed_by(self) -> str:
        return f"{self.host} ({self.worker})"


def make_task(plan: PlannedRun, choice: DeviceChoice, options: ExecutionOptions) -> NotebookTask:
    """The task of ``plan``: values that must not be shown go into a :class:`Sealed`."""
    from reprokit.capturing.redact import sensitive_parameters

    hidden = sensitive_parameters(plan.parameters)
    clear = {k: v for k, v in plan.parameters.items() if k not in hidden}
    sealed = Sealed({k: plan.parameters[k] for k in hidden}, dict(options.secret_parameters))
    bare = replace(options, secret_parameters={})
    sent = replace(plan, node=_without_outputs(plan.node), parameters=clear)
    return NotebookTask(sent, choice, bare, sealed, "", "")


def _without_outputs(node: Any) -> Any:
    """The notebook without its code cells' outputs, which papermill clears before it runs
    anything: a published notebook's images need not travel through the scheduler."""
    import nbformat

    cells = [
        {**cell, "outputs": [], "execution_count": None}
        if cell.get("cell_type") == "code"
        else cell
        for cell in node.get("cells", [])
    ]
    return nbformat.from_dict({**node, "cells": cells})  # type: ignore[no-untyped-call]


# ------------------------------------------------------------------------ on the worker


def execute_task(task: NotebookTask) -> TaskResult:
    """Run on a Dask worker: execute one notebook in a kernel of this machine."""
    from distributed import get_worker

    from reprokit.recording.writer import now_ms

    worker = get_worker()
    key = worker.get_current_task()
    worker.log_event(task.topic, {"key": key, "worker": worker.address})
    where = (str(worker.address), socket.gethostname())
    plan = replace(task.plan, parameters={**task.plan.parameters, **task.sealed.parameters})
    options = replace(task.options, secret_parameters=task.sealed.secrets)
    folder = plan.source.resolve().parent
    if not folder.is_dir():
        message = (
            f"the notebook's folder {folder} does not exist on worker {worker.address}: the "
            "workers must see the project at the same path (a shared filesystem)"
        )
        return TaskResult("failed", 0.0, now_ms(), *where, message=message)
    cancel = threading.Event()
    try:
        with _watching(task.cancel, cancel):
            executed = execute_planned(plan, task.choice, options, cancel=cancel)
    except Exception as exc:  # never raise: Dask would log the task's arguments
        text = str(exc) if isinstance(exc, ReprokitError) else f"{type(exc).__name__}: {exc}"
        return TaskResult("failed", 0.0, now_ms(), *where, message=text)
    return _result(executed, where)


def _result(executed: Executed, where: tuple[str, str]) -> TaskResult:
    outcome = executed.outcome
    output = Path(outcome.output_path)
    log = output.with_name(output.stem + ".kernel.log")
    return TaskResult(
        outcome.status,
        outcome.duration_s,
        executed.start_ms,
        *where,
        failure=outcome.failure,
        message=outcome.message,
        notebook=output.read_bytes() if output.is_file() else None,
        kernel_log=_tail(log),
    )


def _tail(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as file:
            file.seek(max(0, path.stat().st_size - _LOG_TAIL))
            return file.read()
    except OSError:
        return None


@contextlib.contextmanager
def _watching(name: str, cancel: threading.Event) -> Iterator[None]:
    """Set ``cancel`` once the client sets the Dask Event ``name``: asked every
    :data:`_CANCEL_POLL_S` seconds, never waited for on the scheduler (a wait still held there
    as the cluster closes is logged by the scheduler as an error, with a traceback)."""
    from distributed import Event, get_client

    event = Event(name, client=get_client())  # type: ignore[no-untyped-call]
    done = threading.Event()

    def wait() -> None:
        while not done.wait(_CANCEL_POLL_S):
            try:
                if event.is_set():  # type: ignore[no-untyped-call]
                    cancel.set()
                    return
            except Exception:  # the scheduler is gone: the task ends on its own
                continue

    threading.Thread(target=wait, name="reprokit-dask-cancel", daemon=True).start()
    try:
        yield
    finally:
        done.set()


_CANCEL_POLL_S = 0.5
"""How often a running task asks whether the client cancelled it."""


# ------------------------------------------------------------------------ on the client


@dataclass
class _Pending:
    plan: PlannedRun
    retries: tuple[str, ...]
    future: Any


class DaskExecutor:
    """Notebooks as Dask tasks (see the module docstring)."""

    def __init__(
        self,
        options: ExecutionOptions,
        choice: DeviceChoice,
        progress: Progress | None,
        on_start: OnStart | None = None,
    ) -> None:
        self.options, self.choice, self.progress = options, choice, progress
        self.on_start = on_start
        self._distributed = import_distributed()
        self._stack = contextlib.ExitStack()
        self._embedded = options.scheduler is None
        self._done: queue.Queue[str] = queue.Queue()
        self._pending: dict[str, _Pending] = {}
        self._workers: dict[str, str] = {}  # task key -> the worker that started it
        self._lost: dict[str, list[str]] = {}  # task key -> why earlier starts were lost
        self._lock = threading.Lock()
        self._interrupted = threading.Event()
        self._cancelled = False
        self._gpu_checked = False
        session = secrets.token_hex(6)
        self._topic, self._cancel = f"reprokit-start-{session}", f"reprokit-cancel-{session}"
        try:
            self._open()
        except BaseException:
            self._stack.close()
            raise

    def _open(self) -> None:
        self._stack.enter_context(_quiet_logs())
        if self._embedded:
            self._stack.enter_context(reaper.subreaper())  # workers' orphans come here
            self._stack.callback(reaper.kill_every_marked)
            cluster = _local_cluster(self._distributed, self.options.jobs)
            self._stack.callback(cluster.close)
            address = str(cluster.scheduler_address)
        else:
            address = str(self.options.scheduler)
        client = connect(self._distributed, address)
        self._stack.callback(client.close)
        self._client = client
        check_workers(client, address)
        client.subscribe_topic(self._topic, self._on_start)
        self._stack.enter_context(kernels.on_interrupt(self._interrupted.set))

    def submit(self, plan: PlannedRun, retries: tuple[str, ...] = ()) -> None:
        task = replace(
            make_task(plan, self.choice, self.options), topic=self._topic, cancel=self._cancel
        )
        key = f"reprokit-{plan.source.stem}-{secrets.token_hex(4)}"
        resources = required_resources(plan.device, self._embedded)
        if resources and not self._gpu_checked:
            self._gpu_checked = True
            self._warn_without_gpu_workers()
        future = self._client.submit(execute_task, task, key=key, pure=False, resources=resources)
        with self._lock:
            self._pending[key] = _Pending(plan, retries, future)
        future.add_done_callback(lambda done: self._done.put(str(done.key)))

    def _warn_without_gpu_workers(self) -> None:
        """A CUDA notebook waits for a worker with a GPU resource: say so when none is there."""
        from reprokit._warn import warn_user

        workers = self._client.scheduler_info(n_workers=-1).get("workers", {})
        if not any(info.get("resources", {}).get("GPU") for info in workers.values()):
            warn_user(
                f"--device cuda: no worker of {self.options.scheduler} declares a GPU resource "
                "yet; the notebooks wait for one (start workers with --resources GPU=1)"
            )

    def finished(self) -> Iterator[Finished]:
        while True:
            with self._lock:
                if not self._pending:
                    return
            if self._stopping():
                self._cancel_all()
            try:
                key = self._done.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            with self._lock:
                item = self._pending.pop(key, None)
            if item is not None:
                finished = self._collect(key, item)
                if finished is not None:
                    yield finished

    def close(self) -> None:
        if self._stopping():
            self._cancel_all()
        self._stack.close()

    def _stopping(self) -> bool:
        """Interrupted (also while the cluster was starting) and not yet cancelled."""
        return (self._interrupted.is_set() or kernels.interrupted()) and not self._cancelled

    def _on_start(self, event: tuple[float, dict[str, str]]) -> None:
        """A task started on a worker (runs on the client's event loop)."""
        _, message = event
        key, worker = message.get("key", ""), message.get("worker", "")
        with self._lock:
            earlier = self._workers.get(key)
            if earlier is not None:
                self._lost.setdefault(key, []).append(f"worker {earlier} was lost")
            self._workers[key] = worker
            item = self._pending.get(key)
        # once per notebook, as the local executor: not again for a task submitted anew
        first = earlier is None and item is not None and not item.retries
        if first and item is not None and self.on_start is not None:
            self.on_start(item.plan)
        if first and item is not None and self.progress is not None:
            self.progress("start", item.plan, None)

    def _cancel_all(self) -> None:
        self._cancelled = True
        with contextlib.suppress(Exception):  # a scheduler already gone cancels nothing
            self._distributed.Event(self._cancel, client=self._client).set()
        with self._lock:
            waiting = [p.future for k, p in self._pending.items() if k not in self._workers]
        with contextlib.suppress(Exception):
            self._client.cancel(waiting)

    def _collect(self, key: str, item: _Pending) -> Finished | None:
        """The finished execution of ``item``, or None when it was submitted again."""
        with self._lock:
            retries = item.retries + tuple(self._lost.pop(key, ()))
        future = item.future
        if future.status == "cancelled":
            return not_started(item.plan, self.choice.device)
        if future.status == "error":
            return with_retries(self._lost_task(item.plan, future.exception()), retries, None)
        try:
            result: TaskResult = future.result(timeout=CONNECT_TIMEOUT_S * 6)
        except Exception as exc:  # the result was lost with its worker before it was fetched
            if len(retries) >= MAX_RETRIES or kernels.interrupted():
                return with_retries(self._lost_task(item.plan, exc), retries, None)
            self.submit(item.plan, (*retries, "its result was lost with its worker"))
            return None
        finished = self._finished(item.plan, result)
        reason = retry_reason(finished.executed, len(retries))
        if reason is not None:
            keep_attempt_log(item.plan.output_path, len(retries) + 1)
            self.submit(item.plan, (*retries, f"{reason} on {result.executed_by}"))
            return None
        return with_retries(finished, retries, result.executed_by)

    def _finished(self, plan: PlannedRun, result: TaskResult) -> Finished:
        """Write what the worker sent into the run folder; read the results back from it."""
        if result.notebook is not None:
            _write_notebook(plan.output_path, result.notebook, result)
        log = plan.output_path.with_name(plan.output_path.stem + ".kernel.log")
        if result.kernel_log is not None and not log.exists():
            log.write_bytes(result.kernel_log)  # the worker's disk is not this one
        results = read_results(plan.output_path) if result.notebook is not None else None
        complete_run_folders(results)
        outcome = self._outcome(plan, result.status, result.message, result.duration_s)
        early = early_stop(plan) if result.status == "ok" and result.notebook else None
        outcome = replace(outcome, failure=result.failure, stopped_by=early)
        return Finished(plan, Executed(outcome, results, result.start_ms))

    def _lost_task(self, plan: PlannedRun, error: BaseException) -> Finished:
        """A task Dask gave up on: its workers were lost too often (``KilledWorker``), or the
        worker could not run it at all (reprokit missing there, say)."""
        from reprokit.capturing.redact import redact_text

        killed = type(error).__name__ == "KilledWorker"
        message = (
            f"the Dask workers running it were lost more than the scheduler allows ({error})"
            if killed
            else f"the Dask task failed: {type(error).__name__}: {error}"
        )
        status: ExecutionStatus = "kernel_died" if killed else "failed"
        outcome = self._outcome(plan, status, redact_text(message)[:500], 0.0)
        return Finished(plan, Executed(outcome, None, 0))

    def _outcome(
        self, plan: PlannedRun, status: ExecutionStatus, message: str, duration_s: float
    ) -> RunOutcome:
        return RunOutcome(
            notebook=str(plan.source),
            status=status,
            output_path=str(plan.output_path),
            output_dir=str(plan.output_dir),
            duration_s=duration_s,
            device=self.choice.device,
            parameters=plan.parameters,
            message=message,
        )


def _write_notebook(path: Path, data: bytes, result: TaskResult) -> None:
    """The executed notebook a worker sent, marked with the worker that executed it."""
    import nbformat

    from reprokit._fsutil import atomic_write_text

    node = nbformat.reads(data.decode("utf-8"), as_version=4)  # type: ignore[no-untyped-call]
    mark = {"worker": result.worker, "host": result.host}
    node.metadata.setdefault("reprokit", {})["executed_by"] = mark
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, nbformat.writes(node))  # type: ignore[no-untyped-call]


def connect(distributed: ModuleType, address: str) -> Any:
    """A client of the scheduler at ``address``; one that cannot be reached, or does not
    answer, is a usage error after at most about :data:`CONNECT_TIMEOUT_S` (a refused
    connection at once)."""
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    made: list[Any] = []
    failed: list[BaseException] = []

    def make() -> None:  # distributed's own timeout misses a peer that accepts and is silent
        try:
            made.append(
                distributed.Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
            )
        except BaseException as exc:
            failed.append(exc)

    try:
        socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT_S).close()
        thread = threading.Thread(target=make, name="reprokit-dask-connect", daemon=True)
        thread.start()
        thread.join(CONNECT_TIMEOUT_S + 5)
        if failed:
            raise failed[0]
        if not made:
            raise TimeoutError(f"no answer in {CONNECT_TIMEOUT_S + 5:g} s")
    except (OSError, TimeoutError) as exc:
        reason = exc.strerror or str(exc).rsplit(": ", 1)[-1] or type(exc).__name__
        raise UsageError(
            f"--scheduler {address}: cannot reach the Dask scheduler ({reason})",
            option="--scheduler",
            value=address,
        ) from None
    return made[0]


def worker_version() -> str:
    """Run on each worker when the client connects: the reprokit it would execute with."""
    from reprokit._version import __version__

    return __version__


def check_workers(client: Any, address: str) -> None:
    """Every worker connected now can run reprokit's tasks, with this reprokit's version: a
    worker without it would fail every task it is given (and Dask would wait on it)."""
    from reprokit._version import __version__

    try:
        versions = client.run(worker_version, on_error="return")
    except Exception as exc:  # the scheduler went away meanwhile
        versions = {address: exc}
    wrong = {w: v for w, v in versions.items() if v != __version__}
    if wrong:
        worker, found = sorted(wrong.items(), key=lambda item: item[0])[0]
        what = f"reprokit {found}" if isinstance(found, str) else f"{type(found).__name__}: {found}"
        raise UsageError(
            f"--scheduler {address}: worker {worker} cannot run reprokit {__version__}'s tasks "
            f"({what}); install the same reprokit-nb on every worker",
            option="--scheduler",
            value=address,
        )


def _local_cluster(distributed: ModuleType, workers: int) -> Any:
    """An embedded cluster: ``workers`` processes of one thread on loopback, no dashboard."""
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": MAX_RETRIES}):
        return distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # no dashboard; its HTTP server (health checks) on loopback, on any free port
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            silence_logs=logging.ERROR,
            preload=[__name__],  # dask_setup below, in each worker process
        )


def dask_setup(worker: Any) -> None:
    """Run by each worker of an embedded cluster as it starts. A Ctrl-C at the terminal
    reaches the whole foreground process group, these workers included: they leave it to
    reprokit, which cancels their tasks (a worker dying with its notebook would lose it)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """Dask's own log lines (workers joining and leaving) are not the user's business here:
    the outcomes say what happened. Errors still show."""
    logger = logging.getLogger("distributed")
    level = logger.level
    logger.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        logger.setLevel(level)
