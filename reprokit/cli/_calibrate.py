"""``reprokit calibrate``: measure each result's CPU-vs-CUDA deviation and store it as the lock's
device tolerance.

Exit codes: 0 calibrated; 1 a result moved in a way no tolerance covers (an integer, a string,
a shape; its device tolerance is not stored); 2 bad usage or input (no CUDA device visible: one
line, before anything runs; no lock; ``--devices`` other than ``cpu,cuda``); 3 execution failed
on one of the devices (nothing written).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reprokit.cli._options import execution_options
from reprokit.cli._run import fail_on_executions, progress_printer

if TYPE_CHECKING:
    from reprokit.options import ExecutionOptions


@click.command("calibrate")
@execution_options
@click.option(
    "--devices",
    default="cpu,cuda",
    show_default=True,
    help="The device pair to measure (the notebook runs once on each).",
)
def calibrate_command(
    paths: tuple[Path, ...],
    parameters: Mapping[str, Any],
    execution: ExecutionOptions,
    devices: str,
) -> None:
    """Run each notebook on CPU and on CUDA and store the deviation of each result as the
    lock's device tolerance (4 x measured), with where and when it was measured."""
    from reprokit.api.calibrate import calibrate
    from reprokit.report.noise import describe_calibration

    done = [
        calibrate(path, devices=devices.split(","), parameters=parameters,
                  execution=execution, progress=progress_printer())
        for path in paths
    ]  # fmt: skip
    for each in done:
        if each.lock_path is not None:
            lines = describe_calibration(
                each.lock_path, each.deviations, each.tolerances, each.uncovered
            )
            click.echo("\n".join(lines))
    fail_on_executions([each.failed for each in done if each.failed is not None], len(done))
    if any(each.uncovered for each in done):
        sys.exit(1)
