"""GitHub Actions: a Markdown step summary and ``::error`` annotations.

:func:`step_summary` is the Markdown appended to ``$GITHUB_STEP_SUMMARY`` (a table: notebook,
verdict, results reproduced and failed, duration; then each failure explained in a collapsed
block); :func:`annotations` are the workflow commands, one ``::error file=…,line=…,title=…::…``
per notebook that did not reproduce, which GitHub shows on the run and beside the file in a
pull request. Values are escaped as GitHub's toolkit escapes them (``%``, CR and LF in the
message; also ``:`` and ``,`` in properties); every text is redacted before it is written.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Sequence

from reprokit.report.ci import NotebookCase

__all__ = [
    "append_step_summary",
    "error_annotations",
    "escape_data",
    "escape_property",
    "step_summary",
]


def escape_data(text: str) -> str:
    """A workflow command's message: ``%``, CR and LF escaped."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property (``file``, ``title``): also ``:`` and ``,``."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def error_annotations(cases: Sequence[NotebookCase]) -> list[str]:
    """One ``::error`` command per notebook that did not reproduce."""
    commands = []
    for case in cases:
        if case.passed:
            continue
        properties = [f"file={escape_property(case.file)}"]
        if case.line is not None:
            properties.append(f"line={case.line}")
        properties.append(f"title={escape_property('reprokit: ' + case.title)}")
        commands.append(f"::error {','.join(properties)}::{escape_data(_shortened(case.detail))}")
    return commands


_ANNOTATION_CHARS = 4000  # GitHub truncates long annotations; the summary has everything


def _shortened(detail: str) -> str:
    if len(detail) <= _ANNOTATION_CHARS:
        return detail
    return detail[:_ANNOTATION_CHARS] + "\n... (the whole explanation is in the step summary)"


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")


def _cell(text: str) -> str:
    """Text safe in a Markdown table cell: one line, Markdown and HTML characters escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def _fenced(text: str) -> str:
    """A code block no backtick run inside ``text`` can close."""
    runs = [len(run) for run in re.findall(r"`+", text)]
    fence = "`" * max(3, max(runs, default=0) + 1)
    return f"{fence}text\n{text}\n{fence}"


def step_summary(cases: Sequence[NotebookCase]) -> str:
    """The Markdown of one verification: a headline, the table, the failures explained."""
    passed = sum(case.passed for case in cases)
    mark = "✅" if passed == len(cases) else "❌"
    lines = [
        f"### {mark} reprokit verify: {passed} of {len(cases)} notebook(s) reproduced",
        "",
        "| notebook | verdict | results reproduced | results failed | duration |",
        "|---|---|---:|---:|---:|",
    ]
    for case in cases:
        icon = "✅" if case.passed else "❌"
        duration = "cached" if case.cached_at else f"{case.duration_s:.1f} s"
        lines.append(
            f"| {_cell(case.file)} | {icon} {_cell(case.verdict)} | {case.reproduced} "
            f"| {case.failed} | {duration} |"
        )
    for case in cases:
        if not case.passed:
            summary = html.escape(" ".join(case.title.split()))
            lines += ["", f"<details><summary>{summary}</summary>", "", _fenced(case.detail)]
            lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def append_step_summary(cases: Sequence[NotebookCase], path: str | os.PathLike[str]) -> None:
    """Append :func:`step_summary` to ``$GITHUB_STEP_SUMMARY`` (other steps write there too:
    appended, never replaced)."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(step_summary(cases) + "\n")
