"""Emit results and snapshots as ``display_data`` outputs so a notebook carries them.

Each output holds the reprokit MIME payload (the JSON of the data model, read back by
:func:`reprokit.results.notebook.read_notebook`) beside ``text/plain`` and ``text/html``
renderings. Output metadata ``{"reprokit": {...}}`` carries where the run went (local folder,
redacted tracking URI), which a reader needs to find by-reference arrays.

A snapshot leaves out its data folders' file lists (``SNAPSHOT_SUMMARY_MIME`` beside it says
what was left out, :mod:`reprokit.capturing.summary`) when the run has a local folder, which
keeps the whole snapshot; the notebook's size then does not grow with the number of data files.

Outside IPython (a plain script) nothing is emitted: there is no notebook to carry it.
"""

from __future__ import annotations

import sys
from typing import Any

from reprokit._serde import to_builtins
from reprokit.capturing.model import Snapshot
from reprokit.capturing.summary import summarise
from reprokit.report.render import View, result_view, snapshot_view
from reprokit.results.model import (
    RESULT_MIME,
    RUN_ENDED_MIME,
    SNAPSHOT_MIME,
    SNAPSHOT_SUMMARY_MIME,
    Result,
)


def result_bundle(result: Result) -> dict[str, Any]:
    return _bundle(RESULT_MIME, to_builtins(result), result_view(result))


def snapshot_bundle(snapshot: Snapshot, run: dict[str, Any]) -> dict[str, Any]:
    """The start cell's output: ``snapshot`` without its data file lists and their summary
    when the run has a local folder (``run["local_dir"]``, which keeps the whole snapshot),
    else the whole snapshot."""
    view = snapshot_view(snapshot, run)
    if not run.get("local_dir"):
        return _bundle(SNAPSHOT_MIME, to_builtins(snapshot), view)
    brief, summary = summarise(snapshot)
    bundle = _bundle(SNAPSHOT_MIME, to_builtins(brief), view)
    return bundle | {SNAPSHOT_SUMMARY_MIME: to_builtins(summary)}


def run_ended_bundle(
    run_id: str | None,
    status: str | None,
    results: int,
    tracking_uri: str | None,
    *,
    background: bool = False,
    recording: bool = True,
    local: bool = False,
) -> dict[str, Any]:
    """``%repro end``'s output: one line naming the run and its store, and where the run is
    (``background``: handed to a background writer, its id not known here; ``recording``
    False: MLflow refused it; ``local``: kept local, the runner records it). A reprokit output
    of its own, so that a verification does not compare it: the store's URI and the run id
    differ on every machine and run."""
    line = f"ended {status}: {results} result(s) → {tracking_uri}"
    if not recording:  # also a run MLflow opened, then refused (a disk that filled up)
        line = f"run {run_id + ' ' if run_id else ''}{line}: not recorded there (see the warning)"
    elif run_id is not None:
        line = f"run {run_id} {line}"
    elif local:
        line = f"run {line}, recorded by the runner"
    elif background:
        line = f"run {line}, handed to a background writer (reprokit.flush() waits for it)"
    else:
        line = f"run {line}, not in MLflow yet"
    return {
        RUN_ENDED_MIME: {"status": status, "results": results},
        "text/plain": f"reprokit: {line}",
    }


def _bundle(mime: str, payload: Any, view: View) -> dict[str, Any]:
    return {mime: payload, "text/plain": view.text, "text/html": view.html}


def in_ipython() -> bool:
    """True inside an IPython shell or kernel (IPython is never imported to find out)."""
    ipython = sys.modules.get("IPython")
    return ipython is not None and ipython.get_ipython() is not None


def emit(bundle: dict[str, Any], metadata: dict[str, Any] | None = None) -> bool:
    """Publish ``bundle`` as display_data; False (and nothing shown) outside IPython."""
    if not in_ipython():
        return False
    from IPython.display import publish_display_data

    publish_display_data(data=bundle, metadata={"reprokit": metadata or {}})  # type: ignore[no-untyped-call]
    return True
