"""``reprokit check``: is every notebook's lock current? (The pre-commit hook's command.)

Exit codes: 0 every lock current (notebooks without a lock are warnings, unless
``--require-lock``); 1 a lock is stale (a source cell changed, was added or removed since it was
recorded) or left without its notebook, or a notebook has no lock under ``--require-lock``;
2 bad input (a missing path, an unreadable notebook, a malformed lock).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from reprokit.cli._options import GivenPath

if TYPE_CHECKING:
    from reprokit.api.check import LockFreshness


@click.command("check")
@click.argument("paths", nargs=-1, type=GivenPath(path_type=Path))
@click.option("--require-lock", is_flag=True, help="Fail (exit 1) for a notebook that has no lock.")
@click.option("-v", "--verbose", is_flag=True, help="List current locks too.")
def check_command(paths: tuple[Path, ...], require_lock: bool, verbose: bool) -> None:
    """Check that each notebook's lock matches its source (cell sources only; outputs and
    metadata do not count). PATHS: notebooks, locks or folders [default: the current folder]."""
    from reprokit.api.check import check_locks

    checked = check_locks(paths or (Path("."),))
    for item in checked:
        line = _line(item, require_lock)
        if item.status != "current" or verbose:
            click.echo(line, err=item.status != "current")
    _fail_if_any(checked, require_lock)


def _fail_if_any(checked: list[LockFreshness], require_lock: bool) -> None:
    """The closing lines (notebooks to re-record, orphan locks) and exit 1, if any failed."""
    from reprokit.report.describe import describe_check_failures

    failed = [f for f in checked if f.failed(require_lock=require_lock)]
    orphans = sum(f.status == "orphan" for f in failed)
    notebooks = sum(f.status != "orphan" for f in checked)
    for line in describe_check_failures(len(failed) - orphans, notebooks, orphans):
        click.echo(line, err=True)
    if failed:
        sys.exit(1)


def _line(item: LockFreshness, require_lock: bool) -> str:
    from reprokit.recording.lock import lock_path_for

    if item.status == "current":
        return f"current  {item.notebook}"
    if item.status == "no_lock":
        kind = "error" if require_lock else "warning"
        return f"no lock  {item.notebook} ({kind}: no {lock_path_for(item.notebook).name})"
    if item.status == "orphan":
        return f"orphan   {item.lock_path}: its notebook {item.notebook} is gone"
    cells = ", ".join(f"cell {c.index + 1} ({c.cell_type}) {c.change}" for c in item.changes[:20])
    more = f", and {len(item.changes) - 20} more" if len(item.changes) > 20 else ""
    return f"stale    {item.notebook}: {cells}{more} since {item.lock_path} was recorded"
