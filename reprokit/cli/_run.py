"""``reprokit run``: execute notebooks with papermill and record each as an MLflow run.

Exit codes: 0 every notebook ran; 2 bad usage or input (nothing was executed); 3 a notebook
failed (a cell raised, timed out, or the kernel died): the failing cell, its error and the
first lines of its traceback are printed with the path of the executed notebook; 130/143
interrupted by SIGINT/SIGTERM (kernels stopped, partial notebooks kept).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reprokit.cli._options import execution_options
from reprokit.exceptions import ExecutionError

if TYPE_CHECKING:
    from reprokit.cli._progress import ProgressPrinter
    from reprokit.options import ExecutionOptions
    from reprokit.runner.plan import RunOutcome


@click.command("run")
@execution_options
@click.option("--no-record", is_flag=True, help="Do not record MLflow runs.")
def run_command(
    paths: tuple[Path, ...],
    parameters: Mapping[str, Any],
    execution: ExecutionOptions,
    no_record: bool,
) -> None:
    """Execute notebooks (.ipynb, or jupytext .py/.md) or the notebooks under folders."""
    from reprokit.api.run import run

    outcomes = run(
        paths,
        parameters=parameters,
        execution=execution,
        record=not no_record,
        progress=progress_printer(),
    )
    if outcomes:
        click.echo(f"executed notebooks in {Path(outcomes[0].output_dir).parent}")
    fail_on_executions(outcomes)


def progress_printer() -> ProgressPrinter:
    """A progress callback: live cell counts on a terminal, plain lines elsewhere (CI)."""
    from reprokit.cli._progress import ProgressPrinter

    return ProgressPrinter()


def fail_on_executions(outcomes: list[RunOutcome], total: int | None = None) -> None:
    """Print every failed execution and raise the first as an
    :class:`~reprokit.exceptions.ExecutionError` (exit 3) when there is one."""
    from reprokit.report.describe import describe_failure

    failed = [outcome for outcome in outcomes if not outcome.ok]
    for outcome in failed:
        click.echo("\n" + describe_failure(outcome), err=True)
    if failed:
        raise execution_error(failed[0], len(failed), total or len(outcomes))


def execution_error(first: RunOutcome, failed: int, total: int) -> ExecutionError:
    """The exit-3 error of a command whose notebooks failed (the first one named)."""
    failure = first.failure
    error = ExecutionError(
        first.notebook,
        cell_index=failure.index if failure else None,
        ename=failure.ename if failure else first.status,
        evalue=failure.evalue if failure else first.message,
        traceback=failure.traceback if failure else (),
        output_path=first.output_path,
    )
    if failed > 1:
        error.message += f" ({failed} of {total} notebooks failed)"
    return error
