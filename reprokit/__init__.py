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
    from reprokit.capture.hashing import hash_path, hash_paths
    from reprokit.capture.model import (
        AcceleratorInfo,
        DataEntry,
        DataManifest,
        GitInfo,
        SeedRecord,
        Snapshot,
    )
    from reprokit.capture.seeds import seed_everything
    from reprokit.capture.snapshot import capture
    from reprokit.capture.values import hash_value
    from reprokit.exceptions import ReprokitError, ReprokitWarning
    from reprokit.magics import load_ipython_extension, unload_ipython_extension
    from reprokit.record.run import RunStatus
    from reprokit.results.model import Result
    from reprokit.results.notebook import read_notebook
    from reprokit.session import data, device, end, env, flush, result, seed, start, status

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "AcceleratorInfo": "reprokit.capture.model",
    "DataEntry": "reprokit.capture.model",
    "DataManifest": "reprokit.capture.model",
    "GitInfo": "reprokit.capture.model",
    "ReprokitError": "reprokit.exceptions",
    "ReprokitWarning": "reprokit.exceptions",
    "SeedRecord": "reprokit.capture.model",
    "Snapshot": "reprokit.capture.model",
    "Result": "reprokit.results.model",
    "RunStatus": "reprokit.record.run",
    "capture": "reprokit.capture.snapshot",
    "data": "reprokit.session",
    "env": "reprokit.session",
    "flush": "reprokit.session",
    "read_notebook": "reprokit.results.notebook",
    "seed": "reprokit.session",
    "device": "reprokit.session",
    "end": "reprokit.session",
    "hash_path": "reprokit.capture.hashing",
    "hash_paths": "reprokit.capture.hashing",
    "hash_value": "reprokit.capture.values",
    "load_ipython_extension": "reprokit.magics",
    "result": "reprokit.session",
    "seed_everything": "reprokit.capture.seeds",
    "start": "reprokit.session",
    "status": "reprokit.session",
    "unload_ipython_extension": "reprokit.magics",
}

__all__ = [
    "AcceleratorInfo",
    "DataEntry",
    "DataManifest",
    "GitInfo",
    "ReprokitError",
    "ReprokitWarning",
    "Result",
    "RunStatus",
    "SeedRecord",
    "Snapshot",
    "__version__",
    "capture",
    "data",
    "device",
    "end",
    "env",
    "flush",
    "hash_path",
    "hash_paths",
    "hash_value",
    "load_ipython_extension",
    "read_notebook",
    "result",
    "seed",
    "seed_everything",
    "start",
    "status",
    "unload_ipython_extension",
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
