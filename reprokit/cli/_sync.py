"""``reprokit sync``: complete in MLflow the runs whose process died before they got there.

Exit codes: 0 every pending journal was replayed (or is still being recorded by a live
process, or belongs to another store); 2 a journal cannot be read or replayed (named: one whose
start event was lost is kept, never removed as empty), or the store cannot be opened.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from reprokit._warn import escaped_controls
from reprokit.cli._options import GivenPath

WAIT_S = 600.0


@click.command("sync")
@click.argument("path", required=False, type=GivenPath(path_type=Path), default=Path("."))
@click.option("--tracking-uri", default=None, help="The store to replay into [default: resolved].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per journal.")
@click.option(
    "--wait",
    "wait",
    is_flag=True,
    help="First wait (up to 10 minutes) for the background writers of ended runs.",
)
def sync_command(path: Path, tracking_uri: str | None, as_json: bool, wait: bool) -> None:
    """Replay the run journals of the project at PATH (default: here) into MLflow: the runs
    of kernels killed before MLflow had everything. With --wait, every run ended so far is in
    MLflow when it returns. One line per journal."""
    from reprokit._serde import to_builtins
    from reprokit.api.sync import sync
    from reprokit.report.describe import NOTHING_TO_REPLAY, describe_replay

    replays = sync(path, tracking_uri=tracking_uri, wait=WAIT_S if wait else None)
    here = Path.cwd()
    for replay in replays:
        click.echo(json.dumps(to_builtins(replay)) if as_json else describe_replay(replay, here))
    if not replays and not as_json:
        click.echo(NOTHING_TO_REPLAY)
    bad = [r for r in replays if r.status in ("unreadable", "failed", "startless")]
    if bad:
        click.echo(f"reprokit: error: {escaped_controls(describe_replay(bad[0], here))}", err=True)
        sys.exit(2)
