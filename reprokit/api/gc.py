"""``gc``: prune old run folders and the stored copies nobody links any more.

What is kept and why is :mod:`reprokit.recording.retention`'s: the last ``keep`` runs of each
notebook, every run a lock names, every folder still being written or waiting to be synced;
nothing at all while a lock cannot be read. MLflow's runs and artifacts are never touched; the
temporary copies that creations of the project's SQLite store killed midway left beside it go
(:mod:`reprokit.recording.store`), and so do the logs of background writers that died after
their journal was gone (:mod:`reprokit.recording.handoff`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from reprokit.exceptions import UsageError
from reprokit.recording.handoff import remove_stale_writer_logs, stale_writer_logs
from reprokit.recording.retention import DEFAULT_KEEP, GcResult, collect, plan_gc, project_of
from reprokit.recording.store import remove_stale_creations, stale_creations
from reprokit.recording.target import resolve_target, sqlite_path

__all__ = ["DEFAULT_KEEP", "gc"]


def gc(
    start: str | os.PathLike[str] = ".", *, keep: int = DEFAULT_KEEP, dry_run: bool = False
) -> GcResult:
    """Delete the project's run folders beyond the last ``keep`` per notebook (see the module
    docstring), then unreferenced objects; with ``dry_run`` only say what would go. Raises
    :class:`~reprokit.exceptions.UsageError` for a negative ``keep`` and, before removing
    anything, :class:`~reprokit.exceptions.LockError` for a lock of the project that cannot be
    read (it may name any run)."""
    if keep < 0:
        raise UsageError(f"--keep must be 0 or more, got {keep}", option="--keep")
    root = project_of(Path(start))
    result = plan_gc(root, keep) if dry_run else collect(root, keep)
    if dry_run:
        leftovers = sum(size for _, size in stale_writer_logs(root))
    else:
        leftovers = remove_stale_writer_logs(root)
    database = _project_store(root)
    if database is not None and dry_run:
        leftovers += sum(size for _, size in stale_creations(database))
    elif database is not None:
        leftovers += remove_stale_creations(database)
    return dataclasses.replace(result, bytes_freed=result.bytes_freed + leftovers)


def _project_store(root: Path) -> Path | None:
    """The SQLite store the project records to; None for another kind, or a ``pyproject.toml``
    that cannot be read (which gc, touching no store, does not need)."""
    try:
        return sqlite_path(resolve_target(start=root).uri)
    except UsageError:
        return None
