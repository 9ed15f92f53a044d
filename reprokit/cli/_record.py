"""``reprokit record``: execute notebooks and write each one's reference lock.

Exit codes: 0 recorded; 2 bad usage or input (missing or corrupt notebook, an undeclared
parameter, ``--device cuda`` without a GPU); 3 execution failed (a cell raised, timed out, or
the kernel died): no lock is written for that notebook.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reprokit.cli._options import execution_options
from reprokit.cli._run import fail_on_executions, progress_printer
from reprokit.exceptions import UsageError

if TYPE_CHECKING:
    from reprokit.options import ExecutionOptions


@click.command("record")
@execution_options
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
    from_run: str | None,
) -> None:
    """Execute notebooks and write each one's reference lock, <stem>.repro.json, beside it."""
    from reprokit.api.record import record

    if from_run is not None:
        _record_from_run(from_run, paths)
        return
    if not paths:
        raise UsageError("give the notebooks to record (or --from-run RUN_ID)")
    outcomes = record(
        paths, parameters=parameters, execution=execution, progress=progress_printer()
    )
    for outcome in outcomes:
        if outcome.lock_path is not None:
            click.echo(f"locked   {outcome.run.notebook} -> {outcome.lock_path}")
    fail_on_executions([outcome.run for outcome in outcomes])


def _record_from_run(run_id: str, paths: tuple[Path, ...]) -> None:
    from reprokit.api.record import record_from_run

    if len(paths) > 1:
        raise UsageError("--from-run writes one lock: give at most one notebook")
    lock = record_from_run(run_id, notebook=paths[0] if paths else None)
    click.echo(f"locked   MLflow run {run_id} -> {lock}")


# PATHS may be left out with --from-run (click.Argument.required is public and read at parse time)
for _param in record_command.params:
    if _param.name == "paths":
        _param.required = False
