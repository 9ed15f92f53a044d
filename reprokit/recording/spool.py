"""The results a kernel displays, also kept on disk as it displays them, under a runner.

A result's output can miss the executed notebook: a kernel that dies in the cell that
declared it (``os._exit``, the out-of-memory killer, a crash in C code) may not have sent it
yet (the message waits on the kernel's I/O thread); ``clear_output()`` later in the cell (a
training loop's progress) erases it; ``%%capture`` keeps it from being shown. Under
``reprokit run``, ``$REPROKIT_RESULTS_SPOOL`` names a file beside the executed notebook
(:func:`spool_path`), deleted by the runner before the kernel starts. The kernel appends
each result's output to it as one JSON line keyed by its cell (cells counted as they start),
before displaying it, and as a cell ends one line that gives that cell's ``In [N]``
(nothing is ``fsync``'ed: what a dead process wrote is in the page cache). The runner puts
the outputs that are not in the notebook back into their cells, in the order they were
declared (:mod:`reprokit.runner.putback`), then deletes the file.

Only the kernel the runner started writes it: the variable is taken out of the kernel's
environment as reprokit starts there (a notebook a cell executes, with a kernel of its own,
does not inherit it), and a kernel whose parent is not the process named by
``$REPROKIT_RESULTS_SPOOL_OWNER`` ignores it. The file is the user's only (mode 0600), never
opened through a link, never waited on (a FIFO): it holds the values before secret
parameters are scrubbed from them, and after a runner killed with ``SIGKILL`` it stays in
the output folder, like the kernel's log (docs/security.md).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from reprokit._serde import compact_json
from reprokit.results.model import RESULT_MIME

SPOOL_ENV = "REPROKIT_RESULTS_SPOOL"
OWNER_ENV = "REPROKIT_RESULTS_SPOOL_OWNER"  # the pid of the process that starts the kernel
MAX_SPOOL_BYTES = 1024 * 1024 * 1024  # a larger spool is not read back (the notebook stands)

_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK


class _Spool:
    """This kernel's spool: taken from the environment once (and removed from it, so that a
    notebook a cell runs, with a kernel of its own, never writes here), only by a kernel the
    runner itself started (its parent is the spool's owner)."""

    path: str | None = None
    taken = False
    cell = 0  # cells started in this process (pre_run_cell), the key of each entry
    written_in_cell = False


def _target() -> str | None:
    if not _Spool.taken:
        _Spool.taken = True
        path, owner = os.environ.pop(SPOOL_ENV, None), os.environ.pop(OWNER_ENV, None)
        if path and owner and owner.isdigit() and int(owner) == os.getppid():
            _Spool.path = path
    return _Spool.path


def spool_path(output: Path) -> Path:
    """Where the kernel that writes the executed notebook ``output`` keeps its results."""
    return output.with_name(output.stem + ".results.jsonl")


def take_spool() -> bool:
    """Take the spool from the environment now (the session does as it starts, before any
    cell can start a kernel of its own); whether there is one."""
    return _target() is not None


def cell_started() -> None:
    """IPython ``pre_run_cell``: the entries that follow belong to a new cell."""
    _Spool.cell += 1
    _Spool.written_in_cell = False


def cell_done(execution_count: int | None) -> None:
    """IPython ``post_run_cell``: say which ``In [N]`` the cell's entries belong to (a cell
    the kernel died in never says: its entries go to the cell that was running)."""
    if _Spool.written_in_cell and isinstance(execution_count, int):
        _append({"cell": _Spool.cell, "execution_count": execution_count})


def append_output(bundle: dict[str, Any], metadata: dict[str, Any]) -> None:
    """Append one result's display output to the spool, when a runner asked for one; a spool
    that cannot be written is skipped (the displayed output is the record)."""
    if _append({"data": bundle, "metadata": metadata, "cell": _Spool.cell}):
        _Spool.written_in_cell = True


def _append(entry: dict[str, Any]) -> bool:
    path = _target()
    line = compact_json(entry) if path is not None else None
    if path is None or line is None:
        return False
    try:
        fd = os.open(path, _OPEN_FLAGS, 0o600)  # never through a link, never blocking (a FIFO)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            _Spool.path = None  # not ours to write: given up for this kernel
            return False
        os.write(fd, line + b"\n")
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def read_spool(path: Path) -> tuple[list[dict[str, Any]], dict[int, int]]:
    """The result outputs in ``path``, in order, each ``{"data", "metadata", "cell"}``, and
    each cell's ``In [N]`` as the kernel said it (``cell`` -> N). A line that is neither (the
    last, cut as the kernel died) is skipped. Nothing when there is no spool, it is not a
    regular file (never followed, never waited on) or it is larger than
    :data:`MAX_SPOOL_BYTES`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return [], {}
    entries: list[dict[str, Any]] = []
    counts: dict[int, int] = {}
    with os.fdopen(fd, "rb") as handle:
        found = os.fstat(handle.fileno())
        if not stat.S_ISREG(found.st_mode) or found.st_size > MAX_SPOOL_BYTES:
            return [], {}
        for line in handle:
            entry = _entry(line)
            if entry is not None and "data" in entry:
                entries.append(entry)
            elif entry is not None:
                counts[entry["cell"]] = entry["execution_count"]
    return entries, counts


def _entry(line: bytes) -> dict[str, Any] | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict) or not _count(entry.get("cell")):
        return None
    if _count(entry.get("execution_count")) and "data" not in entry:
        return {"cell": entry["cell"], "execution_count": entry["execution_count"]}
    data, metadata = entry.get("data"), entry.get("metadata")
    if not isinstance(data, dict) or not isinstance(data.get(RESULT_MIME), dict):
        return None
    metadata = metadata if isinstance(metadata, dict) else {}
    return {"data": data, "metadata": metadata, "cell": entry["cell"]}


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
