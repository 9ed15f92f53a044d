"""The report files a verification can write, by kind: ``html``, ``junit``, ``json``.

A new report format is a module in this package with a ``write_*(verdicts, path)`` function,
named here; each is imported only when its kind is written.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from reprokit._fsutil import partial_prefix
from reprokit.exceptions import UsageError

if TYPE_CHECKING:
    from reprokit.compare.verify import Verdict

__all__ = ["REPORTS", "ReportKind", "prepare_report_target", "write_report"]

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


def prepare_report_target(path: str | os.PathLike[str], option: str) -> None:
    """Make the folder of a report file (as pytest's ``--junitxml`` does) and check that a file
    can be written there, so that an impossible target stops a command before anything runs.
    A :class:`~reprokit.exceptions.UsageError` naming the path and ``option`` otherwise."""
    target = Path(path)
    reason = "is a folder, not a file" if target.is_dir() else None
    if reason is None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(
                prefix=partial_prefix(target.name), suffix=".tmp", dir=target.parent
            )
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            reason = f"cannot be written ({exc.strerror or type(exc).__name__})"
    if reason is not None:
        raise UsageError(
            f"{option} {target}: {reason}; give a path in a writable folder",
            path=str(target),
            option=option,
        )
