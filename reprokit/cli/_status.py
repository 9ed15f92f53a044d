"""``reprokit status``: the disk the project's runs and stored objects use, and the journals
whose background writer failed (why). Exit code 0; 2 for a path that is missing or not a
folder."""

from __future__ import annotations

import json
from pathlib import Path

import click

from reprokit.cli._options import GivenPath


@click.command("status")
@click.argument("path", required=False, type=GivenPath(path_type=Path), default=Path("."))
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
def status_command(path: Path, as_json: bool) -> None:
    """Say how much disk the run folders, stored objects and journals of the project at PATH
    (default: here) use, each file counted once however many hard links share it, and which
    runs a background writer failed to record in MLflow, and why."""
    from reprokit._serde import to_builtins
    from reprokit.api.status import disk_status
    from reprokit.report.disk import describe_disk

    usage = disk_status(path)
    for line in [json.dumps(to_builtins(usage))] if as_json else describe_disk(usage, Path.cwd()):
        click.echo(line)
