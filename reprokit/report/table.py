"""Verdicts in the terminal: a rich table (notebook, result, reference, obtained, deviation,
tolerance, status) and a verdict line per notebook, with a plain-text fallback for logs and
terminals without rich. The small formatters here are shared by the other report modules.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from reprokit._warn import escaped_controls
from reprokit.capturing.redact import redact_text
from reprokit.compare.verify import DeviationRecord, ResultCheck, Verdict
from reprokit.comparison import Tolerance
from reprokit.report.noise import nondeterministic_lines

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = [
    "STATUS_STYLE",
    "as_verdicts",
    "env_lines",
    "format_deviation",
    "format_tolerance",
    "output_lines",
    "plain_table",
    "print_verdicts",
    "shown",
    "verdict_line",
    "verdict_table",
]

STATUS_STYLE = {
    "reproduced": "green",
    "within_tolerance": "green",
    "differs": "bold red",
    "missing": "bold red",
    "unexpected": "yellow",
    "nondeterministic": "bold magenta",
}
HEADERS = ("notebook", "result", "reference", "obtained", "deviation", "tolerance", "status")


def as_verdicts(verdicts: Verdict | Sequence[Verdict]) -> list[Verdict]:
    return [verdicts] if isinstance(verdicts, Verdict) else list(verdicts)


def format_tolerance(tolerance: Tolerance, source: str = "declared") -> str:
    """``exact``, ``rtol=0.001``, ``rtol=0.001 atol=1e-08 (device)``."""
    if tolerance.is_exact:
        text = "exact"
    else:
        parts = [f"{n}={v:g}" for n, v in (("rtol", tolerance.rtol), ("atol", tolerance.atol)) if v]
        text = " ".join(parts)
    return text if source == "declared" else f"{text} ({source})"


def _number(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:.3g}"


def format_deviation(deviation: DeviationRecord | None) -> str:
    """``abs 0.001 rel 2e-04, 1/20000 elements (sampled)``; ``-`` when nothing was measured,
    as for a str or a bool that differs (``0`` would read as no difference)."""
    if deviation is None:
        return "-"
    parts = []
    if deviation.shape_change is not None:
        before, after = deviation.shape_change
        parts.append(f"shape {list(before)} -> {list(after)}")
    if deviation.dtype_change is not None:
        parts.append(f"dtype {deviation.dtype_change[0]} -> {deviation.dtype_change[1]}")
    if deviation.type_change is not None:
        parts.append(f"type {deviation.type_change[0]} -> {deviation.type_change[1]}")
    if deviation.max_abs_error != 0.0 or deviation.max_rel_error != 0.0:
        rel = _number(deviation.max_rel_error)
        parts.append(f"abs {_number(deviation.max_abs_error)} rel {rel}")
    if deviation.mismatched_count and deviation.total_count > 1:
        parts.append(f"{deviation.mismatched_count}/{deviation.total_count} elements")
    text = ", ".join(parts) if parts else ("-" if deviation.mismatched_count else "0")
    return f"{text} (sampled)" if deviation.estimated else text


def verdict_line(verdict: Verdict) -> str:
    """``REPRODUCED notebooks/fig3.ipynb: 2 reproduced, 1 within tolerance (cpu vs cuda)``."""
    word = "REPRODUCED" if verdict.reproduced and verdict.data_ok else "NOT REPRODUCED"
    if verdict.cached_at is not None:
        word += f" (cached, verified at {verdict.cached_at})"
    counts = ", ".join(
        f"{n} {status.replace('_', ' ')}" for status, n in verdict.counts.items() if n
    )
    devices = (
        f" ({verdict.reference_device} reference, {verdict.current_device} now)"
        if verdict.reference_device != verdict.current_device
        else ""
    )
    drifted = verdict.data.drifted if verdict.data is not None else ()
    named = ", ".join(entry.path for entry in drifted[:3]) + (", ..." if len(drifted) > 3 else "")
    data = f"; data drifted: {len(drifted)} path(s) ({named})" if drifted else ""
    failing_cells = sum(not cell.passed for cell in verdict.outputs)
    cells = f"; {failing_cells} cell output(s) differ" if failing_cells else ""
    return f"{word} {verdict.notebook}: {counts or _no_results(verdict)}{devices}{data}{cells}"


def _no_results(verdict: Verdict) -> str:
    if verdict.not_compared == "data_changed":
        return "input data changed, nothing executed"
    if verdict.not_compared == "execution_failed":
        return f"execution failed ({verdict.execution_error})"
    if verdict.outputs_compared:
        return "no results declared"
    checked = "only the input data checked" if verdict.data and verdict.data.entries else None
    hint = "(use --outputs to compare cell outputs)"
    return f"no results declared, {checked or 'nothing compared'} {hint}"


OLD_END_LINE_HINT = (
    "; the lock kept the line %repro end printed before December 2026, which names the run's"
    " store: record the notebook again"
)


def failing_lines(verdict: Verdict, limit: int = 300) -> list[str]:
    """Why each result that did not reproduce did not (``loss: differs: first at [3]:
    current 0.5, reference 0.7``): the table's cells are too narrow for it."""
    lines = []
    for check in verdict.checks:
        if not check.passed and check.message:
            text = redact_text(" ".join(check.message.split()))
            text = text if len(text) <= limit else text[: limit - 3] + "..."
            # a name is the notebook's (or a stranger's lock's): one line, no escape codes
            lines.append(escaped_controls(f"{check.name}: {check.status}: {text}"))
    return lines


def output_lines(verdict: Verdict) -> list[str]:
    """The cell-output comparison in a line or two (``verify --outputs``), else the first cell
    whose output changed, if any (informational: outputs were not asked for)."""
    cell = verdict.divergent_cell
    if not verdict.outputs_compared:
        if cell is None or cell.index is None:
            return []
        line = f"first cell whose output changed: cell {cell.index + 1} ({cell.reason})"
        return [line + (OLD_END_LINE_HINT if cell.old_end_line else "")]
    counts: dict[str, int] = {}
    for check in verdict.outputs:
        counts[check.status] = counts.get(check.status, 0) + 1
    summary = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in counts.items())
    lines = [f"cell outputs: {len(verdict.outputs)} compared: {summary or 'no code cells'}"]
    volatile = [check for check in verdict.outputs if check.volatile]
    if volatile:
        cells = ", ".join(f"cell {check.index + 1} ({check.volatile})" for check in volatile)
        lines.append(f"volatile, not compared: spans of {cells}")
    if cell is not None:
        where = f"cell {cell.index + 1}" if cell.index is not None else "a new cell"
        hint = OLD_END_LINE_HINT if cell.old_end_line else ""
        lines.append(
            redact_text(f"first divergent cell: {where} ({cell.reason}) {cell.detail}{hint}")
        )
    return lines


def _rebuilt(verdict: Verdict) -> list[str]:
    from reprokit.report.describe import rebuilt_lines

    return [] if verdict.rebuilt is None else rebuilt_lines(verdict.rebuilt)


def shown(value: str | None) -> str:
    """An environment value as shown: ``-`` when absent, ``""`` when empty."""
    if value is None:
        return "-"
    return value or '""'


def env_lines(verdict: Verdict, limit: int = 12) -> list[str]:
    """The environment changes most likely to explain a difference, one line each, then its
    notes (another commit with the notebook's source unchanged: the hint says not counted)."""
    if verdict.env_diff is None:
        return []
    listed = (*verdict.env_diff.changes, *verdict.env_diff.notes)
    lines = [
        f"{c.category}: {c.key}: {shown(c.reference)} -> {shown(c.current)} ({c.hint})"
        for c in listed[:limit]
    ]
    hidden = len(listed) - limit
    return [redact_text(line) for line in lines] + ([f"... {hidden} more"] if hidden > 0 else [])


def _row(verdict: Verdict, check: ResultCheck) -> tuple[str, ...]:
    return (
        verdict.notebook,
        check.name,
        redact_text(check.reference) or "-",
        redact_text(check.obtained) or "-",
        format_deviation(check.deviation),
        format_tolerance(check.tolerance, check.tolerance_source),
        check.status,
    )


def verdict_table(
    verdicts: Verdict | Sequence[Verdict],
    *,
    title: str = "reprokit verification",
    notebook_column: bool = True,
) -> Table:
    """A rich Table of every result of every verdict."""
    from rich.table import Table

    table = Table(title=title)
    skip = 0 if notebook_column else 1
    for header in HEADERS[skip:]:
        # status, names and tolerances must stay whole in a narrow terminal; values may wrap
        keep = header in ("status", "tolerance")
        table.add_column(
            header,
            no_wrap=keep,
            min_width=16 if header == "status" else None,
            max_width=40 if header == "result" else None,  # a long name folds, not the rest
            overflow="fold",
        )
    for verdict in as_verdicts(verdicts):
        for check in verdict.checks:
            row = _row(verdict, check)[skip:]
            status = f"[{STATUS_STYLE[check.status]}]{check.status}[/]"
            table.add_row(*(_escape(cell) for cell in row[:-1]), status)
    return table


def _escape(text: str) -> str:
    """A cell's text as rich shows it: no markup, and a control character (a newline in a
    result's name) written as its escape, so that one result stays one row."""
    from rich.markup import escape

    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        text = "".join(ch if ord(ch) >= 32 and ord(ch) != 127 else repr(ch)[1:-1] for ch in text)
    return escape(text)


def print_verdicts(verdicts: Verdict | Sequence[Verdict], console: Console | None = None) -> None:
    """Print the table, then one verdict line per notebook and the environment changes of the
    notebooks that failed."""
    from rich.console import Console

    # off a terminal (CI logs, pipes) rich would squeeze the table into 80 columns
    out: Any = console or Console(width=None if sys.stdout.isatty() else 160)
    listed = as_verdicts(verdicts)
    out.print(verdict_table(listed))
    for verdict in listed:
        style = "bold green" if verdict.reproduced else "bold red"
        out.print(verdict_line(verdict), style=style, markup=False)
        explained = [*failing_lines(verdict), *output_lines(verdict)]
        for line in [*explained, *nondeterministic_lines(verdict), *_rebuilt(verdict)]:
            out.print(f"  {line}", markup=False)
        if not verdict.reproduced:
            for line in env_lines(verdict):
                out.print(f"  {line}", markup=False)


def plain_table(verdicts: Verdict | Sequence[Verdict]) -> str:
    """The same table as aligned plain text (no rich, no colour)."""
    listed = as_verdicts(verdicts)
    rows = [HEADERS] + [_row(v, c) for v in listed for c in v.checks]
    widths = [max(len(row[k]) for row in rows) for k in range(len(HEADERS))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for verdict in listed:
        lines.append(verdict_line(verdict))
        lines += [
            f"  {line}"
            for line in [
                *failing_lines(verdict),
                *output_lines(verdict),
                *nondeterministic_lines(verdict),
                *_rebuilt(verdict),
            ]
        ]
        if not verdict.reproduced:
            lines += [f"  {line}" for line in env_lines(verdict)]
    return "\n".join(lines) + "\n"
