"""Read the results and snapshots an executed notebook carries in its outputs.

Verification needs no tracking server: this reads the ``display_data`` outputs written by
:mod:`reprokit.report.display` back into the data model, with nbformat.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reprokit._serde import from_builtins
from reprokit.capturing.model import Snapshot
from reprokit.exceptions import InputError, PathError
from reprokit.results.model import RESULT_MIME, SNAPSHOT_MIME, Result


@dataclass(frozen=True)
class ResultOutput:
    """One emitted result and where it was: the cell index and the output's metadata."""

    cell: int
    result: Result
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NotebookResults:
    """Everything reprokit found in a notebook's outputs, in cell order."""

    source: str
    outputs: tuple[ResultOutput, ...] = ()
    snapshots: tuple[Snapshot, ...] = ()
    runs: tuple[dict[str, Any], ...] = ()  # output metadata of each snapshot: local dir, URI

    @property
    def results(self) -> dict[str, Result]:
        """Name → result; a name declared twice keeps its later value (as in the session)."""
        return {out.result.name: out.result for out in self.outputs}

    @property
    def snapshot(self) -> Snapshot | None:
        """The last snapshot: that of the run the results belong to."""
        return self.snapshots[-1] if self.snapshots else None


def read_notebook(notebook: str | os.PathLike[str] | Any) -> NotebookResults:
    """Results and snapshots from an ``.ipynb`` path or an nbformat ``NotebookNode``.

    Raises :class:`~reprokit.exceptions.PathError` for an unreadable file and
    :class:`~reprokit.exceptions.InputError` (naming the cell) for a malformed payload.
    """
    import nbformat

    if isinstance(notebook, (str, os.PathLike)):
        source = str(notebook)
        try:
            node = nbformat.read(Path(notebook), as_version=4)  # type: ignore[no-untyped-call]
        except OSError as exc:
            raise PathError(source, f"cannot read the notebook: {exc.strerror}") from None
        except (ValueError, nbformat.reader.NotJSONError) as exc:
            raise PathError(source, f"not a notebook: {exc}") from None
    else:
        source, node = "<notebook>", notebook
    return _collect(source, node)


def _collect(source: str, node: Any) -> NotebookResults:
    outputs: list[ResultOutput] = []
    snapshots: list[Snapshot] = []
    runs: list[dict[str, Any]] = []
    for index, data, metadata in _display_payloads(node):
        where = f"{source}: cell {index}"
        if RESULT_MIME in data:
            result = from_builtins(data[RESULT_MIME], Result, source=where)
            outputs.append(ResultOutput(cell=index, result=result, metadata=metadata))
        if SNAPSHOT_MIME in data:
            snapshots.append(from_builtins(data[SNAPSHOT_MIME], Snapshot, source=where))
            runs.append(metadata)
    return NotebookResults(source, tuple(outputs), tuple(snapshots), tuple(runs))


def _display_payloads(node: Any) -> Iterator[tuple[int, dict[str, Any], dict[str, Any]]]:
    for index, cell in enumerate(node.get("cells", [])):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            if output.get("output_type") not in ("display_data", "execute_result"):
                continue
            data = output.get("data", {})
            if not isinstance(data, dict):
                raise InputError(f"{index}: output data is not a mapping", cell_index=index)
            metadata = output.get("metadata", {}).get("reprokit", {})
            yield index, data, dict(metadata) if isinstance(metadata, dict) else {}
