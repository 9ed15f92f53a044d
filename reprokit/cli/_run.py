"""``reprokit run``: execute notebooks with papermill and record each as an MLflow run.

Exit codes: 0 every notebook ran; 2 bad usage or input (nothing was executed); 3 a notebook
failed (a cell raised, timed out, or the kernel died): the failing cell, its error and the
first lines of its traceback are printed with the path of the executed notebook; 130/143
interrupted by SIGINT/SIGTERM (kernels stopped, partial notebooks kept).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from reprokit.cli._options import execution_options
from reprokit.cli._progress import MARKS
from reprokit.exceptions import ExecutionError

if TYPE_CHECKING:
    from reprokit.runner.plan import Progress, RunOutcome


@click.command("run")
@execution_options
@click.option("--no-record", is_flag=True, help="Do not record MLflow runs.")
def run_command(
    paths: tuple[Path, ...],
    device: str,
    assignments: tuple[str, ...],
    jobs: int,
    timeout: float | None,
    kernel: str | None,
    output_dir: Path | None,
    no_record: bool,
) -> None:
    """Execute notebooks (.ipynb, or jupytext .py/.md) or the notebooks under folders."""
    from reprokit.api.run import run
    from reprokit.runner.params import parse_assignments

    outcomes = run(
        paths,
        device=device,
        parameters=parse_assignments(assignments),
        jobs=jobs,
        timeout=timeout,
        kernel=kernel,
        output_dir=output_dir,
        record=not no_record,
        progress=_progress_printer(),
    )
    if outcomes:
        click.echo(f"executed notebooks in {Path(outcomes[0].output_dir).parent}")
    failed = [outcome for outcome in outcomes if not outcome.ok]
    for outcome in failed:
        _print_failure(outcome)
    if failed:
        raise _execution_error(failed[0], len(failed), len(outcomes))


def _progress_printer() -> Progress:
    """A progress callback: live cell counts on a terminal, plain lines elsewhere (CI)."""
    from reprokit.cli._progress import ProgressPrinter

    return ProgressPrinter()


def _print_failure(outcome: RunOutcome) -> None:
    failure = outcome.failure
    click.echo(f"\n{outcome.notebook}: {MARKS.get(outcome.status, outcome.status)}", err=True)
    if failure is not None:
        click.echo(f"  cell {failure.index}: {failure.source_head}", err=True)
        click.echo(f"  {failure.ename}: {failure.evalue}", err=True)
        for line in failure.traceback:
            click.echo(f"    {line}", err=True)
    elif outcome.message:
        click.echo(f"  {outcome.message}", err=True)
    click.echo(f"  executed notebook: {outcome.output_path}", err=True)


def _execution_error(first: RunOutcome, failed: int, total: int) -> ExecutionError:
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
