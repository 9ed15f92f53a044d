"""Every error and warning reprokit raises on purpose.

The hierarchy::

    ReprokitError (Exception)            exit code 2 unless a subclass says otherwise
    ├── UsageError                        bad arguments or configuration
    ├── InputError                        a file, folder or value that cannot be used
    │   ├── PathError                     missing / unreadable / special file (``path``)
    │   ├── UnhashableValueError          a value of a type reprokit cannot hash (``type_name``)
    │   │   (also a ``TypeError``)
    │   └── ResultValueError              a result value that cannot be recorded (``name``,
    │       (also a ``TypeError``)        ``type_name``, ``where``)
    │   └── LockError                     a lock file that cannot be used (``path``, ``field``)
    │       └── SchemaVersionError        written by a newer reprokit (``found``, ``supported``)
    ├── DigestMismatchError               a digest differs from the expected one (exit 1)
    ├── CacheError                        the hash cache could not be used (never fatal)
    ├── RecordError                       writing to MLflow failed (``uri`` redacted, ``action``)
    ├── ExecutionError                    a notebook failed to execute (exit 3; ``path``,
    │                                     ``cell_index``, ``ename``, ``evalue``, ``traceback``,
    │                                     ``output_path``)
    └── RunInterrupted                    the runner got SIGINT/SIGTERM (exit 128 + signal;
                                          ``signal``, ``output_paths``)

    ReprokitWarning (UserWarning)         something worth knowing that does not stop the work

Every error carries structured fields (never only a message) and pickles, so it
can cross process boundaries (process pools, pytest-xdist).  ``exit_code`` is the
documented exit status of the command line for that error.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CacheError",
    "DigestMismatchError",
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
    """Base of all deliberate reprokit errors."""

    exit_code: int = 2

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.fields))

    def __str__(self) -> str:
        return self.message


def _rebuild(cls: type[ReprokitError], message: str, fields: dict[str, Any]) -> ReprokitError:
    error = cls.__new__(cls)
    ReprokitError.__init__(error, message, **fields)
    for key, value in fields.items():
        setattr(error, key, value)
    return error


class UsageError(ReprokitError):
    """The command or call was given arguments that do not make sense."""


class InputError(ReprokitError):
    """An input (file, folder, value) that reprokit cannot use."""


class PathError(InputError):
    """A path that is missing, unreadable, or of a kind that cannot be hashed."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}", path=path, reason=reason)
        self.path = path
        self.reason = reason


class UnhashableValueError(InputError, TypeError):
    """A value whose type reprokit does not know how to hash by content."""

    def __init__(self, type_name: str, where: str = "") -> None:
        place = f" at {where}" if where else ""
        super().__init__(
            f"cannot hash a value of type {type_name}{place}: supported are bytes, str, int, "
            "float, bool, None, lists/tuples/dicts of those, numpy arrays, torch tensors and "
            "pandas objects",
            type_name=type_name,
            where=where,
        )
        self.type_name = type_name
        self.where = where


class ResultValueError(InputError, TypeError):
    """A result value (or part of it) of a type reprokit cannot record."""

    def __init__(self, name: str, type_name: str, where: str = "") -> None:
        place = f" at {where}" if where else ""
        super().__init__(
            f"result {name!r}: cannot record a value of type {type_name}{place}; supported are "
            "None, bool, int, float, str, lists/tuples and str-keyed dicts of those, numpy "
            "arrays and scalars, torch tensors, pandas Series and DataFrames",
            name=name,
            type_name=type_name,
            where=where,
        )
        self.name = name
        self.type_name = type_name
        self.where = where


class DigestMismatchError(ReprokitError):
    """A computed digest differs from the expected one."""

    exit_code = 1

    def __init__(self, path: str, expected: str, actual: str) -> None:
        super().__init__(
            f"{path}: digest mismatch: expected {expected}, got {actual}",
            path=path,
            expected=expected,
            actual=actual,
        )
        self.path = path
        self.expected = expected
        self.actual = actual


class CacheError(ReprokitError):
    """The persistent hash cache could not be opened or written."""


class RecordError(ReprokitError):
    """Recording to MLflow failed; the message names the (redacted) tracking URI."""


class LockError(InputError):
    """A lock file (``<stem>.repro.json``) that cannot be read or trusted; names path and field."""

    def __init__(self, path: str, reason: str, field: str | None = None) -> None:
        where = f" ({field})" if field else ""
        super().__init__(f"{path}{where}: {reason}", path=path, reason=reason, field=field)
        self.path = path
        self.reason = reason
        self.field = field


class SchemaVersionError(LockError):
    """A lock written with a newer schema than this reprokit understands."""

    def __init__(self, path: str, found: int, supported: int) -> None:
        reason = f"written by a newer reprokit (schema {found} > {supported}); upgrade reprokit"
        LockError.__init__(self, path, reason, "schema_version")
        self.fields.update(found=found, supported=supported)
        self.found = found
        self.supported = supported


class ReprokitWarning(UserWarning):
    """A condition worth reporting that does not stop the work."""


class ExecutionError(ReprokitError):
    """A notebook raised in a cell, timed out or lost its kernel (``reprokit run``: exit 3).

    ``cell_index`` counts the source notebook's cells (None when no cell could be named);
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
        where = f"cell {cell_index}" if cell_index is not None else "execution"
        super().__init__(
            f"{path}: {where} failed: {ename}: {evalue}",
            path=path,
            cell_index=cell_index,
            ename=ename,
            evalue=evalue,
            traceback=traceback,
            output_path=output_path,
        )
        self.path = path
        self.cell_index = cell_index
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback
        self.output_path = output_path


class RunInterrupted(ReprokitError):
    """The runner was interrupted (``SIGINT``/``SIGTERM``): its kernels were stopped, the
    partial notebooks written and their MLflow runs closed as KILLED. Exit code 128 + signal
    number (130 for Ctrl-C, 143 for ``SIGTERM``)."""

    def __init__(self, signal: int, output_paths: tuple[str, ...] = ()) -> None:
        import signal as signals

        try:
            name = signals.Signals(signal).name
        except ValueError:
            name = f"signal {signal}"
        kept = f"; partial notebooks kept: {', '.join(output_paths)}" if output_paths else ""
        super().__init__(
            f"interrupted by {name}: kernels stopped{kept}",
            signal=signal,
            output_paths=output_paths,
        )
        self.signal = signal
        self.output_paths = output_paths
        self.exit_code = 128 + signal

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.signal, self.output_paths))
