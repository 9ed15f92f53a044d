"""What a kernel leaves behind: processes that outlive their notebook are found and killed.

A cell can start a process that escapes the kernel's process group: ``Popen(...,
start_new_session=True)`` leaves the group, a double fork leaves its parent as well. Killing
the kernel's group misses both, and once the kernel is gone they would be re-parented to PID
1 and run on after the run. So, while notebooks execute, the runner is a *child subreaper*
(Linux ``prctl(PR_SET_CHILD_SUBREAPER)``): orphaned descendants are re-parented to the runner
instead of PID 1, and stay in its process tree. Every kernel's environment carries a marker
(:data:`MARK_ENV` = a token of its execution) that the processes it starts inherit; when a
notebook ends, every process *below the runner* with that notebook's marker is killed and, if
the runner adopted it, reaped. Nothing outside the runner's own tree is ever touched.

Limits: elsewhere than Linux nothing is adopted (processes that left the kernel's group
survive, as before); a process that removes :data:`MARK_ENV` from its own environment is
not recognised; a process that escapes the runner's tree (``setsid`` does not, but a daemon
started through another service does) is out of reach.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

MARK_ENV = "REPROKIT_KERNEL_MARK"
_PR_SET_CHILD_SUBREAPER = 36
_REAP_WAIT_S = 5.0  # after SIGKILL, how long to wait for an adopted process to become a zombie

_lock = threading.Lock()
_users = 0  # executions inside subreaper(); the flag is set while there is one


@contextlib.contextmanager
def subreaper() -> Iterator[None]:
    """While inside (from any thread; nested uses count), orphaned descendants of this process
    are re-parented to it. The flag is cleared when the last user leaves."""
    global _users
    with _lock:
        _users += 1
        if _users == 1:
            _set_subreaper(True)
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                _set_subreaper(False)


def _set_subreaper(on: bool) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def kill_marked(mark: str, spare: frozenset[int] = frozenset()) -> list[int]:
    """Kill every process below this one whose environment holds ``MARK_ENV=mark`` (except the
    pids in ``spare``: the kernel, which its manager stops and waits for); reap the ones this
    process adopted. Returns the pids killed."""
    me = os.getpid()
    parents = _parents()
    wanted = f"{MARK_ENV}={mark}".encode()
    marked = [
        pid for pid in _descendants(me, parents) if pid not in spare and wanted in _environ(pid)
    ]
    for pid in marked:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    _reap([pid for pid in marked if parents.get(pid) == me])
    return marked


def kill_every_marked() -> list[int]:
    """Kill every process below this one that a kernel started by reprokit carries the mark
    of (:data:`MARK_ENV`, any value): what kernels of an embedded Dask cluster's workers left
    when their worker was stopped. Returns the pids killed."""
    me = os.getpid()
    parents = _parents()
    prefix = f"{MARK_ENV}=".encode()
    marked = [
        pid
        for pid in _descendants(me, parents)
        if any(item.startswith(prefix) for item in _environ(pid))
    ]
    for pid in marked:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    _reap([pid for pid in marked if parents.get(pid) == me])
    return marked


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process visible in ``/proc``."""
    parents: dict[int, int] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                ppid = _ppid(int(entry.name))
                if ppid is not None:
                    parents[int(entry.name)] = ppid
    return parents


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")"
    fields = text[text.rfind(b")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else None


def _descendants(root: int, parents: dict[int, int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _environ(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            return environ.read().split(b"\0")
    except OSError:  # gone, or not ours to read
        return []


def _reap(pids: list[int]) -> None:
    """Collect the exit status of killed processes this one adopted (no one else will)."""
    deadline = time.monotonic() + _REAP_WAIT_S
    left = list(pids)
    while left and time.monotonic() < deadline:
        for pid in list(left):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid  # reaped elsewhere
            if done:
                left.remove(pid)
        if left:
            time.sleep(0.01)
