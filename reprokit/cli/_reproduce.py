"""``reprokit record`` and ``reprokit verify``: write the reference lock, then check it.

Exit codes: 0 recorded / every result reproduced; 1 not reproduced (a result differs or is
missing, or the lock's input data changed); 2 bad usage or input (missing or corrupt notebook
or lock, a lock from a newer reprokit, an undeclared parameter, ``--device cuda`` without a
GPU); 3 execution failed (a cell raised, timed out, or the kernel died).
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reprokit.cli._options import execution_options
from reprokit.cli._run import _execution_error, _print_failure, _progress_printer
from reprokit.exceptions import UsageError

if TYPE_CHECKING:
    from reprokit.api.verify import VerifyOutcome


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
    device: str,
    assignments: tuple[str, ...],
    jobs: int,
    timeout: float | None,
    kernel: str | None,
    output_dir: Path | None,
    from_run: str | None,
) -> None:
    """Execute notebooks and write each one's reference lock, <stem>.repro.json, beside it."""
    from reprokit.api.record import record, record_from_run
    from reprokit.runner.params import parse_assignments

    if from_run is not None:
        if len(paths) > 1:
            raise UsageError("--from-run writes one lock: give at most one notebook")
        lock = record_from_run(from_run, notebook=paths[0] if paths else None)
        click.echo(f"locked   MLflow run {from_run} -> {lock}")
        return
    if not paths:
        raise UsageError("give the notebooks to record (or --from-run RUN_ID)")

    outcomes = record(
        paths,
        device=device,
        parameters=parse_assignments(assignments),
        jobs=jobs,
        timeout=timeout,
        kernel=kernel,
        output_dir=output_dir,
        progress=_progress_printer(),
    )
    for outcome in outcomes:
        if outcome.lock_path is not None:
            click.echo(f"locked   {outcome.run.notebook} -> {outcome.lock_path}")
    failed = [outcome.run for outcome in outcomes if outcome.lock_path is None]
    for run in failed:
        _print_failure(run)
    if failed:
        raise _execution_error(failed[0], len(failed), len(outcomes))


# PATHS may be left out with --from-run (click.Argument.required is public and read at parse time)
for _param in record_command.params:
    if _param.name == "paths":
        _param.required = False


@click.command("verify")
@execution_options
@click.option(
    "--lock",
    "lock_path",
    type=click.Path(path_type=Path),
    default=None,
    help="The lock to verify against [default: <stem>.repro.json beside the notebook].",
)
@click.option("--rtol", type=float, default=None, help="Relative tolerance for every result.")
@click.option("--atol", type=float, default=None, help="Absolute tolerance for every result.")
@click.option("--report", type=click.Path(path_type=Path), default=None, help="HTML report.")
@click.option("--junit", type=click.Path(path_type=Path), default=None, help="JUnit XML.")
@click.option(
    "--json", "json_path", type=click.Path(path_type=Path), default=None, help="JSON verdicts."
)
@click.option("--allow-data-drift", is_flag=True, help="Run even if the lock's data changed.")
@click.option(
    "--outputs",
    is_flag=True,
    help="Compare every cell's text output too (numbers within --rtol/--atol, else 1e-6; "
    "timestamps, addresses, durations masked) and name the first cell that diverged.",
)
def verify_command(
    paths: tuple[Path, ...],
    device: str,
    assignments: tuple[str, ...],
    jobs: int,
    timeout: float | None,
    kernel: str | None,
    output_dir: Path | None,
    lock_path: Path | None,
    rtol: float | None,
    atol: float | None,
    report: Path | None,
    junit: Path | None,
    json_path: Path | None,
    allow_data_drift: bool,
    outputs: bool,
) -> None:
    """Re-execute notebooks that have a lock and say, result by result, whether they reproduced."""
    from reprokit.api.verify import verify
    from reprokit.report.html import write_html
    from reprokit.report.json_report import write_json_report
    from reprokit.report.junit import write_junit
    from reprokit.report.table import print_verdicts
    from reprokit.runner.params import parse_assignments

    verification = verify(
        paths,
        device=device,
        parameters=parse_assignments(assignments),
        lock=lock_path,
        rtol=rtol,
        atol=atol,
        jobs=jobs,
        timeout=timeout,
        kernel=kernel,
        output_dir=output_dir,
        allow_data_drift=allow_data_drift,
        outputs=outputs,
        progress=_progress_printer(),
    )
    outcomes = verification.outcomes
    verdicts = verification.verdicts
    if verdicts:
        print_verdicts(verdicts)
    for target, write in (
        (report, write_html),
        (junit, write_junit),
        (json_path, write_json_report),
    ):
        if target is not None:
            write(verdicts, target)
            click.echo(f"wrote {target}")
    for outcome in outcomes:
        if outcome.status == "data_changed":
            changed = "; ".join(_drift(entry) for entry in outcome.data.drifted)
            click.echo(
                f"reprokit: {outcome.notebook}: input data changed since the lock: {changed} "
                "(not executed; --allow-data-drift runs it anyway)",
                err=True,
            )
    failed_runs = [o.run for o in outcomes if o.status == "execution_failed" and o.run]
    for run in failed_runs:
        _print_failure(run)
    _where_to_look(outcomes)
    if failed_runs:
        raise _execution_error(failed_runs[0], len(failed_runs), len(outcomes))
    if verification.exit_code:
        sys.exit(verification.exit_code)


def _where_to_look(outcomes: Sequence[VerifyOutcome]) -> None:
    """Where the verification runs are: the MLflow command that shows them."""
    from reprokit.recording.target import resolve_target

    recorded = [o for o in outcomes if o.run is not None and o.run.run_id]
    if not recorded:
        return
    target = resolve_target(start=Path(recorded[0].notebook).resolve().parent)
    click.echo(f"MLflow runs in {target.display_uri}: {_ui_command(target.display_uri)}")


def _ui_command(uri: str) -> str:
    if uri.startswith(("http://", "https://")):
        return f"open {uri}"
    return f"mlflow ui --backend-store-uri {shlex.quote(uri)}"


def _drift(entry: Any) -> str:
    """``data/ (changed: measurements.csv changed, new.csv added)``."""
    inside = ", ".join(f"{change.path} {change.change}" for change in entry.files[:10])
    more = f", and {len(entry.files) - 10} more" if len(entry.files) > 10 else ""
    return f"{entry.path} ({entry.status}{': ' + inside + more if inside else ''})"
