"""Record stage: the MLflow run (the only package that imports MLflow, lazily) and the run's
local folder. Importing it imports neither MLflow nor numpy."""

from __future__ import annotations

from reprokit.exceptions import RecordError
from reprokit.recording.folder import RunFolder
from reprokit.recording.recorded_run import RecordedRun, RunStatus
from reprokit.recording.target import TrackingTarget, find_project_root, resolve_target
from reprokit.recording.worker import BackgroundRecorder

__all__ = [
    "BackgroundRecorder",
    "RecordError",
    "RecordedRun",
    "RunFolder",
    "RunStatus",
    "TrackingTarget",
    "find_project_root",
    "resolve_target",
]
