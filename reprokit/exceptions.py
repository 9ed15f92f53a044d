"""Every error and warning reprokit raises on purpose.

The hierarchy::

    ReprokitError (Exception)            exit code 2 unless a subclass says otherwise
    ├── UsageError                        bad arguments or configuration (``path``, ``option``,
    │                                     ``value``, ``run_id``, ``names``)
    ├── InputError                        a file, folder or value that cannot be used (``path``,
    │   │                                 ``name``, ``plugin``, ``run_id``, ``cell_index``)
    │   ├── PathError                     missing / unreadable / special file (``path``,
    │   │                                 ``reason``)
    │   ├── UnhashableValueError          a value of a type reprokit cannot hash (``type_name``,
    │   │   (also a ``TypeError``)        ``where``)
    │   ├── ResultValueError              a result value that cannot be recorded (``name``,
    │   │   (also a ``TypeError``)        ``type_name``, ``where``)
    │   └── LockError                     a lock file that cannot be used (``path``, ``reason``,
    │       │                             ``field``)
    │       └── SchemaVersionError        written by a newer reprokit (``path``, ``found``,
    │                                     ``supported``)
    ├── EnvUnavailableError               a lock's environment cannot be rebuilt here (``path``,
    │                                     ``pins``: one line per unavailable pin)
    ├── DigestMismatchError               a digest differs from the expected one (exit 1;
    │                                     ``path``, ``expected``, ``actual``)
    ├── CacheError                        the hash cache could not be used (never fatal; ``path``)
    ├── RecordError                       writing to MLflow failed (``uri`` redacted, ``action``,
    │                                     ``run_id``)
    ├── ExecutionError                    a notebook failed to execute (exit 3; ``path``,
    │                                     ``cell_index``, ``ename``, ``evalue``, ``traceback``,
    │                                     ``output_path``)
    └── RunInterrupted                    the runner got SIGINT/SIGTERM (exit 128 + signal;
                                          ``signal``, ``output_paths``)

    ReprokitWarning (UserWarning)         something worth knowing that does not stop the work

Every error declares its fields as typed parameters of ``__init__`` and holds them as
attributes from the moment it is made; a subclass also holds its bases' fields (unset ones are
``None`` or empty), so ``except InputError as exc: exc.path`` works for every input error.
``str(error)`` is the one-line message.  Errors pickle by calling the class again with the same
arguments, so they cross process boundaries (process pools, pytest-xdist) whole.
``exit_code`` is the documented exit status of the command line for that error.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

__all__ = [
    "CacheError",
    "DigestMismatchError",
    "EnvUnavailableError",
    "ExecutionError",
    "InputError",
    "LockError",
    "PathError",
    "RecordError",
    "ReprokitError",
    "ReprokitWarning",
    "ResultValueError",
    "RunInterrupted",
    "SchemaVersionError",
    "UnhashableValueError",
    "UsageError",
]


class ReprokitError(Exception):
    """Base of all deliberate reprokit errors: a one-line ``message`` and an ``exit_code``.

    A subclass keeps each ``__init__`` parameter as the attribute of the same name (its
    fields): pickling calls the class again with them, and :attr:`fields` lists them.
    """

    exit_code: int = 2
    #: the names of this class's ``__init__`` parameters: what pickling passes back to it
    _parameters: ClassVar[tuple[str, ...]] = ("message",)
    #: the fields of this class and its bases, in declaration order (``message`` aside)
    _field_names: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._parameters = tuple(inspect.signature(cls.__init__).parameters)[1:]
        inherited = [name for base in reversed(cls.__mro__[1:]) for name in _fields_of(base)]
        own = [name for name in cls._parameters if name != "message"]
        cls._field_names = tuple(dict.fromkeys([*inherited, *own]))

    def __init__(self, message: str) -> None:
        super().__init__(message)

    @property
    def message(self) -> str:
        """The one-line message (also ``str(error)``)."""
        return str(self.args[0]) if self.args else ""

    @message.setter
    def message(self, value: str) -> None:
        self.args = (value,)

    @property
    def fields(self) -> dict[str, Any]:
        """The error's declared fields (its own and its bases'), by name."""
        return {name: getattr(self, name) for name in self._field_names}

    def __reduce__(self) -> tuple[Any, ...]:
        arguments = {name: getattr(self, name) for name in self._parameters}
        return (_rebuild, (type(self), arguments, self.message))

    def __str__(self) -> str:
        return self.message


def _fields_of(cls: type) -> tuple[str, ...]:
    return cls._field_names if issubclass(cls, ReprokitError) else ()


def _rebuild(cls: type[ReprokitError], arguments: dict[str, Any], message: str) -> ReprokitError:
    error = cls(**arguments)
    error.message = message  # a message amended after construction (see ``reprokit run``)
    return error


class UsageError(ReprokitError):
    """The command or call was given arguments that do not make sense.

    ``path``: the file or notebook the arguments were about; ``option``: the option, argument,
    setting or environment variable at fault (``--jobs``, ``seed``, ``REPROKIT_DEVICE``);
    ``value``: the value given for it, as text; ``run_id``: the MLflow run named;
    ``names``: the parameter or result names at fault.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        option: str | None = None,
        value: str | None = None,
        run_id: str | None = None,
        names: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.path = path
        self.option = option
        self.value = value
        self.run_id = run_id
        self.names = names


class InputError(ReprokitError):
    """An input (file, folder, value) that reprokit cannot use.

    ``path``: the file, or the place inside a value (``$["model"]``), that cannot be used;
    ``name``: the result it belongs to; ``plugin``: the comparator plugin involved;
    ``run_id``: the MLflow run it came from; ``cell_index``: the notebook cell it came from.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        name: str | None = None,
        plugin: str | None = None,
        run_id: str | None = None,
        cell_index: int | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.name = name
        self.plugin = plugin
        self.run_id = run_id
        self.cell_index = cell_index


class PathError(InputError):
    """A path that is missing, unreadable, or of a kind that cannot be hashed."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}", path=path)
        self.path: str = path
        self.reason = reason


class UnhashableValueError(InputError, TypeError):
    """A value whose type reprokit does not know how to hash by content (``where``: the place
    inside the value, ``""`` for the top level)."""

    def __init__(self, type_name: str, where: str = "") -> None:
        place = f" at {where}" if where else ""
        super().__init__(
            f"cannot hash a value of type {type_name}{place}: supported are bytes, str, int, "
            "float, bool, None, lists/tuples/dicts of those, numpy arrays, torch tensors and "
            "pandas objects",
            path=where or None,
        )
        self.type_name = type_name
        self.where = where


_OWN_RESULTS = {
    "numpy.ndarray": "numpy array",
    "torch.Tensor": "torch tensor",
    "pandas.Series": "pandas Series",
    "pandas.DataFrame": "pandas DataFrame",
}
"""Types recorded only as a result of their own, never nested in a list or dict."""

TEXT_NOT_UNICODE = "str holding a lone surrogate"
"""The type a :class:`ResultValueError` names for text that UTF-8 cannot write ('\\ud800')."""


class ResultValueError(InputError, TypeError):
    """A result value (or part of it) of a type reprokit cannot record."""

    def __init__(self, name: str, type_name: str, where: str = "") -> None:
        place = f" at {where}" if where else ""
        supported = (
            "None, bool, int, float, str, lists/tuples and str-keyed dicts of those, numpy "
            "arrays and scalars, torch tensors, pandas Series and DataFrames"
        )
        if where and type_name in _OWN_RESULTS:  # a list of arrays, a dict of DataFrames
            supported = (
                f"a {_OWN_RESULTS[type_name]} is recorded as a result of its own, not "
                "inside another value: declare each with its own name"
            )
        elif type_name.startswith(TEXT_NOT_UNICODE):  # the notebook and the lock are UTF-8
            supported = (
                "text is written as UTF-8, which holds no lone surrogate (\\ud800 to \\udfff): "
                "record s.encode('utf-8', 'backslashreplace').decode() instead"
            )
        else:
            supported = f"supported are {supported}"
        super().__init__(
            f"result {name!r}: cannot record a value of type {type_name}{place}; {supported}",
            path=where or None,
            name=name,
        )
        self.name: str = name
        self.type_name = type_name
        self.where = where


class DigestMismatchError(ReprokitError):
    """A computed digest differs from the expected one."""

    exit_code = 1

    def __init__(self, path: str, expected: str, actual: str) -> None:
        super().__init__(f"{path}: digest mismatch: expected {expected}, got {actual}")
        self.path = path
        self.expected = expected
        self.actual = actual


class CacheError(ReprokitError):
    """The persistent hash cache could not be opened or written (``path``: its database)."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class RecordError(ReprokitError):
    """Recording to MLflow failed; the message names the (redacted) tracking URI.

    ``uri``: the tracking URI, redacted; ``action``: what was being done; ``run_id``: the run;
    ``unavailable``: the store did not answer (a connection refused or cut, a timeout, 5xx
    answers past the retries), rather than refused this request.
    """

    def __init__(
        self,
        message: str,
        *,
        uri: str | None = None,
        action: str | None = None,
        run_id: str | None = None,
        unavailable: bool = False,
    ) -> None:
        super().__init__(message)
        self.uri = uri
        self.action = action
        self.run_id = run_id
        self.unavailable = unavailable


class LockError(InputError):
    """A lock file (``<stem>.repro.json``) that cannot be read or trusted; names path and field."""

    def __init__(self, path: str, reason: str, field: str | None = None) -> None:
        where = f" ({field})" if field else ""
        super().__init__(f"{path}{where}: {reason}", path=path)
        self.path: str = path
        self.reason = reason
        self.field = field


class SchemaVersionError(LockError):
    """A lock written with a newer schema than this reprokit understands."""

    def __init__(self, path: str, found: int, supported: int) -> None:
        reason = f"written by a newer reprokit (schema {found} > {supported}); upgrade reprokit"
        super().__init__(path, reason, "schema_version")
        self.found = found
        self.supported = supported


class EnvUnavailableError(ReprokitError):
    """Pins of a lock that cannot be installed here (a version yanked or never released, no
    wheel for this platform, another Python minor), found before anything is installed or run;
    ``pins`` says each in one line (``six 9.9.9: not found ...``)."""

    def __init__(self, path: str, pins: tuple[str, ...]) -> None:
        count = f"{len(pins)} pin{'s' if len(pins) != 1 else ''}"
        shown = "; ".join(pins[:5]) + (" ..." if len(pins) > 5 else "")
        super().__init__(
            f"{path}: {count} cannot be installed here ({shown}); nothing was run: "
            "--rebuild-env=best-effort installs the nearest versions"
        )
        self.path = path
        self.pins = pins


class ReprokitWarning(UserWarning):
    """A condition worth reporting that does not stop the work."""


class ExecutionError(ReprokitError):
    """A notebook raised in a cell, timed out or lost its kernel (``reprokit run``: exit 3).

    ``cell_index`` is the cell's 0-based position in the notebook file (the message says
    ``cell {cell_index + 1}``; None when no cell could be named);
    ``traceback`` holds the first lines of the cell's traceback; ``output_path`` is the executed
    notebook, written also on failure.
    """

    exit_code = 3

    def __init__(
        self,
        path: str,
        *,
        cell_index: int | None = None,
        ename: str = "",
        evalue: str = "",
        traceback: tuple[str, ...] = (),
        output_path: str = "",
    ) -> None:
        # cells are numbered from 1 in the notebook file, as every message numbers them
        where = f"cell {cell_index + 1}" if cell_index is not None else "execution"
        super().__init__(f"{path}: {where} failed: {ename}: {evalue}")
        self.path = path
        self.cell_index = cell_index
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback
        self.output_path = output_path


class RunInterrupted(ReprokitError):
    """The runner was interrupted (``SIGINT``/``SIGTERM``): its kernels were stopped, the
    partial notebooks written and their MLflow runs closed as KILLED — those MLflow took
    within seconds; the others (``unrecorded``) are in their journals, for ``reprokit sync``.
    Exit code 128 + signal number (130 for Ctrl-C, 143 for ``SIGTERM``)."""

    def __init__(
        self,
        signal: int,
        output_paths: tuple[str, ...] = (),
        unrecorded: tuple[str, ...] = (),
        unjournaled: tuple[str, ...] = (),
    ) -> None:
        import signal as signals

        try:
            name = signals.Signals(signal).name
        except ValueError:
            name = f"signal {signal}"
        kept = f"; partial notebooks kept: {', '.join(output_paths)}" if output_paths else ""
        if journaled := [p for p in unrecorded if p not in unjournaled]:
            kept += (
                f"; {len(journaled)} run(s) not in MLflow yet (it did not answer in time): "
                "their journals keep them, `reprokit sync` records them"
            )
        if unjournaled:
            kept += (
                f"; {len(unjournaled)} run(s) not recorded in MLflow (it did not answer in time) "
                "and kept in no journal, their outputs being outside the project's .reprokit "
                f"(--output-dir): only their executed notebooks are left ({', '.join(unjournaled)})"
            )
        super().__init__(f"interrupted by {name}: kernels stopped{kept}")
        self.signal = signal
        self.output_paths = output_paths
        self.unrecorded = unrecorded  # executed notebooks whose records were not waited for
        self.unjournaled = unjournaled  # those of them no journal keeps
        self.exit_code = 128 + signal
