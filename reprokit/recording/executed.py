"""Record an executed notebook as one MLflow run, from the runner process.

Kernels started by the runner keep their runs local (``REPROKIT_MLFLOW=off``): MLflow is
imported once, here, instead of once per kernel. Everything comes from the executed notebook
(its results and snapshot outputs) and the kernel's local folder: params, scalar results as
metrics, tags, the declared data files as dataset inputs (with reprokit's full digests, as the
magics log them), and the notebook's output folder (executed notebook, kernel log, the kernel's
run folder) uploaded in one call as the artifacts ``reprokit/``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reprokit._serde import from_json
from reprokit.capturing.model import DataEntry, DataManifest
from reprokit.capturing.redact import redact_mapping, redact_parameters
from reprokit.exceptions import InputError, RecordError, ReprokitError
from reprokit.recording.folder import ARTIFACT_PATH
from reprokit.recording.helper import RecordingHelper
from reprokit.recording.journal import Journal, JournalState
from reprokit.recording.mapping import (
    dataset_spec,
    metric_key,
    metric_value,
    run_tags,
    seed_params,
    seed_tags,
)
from reprokit.recording.replay import replay_state
from reprokit.recording.target import TrackingTarget, resolve_target
from reprokit.recording.writer import Metric, MlflowRunWriter, RunEndStatus, now_ms
from reprokit.results.notebook import NotebookResults

if TYPE_CHECKING:
    from reprokit.statuses import ExecutionStatus

# MLflow run status of each execution status: a timeout stopped a cell, like an error
MLFLOW_STATUS: dict[ExecutionStatus, RunEndStatus] = {
    "ok": "FINISHED",
    "failed": "FAILED",
    "timeout": "FAILED",
    "kernel_died": "FAILED",
    "interrupted": "KILLED",
}

# one writer at a time: an embedded SQLite store serialises writes anyway, and MLflow's first
# import must not race with itself from several runner threads
_record_lock = threading.Lock()


@dataclass(frozen=True)
class RunRecord:
    """What was recorded: the MLflow run id, or why nothing was."""

    run_id: str | None
    experiment: str | None = None
    tracking_uri: str | None = None
    error: str | None = None


def record_execution(**what: Any) -> RunRecord:
    """Write one MLflow run for an executed notebook (the arguments of :func:`begin_record`);
    a recording failure is returned, not raised (the execution's own outcome matters more)."""
    return begin_record(**what).finish()


@dataclass
class PendingRecord:
    """A run journaled and, with a helper, on its way to MLflow; :meth:`finish` completes it."""

    state: JournalState
    target: TrackingTarget
    journal: Journal | None
    connections: Connections
    helper: RecordingHelper | None = None

    def finish(self) -> RunRecord:
        """The run id (or the recording error), once MLflow has the run."""
        target, journal = self.target, self.journal
        if self.helper is not None and journal is not None:
            recorded = _received(self.helper, target)
            if recorded is not None:
                return recorded
            journal = Journal.adopt(journal.path)  # the helper is gone: replay it here
            if journal is None:
                return RunRecord(None, target.experiment, target.display_uri, _HELPER_GONE)
        return _record_here(self.state, target, journal, self.connections)


def begin_record(
    *,
    notebook: Path,
    output_dir: Path,
    status: ExecutionStatus,
    start_ms: int,
    device: str,
    parameters: Mapping[str, Any],
    results: NotebookResults | None,
    extra_tags: Mapping[str, str],
    note: str = "",
    connections: Connections | None = None,
    journal: Journal | None = None,
) -> PendingRecord:
    """Journal the run of an executed notebook (in ``journal``, the one :func:`begin_journal`
    opened as it started, if any) and, when ``connections`` has a helper for its store, hand
    the journal to it at once (else :meth:`PendingRecord.finish` writes MLflow)."""
    target = resolve_target(start=notebook.parent)
    snapshot = results.snapshot if results is not None else None
    tags = _tags(notebook, device, snapshot, target.display_uri, note) | dict(extra_tags)
    params = _params(device, parameters)
    if snapshot is not None and snapshot.seeds is not None:
        params |= seed_params(snapshot.seeds)
        tags |= seed_tags(snapshot.seeds)
    state = JournalState(Path(), target.experiment, target.display_uri, notebook.stem, start_ms)
    state.tags, state.params, state.metrics = tags, params, _metrics(results)
    state.uploads = {ARTIFACT_PATH: str(output_dir)}
    state.datasets = [
        asdict(dataset_spec(e, target.project_root)) for e in declared_data(output_dir, snapshot)
    ]
    state.status, state.end_ms = MLFLOW_STATUS.get(status, "FAILED"), now_ms()
    journal = _journal(target.project_root, output_dir, state, journal)
    pending = PendingRecord(state, target, journal, connections or Connections())
    helper = pending.connections.helper(target)
    if helper is not None and journal is not None:
        journal.release()  # the helper locks it
        if _sent(helper, journal.path):
            pending.helper = helper
        else:  # the helper is gone: finish() writes it here
            pending.journal = Journal.adopt(journal.path)
    return pending


def begin_journal(
    *, notebook: Path, output_dir: Path, device: str, parameters: Mapping[str, Any]
) -> Journal | None:
    """The journal of a notebook's run, opened as the notebook starts executing: its start,
    params and tags. A runner that ends before it recorded the run (a second Ctrl-C, a kill,
    a crash of the machine) leaves it to the next command that opens the store (or
    ``reprokit sync``), which records the run as KILLED, ended when its output folder last
    changed. Nothing is uploaded then: the partial notebook and the kernel's log were not
    scrubbed of secret parameters (the runner does that as a notebook ends), so they stay in
    the output folder. :func:`begin_record` completes the journal with the whole run and its
    upload; None where the run has no journal (see :func:`_journal`)."""
    try:
        target = resolve_target(start=notebook.parent)
    except ReprokitError:  # a broken configuration: the recording says so
        return None
    state = JournalState(Path(), target.experiment, target.display_uri, notebook.stem, now_ms())
    tags = _tags(notebook, device, None, target.display_uri, "")
    state.tags, state.params = tags | {RUNNER_TAG: RUNNER}, _params(device, parameters)
    state.folder = str(output_dir)
    return _journal(target.project_root, output_dir, state)


def abandon_journal(journal: Journal, status: ExecutionStatus) -> None:
    """The run could not be recorded now (its record failed before it was journaled): its
    start journal gets the execution's end status and is let go, for the next command that
    opens the store to record, rather than replayed as KILLED."""
    with contextlib.suppress(OSError):
        journal.append("end", status=MLFLOW_STATUS.get(status, "FAILED"), end_ms=now_ms())
    journal.release()


RUNNER_TAG, RUNNER = "reprokit.runner", "reprokit run"
"""The tag of every run the runner records, and its value."""


def _params(device: str, parameters: Mapping[str, Any]) -> dict[str, str]:
    """The run's params; a parameter named like a secret, or holding a credential, is never
    recorded verbatim (nor a secret-named key inside a list or mapping: redacted before the
    value is written as text, which ``password=`` patterns do not catch in Python's form)."""
    shown = redact_parameters(parameters)
    return redact_mapping(({"device": device} | {k: _param(v) for k, v in shown.items()}).items())


_HELPER_GONE = "the recording helper stopped; `reprokit sync` completes the run"


def _sent(helper: RecordingHelper, journal: Path) -> bool:
    try:
        helper.send(journal)
    except OSError:
        return False
    return True


def _received(helper: RecordingHelper, target: TrackingTarget) -> RunRecord | None:
    try:
        return RunRecord(helper.receive(), target.experiment, target.display_uri)
    except RuntimeError as exc:
        return RunRecord(None, target.experiment, target.display_uri, str(exc))
    except OSError:
        return None


def _record_here(
    state: JournalState, target: TrackingTarget, journal: Journal | None, connections: Connections
) -> RunRecord:
    writer = MlflowRunWriter(target)
    try:
        with _record_lock:
            writer = connections.writer(target)
            run_id = replay_state(state, writer, journal)
    except RecordError as exc:
        _close_quietly(writer)  # the journal (kept) completes the run at the next command
        return RunRecord(None, target.experiment, target.display_uri, str(exc))
    finally:
        if journal is not None:
            journal.release()
    return RunRecord(run_id, target.experiment, target.display_uri)


class Connections:
    """Stores opened once for a batch of recordings (``reprokit run`` of many notebooks):
    connecting costs a client, the store's check and a look for journals to replay."""

    def __init__(self) -> None:
        self._opened: dict[str, MlflowRunWriter] = {}
        self._helpers: dict[str, RecordingHelper] = {}

    def start_helper(self, target: TrackingTarget) -> None:
        """Record the runs of ``target``'s store through a :class:`RecordingHelper` process,
        started now (so that MLflow imports there while kernels run)."""
        if target.uri not in self._helpers:
            with contextlib.suppress(OSError):  # no helper: recorded in this process
                self._helpers[target.uri] = RecordingHelper(target)

    def helper(self, target: TrackingTarget) -> RecordingHelper | None:
        return self._helpers.get(target.uri)

    def close(self) -> None:
        for helper in self._helpers.values():
            helper.close()
        self._helpers.clear()

    def let_go(self) -> None:
        """Close the helpers without waiting for them (a signalled runner): each finishes the
        journals it was sent, on its own; a journal it does not get to stays for
        ``reprokit sync``."""
        for helper in self._helpers.values():
            helper.close(wait=False)
        self._helpers.clear()

    def writer(self, target: TrackingTarget) -> MlflowRunWriter:
        """A writer of a new run at ``target``, on a connection opened once per store."""
        opened = self._opened.get(target.uri)
        if opened is None:
            opened = MlflowRunWriter(target)
            opened.connect()
            self._opened[target.uri] = opened
        return opened.sharing(target)


def _journal(
    project_root: str, output_dir: Path, state: JournalState, opened: Journal | None = None
) -> Journal | None:
    """The run written to a journal first (appended to ``opened``, else a new one): a runner
    killed while MLflow writes loses nothing.

    Only when the outputs are in the project's ``.reprokit`` (the default): a runner told to
    write elsewhere (a reviewer's ``--output-dir``) leaves the project's tree untouched."""
    if opened is None and not journaled(project_root, output_dir):
        return None
    journal = opened
    try:
        journal = journal or Journal.create(project_root)
        journal.write(state)
    except OSError:
        if journal is not None:  # half written: it would be recorded twice
            journal.discard()
        return None  # recording straight to MLflow, as without a journal
    state.path = journal.path
    return journal


def journaled(project_root: str | Path, output_dir: Path) -> bool:
    """Whether the runs whose outputs go to ``output_dir`` are journaled: only those in the
    project's ``.reprokit`` (a runner told to write elsewhere leaves the project untouched)."""
    return output_dir.resolve().is_relative_to(Path(project_root).resolve() / ".reprokit")


def tag_run(
    notebook: Path,
    run_id: str,
    tags: Mapping[str, str],
    artifacts: Path | None = None,
    artifact_path: str = ARTIFACT_PATH,
) -> str | None:
    """Add ``tags`` to a recorded run (a verification's verdict and reference) and upload the
    folder ``artifacts`` under ``artifact_path``; the error message if that failed, never
    raised."""
    writer = MlflowRunWriter(resolve_target(start=notebook.parent))
    try:
        with _record_lock:
            writer.connect()
            writer.run_id = run_id
            writer.log_batch(tags=tags)
            if artifacts is not None:
                writer.upload(artifacts, artifact_path)
    except RecordError as exc:
        return str(exc)
    return None


def _tags(notebook: Path, device: str, snapshot: Any, uri: str, note: str) -> dict[str, str]:
    if snapshot is None:  # the notebook never called %repro start
        return {
            "mlflow.source.name": str(notebook),
            "mlflow.source.type": "NOTEBOOK",
            "reprokit.device": device,
        }
    return run_tags(
        snapshot,
        notebook=str(notebook),
        in_notebook=True,
        device=device,
        local_dir=None,
        tracking_uri=uri,
        note=note,
    )


def declared_data(output_dir: Path, snapshot: Any = None) -> tuple[DataEntry, ...]:
    """The inputs the notebook declared: its run folders' ``data.json`` (``%repro start
    --data`` and every later ``%repro data`` or ``reprokit.data()``; a notebook that starts
    two runs has two), each path and digest once, else the snapshot's manifest."""
    declared: dict[tuple[str, str], DataEntry] = {}
    for path in sorted(output_dir.glob("*/data.json")):
        with contextlib.suppress(OSError, InputError):
            for entry in from_json(path.read_bytes(), DataManifest, source=str(path)).entries:
                declared.setdefault((entry.path, entry.digest), entry)
    if declared:
        return tuple(declared.values())
    manifest = getattr(snapshot, "data", None)
    return manifest.entries if manifest is not None else ()


def _param(value: Any) -> str:
    return str(value)  # as the in-kernel session records them


def _metrics(results: NotebookResults | None) -> list[Metric]:
    if results is None:
        return []
    stamp = now_ms()
    metrics: list[Metric] = []
    for name, result in results.results.items():
        number = metric_value(result)
        if number is not None:
            metrics.append((metric_key(name), number, stamp, 0))
    return metrics


def _close_quietly(writer: MlflowRunWriter) -> None:
    """A run opened before a later step failed must not stay RUNNING."""
    if writer.run_id is None:
        return
    with contextlib.suppress(RecordError):
        writer.close("FAILED", now_ms())


def warm_up() -> None:
    """Import MLflow ahead of the first recording (on a thread of the caller's, while the
    first kernel starts): later imports are free."""
    from reprokit.recording.writer import quiet_mlflow

    quiet_mlflow()
    import mlflow.tracking  # noqa: F401
