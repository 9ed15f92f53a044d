"""What a diff found: two :class:`Side` objects (each read from a lock, a notebook, an MLflow
run or the environment now) and the :class:`~reprokit.compare.verify.Verdict` of the second
against the first. Built by :func:`reprokit.api.diff.diff`; formatted by
:mod:`reprokit.report.diff`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reprokit._version import __version__
from reprokit.capturing.model import DataManifest, Snapshot
from reprokit.compare.verify import Verdict
from reprokit.recording.lock_model import (
    LOCK_SCHEMA_VERSION,
    CellSource,
    Lock,
    LockParameters,
    NotebookSource,
)
from reprokit.results.model import Result

__all__ = ["Diff", "Side"]


@dataclass(frozen=True)
class Side:
    """One side of a diff, whatever it was read from."""

    label: str  # what to call it: the path, "MLflow run <id>", "current environment"
    kind: str  # "lock" | "notebook" | "run" | "environment"
    snapshot: Snapshot | None
    results: dict[str, Result] = field(default_factory=dict)
    base: Path | None = None  # folder that by-reference arrays are relative to
    device: str = "cpu"
    data: DataManifest | None = None
    lock: Lock | None = None
    project_root: Path | None = None
    # the notebook's source, per cell (as a lock records it); None where it is not known
    cells: tuple[CellSource, ...] | None = None

    def as_lock(self) -> Lock:
        """This side as a reference for :func:`verify_results`."""
        if self.lock is not None:
            return self.lock
        return Lock(
            schema_version=LOCK_SCHEMA_VERSION,
            reprokit_version=__version__,
            created_at="",
            notebook=NotebookSource(self.label, ""),
            parameters=LockParameters(device=self.device.split(":", 1)[0]),
            results=self.results,
            snapshot=self.snapshot,
            data=self.data,
        )


@dataclass(frozen=True)
class Diff:
    a: Side
    b: Side
    verdict: Verdict

    @property
    def results_compared(self) -> bool:
        return self.b.kind != "environment"

    @property
    def differs(self) -> bool:
        """Anything at all: a result beyond tolerance, an environment change, a data change,
        a notebook cell whose source differs (the environment diff's notes do not count)."""
        env = self.verdict.env_diff
        return (
            (self.results_compared and not self.verdict.reproduced)
            or (env is not None and not env.is_empty)
            or not self.verdict.data_ok
            or bool(self.verdict.source_changes)
        )

    @property
    def nothing_compared(self) -> bool:
        """Neither results, environment nor data could be compared: "no difference" would
        say nothing (a run without a snapshot against the environment now, say)."""
        results = self.results_compared and bool(self.verdict.checks)
        data = self.verdict.data is not None and bool(self.verdict.data.entries)
        return not (results or self.verdict.env_diff is not None or data)
