"""The run journal: every record event, on disk before MLflow sees it.

``<project root>/.reprokit/journal/<run key>.jsonl``, one JSON object per line, appended
synchronously by whoever records (the session of a live notebook, the runner): start
(experiment, tracking URI without credentials, run name, tags, params), params/tags/metrics,
declared results (each as it goes into ``results.json``: arrays by reference to their sidecar
file, written when declared; its metric with it), dataset inputs, the folder uploaded as
artifacts, failed or interrupted cells, end (status).
MLflow's writer adds ``opened`` (the run id, once MLflow created the run) and ``synced`` (the
run reached MLflow and was closed), after which the journal is deleted. The runner opens a
run's journal as its notebook starts (start, params, tags, its output folder: not uploaded
from there, never scrubbed) and appends the whole run once the notebook is done: a later
``start`` sets the run's name and start time again, and tags and params merge.

The process that records holds an exclusive ``flock`` on its journal until it is synced, so a
journal that can be locked by someone else belongs to a process that is gone: the next command
that opens the store replays it (:mod:`reprokit.recording.replay`). A last line cut short by a
kill is ignored; any other line that cannot be read is counted (and reported by the
replay). Nothing here imports MLflow: an append costs a ``write`` (which a killed
process cannot lose) and, for all but the frequent ``log`` events of a live run, an ``fsync``
(a crash of the machine cannot lose it either); ``log`` events are fsync'ed by the background
writer after each batch.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reprokit._fsutil import atomic_write_text

JOURNAL_DIR = "journal"
JOURNAL_TAG = "reprokit.journal"  # the MLflow tag naming the journal a run was written from
SUFFIX = ".jsonl"


def journal_folder(project_root: str | os.PathLike[str]) -> Path:
    return Path(project_root) / ".reprokit" / JOURNAL_DIR


class Journal:
    """An open journal, locked by this process until :meth:`finish` (or the process's end)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.key = path.name.removesuffix(SUFFIX)
        self._fd = fd
        self._closed = False

    @classmethod
    def create(cls, project_root: str | os.PathLike[str]) -> Journal:
        """A fresh, locked journal; ``OSError`` propagates (the caller goes on without one)."""
        folder = journal_folder(project_root)
        folder.mkdir(parents=True, exist_ok=True)
        ignore = folder.parent / ".gitignore"
        if not ignore.exists():
            atomic_write_text(ignore, "*\n")
        key = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)
        path = folder / f"{key}{SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return cls(path, fd)

    @classmethod
    def adopt(cls, path: Path) -> Journal | None:
        """Lock a journal left by another process; None when its owner (or a replay) holds it
        or it is gone. ``OSError`` for one that cannot be opened for writing (another user's,
        an immutable file, a read-only mount): the caller names it."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        if not path.exists():  # finished and deleted while we waited for the lock
            os.close(fd)
            return None
        return cls(path, fd)

    def append(self, event: str, /, durable: bool = True, **fields: Any) -> None:
        """One event, written (a killed process loses nothing) when this returns, and fsync'ed
        unless ``durable`` is False: then :meth:`sync` follows soon, off the caller's thread
        (results declared in a loop must not wait for the disk). Nothing once finished."""
        if self._closed:
            return
        line = json.dumps({"event": event, **fields}, sort_keys=True, default=str) + "\n"
        data = line.encode("utf-8")
        end = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            if os.write(self._fd, data) != len(data):  # a disk that filled up meanwhile
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            with contextlib.suppress(OSError):  # no cut line for the next event to follow
                os.ftruncate(self._fd, end)
            raise
        if durable:
            os.fsync(self._fd)

    def sync(self) -> None:
        """fsync what was appended (the background writer calls it after each batch)."""
        if not self._closed:
            with contextlib.suppress(OSError):  # released meanwhile: nothing left to sync
                os.fsync(self._fd)

    def write(self, state: JournalState) -> None:
        """Append everything ``state`` holds (a run recorded at once, by the runner)."""
        for event, fields in state.events():
            self.append(event, **fields)

    def finish(self) -> None:
        """The run reached MLflow: mark it synced, delete the journal, release the lock. A
        journal that cannot be deleted (its folder made read-only meanwhile) is left, marked
        synced: a replay then finds nothing to do, and deletes it once it can."""
        if self._closed:
            return
        with contextlib.suppress(OSError):  # unmarked: a replay continues the run it opened
            self.append("synced")
        with contextlib.suppress(OSError):
            self.path.unlink()
        self.release()

    def discard(self) -> OSError | None:
        """Nothing (more) to record: delete the journal without marking it, release the lock;
        why it could not be deleted, if it could not."""
        if self._closed:
            return None
        failure = None
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            failure = exc
        self.release()
        return failure

    def release(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._fd)


@dataclass
class JournalState:
    """What a journal holds, folded into one run."""

    path: Path
    experiment: str | None = None
    uri: str | None = None
    run_name: str | None = None
    start_ms: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: list[tuple[str, float, int, int]] = field(default_factory=list)
    datasets: list[dict[str, str]] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)  # name -> encoded Result, latest wins
    uploads: dict[str, str] = field(default_factory=dict)  # artifact path -> folder
    folder: str | None = None  # where the run's files are written (not uploaded from here)
    cell_errors: int = 0
    interrupted: bool = False
    status: str | None = None  # from the end event
    end_ms: int | None = None
    run_id: str | None = None
    synced: bool = False
    events_read: int = 0  # lines that were journal events
    unreadable: int = 0  # lines that were not (a torn last line, cut short by a kill, not counted)
    torn: bool = False  # the last line was cut short (no newline after it) and skipped

    @property
    def key(self) -> str:
        return self.path.name.removesuffix(SUFFIX)

    @property
    def startless(self) -> bool:
        """It holds events but no start (its first line damaged or deleted): it cannot be
        replayed, for the start names the run's experiment, store and params; it is kept."""
        return self.experiment is None and self.events_read > 0 and not self.synced

    def events(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """The events that record this state again (what :meth:`Journal.write` appends)."""
        start = {"experiment": self.experiment, "uri": self.uri, "run_name": self.run_name}
        start |= {"folder": self.folder} if self.folder else {}
        yield "start", start | {"start_ms": self.start_ms, "tags": self.tags}
        yield "log", {"params": self.params, "metrics": self.metrics}
        for name, encoded in self.results.items():
            yield "result", {"name": name, "result": encoded, "metrics": []}
        if self.datasets:
            yield "datasets", {"specs": self.datasets}
        for artifact_path, folder in self.uploads.items():
            yield "upload", {"artifact_path": artifact_path, "folder": folder}
        if self.status is not None:
            yield "end", {"status": self.status, "end_ms": self.end_ms}

    def final_status(self) -> str:
        """The end event's status; else (the process died) FAILED after a failed cell, KILLED."""
        if self.status is not None:
            return self.status
        return "FAILED" if self.cell_errors and not self.interrupted else "KILLED"

    def last_change(self) -> int | None:
        """When the run's process last wrote anything, in ms (the end time of a run whose
        process died without an end event): the journal's or a file's directly in its folder
        or in a folder to upload, whichever changed last; None if none can be read."""
        places = [Path(f) for f in (self.folder, *self.uploads.values()) if f]
        stamps = [_mtime(self.path), *(_mtime(e) for p in places for e in _entries(p))]
        known = [stamp for stamp in stamps if stamp is not None]
        return max(known) if known else None


def read_journal(path: Path) -> JournalState:
    """Fold the journal's events. A last line cut short by a kill (no newline after it) is
    skipped silently; any other line that is not a JSON object is skipped and counted in
    ``unreadable``. ``OSError`` and ``UnicodeDecodeError`` propagate (the caller names the
    journal)."""
    state = JournalState(path)
    text = path.read_bytes().decode("utf-8")
    lines = text.splitlines()
    torn = len(lines) - 1 if text and not text.endswith("\n") else -1
    for k, line in enumerate(lines):
        try:
            event = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            event = ...
        if isinstance(event, dict):
            state.events_read += 1
            with contextlib.suppress(KeyError, TypeError, ValueError):  # a foreign line
                _apply(state, event)
        elif event is not None and k == torn:
            state.torn = True
        elif event is not None:
            state.unreadable += 1
    return state


def _apply(state: JournalState, event: dict[str, Any]) -> None:
    kind = event.get("event")
    if kind == "start":
        state.experiment, state.uri = event.get("experiment"), event.get("uri")
        state.run_name, state.start_ms = event.get("run_name"), int(event.get("start_ms", 0))
        state.folder = str(event["folder"]) if event.get("folder") else state.folder
    if kind in ("start", "log"):
        state.tags |= dict(event.get("tags") or {})
        state.params |= dict(event.get("params") or {})
    if kind in ("start", "log", "result"):
        state.metrics += [_metric(m) for m in event.get("metrics") or ()]
    if kind == "result":
        state.results[str(event["name"])] = dict(event["result"])
    elif kind == "datasets":
        state.datasets += list(event.get("specs") or ())
    elif kind == "upload":
        state.uploads[str(event["artifact_path"])] = str(event["folder"])
    elif kind == "cell":
        state.interrupted |= event.get("error") == "interrupted"
        state.cell_errors += event.get("error") == "failed"
    elif kind == "end":
        state.status, state.end_ms = str(event["status"]), event.get("end_ms")
    elif kind == "opened":
        state.run_id = str(event["run_id"])
    elif kind == "synced":
        state.synced = True


def _mtime(path: Path) -> int | None:
    try:
        return path.lstat().st_mtime_ns // 1_000_000
    except OSError:
        return None


def _entries(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError:
        return []


def _metric(raw: Any) -> tuple[str, float, int, int]:
    key, value, stamp, step = raw
    return str(key), float(value), int(stamp), int(step)


def waiting(path: Path) -> bool:
    """Whether the journal at ``path`` still holds a run MLflow lacks: not marked synced (a
    journal that can no longer be read counts as waiting: it is not known to be done; one that
    is gone does not: it was done and deleted)."""
    try:
        return not read_journal(path).synced
    except FileNotFoundError:
        return False
    except (OSError, UnicodeDecodeError):
        return True


def startless(path: Path) -> bool:
    """Whether the journal at ``path`` holds events but no start (:attr:`JournalState.startless`);
    False for one that cannot be read (or is gone)."""
    try:
        return read_journal(path).startless
    except (OSError, UnicodeDecodeError):
        return False


def pending_journals(project_root: str | os.PathLike[str]) -> Iterator[Path]:
    """Every journal of the project, oldest first (whether its owner is alive is not known)."""
    folder = journal_folder(project_root)
    if folder.is_dir():  # regular files only: a folder or a FIFO named so is not a journal
        yield from sorted(p for p in folder.glob(f"*{SUFFIX}") if _is_regular(p))


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False
