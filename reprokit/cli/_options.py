"""Command-line options shared by the commands that execute notebooks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def execution_options(command: F) -> F:
    """PATHS and the options every executing command takes (run, record, verify)."""
    options = [
        click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path)),
        click.option(
            "--device",
            type=click.Choice(["cpu", "cuda", "auto"]),
            default="auto",
            show_default=True,
            help="cpu hides GPUs from the kernel; cuda fails unless a GPU is visible.",
        ),
        click.option(
            "-p",
            "--parameter",
            "assignments",
            multiple=True,
            metavar="NAME=VALUE",
            help="Set a parameter of the notebook's 'parameters' cell (JSON, else text).",
        ),
        click.option(
            "--jobs", "-j", type=int, default=1, show_default=True, help="Notebooks at once."
        ),
        click.option("--timeout", type=float, default=None, help="Seconds each cell may run."),
        click.option("--kernel", default=None, help="Kernel name [default: the notebook's]."),
        click.option(
            "--output-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Folder of the executed notebooks [default: <project>/.reprokit/runs/...].",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command
