"""Readable renderings (text/plain and text/html) of results, snapshots and session status.

These are the human side of the notebook outputs: the machine side is the reprokit MIME
payload next to them. Renderers take the data model and return strings; nothing here prints.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reprokit.capturing.model import Snapshot
from reprokit.report.text import (
    accelerator_summary,
    data_rows,
    git_summary,
    plugin_rows,
    seed_summary,
    table_text,
)
from reprokit.results.describe import value_text
from reprokit.results.model import Result


@dataclass(frozen=True)
class View:
    """A text + HTML rendering that Jupyter shows as HTML and a terminal as text."""

    text: str
    html: str

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        return self.html

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.text)


def table_html(rows: Sequence[tuple[str, str]], *, caption: str = "") -> str:
    cap = f"<caption style='text-align:left'><b>{html.escape(caption)}</b></caption>"
    body = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
        f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
        for k, v in rows
    )
    return f"<table class='reprokit'>{cap if caption else ''}{body}</table>"


def table_view(rows: Sequence[tuple[str, str]], *, caption: str = "") -> View:
    return View(table_text(rows, caption=caption), table_html(rows, caption=caption))


# --- results ---------------------------------------------------------------------------


def _tolerance(result: Result) -> str:
    parts = [
        f"{k}={v:g}" for k, v in (("rtol", result.rtol), ("atol", result.atol)) if v is not None
    ]
    return ", ".join(parts)


def result_summary(result: Result) -> str:
    """One line: ``acc = 0.931 (float; rtol=0.001)``."""
    note = "; ".join(p for p in (result.type_name, _tolerance(result)) if p)
    return f"{result.name} = {value_text(result)} ({note})"


def result_view(result: Result) -> View:
    text = "reprokit result: " + result_summary(result)
    rows = [("result", result.name), ("type", result.type_name), ("value", _value_cell(result))]
    if result.array is not None:
        rows.append(("digest", result.array.digest))
    if _tolerance(result):
        rows.append(("tolerance", _tolerance(result)))
    return View(text, table_html(rows))


def _value_cell(result: Result) -> str:
    return value_text(result)


# --- snapshot and environment -------------------------------------------------------------


def environment_rows(snapshot: Snapshot) -> list[tuple[str, str]]:
    """The facts of a snapshot as (label, value) rows, most telling first."""
    py, pl = snapshot.python, snapshot.platform
    rows = [
        (
            "python",
            f"{py.implementation} {py.version}" + (f" ({py.executable})" if py.executable else ""),
        ),
        ("platform", f"{pl.os_name}, {pl.system} {pl.release}, {pl.machine}"),
        ("cpu", f"{pl.cpu_model or 'unknown'}, {pl.logical_cores} logical cores"),
        ("accelerator", accelerator_summary(snapshot.accelerator)),
        ("torch", snapshot.accelerator.torch_version or "not imported"),
        ("packages", f"{len(snapshot.packages)} installed, {len(snapshot.imported)} imported"),
        ("imported", ", ".join(f"{k} {v}" for k, v in sorted(snapshot.imported.items()))),
        ("threads", ", ".join(f"{t.internal_api} {t.num_threads}" for t in snapshot.threadpools)),
        ("git", git_summary(snapshot.git)),
        ("seed", seed_summary(snapshot.seeds)),
    ]
    rows += data_rows(snapshot.data)
    rows += [(f"plugin: {k}", v) for k, v in plugin_rows(snapshot)]
    rows += [(f"env: {k}", v) for k, v in sorted(snapshot.environment.items())]
    return [(k, v if v else "—") for k, v in rows]


def environment_view(snapshot: Snapshot) -> View:
    return table_view(environment_rows(snapshot), caption="reprokit environment")


def snapshot_view(snapshot: Snapshot, run: dict[str, Any]) -> View:
    """What ``start`` shows: where the run goes and the facts that matter most."""
    rows = [(k, str(v)) for k, v in run.items() if v is not None]
    rows += [
        ("python", snapshot.python.version),
        ("accelerator", accelerator_summary(snapshot.accelerator)),
        ("git", git_summary(snapshot.git)),
        ("seed", seed_summary(snapshot.seeds)),
    ]
    rows += data_rows(snapshot.data)
    return table_view(rows, caption="reprokit run started")


# --- MLflow run description ---------------------------------------------------------------


def run_note_markdown(snapshot: Snapshot, *, notebook: str | None = None) -> str:
    """The short Markdown summary MLflow shows as the run's description."""
    lines = ["**reprokit** run" + (f" of `{notebook}`" if notebook else ""), ""]
    lines += ["| | |", "|---|---|"]
    for key, value in environment_rows(snapshot):
        if key.startswith("env: ") or key == "imported":
            continue
        lines.append(f"| {key} | {value.replace('|', '/')} |")
    return "\n".join(lines) + "\n"
