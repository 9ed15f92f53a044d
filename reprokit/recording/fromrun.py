"""An MLflow run read back: its results, snapshot, parameters and executed notebook.

A run recorded by reprokit carries everything a lock needs under its ``reprokit/`` artifacts:
the executed notebook (runs recorded by ``reprokit run``/``record``: results, snapshot and cell
outputs inside it, exact parameter values in papermill's metadata), or the session's
``results.json``/``snapshot.json``/``data.json`` (runs recorded from a live notebook). Arrays
too large for the notebook are files beside them; their references are pointed at the
downloaded copies so that a lock can copy them into its sidecar folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from reprokit._serde import from_builtins
from reprokit.capturing.model import DataManifest, Snapshot
from reprokit.exceptions import InputError, RecordError, UsageError
from reprokit.recording.folder import ARTIFACT_PATH
from reprokit.recording.target import resolve_target, sqlite_path
from reprokit.recording.writer import MlflowRunWriter
from reprokit.results.model import ArrayData, Result
from reprokit.results.notebook import (
    NotebookResults,
    ResultOutput,
    read_notebook,
    restore_snapshot,
)

__all__ = ["RecordedRun", "is_run_id", "load_run"]

# parameters that reprokit itself logs (not the notebook's)
_OWN_PARAMS = frozenset({"device", "seed", "deterministic"})
_ENDED_EARLY = frozenset({"KILLED", "FAILED"})  # a run of these may lack results declared later


@dataclass(frozen=True)
class RecordedRun:
    """What an MLflow run holds, downloaded into ``folder``."""

    run_id: str
    tracking_uri: str  # redacted
    notebook: str | None  # the notebook the run came from (``mlflow.source.name``)
    device: str
    parameters: dict[str, Any]
    results: NotebookResults
    folder: Path
    executed_notebook: Path | None = None
    data: DataManifest | None = None
    tags: dict[str, str] = field(default_factory=dict)
    status: str | None = None  # MLflow's: FINISHED, FAILED, KILLED, RUNNING

    @property
    def snapshot(self) -> Snapshot | None:
        return self.results.snapshot


def is_run_id(text: str) -> bool:
    """An MLflow run id (32 hex digits), or ``runs:/<id>``."""
    bare = text.removeprefix("runs:/").strip("/")
    return len(bare) == 32 and all(c in "0123456789abcdef" for c in bare.lower())


def load_run(
    run_id: str,
    destination: str | os.PathLike[str],
    *,
    start: str | os.PathLike[str] = ".",
    tracking_uri: str | None = None,
) -> RecordedRun:
    """Download run ``run_id``'s ``reprokit/`` artifacts into ``destination`` and read them.

    The tracking URI is resolved from ``start`` as for recording. Raises
    :class:`~reprokit.exceptions.UsageError` for a run that does not exist and
    :class:`~reprokit.exceptions.InputError` for a run that reprokit did not record.
    """
    run_id = run_id.removeprefix("runs:/").strip("/")
    target = resolve_target(start=start, tracking_uri=tracking_uri)
    folder = Path(destination)
    local = _read_local(run_id, target.uri, folder)
    if local is not None:
        return _read_run(run_id, target.display_uri, local, folder / ARTIFACT_PATH)
    writer = MlflowRunWriter(target)
    writer.connect()
    client = writer.client
    try:
        run = client.get_run(run_id)
    except Exception as exc:  # MlflowException for an unknown id; anything else: unreachable
        raise UsageError(
            f"MLflow run {run_id} not found in {target.display_uri}: {_first_line(exc)}",
            run_id=run_id,
        ) from None
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with _no_progress_bar():
            client.download_artifacts(run_id, ARTIFACT_PATH, str(folder))
    except Exception as exc:
        raise RecordError(
            f"MLflow run {run_id}: downloading its {ARTIFACT_PATH}/ artifacts from "
            f"{target.display_uri} failed: {_first_line(exc)}",
            uri=target.display_uri,
            action=f"downloading its {ARTIFACT_PATH}/ artifacts",
            run_id=run_id,
        ) from None
    return _read_run(run_id, target.display_uri, run, folder / ARTIFACT_PATH)


@dataclass(frozen=True)
class _RunData:
    tags: dict[str, str]
    params: dict[str, str]


@dataclass(frozen=True)
class _RunInfo:
    status: str | None


@dataclass(frozen=True)
class _LocalRun:
    """A run's tags, params and status read straight from a SQLite store (shaped like MLflow's
    Run)."""

    data: _RunData
    info: _RunInfo


def _read_local(run_id: str, uri: str, folder: Path) -> _LocalRun | None:
    """The fast path for the embedded store: read the run's rows from SQLite (read-only) and
    copy its ``reprokit/`` artifacts from the local artifact folder, without importing MLflow
    (seconds to import, most of a ``diff RUN_A RUN_B``). None: take MLflow's way."""
    database = sqlite_path(uri)
    if database is None or not database.is_file():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT artifact_uri, status FROM runs WHERE run_uuid = ?", (run_id,))
            found = row.fetchone()
            tags = dict(db.execute("SELECT key, value FROM tags WHERE run_uuid = ?", (run_id,)))
            params = dict(db.execute("SELECT key, value FROM params WHERE run_uuid = ?", (run_id,)))
    except sqlite3.Error:
        return None
    if found is None or not str(found[0]).startswith("file:"):
        return None  # unknown here (MLflow says so), or artifacts elsewhere
    source = Path(url2pathname(urlsplit(str(found[0])).path)) / ARTIFACT_PATH
    if not source.is_dir():
        return None
    shutil.copytree(source, folder / ARTIFACT_PATH, dirs_exist_ok=True, symlinks=True)
    return _LocalRun(_RunData(tags, params), _RunInfo(found[1]))


@contextlib.contextmanager
def _no_progress_bar() -> Iterator[None]:
    """MLflow draws a tqdm bar per download on stderr; reprokit prints its own lines."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _read_run(run_id: str, uri: str, run: Any, folder: Path) -> RecordedRun:
    tags = dict(run.data.tags)
    params = dict(run.data.params)
    status = getattr(run.info, "status", None)
    executed = _executed_notebook(folder)
    if executed is not None:  # its snapshot made whole from the run folder uploaded beside it
        places = sorted(folder.rglob("snapshot.json")) if folder.is_dir() else []
        results = restore_snapshot(read_notebook(executed), places)
        parameters = _papermill_parameters(executed) or _notebook_params(params)
    else:
        results = _session_results(run_id, folder, status if _ours(tags) else None)
        parameters = _notebook_params(params)
    results = _relocated(results, folder)
    return RecordedRun(
        run_id=run_id,
        tracking_uri=uri,
        notebook=tags.get("mlflow.source.name"),
        device=tags.get("reprokit.device") or params.get("device") or "cpu",
        parameters=parameters,
        results=results,
        folder=folder,
        executed_notebook=executed,
        data=_data_manifest(folder) or (results.snapshot.data if results.snapshot else None),
        tags=tags,
        status=status,
    )


def _ours(tags: dict[str, str]) -> bool:
    """The run was recorded by reprokit (it carries reprokit's version tag)."""
    return "reprokit.version" in tags


def _executed_notebook(folder: Path) -> Path | None:
    """The executed notebook the runner uploaded (top level of ``reprokit/``)."""
    found = sorted(folder.glob("*.ipynb")) if folder.is_dir() else []
    return found[0] if found else None


def _papermill_parameters(executed: Path) -> dict[str, Any]:
    """Exact parameter values, as papermill wrote them into the executed notebook."""
    try:
        node = json.loads(executed.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    values = node.get("metadata", {}).get("papermill", {}).get("parameters", {})
    return dict(values) if isinstance(values, dict) else {}


def _notebook_params(params: dict[str, str]) -> dict[str, Any]:
    """MLflow keeps params as text: JSON where it parses, else the text."""
    out: dict[str, Any] = {}
    for key, text in sorted(params.items()):
        if key in _OWN_PARAMS or key.startswith(("seed.", "reprokit.")):
            continue
        try:
            out[key] = json.loads(text)
        except ValueError:
            out[key] = text
    return out


def _session_results(run_id: str, folder: Path, status: str | None) -> NotebookResults:
    """A run recorded from a live notebook: ``results.json`` and ``snapshot.json``. ``status``:
    the run's, when reprokit recorded it (a run without results then declared none)."""
    results_file = _find(folder, "results.json")
    if results_file is None and status is not None:
        died = ": its process ended before it declared any" if status in _ENDED_EARLY else ""
        raise InputError(
            f"MLflow run {run_id} ({status}) has no reprokit results (no executed notebook and "
            f"no {ARTIFACT_PATH}/results.json){died}",
            run_id=run_id,
        )
    if results_file is None:
        raise InputError(
            f"MLflow run {run_id} has no reprokit results (no executed notebook and no "
            f"{ARTIFACT_PATH}/results.json): was it recorded by reprokit?",
            run_id=run_id,
        )
    raw = _json(results_file)
    results = from_builtins(raw, dict[str, Result]) if isinstance(raw, dict) else {}
    snapshot_file = _find(folder, "snapshot.json")
    snapshots = () if snapshot_file is None else (from_builtins(_json(snapshot_file), Snapshot),)
    outputs = tuple(ResultOutput(0, result) for _, result in sorted(results.items()))
    return NotebookResults(str(results_file), outputs, snapshots)


def _data_manifest(folder: Path) -> DataManifest | None:
    found = _find(folder, "data.json")
    return None if found is None else from_builtins(_json(found), DataManifest)


def _find(folder: Path, name: str) -> Path | None:
    direct = folder / name
    if direct.is_file():
        return direct
    found = sorted(folder.rglob(name)) if folder.is_dir() else []
    return found[0] if found else None


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not readable JSON: {exc}", path=str(path)) from None


def _relocated(results: NotebookResults, folder: Path) -> NotebookResults:
    """Point by-reference arrays at the downloaded copies of their files."""

    def move(data: ArrayData | None) -> ArrayData | None:
        if data is None or data.file is None:
            return data
        hits = sorted(
            p for p in folder.rglob(Path(data.file).name) if p.as_posix().endswith(data.file)
        )
        if not hits:
            return data
        base = hits[0].as_posix()[: -len(data.file)].rstrip("/")
        return replace(data, location=base)

    def result(r: Result) -> Result:
        columns = tuple(replace(c, data=move(c.data) or c.data) for c in r.columns)
        return replace(r, array=move(r.array), index=move(r.index), columns=columns)

    outputs = tuple(replace(o, result=result(o.result)) for o in results.outputs)
    return replace(results, outputs=outputs)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
