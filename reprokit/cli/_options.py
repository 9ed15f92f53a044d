"""Command-line options shared by the commands that execute notebooks.

``--secret-param``, ``--notebook-timeout`` and ``--memory-limit`` are not passed to the
command's function: they become the :class:`~reprokit.api.run.RunnerSettings` of every
notebook the command runs, and the command runs with ``SIGINT``/``SIGTERM`` stopping its
kernels (see :func:`reprokit.api.run.runner_settings`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)
_RUNNER_OPTIONS = ("secret_assignments", "notebook_timeout", "memory_limit")


def parse_size(text: str) -> int:
    """``"512M"``, ``"2G"``, ``"1.5GiB"``, ``"1000000"`` (bytes) -> bytes."""
    from reprokit.exceptions import UsageError

    match = _SIZE.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise UsageError(f"--memory-limit {text!r}: expected a size such as 512M or 2G")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def _with_runner_settings(command: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        from reprokit.api.run import RunnerSettings, runner_settings
        from reprokit.runner.params import parse_secret_assignments

        secrets, limit_s, memory = (kwargs.pop(name) for name in _RUNNER_OPTIONS)
        settings = RunnerSettings(
            parse_secret_assignments(secrets),
            limit_s,
            parse_size(memory) if memory is not None else None,
        )
        with runner_settings(settings):
            return command(**kwargs)

    return wrapper


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
        click.option(
            "--notebook-timeout",
            type=float,
            default=None,
            help="Seconds the whole notebook may run; its kernel is then stopped.",
        ),
        click.option(
            "--memory-limit",
            default=None,
            metavar="SIZE",
            help="Cap each kernel's memory (e.g. 2G): allocations past it raise MemoryError.",
        ),
        click.option(
            "--secret-param",
            "secret_assignments",
            multiple=True,
            metavar="NAME[=VALUE]",
            help="A parameter the kernel gets but that is never written anywhere (notebook, "
            "MLflow, lock); NAME alone reads the value from the environment variable NAME.",
        ),
        click.option("--kernel", default=None, help="Kernel name [default: the notebook's]."),
        click.option(
            "--output-dir",
            type=click.Path(file_okay=False, path_type=Path),
            default=None,
            help="Folder of the executed notebooks [default: <project>/.reprokit/runs/...].",
        ),
    ]
    wrapped = _with_runner_settings(command)
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped  # type: ignore[return-value]
