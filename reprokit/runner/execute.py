"""Execute one notebook with papermill in its own kernel, environment and working directory.

The executed notebook is always written to the output path, also when a cell raises, a cell
times out or the kernel dies; the outcome names the failing cell. Nothing here is process
global (no ``chdir``, no ``os.environ`` change), so several notebooks can run at once from
threads of one process: the kernel's environment goes to its kernel manager, its working
directory to nbclient's ``resources``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import errno
import functools
import json
import logging
import math
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Protocol

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from traitlets import default

from reprokit.capturing.redact import hidden_parts, sensitive_parameters
from reprokit.exceptions import PathError
from reprokit.notebook.files import INJECTED_TAG, notebook_language
from reprokit.recording.spool import OWNER_ENV, spool_path
from reprokit.recording.writer import own_http_limits
from reprokit.runner._outputs import finish_output, redact_error, register_engine
from reprokit.runner._saving import written_whole
from reprokit.runner._scrub import scrub_notebook_text
from reprokit.runner.failure import (
    ERROR_MARKER_TAG,
    CellFailure,
    expects_error,
    find_failure,
    missing_exception,
    unexpected_errors,
)
from reprokit.runner.kernels import (
    INTERRUPTED,
    KERNEL_DIED_STARTING,
    KERNEL_DIED_WAITING,
    KERNEL_SILENT,
    NOTEBOOK_TIMEOUT,
    KernelWatch,
    interrupted,
)
from reprokit.runner.reaper import MARK_ENV
from reprokit.statuses import ExecutionStatus

DEFAULT_KERNEL = "python3"
_SECRET_TAG = "reprokit-secret-parameters"
SECRET_ENV_PREFIX = "REPROKIT_SECRET_PARAM_"
# what writing the executed notebook can fail with (nbclient's CellTimeoutError is an OSError
# too, without an errno)
_WRITE_ERRORS = frozenset(
    {errno.EROFS, errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EACCES, errno.EPERM}
)


CellCallback = Callable[[int, int], None]
"""``on_cell(position, total)``: a cell starts (1-based position)."""


class Gate(Protocol):
    """Where a started kernel waits before its first cell: ``--jobs N`` starts one kernel
    ahead of the N executing notebooks, and it executes once one of them is done."""

    def try_enter(self) -> bool:
        """Take a slot if one is free (without waiting); True once taken."""

    def leave(self) -> None:
        """Give the slot back (nothing if none was taken)."""


@dataclass(frozen=True)
class ExecutionOutcome:
    """What happened to one execution; ``status`` is ok, failed, timeout, kernel_died or
    interrupted."""

    status: ExecutionStatus
    output_path: str
    duration_s: float
    failure: CellFailure | None = None
    message: str = ""
    waited_s: float = 0.0  # ready, before its first cell, at a gate (not in duration_s)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class KernelNotLaunched(RuntimeError):
    """The kernelspec's program could not be started (missing, not executable, none given)."""

    def __init__(self, why: str) -> None:
        super().__init__(f"the kernel could not be started: {why}")

    @classmethod
    def of(cls, exc: OSError) -> KernelNotLaunched:
        where = f"{exc.filename}: " if exc.filename else ""
        return cls(f"{where}{exc.strerror or exc}")


class _EnvKernelManager(AsyncKernelManager):
    """A kernel manager that starts its kernel with :attr:`kernel_env` as the environment.

    nbclient creates (and so owns, and shuts down) the kernel manager itself from a class; a
    subclass per execution carries that execution's environment.
    """

    kernel_env: Mapping[str, str] = {}
    kernel_log: IO[bytes] | None = None  # the kernel's own stdout/stderr, not ours
    kernel_watch: KernelWatch | None = None
    private_kernel_dir: str | None = None  # kernelspecs looked up here only (rebuilt env)

    @default("kernel_spec_manager")
    def _private_kernel_specs(self) -> KernelSpecManager:
        if self.private_kernel_dir is None:
            return KernelSpecManager(data_dir=self.data_dir)
        return KernelSpecManager(kernel_dirs=[self.private_kernel_dir])

    async def start_kernel(self, **kwargs: Any) -> None:  # type: ignore[override]
        kwargs["env"] = dict(self.kernel_env)
        if self.kernel_watch is not None:  # inherited by whatever the notebook starts
            kwargs["env"][MARK_ENV] = self.kernel_watch.mark
        if self.kernel_log is not None:
            kwargs["stdout"] = kwargs["stderr"] = self.kernel_log
        spec = self.kernel_spec
        if spec is not None and not (spec.argv and all(isinstance(a, str) for a in spec.argv)):
            raise KernelNotLaunched(f"{spec.resource_dir}/kernel.json gives no command (argv)")
        try:
            await super().start_kernel(**kwargs)
        except OSError as exc:  # its program is gone: a kernelspec of a deleted environment
            with contextlib.suppress(Exception):
                await self._async_cleanup_resources()  # its connection file
            raise KernelNotLaunched.of(exc) from None
        pid = getattr(getattr(self.provisioner, "process", None), "pid", None)
        if self.kernel_watch is not None and isinstance(pid, int):
            self.kernel_watch.started(pid)


_FOREIGN_PYTHON_ENV = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
"""Variables that would make a rebuilt environment's kernel import from another Python."""


def kernel_manager_for(
    env: Mapping[str, str],
    log: IO[bytes] | None = None,
    watch: KernelWatch | None = None,
    kernel_dir: str | None = None,
) -> type[AsyncKernelManager]:
    """A kernel manager class whose kernels get ``os.environ`` updated with ``env``; a secret
    parameter the runner itself was given in its environment is not passed on, nor are the
    bounds reprokit set on its own MLflow calls (the notebook's keep MLflow's defaults). With
    ``kernel_dir`` (a rebuilt environment's private kernelspecs) the kernel is looked up there
    only, and starts without this process's Python path."""
    own = own_http_limits()
    full = {
        k: v for k, v in os.environ.items() if not k.startswith(SECRET_ENV_PREFIX) and k not in own
    }
    if kernel_dir is not None:
        full = {k: v for k, v in full.items() if k not in _FOREIGN_PYTHON_ENV}
    attributes = {
        "kernel_env": full | dict(env),
        "kernel_log": log,
        "kernel_watch": watch,
        "private_kernel_dir": kernel_dir,
    }
    return type("ReprokitKernelManager", (_EnvKernelManager,), attributes)


def execute_notebook(
    node: Any,
    output_path: str | os.PathLike[str],
    *,
    cwd: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    parameters: Mapping[str, Any] | None = None,
    kernel_name: str | None = None,
    timeout: float | None = None,
    limits: Limits | None = None,
    secrets: Mapping[str, str] | None = None,
    on_cell: CellCallback | None = None,
    kernel_dir: str | None = None,
    cancel: threading.Event | None = None,
    gate: Gate | None = None,
    before_cell: Callable[[Any], None] | None = None,
) -> ExecutionOutcome:
    """Run ``node`` (an nbformat notebook, not modified) and write the result to ``output_path``.

    ``parameters`` go into papermill's injected cell, except those redaction would change:
    these and ``secrets`` reach the kernel by its environment, never a cell. ``env``: added
    to the kernel's; ``timeout`` (s): per cell; ``limits``: the notebook's (not counting a
    wait at ``gate``) and the kernel's memory. Killed after the last cell, when interrupted or
    on ``cancel``. As a cell starts: ``before_cell(cell)``, ``on_cell(position, total)``."""
    output, started, limits = Path(output_path), time.perf_counter(), limits or Limits()
    make_output_folder(output.parent)
    log_path, secrets = output.with_name(output.stem + ".kernel.log"), dict(secrets or {})
    hidden = _hidden_parameters(parameters or {})
    kernel_env = {**(env or {}), **_secret_env(secrets, hidden), **_fresh_spool(output)}
    status: ExecutionStatus = "ok"
    with KernelWatch(limits.memory_bytes) as watch, _stoppers(watch, limits, cancel, gate) as clock:
        try:
            with open(log_path, "wb") as log:
                what = (node, output, log, kernel_env, parameters, secrets, kernel_name, cwd)
                how = (on_cell, tuple(hidden), kernel_dir, limits.start_timeout, before_cell)
                job = _Job(*what, *how)
                _papermill(job, timeout, watch, _gate_hook(gate, watch, clock))
            message = ""
        except Exception as exc:
            if isinstance(exc, OSError) and exc.errno in _WRITE_ERRORS:
                raise _unwritable(exc, output) from None  # read-only now, or the disk is full
            status, message = _status_of(exc, watch, limits, log_path)
        finally:
            _cancel_leftover_tasks()
    duration = time.perf_counter() - started - clock.waited
    status, failure = _settle(output, status, message, node, bool(parameters or secrets))
    scrubbed = _scrubbed(secrets, hidden)
    failure, message = _redacted(failure, scrubbed), _capped(redact_error(message, scrubbed))
    finish_output(output, _execution_mark(status, message, failure), scrubbed, log_path)
    return ExecutionOutcome(status, str(output), duration, failure, message, clock.waited)


def _settle(
    output: Path, status: ExecutionStatus, message: str, node: Any, injected: bool
) -> tuple[ExecutionStatus, CellFailure | None]:
    """The final status and failing cell: errors of cells tagged ``raises-exception`` are
    expected (papermill fails on them anyway), such a cell that raised nothing is a failure."""
    if status == "failed" and _only_expected_errors(output):
        status = "ok"
    missing = missing_exception(output, source=node, injected=injected)
    if status == "ok":
        return ("failed", missing) if missing is not None else ("ok", None)
    failure = find_failure(output, status, message, source=node, injected=injected)
    earlier = missing is not None and (failure is None or missing.index < failure.index)
    return status, missing if status == "failed" and earlier else failure  # the first in order


def _only_expected_errors(output: Path) -> bool:
    """Whether every error of the executed notebook is in a cell tagged to raise; if so,
    papermill's error-marker cells ("An Exception was encountered") are taken out again."""
    import nbformat

    from reprokit._fsutil import atomic_write_text

    try:
        node = nbformat.read(output, as_version=4)  # type: ignore[no-untyped-call]
    except (OSError, ValueError):
        return False
    marked = any(c.metadata.get("papermill", {}).get("exception") for c in node.cells)
    if marked or unexpected_errors(node):
        return False
    node.cells = [c for c in node.cells if ERROR_MARKER_TAG not in c.metadata.get("tags", [])]
    atomic_write_text(output, nbformat.writes(node))  # type: ignore[no-untyped-call]
    return True


def make_output_folder(folder: Path) -> None:
    """Create ``folder``; a folder that cannot be created is a :class:`PathError` naming it.
    An earlier execution's kernel run folders in it (``--output-dir`` given again) are
    removed: the executed notebook they belonged to is written over, and this run's record
    must not take their declared data or upload them as its own."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(exc, folder) from None
    with contextlib.suppress(OSError):
        for stale in folder.iterdir():
            if _RUN_FOLDER.fullmatch(stale.name) and (stale / "run.json").is_file():
                shutil.rmtree(stale, ignore_errors=True)


_RUN_FOLDER = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}")
"""The name of a kernel's run folder (:class:`~reprokit.recording.folder.RunFolder`)."""


def _unwritable(exc: OSError, fallback: Path) -> PathError:
    path = exc.filename or fallback
    reason = exc.strerror or type(exc).__name__
    return PathError(str(path), f"cannot write the executed notebook here: {reason}")


@dataclass(frozen=True)
class Limits:
    """Limits of one execution beyond the per-cell timeout."""

    notebook_timeout: float | None = None  # seconds for the whole notebook
    memory_bytes: int | None = None  # the kernel's address space (RLIMIT_AS)
    start_timeout: float = 60.0  # seconds for the kernel to start and answer kernel_info


@dataclass(frozen=True)
class _Job:
    node: Any
    output: Path
    log: IO[bytes]
    env: Mapping[str, str]
    parameters: Mapping[str, Any] | None
    secrets: Mapping[str, str]
    kernel_name: str | None
    cwd: str | os.PathLike[str]
    on_cell: CellCallback | None = None
    hidden: tuple[str, ...] = ()  # parameters passed like secrets (see _hidden_parameters)
    kernel_dir: str | None = None  # private kernelspecs (a rebuilt environment's)
    start_timeout: float = 60.0  # seconds for the kernel to start and answer
    before_cell: Callable[[Any], None] | None = None  # called with each cell as it starts


def _fresh_spool(output: Path) -> dict[str, str]:
    """The kernel's results spool made anew (one an interrupted run left there, or a link or a
    FIFO put in its place, is removed), owned by this process: the kernel it starts."""
    with contextlib.suppress(OSError):  # a folder there: the kernel cannot write it either
        spool_path(output).unlink()
    return {OWNER_ENV: str(os.getpid())}


def _hidden_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The ``-p`` parameters that MLflow and the lock show redacted: the kernel gets their
    real values through its environment (as JSON), the executed notebook never holds them."""
    names = sensitive_parameters(parameters)
    return {name: value for name, value in parameters.items() if name in names}


def _secret_env(secrets: Mapping[str, str], hidden: Mapping[str, Any]) -> dict[str, str]:
    """The kernel's variables carrying secret parameters (text) and hidden ones (JSON)."""
    env = {secret_env_name(k): v for k, v in secrets.items()}
    return env | {secret_env_name(k): json.dumps(v) for k, v in hidden.items()}


def _scrubbed(secrets: Mapping[str, str], hidden: Mapping[str, Any]) -> dict[str, str]:
    """The values replaced by ``<secret NAME>`` in what the execution wrote: the secret
    parameters, and the hidden ones (named like secrets, or holding a secret-named key or a
    credential: each such part on its own too, ``config.password``) whose text is long enough
    not to match by chance (four characters: ``hunter2`` is replaced, ``42`` is not)."""
    parts = [each for k, v in hidden.items() for each in (hidden_parts(k, v) or {k: v}).items()]
    shown = {k: v if isinstance(v, str) else json.dumps(v) for k, v in parts}
    return dict(secrets) | {k: v for k, v in shown.items() if len(v) >= 4}


def _redacted(failure: CellFailure | None, secrets: Mapping[str, str]) -> CellFailure | None:
    """``failure`` with secret values and credential-looking text removed from its texts."""
    if failure is None:
        return None
    return replace(
        failure,
        ename=redact_error(failure.ename, secrets),
        evalue=redact_error(failure.evalue, secrets),
        traceback=tuple(redact_error(line, secrets) for line in failure.traceback),
        source_head=redact_error(failure.source_head, secrets),
    )


def secret_env_name(name: str) -> str:
    """The kernel environment variable that carries secret parameter ``name``."""
    return SECRET_ENV_PREFIX + name


def _status_of(
    exc: Exception, watch: KernelWatch, limits: Limits, log: Path
) -> tuple[ExecutionStatus, str]:
    """``(status, message)`` of an execution that raised ``exc``; ``log``: the kernel's."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError  # type: ignore[import-untyped]

    if watch.reason == INTERRUPTED:
        return "interrupted", "the runner was interrupted; the kernel was stopped"
    if watch.reason == NOTEBOOK_TIMEOUT:
        return "timeout", f"the notebook ran past its limit of {limits.notebook_timeout:g} s"
    if isinstance(exc, PapermillExecutionError):
        return "failed", ""
    if isinstance(exc, CellTimeoutError):
        return "timeout", _first_line(exc)
    if isinstance(exc, DeadKernelError):
        return "kernel_died", _first_line(exc)
    if isinstance(exc, KernelNotLaunched):
        return "kernel_died", str(exc)  # not started again: it would fail the same way
    if isinstance(exc, RuntimeError):
        text = _first_line(exc)
        if text == KERNEL_DIED_WAITING:
            return "kernel_died", text
        if "kernel died" in text.lower():  # nbclient: "Kernel died before replying to …"
            return "kernel_died", _with_last_words(KERNEL_DIED_STARTING, log)
        if text.startswith("Kernel didn't respond"):  # jupyter_client's start-up timeout
            # not its last words: the interruption that stopped it (KeyboardInterrupt)
            return "timeout", f"{KERNEL_SILENT} within {limits.start_timeout:g} s"
    raise exc


def _with_last_words(message: str, log: Path) -> str:
    """``message: <the last line the kernel wrote>`` (``zmq.error.ZMQError: Address already in
    use …``), or ``message`` when its log holds nothing."""
    try:
        with open(log, "rb") as text:
            start = text.seek(max(0, text.seek(0, os.SEEK_END) - _LOG_TAIL))
            tail = text.read().decode(errors="replace").splitlines()
    except OSError:
        return message
    # a line cut by the seek is left out: a part of a token would escape redaction
    lines = [line.strip() for line in (tail[1:] if start else tail) if line.strip()]
    return f"{message}: {lines[-1]}" if lines else message


_LOG_TAIL = 4096  # bytes of the kernel's log looked at for its last line
_MAX_MESSAGE = 400  # characters of a message, cut once it is redacted


def _capped(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 1] + "…"


class _Clock:
    """The notebook's time limit: kills the kernel once the notebook has run for ``seconds``,
    not counting the time it was :meth:`paused` (waiting at a gate, :attr:`waited`)."""

    def __init__(self, watch: KernelWatch, seconds: float | None) -> None:
        self.watch, self.left, self.waited = watch, seconds, 0.0
        self._timer: threading.Timer | None = None
        self._since = 0.0

    def run(self) -> None:
        self._since = time.perf_counter()
        if self.left is not None:
            self._timer = threading.Timer(max(0.0, self.left), self.watch.kill, (NOTEBOOK_TIMEOUT,))
            self._timer.daemon = True
            self._timer.start()

    def stop(self) -> None:
        if self._timer is not None and self.left is not None:
            self._timer.cancel()
            self.left -= time.perf_counter() - self._since
        self._timer = None

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        self.stop()
        began = time.perf_counter()
        try:
            yield
        finally:
            self.waited += time.perf_counter() - began
            self.run()


@contextlib.contextmanager
def _stoppers(
    watch: KernelWatch, limits: Limits, cancel: threading.Event | None, gate: Gate | None
) -> Iterator[_Clock]:
    """The execution's time limit and cancellation; its slot at ``gate`` is given back at the
    end (its kernel is gone by then)."""
    clock = _Clock(watch, limits.notebook_timeout)
    clock.run()
    try:
        with _cancellation(watch, cancel):
            yield clock
    finally:
        clock.stop()
        if gate is not None:
            gate.leave()


_GATE_POLL_S = 0.02


def _gate_hook(gate: Gate | None, watch: KernelWatch, clock: _Clock) -> Any:
    """nbclient's ``on_notebook_start`` hook (the kernel is ready, no cell has run) that waits
    at ``gate``; an interruption meanwhile stops the kernel and the execution."""
    if gate is None:
        return None

    async def on_notebook_start(**_: Any) -> None:
        with clock.paused():
            while not gate.try_enter():
                if interrupted() or watch.reason is not None:
                    watch.kill(INTERRUPTED)  # nbclient does not clean up after this hook
                    raise RuntimeError("stopped before its first cell")
                if watch.exited():  # the OOM killer, say: the gate's owner starts it anew
                    raise RuntimeError(KERNEL_DIED_WAITING)
                await asyncio.sleep(_GATE_POLL_S)

    return on_notebook_start


@contextlib.contextmanager
def _cancellation(watch: KernelWatch, cancel: threading.Event | None) -> Iterator[None]:
    """Kill the kernel as interrupted once ``cancel`` is set."""
    if cancel is None:
        yield
        return
    done = threading.Event()

    def wait() -> None:
        while not done.is_set():
            if cancel.wait(0.2):
                watch.kill(INTERRUPTED)
                return

    waiter = threading.Thread(target=wait, name="reprokit-cancel", daemon=True)
    waiter.start()
    try:
        yield
    finally:
        done.set()


def _execution_mark(
    status: ExecutionStatus, message: str, failure: CellFailure | None
) -> dict[str, Any]:
    mark: dict[str, Any] = {"status": status}
    if failure is not None:
        mark |= {
            "failed_cell": failure.index,
            "output_index": failure.output_index,
            "ename": failure.ename,
            "evalue": failure.evalue,
        }
    elif message:
        mark["evalue"] = message
    return mark


def _papermill(job: _Job, timeout: float | None, watch: KernelWatch, on_start: Any) -> None:
    import papermill  # type: ignore[import-untyped]

    _quiet_papermill_logs()
    node = copy.deepcopy(job.node)  # papermill modifies what it is given
    for cell in node.cells:  # nbval's spellings of raises-exception, for nbclient to see
        if expects_error(cell) and "raises-exception" not in cell.metadata.get("tags", []):
            cell.metadata["tags"] = [*cell.metadata.get("tags", []), "raises-exception"]
    parameters: dict[str, Any] | None = dict(job.parameters or {})
    if job.secrets or job.hidden:
        clear = {k: v for k, v in (parameters or {}).items() if k not in job.hidden}
        node, parameters = _with_secret_cell(node, clear, job), None
    hidden = {k: v for k, v in (job.parameters or {}).items() if k in job.hidden}
    scrub = functools.partial(scrub_notebook_text, secrets=_scrubbed(job.secrets, hidden))
    with written_whole(str(job.output.absolute()), scrub) as output:  # whole, scrubbed
        papermill.execute_notebook(
            node,
            output,
            parameters=parameters,
            engine_name=register_engine(),
            kernel_name=job.kernel_name or kernel_of(job.node),
            language=_language_of(job.node),
            progress_bar=False,
            log_output=False,
            execution_timeout=timeout,
            start_timeout=math.ceil(job.start_timeout),  # nbclient's is a whole number of seconds
            kernel_manager_class=kernel_manager_for(job.env, job.log, watch, job.kernel_dir),
            resources={"metadata": {"path": str(job.cwd)}},
            shutdown_kernel="immediate",
            on_notebook_start=on_start,
            **_cell_hooks(node, parameters, job),  # nbclient's hooks, through the engine
        )


def _cell_hooks(node: Any, parameters: Mapping[str, Any] | None, job: _Job) -> dict[str, Any]:
    on_cell, before_cell = job.on_cell, job.before_cell
    if on_cell is None and before_cell is None:
        return {}
    total = len(node.cells) + (1 if parameters else 0)  # papermill injects one cell (if asked)

    def on_cell_start(cell_index: int, cell: Any = None, **_: Any) -> None:
        if before_cell is not None and cell is not None:
            before_cell(cell)
        if on_cell is not None:
            on_cell(min(cell_index + 1, total), total)

    return {"on_cell_start": on_cell_start}


def _with_secret_cell(node: Any, parameters: Mapping[str, Any], job: _Job) -> Any:
    """Inject the parameters as papermill would, then a cell that reads each secret from the
    kernel's environment (and removes it there, so that child processes do not inherit it).
    Both cells are tagged ``injected-parameters``: they are the runner's, not the notebook's."""
    import nbformat
    from papermill.parameterize import parameterize_notebook  # type: ignore[import-untyped]

    node.metadata.setdefault("papermill", {})
    for each in node.cells:  # as papermill's own preparation would, before it parameterizes
        each.metadata.setdefault("tags", [])
    kernel = job.kernel_name or kernel_of(node)
    language = _language_of(node)  # a text notebook may name none: papermill would refuse
    node = parameterize_notebook(node, dict(parameters), kernel_name=kernel, language=language)
    lines = ["# Secret parameters: values come from the environment, never from this notebook"]
    lines.append("import json as _reprokit_json, os as _reprokit_os")
    for name in job.secrets:
        lines.append(f"{name} = _reprokit_os.environ.pop({secret_env_name(name)!r})")
    for name in job.hidden:
        lines.append(
            f"{name} = _reprokit_json.loads(_reprokit_os.environ.pop({secret_env_name(name)!r}))"
        )
    lines.append("del _reprokit_json, _reprokit_os")
    cell = nbformat.v4.new_code_cell("\n".join(lines))  # type: ignore[no-untyped-call]
    cell.metadata["tags"] = [INJECTED_TAG, _SECRET_TAG]
    at = next(i for i, c in enumerate(node.cells) if INJECTED_TAG in c.metadata.get("tags", []))
    node.cells.insert(at + 1, cell)
    return node


def _cancel_leftover_tasks() -> None:
    """After a timeout or a dead kernel, nbclient leaves its output-polling task pending on
    this thread's event loop; cancel it now rather than have asyncio complain at exit that a
    pending task was destroyed."""
    from jupyter_core.utils import ensure_event_loop

    loop = ensure_event_loop()
    if loop.is_running():
        return
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def _quiet_papermill_logs() -> None:
    """nbclient reports timeouts and dead kernels through papermill's logger; the outcome says
    it already. A NullHandler keeps Python's last-resort stderr handler away, while an
    application that configured logging still receives the records."""
    logger = logging.getLogger("papermill")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


def kernel_of(node: Any) -> str:
    """The notebook's kernel name, ``python3`` when it names none."""
    # text notebooks converted by jupytext often carry no kernelspec
    return str(node.metadata.get("kernelspec", {}).get("name") or DEFAULT_KERNEL)


def _language_of(node: Any) -> str:
    language = notebook_language(node)
    return "R" if language == "r" else language  # papermill's translator is registered as "R"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
