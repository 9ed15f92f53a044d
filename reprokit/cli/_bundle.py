"""``reprokit bundle``: notebooks, locks, data, environment, reports and metadata in one zip.

Exit codes: 0 the bundle was written; 2 bad usage or input (no notebook with a lock, a file
that leads outside the project, a credentials file among a lock's data, an output that is not a
``.zip``).
"""

from __future__ import annotations

from pathlib import Path

import click

from reprokit.cli._options import GivenName, GivenPath


@click.command("bundle")
@click.argument("paths", nargs=-1, required=True, type=GivenPath(path_type=Path))
@click.option(
    "-o", "--output", type=GivenPath(dir_okay=False, path_type=Path), required=True,
    help="The zip file to write (replaced atomically).",
)  # fmt: skip
@click.option(
    "--with-data/--no-data", "with_data", default=None,
    help="Pack the locks' data whatever its size / never [default: when at most --data-limit].",
)  # fmt: skip
@click.option(
    "--data-limit", type=click.IntRange(min=0), default=50_000_000, show_default=True,
    help="Bytes of data packed without --with-data.",
)  # fmt: skip
@click.option("--pylock", is_flag=True, help="Also export pylock.toml (asks the package index).")
@click.option(
    "--title", type=GivenName(), default=None,
    help="Title for CITATION.cff and the RO-Crate metadata.",
)  # fmt: skip
@click.option(
    "--author", "authors", type=GivenName(), multiple=True,
    help="An author for CITATION.cff (repeat).",
)  # fmt: skip
@click.option(
    "--license", "license_id", type=GivenName(), default=None,
    help="SPDX identifier, e.g. CC-BY-4.0.",
)  # fmt: skip
def bundle_command(
    paths: tuple[Path, ...], output: Path, with_data: bool | None, data_limit: int,
    pylock: bool, title: str | None, authors: tuple[str, ...], license_id: str | None,
) -> None:  # fmt: skip
    """Pack notebooks with their locks, data, exported environment, last verification report,
    README, CITATION.cff and RO-Crate metadata into one zip; `reprokit verify OUTPUT` checks it."""
    from reprokit.api.bundle import bundle
    from reprokit.options import BundleOptions
    from reprokit.report.bundle import describe_bundle

    data = "auto" if with_data is None else ("always" if with_data else "never")
    options = BundleOptions(data, data_limit, pylock, title, authors, license_id)
    done = bundle(paths, output, options)
    for line in describe_bundle(done):
        click.echo(line, err=line.startswith("reprokit:"))
