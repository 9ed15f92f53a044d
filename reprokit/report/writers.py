"""The report files a verification can write, by kind: ``html``, ``junit``, ``json``.

A new report format is a module in this package with a ``write_*(verdicts, path)`` function,
named here; each is imported only when its kind is written.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from reprokit.compare.verify import Verdict

__all__ = ["REPORTS", "ReportKind", "write_report"]

ReportKind = Literal["html", "junit", "json"]

REPORTS: dict[ReportKind, str] = {
    "html": "reprokit.report.html:write_html",
    "junit": "reprokit.report.junit:write_junit",
    "json": "reprokit.report.json_report:write_json_report",
}
"""kind -> ``module:function`` that writes it."""


def write_report(
    kind: ReportKind, verdicts: Verdict | Sequence[Verdict], path: str | os.PathLike[str]
) -> None:
    """Write ``verdicts`` as a ``kind`` report to ``path`` (atomically)."""
    module, _, function = REPORTS[kind].partition(":")
    getattr(importlib.import_module(module), function)(verdicts, path)
