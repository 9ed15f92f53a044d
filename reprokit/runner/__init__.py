"""The run stage: re-execute notebooks with papermill, on CPU or CUDA, and record them."""

from __future__ import annotations

from reprokit.runner.api import RunOutcome, run
from reprokit.runner.device import DeviceChoice, resolve_device
from reprokit.runner.execute import CellFailure, ExecutionOutcome, execute_notebook
from reprokit.runner.notebooks import declared_parameters, discover_notebooks, load_notebook
from reprokit.runner.params import parse_assignments, parse_value

__all__ = [
    "CellFailure",
    "DeviceChoice",
    "ExecutionOutcome",
    "RunOutcome",
    "declared_parameters",
    "discover_notebooks",
    "execute_notebook",
    "load_notebook",
    "parse_assignments",
    "parse_value",
    "resolve_device",
    "run",
]
