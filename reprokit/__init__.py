"""reprokit: make a notebook's results checkable.

The public API is re-exported here and loaded lazily, so ``import reprokit`` (and the
``reprokit hash`` / ``reprokit env`` commands) stay fast: nothing heavy (MLflow,
papermill, torch, numpy) is imported until a function that needs it is called.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from reprokit._version import __version__

if TYPE_CHECKING:
    from reprokit.api.calibrate import Calibration, calibrate
    from reprokit.api.diff import diff
    from reprokit.api.record import RecordOutcome, record
    from reprokit.api.run import run
    from reprokit.api.session import data, device, end, env, flush, result, seed, start, status
    from reprokit.api.verify import Verification, VerifyOutcome, verify
    from reprokit.capturing.hashing import hash_path, hash_paths
    from reprokit.capturing.model import (
        AcceleratorInfo,
        DataEntry,
        DataManifest,
        GitInfo,
        SeedRecord,
        Snapshot,
    )
    from reprokit.capturing.seeds import seed_everything
    from reprokit.capturing.snapshot import capture
    from reprokit.capturing.values import hash_value
    from reprokit.compare.diff import Diff
    from reprokit.compare.verify import Verdict
    from reprokit.exceptions import ReprokitError, ReprokitWarning
    from reprokit.magics import load_ipython_extension, unload_ipython_extension
    from reprokit.options import ComparisonOptions, ExecutionOptions, RepeatOptions
    from reprokit.recording.recorded_run import RunStatus
    from reprokit.results.model import Result
    from reprokit.results.notebook import read_notebook
    from reprokit.runner.plan import RunOutcome

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "AcceleratorInfo": "reprokit.capturing.model",
    "Calibration": "reprokit.api.calibrate",
    "calibrate": "reprokit.api.calibrate",
    "RepeatOptions": "reprokit.options",
    "ComparisonOptions": "reprokit.options",
    "ExecutionOptions": "reprokit.options",
    "Diff": "reprokit.compare.diff",
    "RecordOutcome": "reprokit.api.record",
    "RunOutcome": "reprokit.runner.plan",
    "Verdict": "reprokit.compare.verify",
    "Verification": "reprokit.api.verify",
    "VerifyOutcome": "reprokit.api.verify",
    "diff": "reprokit.api.diff",
    "record": "reprokit.api.record",
    "run": "reprokit.api.run",
    "verify": "reprokit.api.verify",
    "DataEntry": "reprokit.capturing.model",
    "DataManifest": "reprokit.capturing.model",
    "GitInfo": "reprokit.capturing.model",
    "ReprokitError": "reprokit.exceptions",
    "ReprokitWarning": "reprokit.exceptions",
    "SeedRecord": "reprokit.capturing.model",
    "Snapshot": "reprokit.capturing.model",
    "Result": "reprokit.results.model",
    "RunStatus": "reprokit.recording.recorded_run",
    "capture": "reprokit.capturing.snapshot",
    "data": "reprokit.api.session",
    "env": "reprokit.api.session",
    "flush": "reprokit.api.session",
    "read_notebook": "reprokit.results.notebook",
    "seed": "reprokit.api.session",
    "device": "reprokit.api.session",
    "end": "reprokit.api.session",
    "hash_path": "reprokit.capturing.hashing",
    "hash_paths": "reprokit.capturing.hashing",
    "hash_value": "reprokit.capturing.values",
    "load_ipython_extension": "reprokit.magics",
    "result": "reprokit.api.session",
    "seed_everything": "reprokit.capturing.seeds",
    "start": "reprokit.api.session",
    "status": "reprokit.api.session",
    "unload_ipython_extension": "reprokit.magics",
}

__all__ = [
    "AcceleratorInfo",
    "Calibration",
    "ComparisonOptions",
    "DataEntry",
    "DataManifest",
    "Diff",
    "ExecutionOptions",
    "GitInfo",
    "RecordOutcome",
    "RepeatOptions",
    "ReprokitError",
    "ReprokitWarning",
    "Result",
    "RunOutcome",
    "RunStatus",
    "SeedRecord",
    "Snapshot",
    "Verdict",
    "Verification",
    "VerifyOutcome",
    "__version__",
    "calibrate",
    "capture",
    "data",
    "device",
    "diff",
    "end",
    "env",
    "flush",
    "hash_path",
    "hash_paths",
    "hash_value",
    "load_ipython_extension",
    "read_notebook",
    "record",
    "result",
    "run",
    "seed",
    "seed_everything",
    "start",
    "status",
    "unload_ipython_extension",
    "verify",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'reprokit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return __all__
