"""``calibrate``: measure how far each result moves between CPU and CUDA, and store it as the
lock's device tolerance.

The notebook must have a lock (``reprokit record`` first). It is executed once on each device
of ``devices`` with the lock's parameters, through :func:`~reprokit.api.run.run`; the second
device's results are compared with the first's (:func:`~reprokit.compare.noise.measure_spreads`)
and each result's device tolerance becomes ``max(declared device tolerance, factor x measured
deviation)`` (``factor``: :data:`~reprokit.options.WIDEN_FACTOR` by default). The lock's
reference values are not touched; its ``device_tolerances`` and ``calibration`` (when, which
devices, which GPU, the factor) are rewritten.

Without a visible CUDA device nothing runs: :class:`~reprokit.exceptions.UsageError` (exit 2).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from reprokit._version import __version__
from reprokit.api.run import run
from reprokit.compare.noise import disagreeing, measure_spreads, widened_tolerance
from reprokit.comparison import Tolerance
from reprokit.exceptions import UsageError
from reprokit.options import WIDEN_FACTOR, ExecutionOptions
from reprokit.recording.lock import lock_path_for, read_lock, write_lock
from reprokit.recording.lock_model import DeviceCalibration, DeviceTolerance, Lock, ResultSpread
from reprokit.results.notebook import read_notebook
from reprokit.runner.plan import Progress, RunOutcome

__all__ = ["CALIBRATION_DEVICES", "Calibration", "calibrate"]

CALIBRATION_DEVICES = ("cpu", "cuda")
"""The device pair a calibration measures."""


@dataclass(frozen=True)
class Calibration:
    """What one calibration measured and stored (``lock_path`` None: a run failed, nothing
    written; ``failed`` names it)."""

    notebook: str
    lock_path: str | None
    deviations: dict[str, ResultSpread]  # result -> deviation of the second device's value
    tolerances: dict[str, DeviceTolerance]  # result -> the device tolerance stored
    uncovered: tuple[str, ...] = ()  # results no tolerance can cover (exact parts moved)
    failed: RunOutcome | None = None


def calibrate(
    notebook: str | os.PathLike[str],
    *,
    devices: Sequence[str] = CALIBRATION_DEVICES,
    parameters: Mapping[str, Any] | None = None,
    execution: ExecutionOptions | None = None,
    progress: Progress | None = None,
    factor: float = WIDEN_FACTOR,
) -> Calibration:
    """Execute ``notebook`` on each of ``devices`` and store the measured deviations as the
    lock's device tolerances (see the module docstring)."""
    pair = _device_pair(devices)
    source = Path(notebook)
    target = lock_path_for(source)
    if not target.is_file():
        raise UsageError(
            f"{source}: no lock {target.name} beside it; record one first: reprokit record "
            f"{source}",
            path=str(source),
        )
    lock = read_lock(target)
    options = execution if execution is not None else ExecutionOptions()
    values = {k: v for k, v in lock.parameters.values.items() if k != "device"}
    outcomes = [
        run([source], parameters={**values, **(parameters or {})},
            execution=replace(options, device=device, jobs=1), progress=progress)[0]
        for device in pair
    ]  # fmt: skip
    failed = next((outcome for outcome in outcomes if not outcome.ok), None)
    if failed is not None:
        return Calibration(str(source), None, {}, {}, failed=failed)
    return _store(source, target, lock, outcomes, pair, factor)


def _device_pair(devices: Sequence[str]) -> tuple[str, str]:
    """``cpu,cuda``: the pair, checked, and a GPU visible (else exit 2 before anything runs)."""
    from reprokit.capturing.accelerator import cuda_visible

    chosen = tuple(d.strip().lower() for d in devices)
    if sorted(chosen) != sorted(CALIBRATION_DEVICES):
        raise UsageError(
            f"--devices {','.join(devices)}: expected cpu,cuda (or cuda,cpu)",
            option="--devices",
            value=",".join(devices),
        )
    if not cuda_visible():
        raise UsageError(
            "calibrate --devices cpu,cuda: no CUDA device is visible on this machine (NVML "
            "found none, or CUDA_VISIBLE_DEVICES hides them); calibrate where a GPU is",
            option="--devices",
            value=",".join(devices),
        )
    return chosen[0], chosen[1]


def _store(
    source: Path,
    target: Path,
    lock: Lock,
    outcomes: list[RunOutcome],
    pair: tuple[str, str],
    factor: float,
) -> Calibration:
    runs = [read_notebook(Path(outcome.output_path)).results for outcome in outcomes]
    deviations = measure_spreads(runs)
    tolerances: dict[str, DeviceTolerance] = {}
    uncovered: list[str] = []
    for name, spread in deviations.items():
        declared = lock.device_tolerances.get(name, DeviceTolerance())
        wider = widened_tolerance(Tolerance(declared.rtol, declared.atol), spread, factor)
        if wider is None:
            uncovered.append(name)
        elif not wider.is_exact:
            tolerances[name] = DeviceTolerance(wider.rtol, wider.atol)
    stored = {name: Tolerance(t.rtol, t.atol) for name, t in tolerances.items()}
    moved = disagreeing(runs, stored) & set(stored)
    uncovered += sorted(moved)  # exact parts (ints, strings, shapes) moved: no tolerance covers
    tolerances = {name: t for name, t in tolerances.items() if name not in moved}
    merged = dict(sorted((lock.device_tolerances | tolerances).items()))
    written = replace(lock, device_tolerances=merged, calibration=_provenance(pair, factor))
    write_lock(written, target)
    return Calibration(str(source), str(target), deviations, tolerances, tuple(uncovered))


def _provenance(pair: tuple[str, str], factor: float) -> DeviceCalibration:
    from reprokit.capturing.accelerator import collect_accelerator

    gpus = collect_accelerator().devices
    return DeviceCalibration(
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        devices=pair,
        gpu=gpus[0].name if gpus else None,
        factor=factor,
        reprokit_version=__version__,
    )
