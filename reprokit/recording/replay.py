"""Replaying run journals into MLflow (see :mod:`reprokit.recording.journal`).

A replay is idempotent: the run is the one the journal names (``opened``), else the one tagged
``reprokit.journal=<key>`` (created by a process killed before it could write ``opened``), else
a new one; params, tags and metrics logged again are the same rows, artifacts are overwritten
with the same files, and a journal is deleted once it reached MLflow. Two replays of one
journal never run at once: each holds the journal's ``flock``, and so does a live recorder.

A journal left by a dead process (a kernel killed before MLflow got everything) is completed
by the next connection to its store (:func:`replay_pending`): with its end status if it has
one, else ``FAILED`` when it recorded a failed cell, else ``KILLED``, ending when its process
last wrote (:meth:`~reprokit.recording.journal.JournalState.last_change`), not at the replay.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from reprokit._fsutil import atomic_write_text
from reprokit._serde import to_json
from reprokit.exceptions import RecordError
from reprokit.recording.folder import ARTIFACT_PATH, RESULTS_FILE
from reprokit.recording.handoff import remove_writer_log
from reprokit.recording.journal import (
    JOURNAL_TAG,
    Journal,
    JournalState,
    pending_journals,
    read_journal,
)
from reprokit.recording.mapping import SOURCE_NAME_TAG, DatasetSpec
from reprokit.recording.retention import name_run
from reprokit.recording.writer import MlflowRunWriter, RunEndStatus, now_ms, unanswered

_END_STATUSES: tuple[RunEndStatus, ...] = ("FINISHED", "FAILED", "KILLED")

ReplayStatus = Literal[
    "replayed", "running", "elsewhere", "empty", "failed", "unreadable", "startless"
]
"""What became of one journal: replayed into MLflow; left alone because its process still
records it (or another replay holds it); recorded for another store; held nothing; replay
failed (kept for the next try); could not be read; holds events but no start, so cannot be
replayed (kept)."""


@dataclass(frozen=True)
class Replay:
    """One journal's outcome."""

    journal: str
    status: ReplayStatus
    run_id: str | None = None
    run_status: RunEndStatus | None = None
    experiment: str | None = None
    detail: str | None = None
    skipped: int = 0  # lines of the journal that could not be read (a torn last line aside)
    events: int = 0  # of a startless journal: the events it keeps, not replayed
    unavailable: bool = False  # failed: the store did not answer (the next are not tried)


def replay_state(state: JournalState, writer: MlflowRunWriter, journal: Journal | None) -> str:
    """Write ``state`` as one MLflow run through the connected ``writer`` (its experiment is
    the state's) and close it; mark ``journal`` synced. Returns the run id; raises
    :class:`RecordError`."""
    ended = state.end_ms or state.last_change() or now_ms()  # before this replay appends
    run_id = state.run_id or _tagged_run(writer, state.key if journal else None)
    if run_id is None:
        tags = state.tags | ({JOURNAL_TAG: journal.key} if journal else {})
        run_id = writer.open_run(
            run_name=state.run_name, tags=tags, params=state.params, start_ms=state.start_ms
        )
        if journal is not None:
            journal.append("opened", run_id=run_id)
    else:
        writer.run_id = run_id
        writer.log_batch(params=state.params, tags=state.tags)
    writer.log_batch(metrics=state.metrics)
    _write_missing_results(state)
    if state.datasets:
        writer.log_datasets([DatasetSpec(**spec) for spec in state.datasets])
    for artifact_path, folder in state.uploads.items():
        if Path(folder).is_dir():  # a run folder removed since: the rest is still worth having
            name_run(Path(folder), run_id, state.tags.get(SOURCE_NAME_TAG))
            writer.upload(Path(folder), artifact_path)
    if state.folder and state.folder not in state.uploads.values() and Path(state.folder).is_dir():
        name_run(Path(state.folder), run_id, state.tags.get(SOURCE_NAME_TAG))  # gc finds it
    writer.close(_status(state), ended)
    if journal is not None:
        journal.finish()
    return run_id


def _write_missing_results(state: JournalState) -> None:
    """The run folder of a process that died before its end has no ``results.json``: it is made
    from the results the journal holds, before the folder is uploaded (so the run's
    ``reprokit/results.json`` artifact has every result declared)."""
    folder = state.uploads.get(ARTIFACT_PATH)
    if not state.results or folder is None or not Path(folder).is_dir():
        return
    target = Path(folder) / RESULTS_FILE
    if target.exists():  # written at the end, from the same results
        return
    try:
        atomic_write_text(target, to_json(state.results))
    except OSError as exc:  # kept for the next replay: the results are only in the journal
        raise RecordError(f"cannot write {target}: {exc.strerror}", action="replaying") from exc


def _status(state: JournalState) -> RunEndStatus:
    found = state.final_status()
    return next((s for s in _END_STATUSES if s == found), "KILLED")


def _tagged_run(writer: MlflowRunWriter, key: str | None) -> str | None:
    if key is None:
        return None
    try:
        experiment = writer.client.get_experiment_by_name(writer.target.experiment)
        if experiment is None:
            return None
        runs = writer.client.search_runs(
            [experiment.experiment_id], filter_string=f"tags.`{JOURNAL_TAG}` = '{key}'"
        )
    except Exception as exc:  # MLflow raises many types; all mean "cannot read the store"
        from reprokit.capturing.redact import redact_text

        detail = redact_text(str(exc).replace(writer.target.uri, writer.target.display_uri))
        raise RecordError(
            f"cannot search runs: {detail}", action="replaying", unavailable=unanswered(exc)
        ) from exc
    return str(runs[0].info.run_id) if runs else None


def journaled_run(writer: MlflowRunWriter, key: str) -> str | None:
    """The run a replay of journal ``key`` created (it carries the tag ``reprokit.journal``)."""
    return _tagged_run(writer, key)


def replay_pending(writer: MlflowRunWriter) -> list[Replay]:
    """Replay every journal of the writer's project that its process left behind and that
    was recorded for the writer's store; ``writer`` is connected. Never raises. Once the
    store does not answer one replay, the next journals for it are not tried (each would
    wait through the retries again): they fail at once, kept for the next command."""
    replays: list[Replay] = []
    down: str | None = None
    for path in pending_journals(writer.target.project_root):
        replays.append(replay_file(path, writer, down))
        if down is None and replays[-1].unavailable:
            down = f"not tried: the store did not answer the replay of {path.name}"
    return replays


def replay_file(path: Path, writer: MlflowRunWriter, down: str | None = None) -> Replay:
    """One journal file (see :data:`ReplayStatus`); with ``down`` (why the store is taken to
    be down), one for the writer's store fails with that detail, untried."""
    try:
        journal = Journal.adopt(path)
    except OSError as exc:  # another user's, immutable, on a read-only mount
        return Replay(str(path), "failed", detail=f"cannot open it for writing: {exc.strerror}")
    if journal is None:
        return Replay(str(path), "running")
    try:
        return replay_adopted(journal, writer, down)
    finally:
        journal.release()
        remove_writer_log(path)  # a writer killed before the run reached MLflow left it


def _unusable(journal: Journal, state: JournalState) -> Replay | None:
    """The outcome of a journal that holds no run to replay: kept when it holds anything
    (no line a journal event; events but no start), else deleted (reached MLflow, or its
    process died before its start). None for one to replay."""
    path = str(journal.path)
    if state.events_read == 0 and (
        state.unreadable or state.torn
    ):  # kept: someone may want to read it
        return Replay(path, "unreadable", detail="no line is a journal event (kept)")
    if state.startless:  # its events without the start's experiment, store, params: kept
        return Replay(
            path, "startless", state.run_id, skipped=state.unreadable, events=state.events_read
        )
    if state.synced or state.experiment is None:  # reached MLflow, or died before its start
        failure = journal.discard()
        if failure is not None:
            done = "its run is in MLflow" if state.synced else "it holds no run"
            detail = f"{done}, but it cannot be deleted: {failure.strerror}"
            return Replay(path, "failed", state.run_id, experiment=state.experiment, detail=detail)
        return Replay(path, "empty", run_id=state.run_id)
    return None


def replay_adopted(journal: Journal, writer: MlflowRunWriter, down: str | None = None) -> Replay:
    """A journal this process holds (:meth:`Journal.adopt`), replayed; the caller releases it
    (``down``: see :func:`replay_file`)."""
    path = str(journal.path)
    try:
        state = read_journal(journal.path)
    except (OSError, UnicodeDecodeError) as exc:
        return Replay(path, "unreadable", detail=f"{type(exc).__name__}: {exc}")
    unusable = _unusable(journal, state)
    if unusable is not None:
        return unusable
    if state.uri != writer.target.display_uri:
        return Replay(path, "elsewhere", experiment=state.experiment, detail=state.uri)
    if down is not None:
        return Replay(path, "failed", state.run_id, experiment=state.experiment, detail=down)
    # a journal is read from disk: it uploads nothing from outside the project's .reprokit
    hidden = Path(writer.target.project_root).resolve() / ".reprokit"
    state.uploads = {
        key: folder
        for key, folder in state.uploads.items()
        if Path(folder).resolve().is_relative_to(hidden)
    }
    if state.folder and not Path(state.folder).resolve().is_relative_to(hidden):
        state.folder = None
    run_writer = writer.sharing(replace(writer.target, experiment=str(state.experiment)))
    try:
        run_id = replay_state(state, run_writer, journal)
    except (RecordError, TypeError, ValueError) as exc:  # a store refusing, a foreign event
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        unavailable = isinstance(exc, RecordError) and exc.unavailable
        return Replay(
            path, "failed", state.run_id, experiment=state.experiment, detail=detail,
            unavailable=unavailable,
        )  # fmt: skip
    return Replay(
        path, "replayed", run_id, _status(state), state.experiment, skipped=state.unreadable
    )
