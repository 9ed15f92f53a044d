"""``reprokit run``: execute notebooks with papermill and record each as an MLflow run.

Exit codes: 0 every notebook ran; 2 bad usage or input (nothing was executed); 3 a notebook
failed (a cell raised, timed out, or the kernel died): the failing cell, its error and the
first lines of its traceback are printed with the path of the executed notebook; 130/143
interrupted by SIGINT/SIGTERM (kernels stopped, partial notebooks kept).
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from reprokit.cli._options import execution_options
from reprokit.exceptions import ExecutionError

if TYPE_CHECKING:
    from reprokit.run.api import PlannedRun, Progress, RunOutcome

_MARK = {
    "ok": "ok",
    "failed": "FAILED",
    "timeout": "TIMEOUT",
    "kernel_died": "KERNEL DIED",
    "interrupted": "INTERRUPTED",
}


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
    from reprokit.run.api import run
    from reprokit.run.params import parse_assignments

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
    """A progress callback: rich status lines on a terminal, plain lines elsewhere (CI).

    Before any kernel starts, one line per notebook says what will run (notebook, kernel,
    device, parameters; secret parameters by name only).
    """
    from rich.console import Console

    from reprokit.run.api import describe_plan

    plain = not sys.stderr.isatty() or bool(os.environ.get("CI"))
    console = Console(stderr=True, no_color=plain, highlight=False)
    lock = threading.Lock()

    def show(event: str, plan: PlannedRun, outcome: RunOutcome | None) -> None:
        with lock:
            if event == "plan":
                console.print(describe_plan(plan), markup=False, soft_wrap=True)
            elif event == "start":
                console.print(f"running  {plan.source}", markup=False, soft_wrap=True)
            elif outcome is not None:
                console.print(_done_line(outcome, plain), markup=not plain, soft_wrap=True)

    return show


def _done_line(outcome: RunOutcome, plain: bool) -> str:
    mark = _MARK.get(outcome.status, outcome.status)
    if not plain:
        colour = "green" if outcome.ok else "red"
        mark = f"[{colour}]{mark}[/{colour}]"
    line = f"{mark}  {outcome.notebook}  {outcome.duration_s:.1f} s  -> {outcome.output_path}"
    if outcome.run_id:
        line += f"  (MLflow run {outcome.run_id})"
    if outcome.record_error:
        line += f"\n  not recorded: {outcome.record_error}"
    return line


def _print_failure(outcome: RunOutcome) -> None:
    failure = outcome.failure
    click.echo(f"\n{outcome.notebook}: {_MARK.get(outcome.status, outcome.status)}", err=True)
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
