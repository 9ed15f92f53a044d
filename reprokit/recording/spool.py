"""The results a kernel displays, also kept on disk as it displays them, under a runner.

A result's output can miss the executed notebook: a kernel that dies in the cell that
declared it (``os._exit``, the out-of-memory killer, a crash in C code) may not have sent it
yet (the message waits on the kernel's I/O thread); ``clear_output()`` later in the cell (a
training loop's progress) erases it; ``%%capture`` keeps it from being shown. Under
``reprokit run``, ``$REPROKIT_RESULTS_SPOOL`` names a file beside the executed notebook
(:func:`spool_path`); the kernel appends each result's output to it as one JSON line with
the cell's execution count, before displaying it (not ``fsync``'ed: what a dead process
wrote is in the page cache), and the runner puts those that are not in the notebook back
into their cells, in the order they were declared
(:func:`~reprokit.runner._outputs.finish_output`), then deletes the file. The file is the
user's only (mode 0600): it holds the values before secret parameters are scrubbed from them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from reprokit._serde import compact_json
from reprokit.results.model import RESULT_MIME

SPOOL_ENV = "REPROKIT_RESULTS_SPOOL"
MAX_SPOOL_BYTES = 256 * 1024 * 1024  # a larger spool is not read back (the notebook stands)


def spool_path(output: Path) -> Path:
    """Where the kernel that writes the executed notebook ``output`` keeps its results."""
    return output.with_name(output.stem + ".results.jsonl")


def append_output(
    bundle: dict[str, Any], metadata: dict[str, Any], execution_count: int | None = None
) -> None:
    """Append one result's display output to the spool, when a runner asked for one
    (``execution_count``: of the cell that declares it); a spool that cannot be written is
    skipped (the displayed output is the record)."""
    path = os.environ.get(SPOOL_ENV)
    if not path:
        return
    entry = {"data": bundle, "metadata": metadata, "execution_count": execution_count}
    line = compact_json(entry)
    if line is None:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        os.write(fd, line + b"\n")
    except OSError:
        pass
    finally:
        os.close(fd)


def read_spool(path: Path) -> list[dict[str, Any]]:
    """The result outputs in ``path``, in order: each ``{"data", "metadata",
    "execution_count"}`` (an int or None); a line that
    is not one (the last, cut as the kernel died) is skipped. Empty when there is no spool,
    it is not a regular file or it is larger than :data:`MAX_SPOOL_BYTES`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as handle:
        stat = os.fstat(handle.fileno())
        if not _regular(stat.st_mode) or stat.st_size > MAX_SPOOL_BYTES:
            return []
        lines = handle.read().splitlines()
    return [entry for entry in map(_entry, lines) if entry is not None]


def _regular(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode)


def _entry(line: bytes) -> dict[str, Any] | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict):
        return None
    data, metadata = entry.get("data"), entry.get("metadata")
    if not isinstance(data, dict) or not isinstance(data.get(RESULT_MIME), dict):
        return None
    count = entry.get("execution_count")
    count = count if isinstance(count, int) and not isinstance(count, bool) else None
    metadata = metadata if isinstance(metadata, dict) else {}
    return {"data": data, "metadata": metadata, "execution_count": count}
