"""What CI systems are told about each verified notebook, whatever their format.

:func:`detect_ci` names the CI system from its environment variables (``GITHUB_ACTIONS``,
``GITLAB_CI``); :func:`ci_base` is the folder paths are given relative to (the repository's
checkout); :func:`notebook_case` turns one verification outcome into a :class:`NotebookCase`:
the file, a verdict in words, results reproduced and failed, the time spent, the cell or result
that failed and the explanation (failing results, environment diff, data drift, the failed
cell). :mod:`reprokit.report.github` and :mod:`reprokit.report.junit` format it.

The outcomes are read through :class:`NotebookOutcome`, the shape of
:class:`reprokit.api.verify.VerifyOutcome` (this stage comes before the API).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from reprokit.capturing.redact import redact_text
from reprokit.compare.verify import FAILING, DataCheck, Verdict
from reprokit.notebook.lines import cell_line
from reprokit.report.describe import MARKS, describe_drift, describe_failure
from reprokit.report.table import env_lines, format_deviation, output_lines, verdict_line
from reprokit.runner.plan import RunOutcome

__all__ = [
    "CI_KINDS",
    "CiKind",
    "NotebookCase",
    "NotebookOutcome",
    "ci_base",
    "detect_ci",
    "notebook_case",
]

CiKind = Literal["github", "gitlab", "none"]
CI_KINDS: tuple[CiKind, ...] = ("github", "gitlab", "none")


class NotebookOutcome(Protocol):
    """One notebook's verification, as :class:`reprokit.api.verify.VerifyOutcome` gives it."""

    @property
    def notebook(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def run(self) -> RunOutcome | None: ...
    @property
    def verdict(self) -> Verdict | None: ...
    @property
    def data(self) -> DataCheck: ...


@dataclass(frozen=True)
class NotebookCase:
    """One notebook as a CI system shows it (all text redacted)."""

    file: str  # relative to the CI base folder (the repository), POSIX
    status: str  # reproduced | not_reproduced | data_changed | execution_failed
    verdict: str  # in words: "reproduced (cached, verified at …)", "execution failed (TIMEOUT)"
    reproduced: int  # results reproduced or within tolerance
    failed: int  # results that differ or are missing
    duration_s: float
    title: str  # one line: what failed ("" when it passed)
    detail: str  # the explanation: failing results, environment diff, drift, the failed cell
    line: int | None = None  # the failing cell's line in the file, when known
    cached_at: str | None = None
    # facts of this notebook's verification, as (name, value): JUnit test case properties
    properties: tuple[tuple[str, str], ...] = ()

    @property
    def passed(self) -> bool:
        return self.status == "reproduced"


def detect_ci(environ: Mapping[str, str]) -> CiKind:
    """``github`` under GitHub Actions, ``gitlab`` under GitLab CI, else ``none``."""
    if environ.get("GITHUB_ACTIONS", "").lower() == "true":
        return "github"
    if environ.get("GITLAB_CI", "").lower() == "true":
        return "gitlab"
    return "none"


def ci_base(environ: Mapping[str, str], cwd: Path) -> Path:
    """The checkout paths are relative to: ``GITHUB_WORKSPACE``, ``CI_PROJECT_DIR``, else the
    nearest folder up from ``cwd`` with ``.git``, else ``cwd``."""
    for name in ("GITHUB_WORKSPACE", "CI_PROJECT_DIR"):
        if environ.get(name):
            return Path(environ[name]).resolve()
    start = cwd.resolve()
    return next((p for p in (start, *start.parents) if (p / ".git").exists()), start)


def _relative(path: str, base: Path) -> str:
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(base).as_posix()
    except ValueError:
        return Path(os.path.relpath(resolved, base)).as_posix()


def notebook_case(outcome: NotebookOutcome, base: Path) -> NotebookCase:
    """What a CI system is told about ``outcome``; paths relative to ``base``."""
    file = _relative(outcome.notebook, base)
    verdict, run = outcome.verdict, outcome.run
    checks = verdict.checks if verdict is not None else ()
    failed = sum(c.status in FAILING for c in checks)
    title, detail, line = _explain(outcome, file)
    return NotebookCase(
        file=file,
        status=outcome.status,
        verdict=_verdict_words(outcome),
        reproduced=len(checks) - failed - sum(c.status == "unexpected" for c in checks),
        failed=failed,
        duration_s=run.duration_s if run is not None else 0.0,
        title=redact_text(title),
        detail=redact_text(detail),
        line=line,
        cached_at=verdict.cached_at if verdict is not None else None,
        properties=_properties(outcome),
    )


def _properties(outcome: NotebookOutcome) -> tuple[tuple[str, str], ...]:
    """What else a CI system may show of one verification (a property per fact)."""
    facts: list[tuple[str, str | None]] = []
    if outcome.verdict is not None:
        verdict = outcome.verdict
        facts += [("reference_device", verdict.reference_device)]
        facts += [("current_device", verdict.current_device), ("reference_run_id", verdict.run_id)]
    if outcome.run is not None:
        facts += [("executed_notebook", outcome.run.output_path)]
        facts += [("mlflow_run_id", outcome.run.run_id)]
    return tuple((name, value) for name, value in facts if value)


def _verdict_words(outcome: NotebookOutcome) -> str:
    verdict, run = outcome.verdict, outcome.run
    if outcome.status == "execution_failed" and run is not None:
        return f"execution failed ({MARKS.get(run.status, run.status)})"
    words = outcome.status.replace("_", " ")
    if verdict is not None and verdict.cached_at is not None:
        words += f" (cached, verified at {verdict.cached_at})"
    return words


def _explain(outcome: NotebookOutcome, file: str) -> tuple[str, str, int | None]:
    """The one-line title, the explanation and the failing cell's line."""
    run, verdict = outcome.run, outcome.verdict
    if outcome.status == "execution_failed" and run is not None:
        failure = run.failure
        line = cell_line(outcome.notebook, failure.index) if failure is not None else None
        where = f"cell {failure.index + 1}: {failure.ename}" if failure else run.status
        return f"{file}: execution failed, {where}", describe_failure(run), line
    if outcome.status == "data_changed":
        drifted = ", ".join(e.path for e in outcome.data.drifted)
        return f"{file}: input data changed: {drifted}", describe_drift(file, outcome.data), None
    if verdict is None or outcome.status == "reproduced":
        return "", verdict_line(verdict) if verdict is not None else "", None
    return _not_reproduced(outcome, verdict, file)


def _not_reproduced(
    outcome: NotebookOutcome, verdict: Verdict, file: str
) -> tuple[str, str, int | None]:
    failing = [c for c in verdict.checks if c.status in FAILING]
    lines = [verdict_line(verdict)]
    for check in failing:
        size = format_deviation(check.deviation)
        deviation = "" if size == "-" else f" ({size})"
        lines.append(f"  {check.name}: {check.status}{deviation}: {check.message}")
    lines += [f"  {line}" for line in output_lines(verdict)]
    changes = env_lines(verdict)
    if changes:
        lines += ["environment changes:", *(f"  {line}" for line in changes)]
    if not verdict.data_ok and verdict.data is not None:
        lines.append(describe_drift(file, verdict.data))
    cell = verdict.divergent_cell
    line = cell_line(outcome.notebook, cell.index) if cell and cell.index is not None else None
    names = ", ".join(c.name for c in failing) or "cell outputs"
    return f"{file}: not reproduced: {names}", "\n".join(lines), line
