"""``reprokit gc``: prune old run folders and unreferenced stored objects.

Exit codes: 0 done (or, with ``--dry-run``, listed); 2 bad usage (a negative ``--keep``) or a
lock gc cannot read (it may name any run: nothing is removed).
"""

from __future__ import annotations

from pathlib import Path

import click

from reprokit.cli._options import GivenPath
from reprokit.recording.retention import DEFAULT_KEEP


@click.command("gc")
@click.argument("path", required=False, type=GivenPath(path_type=Path), default=Path("."))
@click.option(
    "--keep", default=DEFAULT_KEEP, show_default=True, help="Run folders kept per notebook."
)
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@click.option("-v", "--verbose", is_flag=True, help="Also list the folders kept, and why.")
def gc_command(path: Path, keep: int, dry_run: bool, verbose: bool) -> None:
    """Remove the run folders of the project at PATH (default: here) beyond the last KEEP of
    each notebook, never one a lock names or one still being written, then the stored files
    nothing links any more. MLflow's runs and artifacts are not touched."""
    from reprokit.api.gc import gc
    from reprokit.report.disk import describe_gc

    result = gc(path, keep=keep, dry_run=dry_run)
    for line in describe_gc(result, Path.cwd(), verbose=verbose):
        click.echo(line)
