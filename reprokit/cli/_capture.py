"""``reprokit env`` and ``reprokit hash``: the capture stage from the command line."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from reprokit._warn import escaped_controls
from reprokit.cli._options import GivenPath
from reprokit.exceptions import DigestMismatchError, UsageError

if TYPE_CHECKING:
    from reprokit.capturing.model import DataEntry

_ALGORITHMS = ("blake3", "sha256", "md5")


@click.group("env", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the full snapshot as JSON.")
@click.option(
    "--root",
    type=GivenPath(file_okay=False, path_type=Path),
    default=None,
    help="Folder whose git state is captured (default: the current folder).",
)
@click.pass_context
def env_command(ctx: click.Context, as_json: bool, root: Path | None) -> None:
    """Show the environment reprokit captures: Python, OS, packages, git, BLAS, GPU/CUDA.

    With a subcommand: export a lock's environment, list or prune rebuilt environments."""
    from reprokit._serde import to_json
    from reprokit.capturing.snapshot import capture
    from reprokit.report.text import format_snapshot

    if ctx.invoked_subcommand is not None:
        return
    snapshot = capture(root=root)
    click.echo(to_json(snapshot) if as_json else format_snapshot(snapshot), nl=not as_json)


@env_command.command("export")
@click.argument("lock", type=GivenPath(dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("requirements", "pylock", "conda")),
    default="requirements",
    show_default=True,
    help="requirements.txt, pylock.toml (PEP 751) or conda's environment.yml.",
)
@click.option(
    "--only-imported", is_flag=True, help="Only what the notebook imported, with dependencies."
)
@click.option(
    "-o", "--output", type=GivenPath(dir_okay=False, path_type=Path), help="File to write."
)
@click.option("--device", type=click.Choice(("cpu", "cuda")), default="cpu", show_default=True)
def env_export_command(
    lock: Path, fmt: str, only_imported: bool, output: Path | None, device: str
) -> None:
    """Export LOCK's environment (or that of a notebook's lock) with exact pins; what cannot
    be pinned for reuse (a local path) is named on stderr and in the file's comments."""
    from reprokit._fsutil import atomic_write_text
    from reprokit.api.env import export_env
    from reprokit.report.writers import prepare_report_target

    if output is not None:  # its folder made, an unwritable path one line (before the index)
        prepare_report_target(output, "--output")
    done = export_env(lock, fmt, only_imported=only_imported, device=device)
    for line in done.unpinnable:
        click.echo(f"reprokit: not pinnable, left out: {escaped_controls(line)}", err=True)
    for line in done.unresolved:
        click.echo(f"reprokit: no file for this platform: {escaped_controls(line)}", err=True)
    if output is None:
        click.echo(done.text, nl=False)
    else:
        atomic_write_text(output, done.text)


@env_command.command("list")
def env_list_command() -> None:
    """List the environments rebuilt by verify --rebuild-env (cache: $REPROKIT_ENV_CACHE,
    else $XDG_CACHE_HOME/reprokit/envs)."""
    from reprokit.api.env import list_envs
    from reprokit.report.describe import describe_cached_env

    for env in list_envs():
        click.echo(describe_cached_env(env))


@env_command.command("prune")
@click.option("--older-than", type=float, default=None, metavar="DAYS", help="Unused this long.")
@click.option("--all", "everything", is_flag=True, help="Every cached environment.")
def env_prune_command(older_than: float | None, everything: bool) -> None:
    """Remove rebuilt environments unused for --older-than DAYS, or --all of them (and what
    killed builds left)."""
    from reprokit.api.env import prune_envs
    from reprokit.report.describe import describe_cached_env

    if everything == (older_than is not None):
        raise UsageError("give exactly one of --older-than DAYS and --all", option="--all")
    for env in prune_envs(None if everything else older_than):
        click.echo("removed " + describe_cached_env(env))


@click.command("hash")
@click.argument("paths", nargs=-1, required=True, type=GivenPath())
@click.option(
    "--algo",
    "algorithm",
    type=click.Choice(_ALGORITHMS),
    default=None,
    help="Digest algorithm [default: blake3, or the one named by --expect].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the data manifest as JSON.")
@click.option(
    "--expect",
    "expected",
    multiple=True,
    metavar="ALGO:DIGEST",
    help="Fail (exit 1) unless the digest matches; give one per PATH, in order.",
)
@click.option("--no-cache", is_flag=True, help="Do not read or write the hash cache.")
@click.option("--files", "list_files", is_flag=True, help="List every file of a directory.")
def hash_command(
    paths: tuple[str, ...],
    algorithm: str | None,
    as_json: bool,
    expected: tuple[str, ...],
    no_cache: bool,
    list_files: bool,
) -> None:
    """Hash files and folders (a folder's digest is a Merkle digest over its files); unchanged
    files come from a cache keyed on inode, size and mtime (about one stat per file)."""
    from reprokit._serde import to_json
    from reprokit.capturing.hashing import hash_paths
    from reprokit.report.text import format_entry

    algorithm = _checked(paths, expected, algorithm)
    manifest = hash_paths(paths, algorithm=algorithm, cache=None if no_cache else "default")
    if as_json:
        click.echo(to_json(manifest), nl=False)
    else:
        for entry in manifest.entries:
            click.echo(format_entry(entry, list_files=list_files))
    if _mismatches(manifest.entries, expected):
        sys.exit(DigestMismatchError.exit_code)


def _checked(paths: tuple[str, ...], expected: tuple[str, ...], algorithm: str | None) -> str:
    """The algorithm to hash with (``--algo``, else the first ``--expect``'s, else BLAKE3),
    once the paths and the expected digests are checked."""
    from reprokit.capturing.hashing import parse_expected

    if expected and len(expected) != len(paths):
        raise UsageError(
            f"--expect was given {_count(len(expected), 'time')} for "
            f"{_count(len(paths), 'path')}: give one ALGO:DIGEST per path, in the same order"
        )
    specs = [parse_expected(spec, option="--expect") for spec in expected]
    if algorithm is None:
        algorithm = specs[0][0] if specs else "blake3"
    return algorithm


def _mismatches(entries: Sequence[DataEntry], expected: tuple[str, ...]) -> int:
    """How many entries differ from their ``--expect`` digest (each one printed)."""
    from reprokit.capturing.hashing import check_expected

    failures = 0
    for entry, spec in zip(entries, expected, strict=False):  # lengths checked before
        try:
            check_expected(entry, spec)
        except DigestMismatchError as exc:
            click.echo(f"reprokit: {escaped_controls(str(exc))}", err=True)
            failures += 1
    return failures


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
