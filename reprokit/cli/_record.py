"""``reprokit record``: execute notebooks and write each one's reference lock.

Exit codes: 0 recorded; 1 with ``--repeat``: a result moved between runs beyond its tolerance
(no lock written; ``--widen-tolerances`` records the measured spread instead); 2 bad usage or
input (missing or corrupt notebook, an undeclared
parameter, ``--device cuda`` without a GPU); 3 execution failed (a cell raised, timed out, or
the kernel died): no lock is written for that notebook.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reprokit._warn import escaped_controls
from reprokit.cli._options import execution_options, repeat_options
from reprokit.cli._run import fail_on_executions, progress_printer
from reprokit.exceptions import UsageError

if TYPE_CHECKING:
    from reprokit.api.record import RecordOutcome
    from reprokit.options import ExecutionOptions, RepeatOptions


@click.command("record")
@execution_options
@repeat_options(widen=True)
@click.option(
    "--from-run",
    "from_run",
    metavar="RUN_ID",
    default=None,
    help="Write the lock from an existing MLflow run instead of executing (PATHS: at most the "
    "notebook it belongs to, default the run's source notebook).",
)
def record_command(
    paths: tuple[Path, ...],
    parameters: Mapping[str, Any],
    execution: ExecutionOptions,
    repeat: RepeatOptions,
    from_run: str | None,
) -> None:
    """Execute notebooks and write each one's reference lock, <stem>.repro.json, beside it."""
    from reprokit.api.record import record

    if from_run is not None:
        _record_from_run(from_run, paths, repeat)
        return
    if not paths:
        raise UsageError("give the notebooks to record (or --from-run RUN_ID)")
    outcomes = record(
        paths, parameters=parameters, execution=execution, progress=progress_printer(),
        repeat=repeat,
    )  # fmt: skip
    _print_outcomes(outcomes)
    fail_on_executions([outcome.run for outcome in outcomes])
    if any(outcome.unstable for outcome in outcomes):
        sys.exit(1)


def _print_outcomes(outcomes: list[RecordOutcome]) -> None:
    from reprokit.report.noise import describe_noise, describe_unstable

    for outcome in outcomes:
        if outcome.lock_path is not None:
            click.echo(f"locked   {outcome.run.notebook} -> {outcome.lock_path}")
        if outcome.noise is not None:
            widened = outcome.lock_path is not None
            for line in describe_noise(outcome.run.notebook, outcome.noise, widened=widened):
                click.echo(f"  {line}")
        if outcome.unstable and outcome.noise is not None:
            for line in describe_unstable(outcome.run.notebook, outcome.noise):
                click.echo(f"reprokit: {escaped_controls(line)}", err=True)


def _record_from_run(run_id: str, paths: tuple[Path, ...], repeat: RepeatOptions) -> None:
    from reprokit.api.record import record_from_run

    if repeat.measures:
        raise UsageError("--from-run writes the lock of one recorded run: --repeat needs `record`")
    if len(paths) > 1:
        raise UsageError("--from-run writes one lock: give at most one notebook")
    lock = record_from_run(run_id, notebook=paths[0] if paths else None)
    click.echo(f"locked   MLflow run {run_id} -> {lock}")


# PATHS may be left out with --from-run (click.Argument.required is public and read at parse time)
for _param in record_command.params:
    if _param.name == "paths":
        _param.required = False
