"""Verdicts as ONE self-contained HTML file a reviewer can attach to a review.

Inline CSS, inline SVG, no script and no network asset. Per notebook: a verdict banner
(green/red), the results with their deviation against the tolerance (a small bar: the
tolerance is the tick in the middle, a bar past it is out of tolerance), the environment
diff, the data check with digests, git state, and the command that re-runs the verification.
Every free-text field goes through ``redact_text`` and is HTML-escaped; digests are not
free text and are shown whole.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Iterable, Sequence

from reprokit._fsutil import atomic_write_text
from reprokit.capturing.redact import redact_text
from reprokit.compare.verify import ResultCheck, Verdict
from reprokit.report.table import (
    OLD_END_LINE_HINT,
    as_verdicts,
    format_deviation,
    format_tolerance,
    output_lines,
    verdict_line,
)

__all__ = ["render_html", "tolerance_ratio", "write_html"]

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#1f2328}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em}h3{font-size:1em;margin:1.2em 0 .4em}
.banner{padding:.8em 1em;border-radius:6px;font-weight:600;color:#fff}
.ok{background:#1a7f37}.fail{background:#cf222e}
table{border-collapse:collapse;margin:.4em 0;width:100%}
th,td{border:1px solid #d0d7de;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f6f8fa}code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;
font-size:12px;word-break:break-all}
td:first-child code{word-break:normal;overflow-wrap:break-word}
.s-reproduced,.s-within_tolerance,.s-ok{color:#1a7f37;font-weight:600}
.s-nondeterministic{color:#8250df;font-weight:600}
.s-differs,.s-missing,.s-changed{color:#cf222e;font-weight:600}.s-unexpected{color:#9a6700}
pre{background:#f6f8fa;padding:.6em;border-radius:6px;overflow-x:auto}
"""


def _e(text: object) -> str:
    """Redacted and escaped free text."""
    return html.escape(redact_text("" if text is None else str(text)))


def _digest(text: str | None) -> str:
    return f'<span class="mono">{html.escape(text or "-")}</span>'


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def tolerance_ratio(check: ResultCheck) -> float | None:
    """The largest error as a fraction of what the tolerance allows (1 = at the limit);
    None when nothing was measured or the tolerance is exact."""
    deviation = check.deviation
    if deviation is None or check.tolerance.is_exact:
        return None
    rtol, atol = check.tolerance.resolved()
    errors = (deviation.max_rel_error, deviation.max_abs_error)
    if any(isinstance(e, str) for e in errors):
        return math.inf
    rel, absolute = (float(e) for e in errors)
    ratios = ([rel / rtol] if rtol else []) + ([absolute / atol] if atol else [])
    return min(ratios) if ratios else None


def _bar(check: ResultCheck) -> str:
    ratio = tolerance_ratio(check)
    if not ratio:  # nothing measured, exact tolerance, or no drift at all
        return ""
    width = 120
    filled = width if math.isinf(ratio) else min(ratio, 2.0) / 2.0 * width
    colour = "#1a7f37" if ratio <= 1 else "#cf222e"
    label = _ratio_label(ratio)
    return (
        f'<svg width="{width + 10 + 7 * len(label)}" height="14" role="img" '
        f'aria-label="{label} of the tolerance">'
        f'<rect x="0" y="2" width="{width}" height="10" fill="#eaeef2"/>'
        f'<rect x="0" y="2" width="{filled:.1f}" height="10" fill="{colour}"/>'
        f'<line x1="{width / 2}" y1="0" x2="{width / 2}" y2="14" stroke="#1f2328"/>'
        f'<text x="{width + 4}" y="11" font-size="10">{label}</text></svg>'
    )


def _wrappable(name: str) -> str:
    """A result name that wraps after ``_``, ``.`` or ``/``, never inside a word."""
    escaped = _e(name)
    for mark in ("_", ".", "/"):
        escaped = escaped.replace(mark, mark + "<wbr>")
    return escaped


def _ratio_label(ratio: float) -> str:
    """The deviation in tolerances: ``0.42x``, ``8.7x``, ``870x``, ``1.2e+06x`` (fits the SVG)."""
    if math.isinf(ratio):
        return "inf"
    if ratio < 100:
        return f"{ratio:.2g}x"
    return f"{ratio:.0f}x" if ratio < 1e6 else f"{ratio:.1e}x"


def _results(verdict: Verdict) -> str:
    rows = [
        (
            f"<code>{_wrappable(c.name)}</code>",
            f'<span class="s-{c.status}">{_e(c.status)}</span>',
            _e(c.reference or "-"),
            _e(c.obtained or "-"),
            _e(format_deviation(c.deviation)) + (f"<br>{_e(c.message)}" if not c.passed else ""),
            _e(format_tolerance(c.tolerance, c.tolerance_source)),
            _bar(c),
        )
        for c in verdict.checks
    ]
    headers = ("result", "status", "reference", "obtained", "deviation", "tolerance", "vs tol")
    return "<h3>Results</h3>" + _table(headers, rows)


def _outputs(verdict: Verdict) -> str:
    """Cell outputs (``--outputs``): a summary, and a row for every cell that did not
    reproduce exactly."""
    if not verdict.outputs_compared:
        return ""
    lines = output_lines(verdict)
    rows = [
        (
            _e(check.index + 1),  # cells are numbered from 1 in every message
            f'<span class="s-{_e(check.status)}">{_e(check.status)}</span>',
            _e(check.location or "-"),
            f"<code>{_e(check.reference or '-')}</code>",
            f"<code>{_e(check.obtained or '-')}</code>",
            _e(check.note),
        )
        for check in verdict.outputs
        if check.status != "reproduced"
    ]
    headers = ("cell", "status", "where", "reference", "obtained", "detail")
    table = _table(headers, rows) if rows else ""
    return "<h3>Cell outputs</h3>" + "".join(f"<p>{_e(line)}</p>" for line in lines) + table


def _environment(verdict: Verdict) -> str:
    return _rebuilt(verdict) + _env_diff(verdict)


def _rebuilt(verdict: Verdict) -> str:
    if verdict.rebuilt is None:
        return ""
    from reprokit.report.describe import rebuilt_lines

    first, *rest = rebuilt_lines(verdict.rebuilt)
    items = "".join(f"<li>{_e(line)}</li>" for line in rest)
    return f"<h3>Rebuilt environment</h3><p>{_e(first)}</p>" + (
        f"<ul>{items}</ul>" if items else ""
    )


def _env_diff(verdict: Verdict) -> str:
    if verdict.env_diff is None:
        return "<h3>Environment</h3><p>No snapshot on one side: not compared.</p>"
    if verdict.env_diff.is_empty and not verdict.env_diff.notes:
        return "<h3>Environment</h3><p>No difference from the reference environment.</p>"
    rows = [
        (_e(c.category), _e(c.key), _e(c.reference or "-"), _e(c.current or "-"), _e(c.hint))
        for c in (*verdict.env_diff.changes, *verdict.env_diff.notes)  # notes: "not counted"
    ]
    headers = ("category", "item", "reference", "now", "why it matters")
    return "<h3>Environment diff</h3>" + _table(headers, rows)


def _data(verdict: Verdict) -> str:
    if verdict.data is None or not verdict.data.entries:
        return ""
    rows = []
    for entry in verdict.data.entries:
        files = "<br>".join(f"{_e(f.change)}: <code>{_e(f.path)}</code>" for f in entry.files)
        rows.append(
            (
                f"<code>{_e(entry.path)}</code>",
                _e(entry.kind),
                f'<span class="s-{entry.status}">{_e(entry.status)}</span>',
                _digest(f"{entry.algorithm}:{entry.reference_digest}"),
                _digest(entry.current_digest and f"{entry.algorithm}:{entry.current_digest}"),
                files or _e(entry.reason),
            )
        )
    headers = ("path", "kind", "status", "locked digest", "current digest", "changes")
    return "<h3>Data</h3>" + _table(headers, rows)


def _provenance(verdict: Verdict) -> str:
    rows = [("devices", _e(f"{verdict.reference_device} reference, {verdict.current_device} now"))]
    git = verdict.git
    if git is not None and git.available:
        state = "dirty (uncommitted changes)" if git.dirty else "clean"
        rows += [("git commit", _digest(git.commit)), ("git state", _e(state))]
        rows += [("branch", _e(git.branch or "(detached HEAD)")), ("remote", _e(git.remote_url))]
    elif git is not None:
        rows.append(("git", _e(f"unavailable ({git.reason})")))
    if verdict.run_id:
        rows.append(("reference MLflow run", _digest(verdict.run_id)))
    cell = verdict.divergent_cell
    if cell is not None and cell.index is not None and not verdict.outputs_compared:
        changed_output = f"cell {cell.index + 1}: {cell.reason}"
        changed_output += OLD_END_LINE_HINT if cell.old_end_line else ""
        rows.append(("first cell whose output changed", _e(changed_output)))
    if verdict.source_changes:
        changed = ", ".join(str(k + 1) for k in verdict.source_changes)
        rows.append(("source changed since the lock", _e(f"cells {changed}")))
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<h3>Provenance</h3><table><tbody>{body}</tbody></table>"


def _command(verdict: Verdict) -> str:
    command = (
        verdict.command or f"reprokit verify {verdict.notebook} --device {verdict.current_device}"
    )
    return f"<h3>Re-run</h3><pre>{_e(command)}</pre>"


def _section(verdict: Verdict) -> str:
    banner = "ok" if verdict.reproduced else "fail"
    return (
        f"<section><h2>{_e(verdict.notebook)}</h2>"
        f'<div class="banner {banner}">{_e(verdict_line(verdict))}</div>'
        + _results(verdict)
        + _outputs(verdict)
        + _data(verdict)
        + _environment(verdict)
        + _provenance(verdict)
        + _command(verdict)
        + "</section>"
    )


def render_html(
    verdicts: Verdict | Sequence[Verdict], *, title: str = "reprokit verification"
) -> str:
    listed = as_verdicts(verdicts)
    passed = all(v.reproduced for v in listed)
    overall = "REPRODUCED" if passed else "NOT REPRODUCED"
    reproduced = sum(v.reproduced for v in listed)
    summary = f"{overall}: {reproduced} of {len(listed)} notebook(s) reproduced"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1>"
        f'<div class="banner {"ok" if passed else "fail"}">{_e(summary)}</div>'
        + "".join(_section(v) for v in listed)
        + "</body></html>\n"
    )


def write_html(
    verdicts: Verdict | Sequence[Verdict], path: str | os.PathLike[str], *, title: str = ""
) -> None:
    atomic_write_text(path, render_html(verdicts, title=title or "reprokit verification"))
