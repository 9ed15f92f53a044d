"""``reprokit sync``: replay the run journals that processes left behind into MLflow.

Every record reaches a journal under ``<project root>/.reprokit/journal/`` before MLflow (see
:mod:`reprokit.recording.journal`); a kernel killed before its background writer finished
leaves one. Any later connection to the store completes those runs; this verb does it on
demand and says what it did, one :class:`~reprokit.recording.replay.Replay` per journal. It
opens the store like any command does, so a half-made SQLite store is repaired (or refused, see
:mod:`reprokit.recording.store`); a missing one is created only when a journal waits for it.
The temporary copies that store creations killed midway left beside it are removed, and so
is the log of a background writer once its journal is gone (the run reached MLflow).
"""

from __future__ import annotations

import os
from pathlib import Path

from reprokit.recording.handoff import remove_stale_writer_logs, wait_for_writers
from reprokit.recording.journal import pending_journals as pending
from reprokit.recording.replay import Replay, replay_pending
from reprokit.recording.retention import project_of
from reprokit.recording.store import remove_stale_creations
from reprokit.recording.target import resolve_target, sqlite_path
from reprokit.recording.writer import MlflowRunWriter

__all__ = ["sync"]


def sync(
    start: str | os.PathLike[str] = ".",
    *,
    tracking_uri: str | None = None,
    wait: float | None = None,
) -> list[Replay]:
    """Replay every pending journal of the project around ``start`` into its store.

    The store is the one ``start`` resolves to (``tracking_uri`` overrides it); a journal
    recorded for another store is listed as ``elsewhere`` and kept. With ``wait``, first wait
    up to that many seconds for the background writers that ``end`` started
    (:mod:`reprokit.recording.handoff`): then every ended run is in MLflow when this returns.
    Raises :class:`~reprokit.exceptions.RecordError` when the store cannot be opened,
    :class:`~reprokit.exceptions.PathError` when ``start`` is not a folder.
    """
    project_of(Path(start))  # a mistyped path must not read as "nothing to replay"
    target = resolve_target(start=Path(start), tracking_uri=tracking_uri)
    if wait is not None:
        wait_for_writers(target.project_root, wait)
    remove_stale_writer_logs(target.project_root)  # of writers killed after their run's end
    database = sqlite_path(target.uri)
    if database is not None:
        remove_stale_creations(database)  # temporary stores of creators killed meanwhile
    if database is not None and not database.exists() and not any(pending(target.project_root)):
        return []  # nothing to replay, and no store to make where there was none
    writer = MlflowRunWriter(target)
    writer.connect(catch_up=False)
    return replay_pending(writer)
