"""Read the results and snapshots an executed notebook carries in its outputs.

Verification needs no tracking server: this reads the ``display_data`` outputs written by
:mod:`reprokit.report.display` back into the data model, with nbformat.

A snapshot output normally leaves out its data folders' file lists and carries a
:class:`~reprokit.capturing.summary.SnapshotSummary` instead (older notebooks carry the whole
snapshot). Readers that need the file lists (a lock, a data diff) call
:func:`restore_snapshot`, which reads the full snapshot back from the run's folder and keeps
it only if it is the one summarised.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from reprokit._serde import from_builtins
from reprokit.capturing.model import Snapshot
from reprokit.capturing.summary import SnapshotSummary, restores
from reprokit.exceptions import InputError, PathError
from reprokit.notebook.files import INJECTED_TAG
from reprokit.results.model import RESULT_MIME, SNAPSHOT_MIME, SNAPSHOT_SUMMARY_MIME, Result
from reprokit.results.untrusted import open_regular

MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024  # a run folder's snapshot.json read back


@dataclass(frozen=True)
class ResultOutput:
    """One emitted result and where it was: the cell index and the output's metadata."""

    cell: int
    result: Result
    metadata: dict[str, Any] = field(default_factory=dict)
    run: int = 0  # the run starts (snapshots) before it: 1 in the first run, 2 in the next


@dataclass(frozen=True)
class NotebookResults:
    """Everything reprokit found in a notebook's outputs, in cell order."""

    source: str
    outputs: tuple[ResultOutput, ...] = ()
    snapshots: tuple[Snapshot, ...] = ()
    runs: tuple[dict[str, Any], ...] = ()  # output metadata of each snapshot: local dir, URI
    # per snapshot: what its output left out (its data file lists), None when it is whole
    summaries: tuple[SnapshotSummary | None, ...] = ()

    @property
    def results(self) -> dict[str, Result]:
        """Name → result; a name declared twice keeps its later value (as in the session)."""
        return {out.result.name: out.result for out in self.outputs}

    def declared_in_several_runs(self) -> dict[str, int]:
        """The names declared by more than one run of the notebook (``%repro start`` again),
        with how many: the lock keeps only the last value of each."""
        runs: dict[str, set[int]] = {}
        for out in self.outputs:
            runs.setdefault(out.result.name, set()).add(out.run)
        return {name: len(found) for name, found in runs.items() if len(found) > 1}

    @property
    def snapshot(self) -> Snapshot | None:
        """The last snapshot: that of the run the results belong to."""
        return self.snapshots[-1] if self.snapshots else None

    @property
    def summary(self) -> SnapshotSummary | None:
        """What the last snapshot's output left out; None when it is whole (or absent)."""
        aligned = self.snapshots and len(self.summaries) == len(self.snapshots)
        return self.summaries[-1] if aligned else None


def read_notebook(
    notebook: str | os.PathLike[str] | Any, *, source: str | None = None
) -> NotebookResults:
    """Results and snapshots from an ``.ipynb`` path or an nbformat ``NotebookNode``.

    Raises :class:`~reprokit.exceptions.PathError` for an unreadable file and
    :class:`~reprokit.exceptions.InputError` for a malformed payload, naming the notebook
    (``source``, else the path, else ``<notebook>``) and the cell: ``cell N``, its 1-based
    position in the notebook as its file has it (the runner's injected-parameters cell is not
    counted).
    """
    import nbformat

    if isinstance(notebook, (str, os.PathLike)):
        source = source or str(notebook)
        try:
            # a regular file only: opening a FIFO for reading would wait for a writer forever
            with open_regular(Path(notebook), "notebook") as handle:
                text = handle.read().decode("utf-8")
            node = nbformat.reads(text, as_version=4)  # type: ignore[no-untyped-call]
        except OSError as exc:
            raise PathError(source, f"cannot read the notebook: {exc.strerror}") from None
        except (ValueError, nbformat.reader.NotJSONError) as exc:
            raise PathError(source, f"not a notebook: {exc}") from None
    else:
        source, node = source or "<notebook>", notebook
    return _collect(source, node)


def _collect(source: str, node: Any) -> NotebookResults:
    outputs: list[ResultOutput] = []
    snapshots: list[Snapshot] = []
    runs: list[dict[str, Any]] = []
    summaries: list[SnapshotSummary | None] = []
    for index, position, data, metadata in _display_payloads(source, node):
        where = f"{source}: cell {position + 1}"
        if RESULT_MIME in data:
            result = from_builtins(data[RESULT_MIME], Result, source=where)
            outputs.append(ResultOutput(index, result, metadata, run=len(snapshots)))
        if SNAPSHOT_MIME in data:
            snapshots.append(from_builtins(data[SNAPSHOT_MIME], Snapshot, source=where))
            runs.append(metadata)
            summary = data.get(SNAPSHOT_SUMMARY_MIME)
            summaries.append(
                None if summary is None else from_builtins(summary, SnapshotSummary, source=where)
            )
    return NotebookResults(source, tuple(outputs), tuple(snapshots), tuple(runs), tuple(summaries))


def restore_snapshot(
    results: NotebookResults, places: Iterable[str | os.PathLike[str]] = ()
) -> NotebookResults:
    """``results`` with its last snapshot whole again, when its output was a summary.

    The full snapshot is looked for as ``snapshot.json`` in the run's folder (the output's
    ``local_dir``), then at each of ``places`` (files); the first one that is the snapshot
    summarised (:func:`~reprokit.capturing.summary.restores`), or that snapshot with the
    GPU/CUDA facts its run took again as it ended, replaces the summary. Anything
    else (missing, unreadable, too large, another snapshot) is passed over: ``results`` come
    back unchanged, still summarised (``results.summary`` says so).
    """
    summary = results.summary
    if summary is None:
        return results
    local = results.runs[-1].get("local_dir") if results.runs else None
    candidates = [Path(local) / "snapshot.json"] if isinstance(local, str) and local else []
    brief = results.snapshots[-1]
    for path in [*candidates, *map(Path, places)]:
        full = _read_snapshot(path)
        if full is not None and _restores(full, summary, brief):
            return replace(
                results,
                snapshots=(*results.snapshots[:-1], full),
                summaries=(*results.summaries[:-1], None),
            )
    return results


def _restores(full: Snapshot, summary: SnapshotSummary, brief: Snapshot) -> bool:
    """``full`` is the snapshot summarised, or that snapshot with the GPU/CUDA facts its run
    took again as it ended (torch imported after the start): those are kept."""
    if restores(full, summary):
        return True
    return full.accelerator != brief.accelerator and restores(
        replace(full, accelerator=brief.accelerator), summary
    )


def _read_snapshot(path: Path) -> Snapshot | None:
    from reprokit._serde import from_json
    from reprokit.results.untrusted import read_regular

    try:
        return from_json(read_regular(path, MAX_SNAPSHOT_BYTES, what="snapshot"), Snapshot)
    except (PathError, InputError):
        return None


def _display_payloads(
    source: str, node: Any
) -> Iterator[tuple[int, int, dict[str, Any], dict[str, Any]]]:
    """``(index, position, data, metadata)`` of each rich output: the cell's index in ``node``
    and its position in the notebook file (an injected-parameters cell is the runner's)."""
    own = (
        (index, cell)
        for index, cell in enumerate(node.get("cells", []))
        if INJECTED_TAG not in cell.get("metadata", {}).get("tags", ())
    )
    for position, (index, cell) in enumerate(own):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            if output.get("output_type") not in ("display_data", "execute_result"):
                continue
            data = output.get("data", {})
            if not isinstance(data, dict):
                where = f"{source}: cell {position + 1}"
                raise InputError(f"{where}: output data is not a mapping", cell_index=position)
            metadata = output.get("metadata", {}).get("reprokit", {})
            yield index, position, data, dict(metadata) if isinstance(metadata, dict) else {}
