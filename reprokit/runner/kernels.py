"""Stopping kernels from outside: notebook time limits, memory limits, and runner signals.

Every kernel the runner starts is registered with a :class:`KernelWatch` for the lifetime of
its execution. A watch can kill its kernel's whole process group (the kernel and anything it
started) with ``SIGKILL`` and remembers why; nbclient then sees a dead kernel, papermill
writes the executed notebook up to that cell, and the runner reports the reason instead of
"kernel died".

:func:`stop_kernels_on_signals` turns ``SIGINT``/``SIGTERM`` sent to the runner into exactly
that, for every live kernel at once: kernels are killed, partial notebooks written, MLflow
runs closed as KILLED, and then :class:`~reprokit.exceptions.RunInterrupted` is raised. A
second signal interrupts at once.

A watch also makes the runner a child subreaper while its notebook runs, and when it ends
kills every process the kernel left behind, also those that left its process group
(:mod:`reprokit.runner.reaper`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from types import FrameType
from typing import Any, TypeVar

from reprokit.runner.reaper import kill_marked, subreaper

# why a watch killed its kernel
NOTEBOOK_TIMEOUT = "notebook_timeout"
INTERRUPTED = "interrupted"
# why an execution ended before its first cell: its kernel died while it started (a port
# taken by another process between jupyter_client's choice and the kernel's bind, say), or
# started ahead and died waiting; nothing of the notebook ran, so it is started anew
KERNEL_DIED_STARTING = "the kernel died while it started, before its first cell"
KERNEL_DIED_WAITING = "the kernel died while it waited for its first cell"
BEFORE_FIRST_CELL = (KERNEL_DIED_STARTING, KERNEL_DIED_WAITING)
# a kernel that gave no answer within the start-up limit (a machine too loaded for it, a start
# that hangs); nothing of the notebook ran either, so it too is started anew (status timeout)
KERNEL_SILENT = "the kernel did not start: no answer"


def before_first_cell(status: str, message: str) -> str | None:
    """Why an execution ended before its first cell ran (``status`` and ``message`` of its
    outcome), or None: then nothing of the notebook ran, and it may be started anew."""
    if status == "timeout" and message.startswith(KERNEL_SILENT):
        return "the kernel did not answer as it started"
    if status != "kernel_died":
        return None
    return next((why for why in BEFORE_FIRST_CELL if message.startswith(why)), None)


_live: set[KernelWatch] = set()
_live_lock = threading.RLock()  # re-entrant: a signal's handler runs on the thread it stops
_listeners: list[Callable[[], None]] = []  # told of an interruption (executors elsewhere)
_interrupt = threading.Event()
_signal_received: list[int] = []  # the first signal of the current interruptible section


class KernelWatch:
    """One execution's kernel: its process group, an optional memory limit, a kill switch,
    and the :attr:`mark` (:data:`~reprokit.runner.reaper.MARK_ENV`) its processes inherit."""

    def __init__(self, memory_limit: int | None = None) -> None:
        self.memory_limit = memory_limit
        self.reason: str | None = None
        self.mark = secrets.token_hex(8)
        self.leftovers: list[int] = []  # processes the kernel left behind, killed at the end
        self._pid: int | None = None
        self._lock = threading.RLock()  # also taken by a signal handler (interrupt_all)
        self._reaping = contextlib.ExitStack()

    def __enter__(self) -> KernelWatch:
        self._reaping.enter_context(subreaper())
        with _live_lock:
            _live.add(self)
        if _interrupt.is_set():
            self.kill(INTERRUPTED)
        return self

    def __exit__(self, *exc: object) -> None:
        with _live_lock:
            _live.discard(self)
        spare = frozenset() if self._pid is None else frozenset({self._pid})
        try:
            self.leftovers = kill_marked(self.mark, spare)
        finally:
            self._reaping.close()

    def started(self, pid: int) -> None:
        """Called by the kernel manager once the kernel process exists."""
        if self.memory_limit is not None:
            _limit_memory(pid, self.memory_limit)
        with self._lock:
            self._pid = pid
            reason = self.reason
        if reason is not None:  # killed while the kernel was starting
            _kill_group(pid)

    def exited(self) -> bool:
        """Whether the kernel process has ended (it stays waitable for its manager). False
        where that cannot be told without reaping it (no ``waitid``)."""
        pid = self._pid
        if pid is None or not hasattr(os, "waitid"):
            return False
        try:
            flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
            return os.waitid(os.P_PID, pid, flags) is not None
        except ChildProcessError:
            return True

    def kill(self, reason: str) -> None:
        """Kill the kernel (now, or as soon as it has started); the first reason is kept."""
        with self._lock:
            if self.reason is None:
                self.reason = reason
            pid = self._pid
        if pid is not None:
            _kill_group(pid)


def _kill_group(pid: int) -> None:
    # jupyter_client starts each kernel in a session of its own: its process group is the
    # kernel and every process the notebook started, and none of them may outlive the run
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(os.getpgid(pid), signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def _limit_memory(pid: int, limit: int) -> None:
    """Cap the kernel's address space: an allocation past it raises ``MemoryError`` in the
    cell instead of the machine swapping or the OOM killer choosing a victim."""
    import resource

    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))


def interrupt_all() -> int:
    """Kill every live kernel as interrupted, and every kernel started from now on until
    :func:`clear_interrupt`; returns how many were live."""
    _interrupt.set()
    with _live_lock:
        watches = list(_live)
    for watch in watches:
        watch.kill(INTERRUPTED)
    for listener in list(_listeners):
        listener()
    return len(watches)


@contextlib.contextmanager
def on_interrupt(listener: Callable[[], None]) -> Iterator[None]:
    """While inside, :func:`interrupt_all` (a signal) also calls ``listener``: an executor whose
    kernels run elsewhere (a Dask cluster) cancels them. ``listener`` may run in a signal
    handler: it must only set a flag."""
    with _live_lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _live_lock:
            _listeners.remove(listener)


def interrupted() -> bool:
    return _interrupt.is_set()


def interrupting_signal() -> int | None:
    """The signal that interrupted the current section, None when none did."""
    return _signal_received[0] if _signal_received else None


def clear_interrupt() -> None:
    _interrupt.clear()
    _signal_received.clear()


@contextlib.contextmanager
def stop_kernels_on_signals() -> Iterator[None]:
    """While inside, ``SIGINT``/``SIGTERM`` kill every kernel (see the module docstring).

    Only the main thread can install signal handlers; elsewhere, or when already inside, this
    does nothing. The previous handlers are restored on the way out.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    if any(handler is _on_signal for handler in previous.values()):
        yield  # nested: the outer section owns the handlers
        return
    clear_interrupt()
    for sig in previous:
        signal.signal(sig, _on_signal)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        clear_interrupt()  # the next section, or a run outside any, starts uninterrupted


T = TypeVar("T")
_WAKE_S = 0.2  # how often a waiting main thread runs the handler of a signal it did not take


def completed(futures: Iterable[Future[T]]) -> Iterator[Future[T]]:
    """The futures as they complete (:func:`concurrent.futures.as_completed`), for the main
    thread of an interruptible section: it wakes every 0.2 s. Linux gives a process's signal to
    any of its threads that does not block it, and CPython runs the Python handler only on the
    main thread, once that thread runs Python again: a wait without a limit there left
    ``SIGINT``/``SIGTERM`` unhandled, kernels running, until a notebook ended."""
    pending = set(futures)
    while pending:
        done, _ = wait(pending, timeout=_WAKE_S, return_when=FIRST_COMPLETED)
        for future in done:
            pending.discard(future)
            yield future


def wait_unless_interrupted(futures: Iterable[Future[Any]], grace_s: float) -> set[Future[Any]]:
    """Wait for ``futures`` as :func:`completed` does; once the section is interrupted, for
    ``grace_s`` seconds more at most (a record that MLflow keeps retrying must not hold a
    signalled runner). Returns the futures not done."""
    pending = set(futures)
    deadline: float | None = None
    while pending:
        if deadline is None and _interrupt.is_set():
            deadline = time.monotonic() + grace_s
        timeout = _WAKE_S if deadline is None else min(_WAKE_S, deadline - time.monotonic())
        if timeout <= 0:
            break
        _, pending = wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
    return pending


def result_of(future: Future[T]) -> T:
    """``future.result()``, waiting as :func:`completed` does."""
    return next(iter(completed([future]))).result()


_exit_on_second_signal: list[bool] = []  # set by the command line


def exit_on_second_signal() -> None:
    """Make a second ``SIGINT``/``SIGTERM`` end this process at once with 128 + its number
    (the command line; an embedding program gets ``KeyboardInterrupt``). The first signal has
    stopped the kernels; every run that started has a journal from its start (when its
    outputs are in the project's ``.reprokit``), which ``reprokit sync`` (or the next command
    that opens the store) records: as KILLED with what its output folder holds, where the
    first signal's record of it was not written yet."""
    _exit_on_second_signal.append(True)


def _on_signal(signum: int, frame: FrameType | None) -> Any:
    if _signal_received:  # a second signal: stop waiting for anything
        if _exit_on_second_signal:
            message = "reprokit: interrupted again: exiting now (`reprokit sync` records the "
            message += "stopped runs from their journals)\n"
            os.write(2, message.encode())
            os._exit(128 + signum)
        raise KeyboardInterrupt
    _signal_received.append(signum)
    interrupt_all()
