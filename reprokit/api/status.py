"""``status``: how much disk the project's runs, stored objects and journals use."""

from __future__ import annotations

import os
from pathlib import Path

from reprokit.recording.retention import DiskUsage, disk_usage, project_of

__all__ = ["disk_status"]


def disk_status(start: str | os.PathLike[str] = ".") -> DiskUsage:
    """Bytes under the project's ``.reprokit/`` (each file counted once, however many hard
    links share it), run folders and stored objects."""
    return disk_usage(project_of(Path(start)))
