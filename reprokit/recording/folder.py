"""The run's local folder: what is uploaded, in one call, as the MLflow artifacts ``reprokit/``.

Layout (``<project root>/.reprokit/runs/<UTC time>-<6 hex>/``, or under ``$REPROKIT_OUTPUT_DIR``
when a runner sets it)::

    snapshot.json      the Snapshot taken at start
    requirements.txt   name==version of every installed distribution
    git.diff           `git diff HEAD` when the work tree was dirty
    data.json          the DataManifest of every input declared (start and %repro data)
    seeds.json         every SeedRecord, in order
    results.json       every Result, by name (written at end; by the replay of a run whose
                       process died before it, from the results its journal holds)
    run.json           tracking URI (redacted), experiment and MLflow run id once known
    arrays/            arrays too large to travel inside the notebook (.npy / .json)

Every file is written atomically. ``.reprokit/`` gets a ``.gitignore`` of ``*`` so a run never
makes the work tree dirty.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from reprokit._fsutil import atomic_write_bytes, atomic_write_text, write_then_name
from reprokit.recording.retention import ACTIVE_SUFFIX, ARRAYS, hold_marker, release_marker

OUTPUT_DIR_ENV = "REPROKIT_OUTPUT_DIR"
ARTIFACT_PATH = "reprokit"
RESULTS_FILE = "results.json"


class RunFolder:
    """A run's local folder; also the :class:`~reprokit.results.arrays.ArrayWriter` of results."""

    def __init__(self, path: Path, marker: Path | None = None) -> None:
        self.path = path
        self._marker = marker
        self._marker_fd = None if marker is None else hold_marker(marker)

    def release(self) -> None:
        """The run is written: ``reprokit gc`` may consider its folder (see
        :mod:`~reprokit.recording.retention`)."""
        if self._marker is not None:
            release_marker(self._marker, self._marker_fd)
            self._marker = self._marker_fd = None

    @classmethod
    def create(cls, project_root: str | os.PathLike[str]) -> RunFolder:
        """Make a fresh folder; ``OSError`` propagates (the caller decides to go on without)."""
        base = os.environ.get(OUTPUT_DIR_ENV)
        if base:
            runs = Path(base)
        else:
            hidden = Path(project_root) / ".reprokit"
            hidden.mkdir(exist_ok=True)
            ignore = hidden / ".gitignore"
            if not ignore.exists():
                atomic_write_text(ignore, "*\n")
            runs = hidden / "runs"
        key = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
        path = runs / key
        # a runner's folder is marked by the runner; a session's from before it exists (gc
        # never sees it unmarked) until its end
        folder = cls(path, None if base else path.with_name(key + ACTIVE_SUFFIX))
        try:
            path.mkdir(parents=True)
        except BaseException:
            folder.release()
            raise
        return folder

    def write_text(self, name: str, text: str) -> Path:
        return self.write_bytes(name, text.encode("utf-8"))

    def write_bytes(self, name: str, data: bytes) -> Path:
        target = self.path / name
        atomic_write_bytes(target, data)
        return target

    def write_array(self, stem: str, suffix: str, payload: bytes) -> tuple[str, str, str]:
        folder = self.path / ARRAYS
        folder.mkdir(exist_ok=True)
        relative = f"{ARRAYS}/{stem}{suffix}"
        atomic_write_bytes(self.path / relative, payload)
        return relative, str(self.path), f"{ARTIFACT_PATH}/{relative}"

    def write_array_with(
        self, suffix: str, fill: Callable[[BinaryIO], str]
    ) -> tuple[str, str, str]:
        folder = self.path / ARRAYS
        folder.mkdir(exist_ok=True)
        written = write_then_name(folder, lambda handle: fill(handle) + suffix)
        relative = f"{ARRAYS}/{written.name}"
        return relative, str(self.path), f"{ARTIFACT_PATH}/{relative}"
