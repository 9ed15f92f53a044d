"""Which cell stopped an executed notebook, and with what error.

Cells are named by their position in the notebook *file* (``index``, 0-based in data; every
message says ``cell N`` with N = index + 1). The executed notebook is not the file: papermill
drops the error-marker cells an earlier papermill run saved, replaces or adds the
``injected-parameters`` cell, and on failure inserts two new marker cells. :func:`find_failure`
maps the executed cells back to the file's positions.

The error is the cell's ``error`` output when it has one. IPython reports some errors only on
stderr (an unknown ``%magic`` or ``%%magic``: ``UsageError``), and the kernel's reply says
"error" with no ``error`` output; papermill then marks the cell with
``metadata.papermill.exception`` and the error is read from the cell's stderr stream. A cell
tagged ``raises-exception`` (nbclient's, nbmake's and ``jupyter execute``'s convention) is
expected to raise: its error is not a failure, and its not raising is one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reprokit.notebook.files import INJECTED_TAG
from reprokit.statuses import ExecutionStatus

__all__ = [
    "ERROR_MARKER_TAG",
    "RAISES_TAGS",
    "CellFailure",
    "expects_error",
    "find_failure",
    "missing_exception",
    "unexpected_errors",
]

TRACEBACK_LINES = 8
ERROR_MARKER_TAG = "papermill-error-cell-tag"
RAISES_TAGS = frozenset({"raises-exception", "nbval-raises-exception"})
"""Tags of a cell expected to raise (nbclient/nbmake's, and nbval's spelling)."""
_STOPPED_ENAME: dict[ExecutionStatus, str] = {
    "timeout": "CellTimeoutError",
    "interrupted": "RunInterrupted",
    "kernel_died": "DeadKernelError",
}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# "UsageError: Line magic function `%x` not found." as IPython writes it on stderr
_STDERR_ERROR = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)): ?(.*)$")
NO_EXCEPTION = "NoExceptionRaised"


@dataclass(frozen=True)
class CellFailure:
    """The cell that stopped a notebook.

    ``index`` is the cell's 0-based position in the notebook file (messages say
    ``cell {index + 1}``); cells the runner added (injected parameters, papermill's error
    markers) have none. ``output_index`` is the cell's index in the executed notebook;
    ``execution_count`` the ``In [N]`` the kernel gave it (None when it never ran).
    """

    index: int
    output_index: int
    ename: str
    evalue: str
    traceback: tuple[str, ...] = ()  # first lines, ANSI colours removed
    source_head: str = ""  # first line of the cell's source
    execution_count: int | None = None


def _tags(cell: Any) -> Sequence[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return tags if isinstance(tags, list) else []


def expects_error(cell: Any) -> bool:
    """The cell is tagged to raise (``raises-exception``) or starts with nbval's
    ``# NBVAL_RAISES_EXCEPTION`` comment."""
    source = str(cell.get("source", ""))
    return bool(RAISES_TAGS & set(_tags(cell))) or source.lstrip().startswith(
        "# NBVAL_RAISES_EXCEPTION"
    )


def _own_cells(node: Any, injected: bool) -> list[tuple[int, Any]]:
    """``(index, cell)`` of the cells that came from the notebook file, in order."""
    return [
        (index, cell)
        for index, cell in enumerate(node.get("cells", []))
        if ERROR_MARKER_TAG not in _tags(cell) and not (injected and INJECTED_TAG in _tags(cell))
    ]


def _file_positions(
    source: Any | None, executed: list[tuple[int, Any]], injected: bool
) -> list[int]:
    """The file position of each executed own cell (the k-th own cell of each side)."""
    if source is None:
        return list(range(len(executed)))
    positions = [index for index, _ in _own_cells(source, injected)]
    if len(positions) != len(executed):  # not the shape papermill leaves: count as found
        return list(range(len(executed)))
    return positions


def _errors(cell: Any) -> list[Mapping[str, Any]]:
    return [out for out in cell.get("outputs", []) if out.get("output_type") == "error"]


def unexpected_errors(node: Any) -> bool:
    """Whether a cell that is not expected to raise has an error output (what papermill's
    check sees, less the cells tagged ``raises-exception``)."""
    return any(_errors(cell) and not expects_error(cell) for cell in node.get("cells", []))


def find_failure(
    output_path: str | os.PathLike[str],
    status: ExecutionStatus,
    message: str = "",
    *,
    source: Any | None = None,
    injected: bool = False,
) -> CellFailure | None:
    """The failing cell of an executed notebook: the first with an unexpected ``error``
    output, else the cell papermill marked as failed (an error only on stderr), else (a
    timeout, a dead kernel) the cell that was running. ``source`` is the notebook as loaded
    from its file (its cells give the positions); ``injected``: parameters were injected."""
    node = _read(output_path)
    if node is None:
        return None
    cells = _own_cells(node, injected)
    positions = _file_positions(source, cells, injected)
    for k, (_, cell) in enumerate(cells):
        errors = _errors(cell)
        if errors and not expects_error(cell):
            return _failure(cells[k], positions[k], errors[0])
    if status == "failed":
        marked = _marked_cell(cells)
        if marked is not None:
            return _failure(cells[marked], positions[marked], _stderr_error(cells[marked][1]))
    stopped = _stopped_cell(cells)
    if stopped is None:
        return None
    name = _STOPPED_ENAME.get(status, "CellExecutionError")
    error = {"ename": name, "evalue": message or status.replace("_", " ")}
    return _failure(cells[stopped], positions[stopped], error)


def missing_exception(
    output_path: str | os.PathLike[str], *, source: Any | None = None, injected: bool = False
) -> CellFailure | None:
    """The first cell tagged ``raises-exception`` that ran and raised nothing, as a failure."""
    node = _read(output_path)
    if node is None:
        return None
    cells = _own_cells(node, injected)
    positions = _file_positions(source, cells, injected)
    for k, (_, cell) in enumerate(cells):
        ran = cell.get("execution_count") is not None
        if cell.get("cell_type") == "code" and expects_error(cell) and ran and not _errors(cell):
            evalue = "the cell is tagged raises-exception but raised nothing"
            return _failure(cells[k], positions[k], {"ename": NO_EXCEPTION, "evalue": evalue})
    return None


def stopped_early(
    output_path: str | os.PathLike[str], *, source: Any | None = None, injected: bool = False
) -> CellFailure | None:
    """The cell that ended a notebook with ``sys.exit(0)`` (``exit()``, ``SystemExit``) while
    code cells after it never ran: papermill takes that for a clean stop, so the run is ok,
    but what those cells would have declared is missing from it."""
    node = _read(output_path)
    if node is None:
        return None
    cells = _own_cells(node, injected)
    for k, (_, cell) in enumerate(cells):
        exits = [error for error in _errors(cell) if error.get("ename") == "SystemExit"]
        if exits and any(_never_ran(later) for _, later in cells[k + 1 :]):
            return _failure(cells[k], _file_positions(source, cells, injected)[k], exits[0])
    return None


def _never_ran(cell: Any) -> bool:
    return bool(
        cell.get("cell_type") == "code"
        and cell.get("execution_count") is None
        and str(cell.get("source", "")).strip()
    )


def _read(output_path: str | os.PathLike[str]) -> Any:
    import nbformat

    try:
        return nbformat.read(Path(output_path), as_version=4)  # type: ignore[no-untyped-call]
    except (OSError, ValueError):
        return None


def _marked_cell(cells: list[tuple[int, Any]]) -> int | None:
    """Position of the cell papermill marked with an exception that left no error output."""
    for k, (_, cell) in enumerate(cells):
        if cell.get("metadata", {}).get("papermill", {}).get("exception") is True:
            return k
    return None


def _stderr_error(cell: Any) -> dict[str, Any]:
    """The error a cell wrote only on stderr (``UsageError: ...``), else a generic one."""
    text = "".join(
        str(out.get("text", ""))
        for out in cell.get("outputs", [])
        if out.get("output_type") == "stream" and out.get("name") == "stderr"
    )
    lines = [_ANSI.sub("", line).strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        found = _STDERR_ERROR.match(line)
        if found:
            return {"ename": found[1], "evalue": found[2], "traceback": lines}
    evalue = "the kernel reported an error without an error output"
    return {"ename": "CellExecutionError", "evalue": evalue, "traceback": lines}


def _stopped_cell(cells: list[tuple[int, Any]]) -> int | None:
    """Position of the cell a timeout, dead kernel or interruption stopped."""
    for position, (_, cell) in enumerate(cells):
        # nbclient records the reply's time; the cell that never got one is the one that hung
        timing = cell.get("metadata", {}).get("execution", {})
        if "iopub.status.busy" in timing and "shell.execute_reply" not in timing:
            return position
    # a kernel killed at once may never have said "busy": the last cell papermill started
    started = [
        position
        for position, (_, cell) in enumerate(cells)
        if cell.get("metadata", {}).get("papermill", {}).get("start_time")
    ]
    return started[-1] if started else None


def _failure(entry: tuple[int, Any], position: int, error: Mapping[str, Any]) -> CellFailure:
    output_index, cell = entry
    lines = [
        _ANSI.sub("", line) for item in error.get("traceback", []) for line in item.splitlines()
    ]
    source = str(cell.get("source", ""))
    count = cell.get("execution_count")
    return CellFailure(
        index=position,
        output_index=output_index,
        ename=str(error.get("ename", "")),
        evalue=str(error.get("evalue", "")),
        traceback=tuple(line for line in lines if line.strip())[:TRACEBACK_LINES],
        source_head=source.splitlines()[0] if source else "",
        execution_count=count if isinstance(count, int) else None,
    )
