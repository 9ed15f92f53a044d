"""``reprokit verify``: re-execute notebooks that have a lock and compare result by result.

Exit codes (the policy lives here, in :func:`exit_code`): 0 every result reproduced; 1 not
reproduced (a result differs, is missing or, with ``--repeat``, is nondeterministic, or the
lock's input data changed); 2 bad usage or
input (missing or corrupt notebook or lock, a lock from a newer reprokit, an undeclared
parameter, ``--device cuda`` without a GPU); 3 execution failed (a cell raised, timed out, or
the kernel died).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reprokit.cli._options import (
    GivenPath,
    comparison_options,
    execution_options,
    rebuild_options,
    repeat_options,
    unavailable_pins_named,
)
from reprokit.cli._run import fail_on_executions, progress_printer

if TYPE_CHECKING:
    from reprokit.api.verify import Verification
    from reprokit.options import ComparisonOptions, ExecutionOptions, RepeatOptions
    from reprokit.report.ci import CiKind, NotebookCase
    from reprokit.report.writers import ReportKind


@click.command("verify")
@execution_options
@click.option(
    "--lock",
    "lock_path",
    type=GivenPath(path_type=Path),
    default=None,
    help="The lock to verify against [default: <stem>.repro.json beside the notebook].",
)
@click.option(
    "--renamed",
    is_flag=True,
    help="The notebook is the --lock's notebook renamed (else a lock of another name is refused).",
)
@comparison_options
@repeat_options(widen=False)
@rebuild_options
@click.option("--report", type=GivenPath(path_type=Path), default=None, help="HTML report.")
@click.option("--junit", type=GivenPath(path_type=Path), default=None, help="JUnit XML.")
@click.option(
    "--json", "json_path", type=GivenPath(path_type=Path), default=None, help="JSON verdicts."
)
@click.option(
    "--ci",
    type=click.Choice(["github", "gitlab", "none"]),
    default=None,
    help="CI-native output: github (step summary, ::error annotations), gitlab (--junit with "
    "one test case per notebook) [default: from GITHUB_ACTIONS / GITLAB_CI].",
)
@click.option("--no-record", is_flag=True, help="Write no MLflow run (the checkout untouched).")
@unavailable_pins_named()
def verify_command(
    paths: tuple[Path, ...],
    parameters: Mapping[str, Any],
    execution: ExecutionOptions,
    lock_path: Path | None,
    renamed: bool,
    comparison: ComparisonOptions,
    repeat: RepeatOptions,
    report: Path | None,
    junit: Path | None,
    json_path: Path | None,
    ci: CiKind | None,
    no_record: bool,
) -> None:
    """Re-execute notebooks that have a lock and say, result by result, whether they reproduced."""
    from reprokit.api.verify import verify

    reports = _prepare_reports({"html": report, "junit": junit, "json": json_path})
    verification = verify(
        paths, parameters=parameters, lock=lock_path, renamed=renamed, execution=execution,
        comparison=comparison, progress=(printer := progress_printer()), repeat=repeat,
        record=not no_record, on_env_build=printer.env_build,
    )  # fmt: skip
    _print_verification(verification, reports, ci)
    _exit(verification)


def _exit(verification: Verification) -> None:
    """Failed executions (exit 3, each described), else the verdict's exit code."""
    failed = [o.run for o in verification if o.status == "execution_failed" and o.run]
    fail_on_executions(failed, len(verification))
    sys.exit(exit_code(verification))


def exit_code(verification: Verification) -> int:
    """0 reproduced; 1 not reproduced or data changed; 3 a notebook failed to execute."""
    statuses = {outcome.status for outcome in verification}
    if "execution_failed" in statuses:
        return 3
    return 0 if statuses <= {"reproduced"} else 1


_REPORT_OPTIONS: dict[ReportKind, str] = {"html": "--report", "junit": "--junit", "json": "--json"}


def _prepare_reports(reports: dict[ReportKind, Path | None]) -> dict[ReportKind, Path | None]:
    """Every report's folder made and checked writable before any kernel starts."""
    from reprokit.report.writers import prepare_report_target

    for kind, target in reports.items():
        if target is not None:
            prepare_report_target(target, _REPORT_OPTIONS[kind])
    return reports


def _print_verification(
    verification: Verification, reports: dict[ReportKind, Path | None], given: CiKind | None
) -> None:
    """The verdict tables, the report files, drifted data, where the MLflow runs are, and the
    CI's own output (``--ci``, else the CI detected from the environment)."""
    from reprokit.report.ci import detect_ci
    from reprokit.report.describe import describe_drift
    from reprokit.report.table import print_verdicts
    from reprokit.report.writers import write_report

    ci = given or detect_ci(os.environ)
    verdicts = verification.verdicts
    if verdicts:
        print_verdicts(verdicts)
    for kind, target in reports.items():
        if target is not None and kind == "junit" and ci == "gitlab":
            _write_gitlab_junit(verification, target)
        elif target is not None:  # every notebook, also those nothing was compared for
            write_report(kind, verification.reported, target)
        if target is not None:
            click.echo(f"wrote {target}")
    for outcome in verification:
        if outcome.status == "data_changed":
            click.echo("reprokit: " + describe_drift(outcome.notebook, outcome.data), err=True)
    _where_to_look(verification)
    _ci_output(verification, ci)


def _cases(verification: Verification) -> list[NotebookCase]:
    from reprokit.report.ci import ci_base, notebook_case

    base = ci_base(os.environ, Path.cwd())
    return [notebook_case(outcome, base) for outcome in verification]


def _write_gitlab_junit(verification: Verification, target: Path) -> None:
    from reprokit.report.junit import write_junit_notebooks

    write_junit_notebooks(_cases(verification), target)


def _ci_output(verification: Verification, ci: CiKind) -> None:
    """Under GitHub Actions: the ``::error`` annotations on standard output, and the summary
    appended to ``$GITHUB_STEP_SUMMARY`` when the runner set it."""
    if ci != "github":
        return
    from reprokit.report.github import append_step_summary, error_annotations

    cases = _cases(verification)
    for command in error_annotations(cases):
        click.echo(command)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            append_step_summary(cases, summary)
        except OSError as exc:
            click.echo(
                f"reprokit: warning: GITHUB_STEP_SUMMARY {summary}: {exc.strerror}", err=True
            )


def _where_to_look(verification: Verification) -> None:
    """Where the verification runs are: the MLflow command that shows them."""
    from reprokit.recording.target import resolve_target
    from reprokit.report.describe import ui_command

    recorded = [o for o in verification if o.run is not None and o.run.run_id]
    if not recorded:
        return
    target = resolve_target(start=Path(recorded[0].notebook).resolve().parent)
    click.echo(f"MLflow runs in {target.display_uri}: {ui_command(target.display_uri)}")
