"""Command-line options that build the API's option values.

:func:`execution_options` adds PATHS, ``-p NAME=VALUE`` and one flag per field of
:class:`~reprokit.options.ExecutionOptions`; the command receives ``paths``, ``parameters``
(a dict) and ``execution`` (the options object). :func:`comparison_options` does the same for
:class:`~reprokit.options.ComparisonOptions` (``comparison``). A flag's destination is the
field's name; a field whose text needs parsing (a size, ``NAME[=VALUE]`` secrets) has a parser
in ``_PARSERS``. Adding an option: a field in the dataclass, a flag in the list here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from reprokit._warn import escaped_controls

F = TypeVar("F", bound=Callable[..., Any])

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)


EMPTY_PATH = "'': no such file or directory (an empty path was given)"


def refuse_empty(value: object, param: click.Parameter | None) -> None:
    """``""`` given for a path: ``Path("")`` is the current folder, so ``reprokit record "$NB"``
    with ``NB`` unset would re-record every lock under it. Refused, exit 2."""
    if value != "":
        return
    from reprokit.exceptions import UsageError

    if isinstance(param, click.Option):
        flag = max(param.opts, key=len)
        raise UsageError(f"{flag} '': an empty path was given", option=flag, value="")
    raise UsageError(EMPTY_PATH, value="")


class GivenPath(click.Path):
    """A path argument or option that refuses ``""`` (:func:`refuse_empty`)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        refuse_empty(value, param)
        return super().convert(value, param, ctx)


class GivenText(click.ParamType[str, str]):
    """A text argument that may name a path (a lock, a notebook) and so refuses ``""``."""

    name = "text"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        refuse_empty(value, param)
        return value


class GivenName(click.ParamType[str, str]):
    """A name (a kernel, an author, a title, a licence) that must hold more than blanks: an
    unset shell variable (``--kernel "$KERNEL"``) would otherwise fall back silently to the
    default, or write an empty author into CITATION.cff. Refused, exit 2."""

    name = "text"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            from reprokit.exceptions import UsageError

            flag = max(param.opts, key=len) if isinstance(param, click.Option) else "a name"
            raise UsageError(f"{flag} {value!r}: an empty name was given", option=flag, value=value)
        return value


def parse_size(text: str) -> int:
    """``"512M"``, ``"2G"``, ``"1.5GiB"``, ``"1000000"`` (bytes) -> bytes."""
    from reprokit.exceptions import UsageError

    match = _SIZE.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise UsageError(
            f"--memory-limit {text!r}: expected a size such as 512M or 2G",
            option="--memory-limit",
            value=text,
        )
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def _secrets(items: tuple[str, ...]) -> dict[str, str]:
    from reprokit.runner.params import parse_secret_assignments

    return parse_secret_assignments(items)


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "memory_limit": parse_size,
    "secret_parameters": _secrets,
}

_EXECUTION_FLAGS = (
    click.option(
        "--device",
        type=click.Choice(["cpu", "cuda", "auto"]),
        default="auto",
        show_default=True,
        help="cpu hides GPUs from the kernel; cuda fails unless a GPU is visible.",
    ),
    click.option(
        "--jobs",
        "-j",
        type=int,
        default=1,
        show_default=True,
        help="Notebooks at once (2 or more: one more kernel starts ahead).",
    ),
    click.option("--timeout", type=float, default=None, help="Seconds each cell may run."),
    click.option(
        "--notebook-timeout",
        type=float,
        default=None,
        help="Seconds the whole notebook may run; its kernel is then stopped.",
    ),
    click.option(
        "--start-timeout",
        type=float,
        default=60.0,
        show_default=True,
        help="Seconds a kernel may take to start and answer; one silent that long is started "
        "anew, at most twice.",
    ),
    click.option(
        "--memory-limit",
        default=None,
        metavar="SIZE",
        help="Cap each kernel's memory (e.g. 2G): allocations past it raise MemoryError.",
    ),
    click.option(
        "--secret-param",
        "secret_parameters",
        multiple=True,
        metavar="NAME[=VALUE]",
        help="A parameter the kernel gets but that is never written anywhere (notebook, "
        "MLflow, lock); NAME alone reads the value from the environment variable NAME.",
    ),
    click.option(
        "--kernel", type=GivenName(), default=None, help="Kernel name [default: the notebook's]."
    ),
    click.option(
        "--deterministic",
        is_flag=True,
        help="Start each kernel with the determinism settings (CUBLAS_WORKSPACE_CONFIG=:4096:8, "
        "TF_DETERMINISTIC_OPS=1, ...; torch's deterministic algorithms at %repro start).",
    ),
    click.option(
        "--executor",
        type=click.Choice(["local", "dask"]),
        default="local",
        show_default=True,
        help="local: --jobs kernels on this machine; dask: a Dask cluster (an embedded "
        "LocalCluster of --jobs workers, or --scheduler's). Needs reprokit[dask].",
    ),
    click.option(
        "--scheduler",
        default=None,
        metavar="tcp://HOST:PORT",
        help="The scheduler of an existing Dask cluster (with --executor dask).",
    ),
    click.option(
        "--output-dir",
        type=GivenPath(file_okay=False, path_type=Path),
        default=None,
        help="Folder of the executed notebooks [default: <project>/.reprokit/runs/...].",
    ),
)

_TOLERANCE_FLAGS = (
    click.option("--rtol", type=float, default=None, help="Relative tolerance for every result."),
    click.option("--atol", type=float, default=None, help="Absolute tolerance for every result."),
)

_COMPARISON_FLAGS = (
    *_TOLERANCE_FLAGS,
    click.option("--allow-data-drift", is_flag=True, help="Run even if the lock's data changed."),
    click.option(
        "--outputs",
        is_flag=True,
        help="Compare every cell's text output too (numbers within --rtol/--atol, else 1e-6; "
        "timestamps, addresses, durations masked) and name the first cell that diverged.",
    ),
    click.option(
        "--rehash",
        is_flag=True,
        help="Re-read every data file instead of trusting the hash cache (which misses a file "
        "changed in place without a change of size, mtime or ctime, e.g. through mmap).",
    ),
    click.option(
        "--force",
        is_flag=True,
        help="Execute every notebook, also one whose notebook, lock, data and environment are "
        "unchanged since its last REPRODUCED verdict (else reused: 'reproduced (cached)').",
    ),
)


_REPEAT_FLAG = click.option(
    "--repeat",
    "runs",
    type=int,
    default=1,
    show_default=True,
    metavar="N",
    help="Execute each notebook N times and measure how far each result moves between runs.",
)

_WIDEN_FLAG = click.option(
    "--widen-tolerances",
    is_flag=True,
    help="With --repeat: a result that moves beyond its tolerance gets the tolerance "
    "max(declared, 4 x measured spread) in the lock instead of failing.",
)


def _building(cls: type, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Wrap a command so that the flags named like ``cls``'s fields become one ``cls`` value,
    passed as the keyword ``name``."""
    names = [f.name for f in dataclasses.fields(cls)]

    def wrap(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            given = {n: kwargs.pop(n) for n in names if n in kwargs}
            values = {
                n: _PARSERS[n](v) if n in _PARSERS and v is not None else v
                for n, v in given.items()
            }
            return command(**kwargs, **{name: cls(**values)})

        return wrapper

    return wrap


def _with_parameters(command: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(command)
    def wrapper(*, assignments: tuple[str, ...], **kwargs: Any) -> Any:
        from reprokit.runner.params import parse_assignments

        return command(**kwargs, parameters=parse_assignments(assignments))

    return wrapper


class Terminated(KeyboardInterrupt):
    """``SIGTERM`` outside the stretch where kernels run (planning, writing locks): raised
    like Ctrl-C's ``KeyboardInterrupt``, so what is open is closed on the way out, and said
    as such (exit 143), not a death by signal with nothing said."""


def _terminated(signum: int, frame: Any) -> None:
    raise Terminated


def _exiting_on_second_signal(command: Callable[..., Any]) -> Callable[..., Any]:
    """A runner command: the first SIGINT/SIGTERM stops its kernels, a second ends it at once
    (armed here, not for every command: only these import the runner anyway); a SIGTERM
    before or after the kernels' stretch is a :class:`Terminated`."""

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        import signal

        from reprokit.runner.kernels import exit_on_second_signal

        exit_on_second_signal()
        try:
            previous = signal.signal(signal.SIGTERM, _terminated)
        except ValueError:  # not the main thread: its owner handles signals
            return command(**kwargs)
        try:
            return command(**kwargs)
        finally:
            signal.signal(signal.SIGTERM, previous)

    return wrapper


def _apply(command: Callable[..., Any], flags: tuple[Callable[..., Any], ...]) -> Any:
    for flag in reversed(flags):
        command = flag(command)
    return command


def execution_options(command: F) -> F:
    """PATHS, ``-p``, and the :class:`~reprokit.options.ExecutionOptions` flags (run, record,
    verify): the command gets ``paths``, ``parameters`` and ``execution``."""
    from reprokit.options import ExecutionOptions

    wrapped = _exiting_on_second_signal(
        _with_parameters(_building(ExecutionOptions, "execution")(command))
    )
    flags = (
        click.argument("paths", nargs=-1, required=True, type=GivenPath(path_type=Path)),
        click.option(
            "-p",
            "--parameter",
            "assignments",
            multiple=True,
            metavar="NAME=VALUE",
            help="Set a parameter of the notebook's 'parameters' cell (JSON, else text).",
        ),
        *_EXECUTION_FLAGS,
    )
    return _apply(wrapped, flags)  # type: ignore[no-any-return]


def comparison_options(command: F) -> F:
    """The :class:`~reprokit.options.ComparisonOptions` flags (verify): the command gets
    ``comparison``."""
    from reprokit.options import ComparisonOptions

    return _apply(_building(ComparisonOptions, "comparison")(command), _COMPARISON_FLAGS)  # type: ignore[no-any-return]


def tolerance_options(command: F) -> F:
    """``--rtol``/``--atol`` alone (diff): the command gets ``comparison``."""
    from reprokit.options import ComparisonOptions

    return _apply(_building(ComparisonOptions, "comparison")(command), _TOLERANCE_FLAGS)  # type: ignore[no-any-return]


def repeat_options(*, widen: bool) -> Callable[[F], F]:
    """``--repeat N`` (and, for ``record``, ``--widen-tolerances``): the command gets
    ``repeat``, a :class:`~reprokit.options.RepeatOptions`."""
    from reprokit.options import RepeatOptions

    flags = (_REPEAT_FLAG, _WIDEN_FLAG) if widen else (_REPEAT_FLAG,)

    def decorate(command: F) -> F:
        return _apply(_building(RepeatOptions, "repeat")(command), flags)  # type: ignore[no-any-return]

    return decorate


class _RebuildMode(click.ParamType[str]):
    """``--rebuild-env`` alone (strict) or ``--rebuild-env=best-effort``; a path after it is
    explained (the flag's value is optional, so it would take the notebook as its value)."""

    name = "MODE"
    _MODES = ("off", "strict", "best-effort")

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value in self._MODES:
            return value
        self.fail(
            f"{value!r} is not strict or best-effort: put --rebuild-env after the notebook "
            "(reprokit verify NB --rebuild-env), or write --rebuild-env=best-effort",
            param,
            ctx,
        )


_REBUILD_FLAGS = (
    click.option(
        "--rebuild-env",
        "rebuild_env",
        type=_RebuildMode(),
        is_flag=False,
        flag_value="strict",
        default="off",
        help="Run in a virtual environment rebuilt from the lock (cached by digest; uv, else "
        "pip); unavailable pins refuse (exit 2) unless --rebuild-env=best-effort.",
    ),
    click.option("--force-rebuild", "rebuild_force", is_flag=True, help="Rebuild even if cached."),
)


def rebuild_options(command: F) -> F:
    """``--rebuild-env[=best-effort]`` and ``--force-rebuild`` (verify): fields of the
    :class:`~reprokit.options.ExecutionOptions` that :func:`execution_options` builds."""
    return _apply(command, _REBUILD_FLAGS)  # type: ignore[no-any-return]


@contextlib.contextmanager
def unavailable_pins_named() -> Iterator[None]:
    """Each unavailable pin of a refused rebuild on its own line, before the error's line."""
    from reprokit.exceptions import EnvUnavailableError

    try:
        yield
    except EnvUnavailableError as exc:
        for line in exc.pins:
            click.echo(f"reprokit: unavailable: {escaped_controls(line)}", err=True)
        raise
