"""``gc``: prune old run folders and the stored copies nobody links any more.

What is kept and why is :mod:`reprokit.recording.retention`'s: the last ``keep`` runs of each
notebook, every run a lock names, every folder still being written or waiting to be synced.
MLflow's runs and artifacts are never touched.
"""

from __future__ import annotations

import os
from pathlib import Path

from reprokit.exceptions import UsageError
from reprokit.recording.retention import DEFAULT_KEEP, GcResult, collect, plan_gc, project_of

__all__ = ["DEFAULT_KEEP", "gc"]


def gc(
    start: str | os.PathLike[str] = ".", *, keep: int = DEFAULT_KEEP, dry_run: bool = False
) -> GcResult:
    """Delete the project's run folders beyond the last ``keep`` per notebook (see the module
    docstring), then unreferenced objects; with ``dry_run`` only say what would go. Raises
    :class:`~reprokit.exceptions.UsageError` for a negative ``keep``."""
    if keep < 0:
        raise UsageError(f"--keep must be 0 or more, got {keep}", option="--keep")
    root = project_of(Path(start))
    return plan_gc(root, keep) if dry_run else collect(root, keep)
