"""A diff (:class:`reprokit.compare.diff.Diff`) for the terminal and as JSON."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from reprokit._serde import to_builtins
from reprokit.capturing.redact import redact_text
from reprokit.report.table import shown, verdict_table

if TYPE_CHECKING:
    from rich.console import Console

    from reprokit.compare.diff import Diff

__all__ = ["diff_json", "diff_lines", "print_diff"]


def diff_lines(found: Diff) -> list[str]:
    """The environment and data differences, and a summary line, as plain lines."""
    verdict = found.verdict
    lines = [f"A: {found.a.label} ({found.a.kind})", f"B: {found.b.label} ({found.b.kind})"]
    changes = verdict.env_diff.changes if verdict.env_diff is not None else ()
    if verdict.env_diff is None:
        lines.append("environment: not compared (a side has no snapshot)")
    else:
        lines.append(f"environment: {len(changes)} change(s)")
        lines += [
            redact_text(f"  {c.category}: {c.key}: {shown(c.reference)} -> {shown(c.current)}")
            + f"  ({c.hint})"
            for c in (*changes, *verdict.env_diff.notes)  # a note's hint says it is not counted
        ]
    if verdict.source_changes:
        cells = ", ".join(str(index + 1) for index in verdict.source_changes)
        lines.append(f"notebook source: cells that differ from A's: {cells}")
    if verdict.data is not None:
        drifted = verdict.data.drifted
        lines.append(f"data: {len(verdict.data.entries)} path(s), {len(drifted)} changed")
        for entry in drifted:
            lines.append(
                f"  {entry.path}: {entry.status}" + (f" ({entry.reason})" if entry.reason else "")
            )
            lines += [f"    {f.change}: {f.path}" for f in entry.files[:20]]
    lines.append(_summary(found, len(changes)))
    return lines


def _summary(found: Diff, env_changes: int) -> str:
    verdict = found.verdict
    if found.nothing_compared:
        return _nothing_compared(found)
    parts = []
    if found.results_compared:
        failing = sum(not check.passed for check in verdict.checks)
        parts.append(f"{failing} of {len(verdict.checks)} result(s) differ")
    parts.append(f"{env_changes} environment change(s)")
    if verdict.source_changes:
        parts.append(f"{len(verdict.source_changes)} source cell(s) changed")
    if verdict.data is not None:
        parts.append(f"{len(verdict.data.drifted)} data path(s) changed")
    return ("DIFFERS: " if found.differs else "SAME: ") + ", ".join(parts)


def _nothing_compared(found: Diff) -> str:
    """Why neither results, environment nor data could be compared."""
    missing = [name for name, side in (("A", found.a), ("B", found.b)) if side.snapshot is None]
    results = "results are not compared with the environment now"
    if found.results_compared:
        results = "no results on either side"
    snapshots = f"no environment snapshot in {' and '.join(missing)}" if missing else ""
    reasons = ", ".join(part for part in (results, snapshots, "no data recorded") if part)
    return f"NOTHING COMPARED: {reasons}"


def print_diff(found: Diff, console: Console | None = None) -> None:
    from rich.console import Console

    out: Any = console or Console(width=None if sys.stdout.isatty() else 160)
    lines = diff_lines(found)
    for line in lines[:-1]:
        out.print(line, markup=False, highlight=False)
    if found.results_compared and found.verdict.checks:
        title = "results of B against A (A is the reference)"
        out.print(verdict_table(found.verdict, title=title, notebook_column=False))
    style = "bold red" if found.differs or found.nothing_compared else "bold green"
    out.print(lines[-1], style=style, markup=False, highlight=False)


def diff_json(found: Diff) -> str:
    document = {
        "a": {"label": found.a.label, "kind": found.a.kind},
        "b": {"label": found.b.label, "kind": found.b.kind},
        "differs": found.differs,
        "nothing_compared": found.nothing_compared,
        "results_compared": found.results_compared,
        "verdict": to_builtins(found.verdict),
    }
    return (
        json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
    )
