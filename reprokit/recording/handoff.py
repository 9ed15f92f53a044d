"""The background writer process: a run's journal finished in MLflow after its kernel moved on.

``%repro end`` must not wait for MLflow (its import and store set-up alone take seconds). When
the session's recorder thread has not finished within a short grace, the session hands the run
over: the thread stops sending to MLflow (it finishes the operation it is in, runs the local file
writes still queued, then releases the journal's ``flock``), and :func:`spawn_writer` starts
``python -m reprokit.recording.handoff_main <journal>`` (:mod:`~reprokit.recording.handoff_main`)
in a session of its own, which outlives the kernel. That process imports MLflow, waits for the
journal's lock (so it is the only writer of the journal, and the kernel's thread has stopped),
replays the journal into MLflow (idempotent: see :mod:`reprokit.recording.replay`) and closes
the run with its status. It writes what it did
to ``<journal>.writer.log`` beside the journal, removed when the run reached MLflow; a writer
that gives up (the store refuses the run, or cannot be reached) writes why on a line of its own
(:func:`writer_failure` reads it back).

Nothing is lost if the writer dies: the journal stays until the run is in MLflow, and the next
``reprokit sync``, session or runner connecting to the store replays it. :func:`wait_for_writers`
(``reprokit sync --wait``, ``reprokit.flush()`` after ``end``) waits for these writers;
:func:`failed_writers` lists the journals they left.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from reprokit._fsutil import locked_by_another
from reprokit.recording.journal import (
    SUFFIX,
    Journal,
    journal_folder,
    pending_journals,
    waiting,
)
from reprokit.recording.target import TrackingTarget

URI_ENV = "REPROKIT_WRITER_URI"  # the tracking URI, credentials included: not on the command line
WRITER_ATTEMPTS = 3  # a replay that failed (a busy store under load) is tried again
LOCK_WAIT_S = 600.0  # how long the writer waits for the kernel's thread to let go
POLL_S = 0.02
FAILED_MARK = "writer failed: "  # a log line saying why the writer left the journal
LOG_SUFFIX = ".writer.log"  # the writer's log: <journal>.writer.log


def writer_log(journal: Path) -> Path:
    return journal.with_name(journal.name + LOG_SUFFIX)


def spawn_writer(journal: Path, target: TrackingTarget) -> None:
    """Start the detached writer of ``journal``; ``OSError`` propagates (the journal then waits
    for the next ``reprokit sync``).

    The writer's log is ``flock``ed here and given to the writer as its output: the writer
    holds that lock from its first instant until it exits, which is how
    :func:`wait_for_writers` knows it is still at work (and that it died, if it did)."""
    env = {**os.environ, URI_ENV: target.uri}
    fd = os.open(writer_log(journal), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        subprocess.Popen(
            [sys.executable, "-m", "reprokit.recording.handoff_main", str(journal)],
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            cwd=target.project_root,
            env=env,
            start_new_session=True,  # not stopped with the kernel's process group
            close_fds=True,
        )
    finally:
        os.close(fd)


def _adopt(path: Path, deadline: float) -> Journal | None:
    """The journal, locked; None when it is gone (finished meanwhile) or the wait ran out."""
    while path.exists():
        journal = Journal.adopt(path)
        if journal is not None:
            return journal
        if time.monotonic() > deadline:
            return None
        time.sleep(POLL_S)
    return None


def write_journal(path: Path, uri: str) -> str:
    """Replay one journal into MLflow once its owner let go; a line saying what happened."""
    from reprokit.recording.replay import replay_adopted
    from reprokit.recording.target import resolve_target
    from reprokit.recording.writer import MlflowRunWriter

    writer = MlflowRunWriter(resolve_target(start=Path.cwd(), tracking_uri=uri))
    writer.connect(catch_up=False)  # MLflow imported while the kernel's thread winds down
    journal = _adopt(path, time.monotonic() + LOCK_WAIT_S)
    if journal is None:
        return f"{path}: not written (finished elsewhere, or still locked after {LOCK_WAIT_S} s)"
    try:
        replay = replay_adopted(journal, writer)
    finally:
        journal.release()
    if replay.status in ("failed", "unreadable", "startless"):  # kept for `reprokit sync`
        return f"{path}: {FAILED_MARK}{replay.detail or replay.status}"
    ended = f"{replay.run_status or ''} {replay.detail or ''}".strip()
    return f"{path}: {replay.status} run {replay.run_id} {ended}"


def _main(argv: list[str]) -> int:
    path, uri = Path(argv[1]), os.environ.pop(URI_ENV, "")
    print(f"{path}: writer process {os.getpid()} started", flush=True)
    for attempt in range(1, WRITER_ATTEMPTS + 1):
        try:
            line = write_journal(path, uri)
            break
        except Exception as exc:  # logged; tried again (replay is idempotent), else left
            print(f"{path}: {FAILED_MARK}{_reason(exc)}", flush=True)
            if attempt == WRITER_ATTEMPTS:  # the journal stays for `reprokit sync`
                return 1
            time.sleep(attempt)
    print(line, flush=True)
    if not path.exists():  # the run reached MLflow: nothing worth keeping in the log
        with contextlib.suppress(OSError):
            writer_log(path).unlink()
    return 0


def _reason(exc: Exception) -> str:
    """The first line of ``exc`` (a RecordError's names the store and what failed already)."""
    from reprokit.exceptions import RecordError

    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    return line if isinstance(exc, RecordError) and line else f"{type(exc).__name__}: {line}"


def writer_failure(journal: Path) -> str | None:
    """Why the writer of ``journal`` left it: its last failure, one line, credentials redacted;
    None when its log says nothing of the kind (a writer killed, one still at work)."""
    from reprokit.capturing.redact import redact_text

    try:
        text = writer_log(journal).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    reasons = [line.split(FAILED_MARK, 1)[1] for line in text.splitlines() if FAILED_MARK in line]
    return redact_text(reasons[-1].strip()) if reasons else None


@dataclass(frozen=True)
class WriterFailure:
    """A journal whose background writer ended without the run reaching MLflow."""

    journal: str
    reason: str | None  # :func:`writer_failure`


def failed_writers(project_root: str | os.PathLike[str]) -> list[WriterFailure]:
    """The journals of the project that a background writer was started for and left: it is
    no longer at work, and the run is not in MLflow (``reprokit sync`` records it)."""
    return [
        WriterFailure(str(path), writer_failure(path))
        for path in pending_journals(project_root)
        if writer_log(path).exists() and not writing(path) and waiting(path)
    ]


def writing(journal: Path) -> bool:
    """A writer process is at work on ``journal`` (it holds its log's lock)."""
    return locked_by_another(writer_log(journal))


def remove_writer_log(journal: Path) -> int:
    """Delete the log of ``journal``'s background writer once the journal is gone (its run is
    in MLflow, or it held nothing) and no writer is at work on it (a live one removes its own
    log as it ends); the bytes freed. A writer killed before it could do so left it."""
    log = writer_log(journal)
    if journal.exists() or writing(journal):
        return 0
    try:
        size = log.lstat().st_size
        log.unlink()
    except OSError:  # none (the usual case), or not this user's to delete
        return 0
    return size


def stale_writer_logs(project_root: str | os.PathLike[str]) -> list[tuple[Path, int]]:
    """The writer logs of the project whose journal is gone and whose writer is not at work
    (:func:`remove_writer_log` removes them), with their sizes."""
    folder = journal_folder(project_root)
    found: list[tuple[Path, int]] = []
    for log in sorted(folder.glob(f"*{SUFFIX}{LOG_SUFFIX}")) if folder.is_dir() else ():
        journal = log.with_name(log.name.removesuffix(LOG_SUFFIX))
        with contextlib.suppress(OSError):
            st = log.lstat()
            if stat.S_ISREG(st.st_mode) and not journal.exists() and not writing(journal):
                found.append((log, st.st_size))
    return found


def remove_stale_writer_logs(project_root: str | os.PathLike[str]) -> int:
    """Delete :func:`stale_writer_logs`; the bytes freed."""
    return sum(
        remove_writer_log(log.with_name(log.name.removesuffix(LOG_SUFFIX)))
        for log, _ in stale_writer_logs(project_root)
    )


def wait_for_writers(
    project_root: str | os.PathLike[str], timeout: float, journals: Iterable[Path] | None = None
) -> bool:
    """Wait until no writer process works on ``journals`` (default: every journal of the
    project): each run is in MLflow, or its writer died (``reprokit sync`` replays it). False
    when ``timeout`` seconds passed first."""
    waiting = list(journals if journals is not None else pending_journals(project_root))
    deadline = time.monotonic() + timeout
    while True:
        waiting = [p for p in waiting if p.exists() and writing(p)]
        if not waiting:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S * 5)


if __name__ == "__main__":  # the command is handoff_main's (run as is, runpy warns)
    sys.exit(_main(sys.argv))
