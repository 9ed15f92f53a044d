"""``reprokit diff A [B]``: what differs between two locks, runs or executed notebooks, or
between one of them and the current environment (B left out).

Exit codes: 0 nothing differs; 1 something differs (a result beyond tolerance, an environment
change, a data change, a notebook cell's source); 2 bad usage or input (a side that cannot be
read), or nothing could be compared (no results on both sides, a side without a snapshot, no
data).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from reprokit.cli._options import GivenPath, GivenText, tolerance_options

if TYPE_CHECKING:
    from reprokit.options import ComparisonOptions


@click.command("diff")
@click.argument("a", type=GivenText())
@click.argument("b", required=False, type=GivenText())
@tolerance_options
@click.option(
    "--json", "json_path", type=GivenPath(path_type=Path), default=None, help="JSON diff."
)
def diff_command(
    a: str, b: str | None, comparison: ComparisonOptions, json_path: Path | None
) -> None:
    """Environment, data and result differences of B against A.

    A and B are each a lock (<stem>.repro.json), a notebook with a lock, an executed notebook,
    an MLflow run id (or runs:/ID) recorded by reprokit, or 'current' (the environment now:
    the default for B; beside a lock, its data files are re-hashed).
    """
    from reprokit.api.diff import diff
    from reprokit.report.diff import diff_json, print_diff

    found = diff(a, b, comparison=comparison)
    print_diff(found)
    if json_path is not None:
        from reprokit._fsutil import atomic_write_text

        atomic_write_text(json_path, diff_json(found))
        click.echo(f"wrote {json_path}")
    if found.differs or found.nothing_compared:
        sys.exit(1 if found.differs else 2)
