"""One run being recorded: what it declared, its local folder, its MLflow writes.

:class:`RecordedRun` keeps the run's state (snapshot, results, inputs, seeds, failed cells) and
turns every change into local files and queued MLflow operations; it never blocks on MLflow
except in :meth:`RecordedRun.close`, and it never warns: problems are collected and handed to
the caller by :meth:`RecordedRun.take_problems` (the session turns them into warnings).

With ``REPROKIT_MLFLOW=off`` (set by ``reprokit run`` for the kernels it starts) the run is
kept local: results still go into the notebook and the run's folder, but MLflow is never
imported; the runner records the executed notebook to MLflow itself.
"""

from __future__ import annotations

import os
import threading
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from dataclasses import replace as dataclass_replace
from pathlib import Path
from typing import Any

from reprokit._serde import compact_json, laid_out, to_builtins, to_json
from reprokit.capturing.model import DataEntry, DataManifest, SeedRecord, Snapshot
from reprokit.recording.folder import ARTIFACT_PATH, RESULTS_FILE, RunFolder
from reprokit.recording.handoff import spawn_writer, wait_for_writers, writer_failure, writing
from reprokit.recording.journal import JOURNAL_TAG, Journal, waiting
from reprokit.recording.mapping import (
    accelerator_tags,
    dataset_spec,
    metric_key,
    metric_value,
    requirements_text,
    run_tags,
    seed_params,
    seed_tags,
)
from reprokit.recording.target import TrackingTarget
from reprokit.recording.worker import (
    BackgroundRecorder,
    Call,
    Close,
    LogBatch,
    LogDatasets,
    Op,
    OpenRun,
    Upload,
    now_ms,
)
from reprokit.recording.writer import RunEndStatus, RunState, default_run_name
from reprokit.results.encode import encode_result
from reprokit.results.model import RUN_STATUS_MIME, Result

MLFLOW_ENV = "REPROKIT_MLFLOW"


def mlflow_enabled() -> bool:
    """False when ``REPROKIT_MLFLOW`` is ``off`` (or ``0``, ``false``, ``no``)."""
    return os.environ.get(MLFLOW_ENV, "").strip().lower() not in ("off", "0", "false", "no")


class LocalRecorder:
    """The recorder of a run kept local: MLflow work is dropped, file writes happen in order
    on a thread of their own, so a cell that starts a run over 100,000 data files does not
    wait for its 11 MB ``snapshot.json`` and ``data.json``. :meth:`flush` waits for them: the
    run's end does, and the runner asks the kernel to before it kills it (see
    :func:`~reprokit.api.session.settle`). The interpreter finishes them before it exits.

    Same interface as :class:`~reprokit.recording.worker.BackgroundRecorder`.
    """

    run_id: str | None = None
    broken = False

    def __init__(self) -> None:
        self._errors: list[str] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._files: ThreadPoolExecutor | None = None  # started with the first write

    def submit(self, op: Op) -> None:
        if not isinstance(op, Call):
            return
        with self._lock:
            if self._files is None:
                self._files = ThreadPoolExecutor(1, "reprokit-files")
            self._pending += 1
        try:
            self._files.submit(self._write, op)
        except RuntimeError:  # the interpreter is exiting: no new thread, write it here
            self._write(op)

    def _write(self, op: Call) -> None:
        try:
            op.function()
        except Exception as exc:  # a local write must never stop the notebook
            with self._lock:
                self._errors.append(f"{op.description} failed: {type(exc).__name__}: {exc}")
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def flush(self, timeout: float | None) -> bool:
        """Wait until every write submitted is done; False if ``timeout`` ran out first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending

    def take_errors(self) -> list[str]:
        with self._lock:
            errors, self._errors = self._errors, []
        return errors

    def stop(self) -> None:
        """Let the thread end once its writes are done."""
        if self._files is not None:
            self._files.shutdown(wait=False)


@dataclass(frozen=True)
class Unwritten:
    """An ended run that did not reach MLflow, and will not without ``reprokit sync``."""

    tracking_uri: str  # credentials removed
    journal: str | None  # kept for ``reprokit sync``; None: there is none (it could not be written)
    reason: str | None  # the first line of the error, credentials redacted; None: not known
    held: int = 0  # events the journal lacks (the disk refused them), held by this process
    refused: str = ""  # why the disk refused them


@dataclass(frozen=True)
class RunStatus:
    """Where the current (or just ended) run stands."""

    active: bool
    experiment: str | None = None
    run_name: str | None = None
    run_id: str | None = None  # None until the background thread has opened the run
    tracking_uri: str | None = None  # credentials removed
    local_dir: str | None = None
    notebook: str | None = None
    seed: int | None = None
    deterministic: bool = False
    data: tuple[str, ...] = ()
    results: tuple[str, ...] = ()
    cell_errors: int = 0
    interrupted: bool = False
    status: RunState | None = None  # RUNNING, or how it ended
    pending: int = 0  # MLflow operations not yet done
    recording: bool = True  # False once MLflow recording failed for this run
    errors: tuple[str, ...] = ()  # every recording problem reported for this run
    background: bool = False  # a background writer process finishes the run in MLflow
    local: bool = False  # kept local (REPROKIT_MLFLOW=off): the runner records it in MLflow

    def _repr_mimebundle_(
        self, include: object = None, exclude: object = None
    ) -> dict[str, object]:
        """Shown as a cell's last value: IPython adds the ``text/plain`` repr beside this
        reprokit MIME type, which makes the output reprokit's own (left out of output checks:
        its run folder and run id change every run)."""
        return {RUN_STATUS_MIME: {"active": self.active, "status": self.status}}


class RecordedRun:
    """Create it to open a run (MLflow work starts on a background thread at once)."""

    def __init__(
        self,
        target: TrackingTarget,
        snapshot: Snapshot,
        *,
        notebook: str | None,
        in_notebook: bool,
        run_name: str | None,
        params: dict[str, str],
        device: str,
        note: str = "",
    ) -> None:
        self.target = target
        self.note = note
        self.snapshot = snapshot
        self.notebook = notebook
        self.run_name = run_name
        self.results: dict[str, Result] = {}
        self.entries: list[DataEntry] = list(snapshot.data.entries) if snapshot.data else []
        self.seeds: list[SeedRecord] = [snapshot.seeds] if snapshot.seeds else []
        self._data_written = -1  # entries in the data.json on disk (-1: none written)
        self.params = dict(params)
        self.cell_errors = 0
        self.interrupted = False
        self.reported: list[str] = []  # problems already handed out, kept for the summary
        self.handed_off: Path | None = None  # the journal a background writer process finishes
        self._problems: list[str] = []
        self._declared: Counter[str] = Counter()
        self.folder = self._make_folder()
        # events the disk refused (a full disk), in order: written before any later one
        self._unjournaled: deque[tuple[str, bool, dict[str, Any]]] = deque()
        self._journal_lock = threading.Lock()  # the recorder's thread journals "opened"
        self.journal_refused = ""  # why the disk refuses the held events ("" when none are)
        self.journal = self._make_journal() if mlflow_enabled() else None
        self.journal_path = None if self.journal is None else self.journal.path
        self.in_mlflow = False  # MLflow closed the run (in this process)
        self.recorder: BackgroundRecorder | LocalRecorder = (
            BackgroundRecorder(target, self.journal.sync if self.journal else None)
            if mlflow_enabled()
            else LocalRecorder()
        )
        self._open(in_notebook, device)

    # --- opening ---------------------------------------------------------------------

    def _make_folder(self) -> RunFolder | None:
        try:
            return RunFolder.create(self.target.project_root)
        except OSError as exc:
            self._problems.append(
                f"cannot create the run's local folder under {self.target.project_root}: {exc}; "
                "large arrays are carried inside the notebook and no local copy is kept"
            )
            return None

    def _make_journal(self) -> Journal | None:
        try:
            return Journal.create(self.target.project_root)
        except OSError as exc:
            self._problems.append(
                f"cannot create the run's journal under {self.target.project_root}: {exc}; "
                "the run reaches MLflow only if this process lives until it is written"
            )
            return None

    def _submit(self, op: Op, *, durable: bool = True) -> None:
        """Journal ``op`` (on disk when this returns; fsync'ed too, ``durable`` and not a
        ``log`` event), then queue it for MLflow."""
        event = _journal_event(op)
        if event is not None:
            kind, fields = event
            if kind == "start":  # where the run goes: the replay's store and experiment
                fields |= {"experiment": self.target.experiment, "uri": self.target.display_uri}
            self._journal(kind, durable=durable and kind != "log", **fields)  # else: by the worker
        self.recorder.submit(op)

    def _journal(self, event: str, /, durable: bool = True, **fields: Any) -> None:
        """Append an event; one the disk refuses is held here, in order, and written before
        the next (a full disk must not stop the notebook, nor leave a journal that a replay
        would take for the whole run: it stays locked by this process meanwhile)."""
        with self._journal_lock:
            if self.journal is None:
                return
            self._unjournaled.append((event, durable, fields))
            self._write_unjournaled()

    def _write_unjournaled(self) -> bool:
        """Write the held events (the caller holds ``_journal_lock``); False if the disk
        still refuses them (said once, until they are in)."""
        journal, held = self.journal, self._unjournaled
        while journal is not None and held:
            event, durable, fields = held[0]
            try:
                journal.append(event, durable, **fields)
            except OSError as exc:
                if not self.journal_refused:
                    self.journal_refused = str(exc)
                    self._problems.append(
                        f"cannot append to the run's journal {journal.path}: {exc}; its events "
                        "are held in this process and written as soon as the disk takes them"
                    )
                return False
            held.popleft()
        self.journal_refused = ""
        return True

    @property
    def unjournaled(self) -> int:
        """Events held in this process that the journal on disk lacks (a full disk)."""
        return len(self._unjournaled)

    def _on_open(self, run_id: str, artifact_uri: str | None) -> None:
        self._journal("opened", run_id=run_id)
        if self.folder is not None:
            self._write_run_json(run_id, artifact_uri)

    def _open(self, in_notebook: bool, device: str) -> None:
        tags = run_tags(
            self.snapshot,
            notebook=self.notebook,
            in_notebook=in_notebook,
            device=device,
            local_dir=self.local_dir,
            tracking_uri=self.target.display_uri,
            note=self.note,
        )
        if self.folder is not None:
            self._local("writing the run folder", self._write_start_files)
        if self.journal is not None:
            tags[JOURNAL_TAG] = self.journal.key
        name = self.run_name or default_run_name()  # the same name if the journal is replayed
        self._submit(OpenRun(name, tags, self.params, now_ms(), self._on_open))
        if self.entries:
            self._log_inputs(self.entries)
        if self.folder is not None:
            self._submit(Upload(self.folder.path, ARTIFACT_PATH))

    def _write_start_files(self) -> None:
        from reprokit.capturing.git import git_diff
        from reprokit.capturing.redact import redact_text

        assert self.folder is not None
        data = self.snapshot.data
        compact = self._write_snapshot()
        self._write_run_json(None, None)  # names the notebook (gc groups runs by it)
        self.folder.write_text("requirements.txt", requirements_text(self.snapshot))
        if self.snapshot.git.available and self.snapshot.git.dirty:
            diff = git_diff(self.target.project_root)
            if diff:  # uncommitted edits may hold credentials: never upload them verbatim
                self.folder.write_text("git.diff", redact_text(diff))
        if data is not None and compact is not None:
            self._write_inputs((len(data.entries), laid_out(compact)))
        else:
            self._write_inputs()

    def _write_snapshot(self) -> bytes | None:
        """snapshot.json; returns its data manifest as written (None: no manifest)."""
        from reprokit.capturing.hashing import manifest_compact

        assert self.folder is not None
        snapshot = self.snapshot
        compact = None if snapshot.data is None else manifest_compact(snapshot.data)
        self.folder.write_bytes("snapshot.json", _snapshot_json(snapshot, compact))
        return compact

    def refresh_accelerator(self) -> bool:
        """Take the GPU/CUDA facts again; True where they changed since the start.

        A notebook imports torch and starts CUDA after ``%repro start``: its lock and MLflow
        run should still say which torch, CUDA and cuDNN ran it. Then the snapshot, its
        ``snapshot.json`` and the GPU/CUDA tags are updated. The notebook keeps the start's
        snapshot output (a changing end cell would fail nbval); a reader restoring the whole
        snapshot from ``snapshot.json`` takes the updated facts with it
        (:func:`~reprokit.results.notebook.restore_snapshot`)."""
        from reprokit.capturing.accelerator import collect_accelerator

        try:
            now = collect_accelerator()  # never initialises CUDA itself
        except Exception as exc:  # a broken torch or driver: the run must still close
            self._problems.append(f"cannot take the GPU/CUDA facts again at the end: {exc}")
            return False
        if now == self.snapshot.accelerator:
            return False
        self.snapshot = dataclass_replace(self.snapshot, accelerator=now)
        self._submit(LogBatch(tags=accelerator_tags(now)))
        if self.folder is not None:
            self._local("writing snapshot.json", self._write_snapshot)
        return True

    def _write_inputs(self, made: tuple[int, bytes] | None = None) -> None:
        """data.json (``made``: the snapshot's manifest, already encoded, and its number of
        entries: encoded once for both files) and seeds.json."""
        if self.folder is not None:
            from reprokit.capturing.hashing import manifest_json

            count = len(self.entries)  # entries are only added: the same count, the same file
            if count != self._data_written:  # 100k files: 11 MB not written again at the end
                if made is None or made[0] != count:  # %repro data added some meanwhile
                    made = (count, manifest_json(DataManifest(entries=tuple(self.entries[:count]))))
                self.folder.write_bytes("data.json", made[1])
                self._data_written = count
            self.folder.write_text("seeds.json", to_json(self.seeds))

    def _write_run_json(self, run_id: str | None, artifact_uri: str | None) -> None:
        info = {
            "notebook": self.notebook,
            "run_id": run_id,
            "experiment": self.target.experiment,
            "tracking_uri": self.target.display_uri,
            "artifact_uri": artifact_uri,
        }
        if self.folder is not None:
            self.folder.write_text("run.json", to_json(info))

    def _local(self, description: str, function: Any) -> None:
        self.recorder.submit(Call(description, function))

    # --- what the notebook declares -------------------------------------------------------

    @property
    def local_dir(self) -> str | None:
        return None if self.folder is None else str(self.folder.path)

    def metadata(self) -> dict[str, Any]:
        """Output metadata of the notebook's reprokit outputs: where this run goes."""
        return {
            "experiment": self.target.experiment,
            "run_name": self.run_name,
            "tracking_uri": self.target.display_uri,
            "local_dir": self.local_dir,
            "notebook": self.notebook,
        }

    def add_result(
        self,
        name: str,
        value: Any,
        *,
        rtol: float | None,
        atol: float | None,
        device_rtol: float | None = None,
        device_atol: float | None = None,
    ) -> tuple[Result, bool]:
        """Encode and record a result; also says whether it replaced one of the same name."""
        declared = encode_result(
            name,
            value,
            rtol=rtol,
            atol=atol,
            device_rtol=device_rtol,
            device_atol=device_atol,
            writer=self.folder,
        )
        replaced = name in self.results
        self.results[name] = declared
        self._journal_result(name, declared)
        return declared, replaced

    def _journal_result(self, name: str, declared: Result) -> None:
        """One ``result`` event: the result as ``results.json`` holds it (a kernel killed before
        the end leaves it to the replay) and its metric, if a number, queued for MLflow. Written
        at once, fsync'ed with the recorder's next batch or the end (a value that is no metric
        does not wake the recorder up)."""
        step = self._declared[name]
        self._declared[name] += 1
        number = metric_value(declared)
        # the step orders re-declarations: MLflow shows the latest
        metrics = [] if number is None else [(metric_key(name), number, now_ms(), step)]
        if self.journal is not None:
            fields = {"name": name, "result": _encoded(declared), "metrics": metrics}
            self._journal("result", False, **fields)
        if metrics:
            self.recorder.submit(LogBatch(metrics=metrics))

    def add_seed(self, record: SeedRecord) -> None:
        """The first seed is the ``seed`` param (params cannot change); the tag is the latest."""
        self.seeds.append(record)
        params = {} if "seed" in self.params else seed_params(record)
        self.params |= params
        self._submit(LogBatch(params=params, tags=seed_tags(record)))
        self._local("writing seeds.json", self._write_inputs)

    def add_data(self, entries: tuple[DataEntry, ...]) -> None:
        self.entries.extend(entries)
        self._log_inputs(entries)
        self._local("writing data.json", self._write_inputs)

    def _log_inputs(self, entries: list[DataEntry] | tuple[DataEntry, ...]) -> None:
        root = self.target.project_root
        self._submit(LogDatasets([dataset_spec(entry, root) for entry in entries]))

    def tag(self, tags: dict[str, str]) -> None:
        self._submit(LogBatch(tags=tags))

    def note_cell(self, error: BaseException | None) -> None:
        """Count a cell's uncaught error (IPython's post_run_cell)."""
        if isinstance(error, KeyboardInterrupt):
            self.interrupted = True
            self._journal("cell", error="interrupted")
        elif error is not None:
            self.cell_errors += 1
            self._journal("cell", error="failed")

    # --- problems, status, closing -----------------------------------------------------------

    def take_problems(self) -> list[str]:
        """Problems not reported yet (local folder, MLflow); each is handed out once."""
        problems, self._problems = self._problems + self.recorder.take_errors(), []
        self.reported += problems
        return problems

    def outcome(self) -> RunEndStatus:
        if self.interrupted:
            return "KILLED"
        return "FAILED" if self.cell_errors else "FINISHED"

    def status(self, state: RunState = "RUNNING") -> RunStatus:
        last_seed = self.seeds[-1] if self.seeds else None
        return RunStatus(
            active=state == "RUNNING",
            experiment=self.target.experiment,
            run_name=self.run_name,
            run_id=self.recorder.run_id,
            tracking_uri=self.target.display_uri,
            local_dir=self.local_dir,
            notebook=self.notebook,
            seed=None if last_seed is None else last_seed.seed,
            deterministic=False if last_seed is None else last_seed.deterministic,
            data=tuple(e.path for e in self.entries),
            results=tuple(self.results),
            cell_errors=self.cell_errors,
            interrupted=self.interrupted,
            status=state,
            pending=self.recorder.pending,
            recording=not self.recorder.broken,
            errors=tuple(self.reported),
            background=self.handed_off is not None,
            local=isinstance(self.recorder, LocalRecorder),
        )

    def close(self, status: RunEndStatus, timeout: float, *, grace: float | None = None) -> bool:
        """Write results, upload the folder, end the run; wait up to ``timeout`` seconds.

        False when MLflow did not finish in time (the run may then stay RUNNING). With
        ``grace``, MLflow gets that long; if it is not done by then the run is handed to a
        background writer process (:mod:`~reprokit.recording.handoff`) and this returns True
        at once: :meth:`wait_written` waits for that process.
        """
        if self.folder is not None:  # on the recorder's thread, before the upload
            self._local("writing results.json", self._write_results)
        summary = {
            "reprokit.results": str(len(self.results)),
            "reprokit.cell_errors": str(self.cell_errors),
        }
        self._submit(LogBatch(tags=summary))
        # fsync'ed off this thread: by the recorder after its batch, or before the hand-off
        if self.folder is not None:
            self._submit(Upload(self.folder.path, ARTIFACT_PATH), durable=False)
        self._submit(Close(status, now_ms(), self._on_closed), durable=False)
        if grace is not None and self._late(grace) and self._hand_off():
            self.recorder.stop()
            if self.folder is not None:
                self.folder.release()  # the journal keeps it from gc until it is synced
            return True
        finished = self.recorder.flush(timeout)
        self.recorder.stop()
        if self.folder is not None:
            self.folder.release()
        if finished and not self.in_mlflow and self.journal is not None and not self.unjournaled:
            self.journal.sync()  # MLflow refused the run: its journal is for `reprokit sync` now
            self.journal.release()
        if not finished and isinstance(self.recorder, LocalRecorder):
            self._problems.append(f"the run's files were not all written within {timeout:g} s")
        elif not finished:
            self._problems.append(
                f"MLflow at {self.target.display_uri} did not finish within {timeout:g} s; "
                "the run may stay RUNNING"
            )
        return finished

    def _late(self, grace: float) -> bool:
        """MLflow will not be done within ``grace`` seconds (still importing it, past the quick
        checks of the store: no need to wait and see)."""
        recorder = self.recorder
        if recorder.broken:  # MLflow refused: another process would not do better
            return False
        writer = recorder.writer if isinstance(recorder, BackgroundRecorder) else None
        if writer is not None and writer.reachable and not writer.connected:
            return recorder.pending > 0
        return recorder.pending > 0 and not recorder.flush(grace)

    def _hand_off(self) -> bool:
        journal, recorder = self.journal, self.recorder
        if journal is None or not isinstance(recorder, BackgroundRecorder):
            return False
        with self._journal_lock:
            if not self._write_unjournaled():  # a writer would replay part of the run
                return False
        try:
            spawn_writer(journal.path, self.target)
        except OSError as exc:
            self._problems.append(f"cannot start a background MLflow writer: {exc}; waiting")
            return False

        def let_go() -> None:  # the writer takes the journal's lock after that
            journal.sync()
            journal.release()

        recorder.hand_off(let_go)
        self.handed_off = journal.path
        return True

    def write_held(self) -> bool:
        """After :meth:`close`: write the events the disk refused, and once the journal is
        whole, hand it to a background writer (the run did not reach MLflow). True when no
        event is held any more; the journal stays locked here until then, so that no replay
        takes part of the run for all of it."""
        with self._journal_lock:
            if not self._unjournaled:
                return True
            if not self._write_unjournaled():
                return False
        journal = self.journal
        if journal is None or self.in_mlflow or self.handed_off is not None:
            return True
        journal.sync()
        try:
            spawn_writer(journal.path, self.target)
            self.handed_off = journal.path
        except OSError as exc:
            self._problems.append(f"cannot start a background MLflow writer: {exc}")
        journal.release()  # the writer (else `reprokit sync`) takes it from here
        return True

    def _on_closed(self) -> None:
        self.in_mlflow = True
        if self.journal is not None:
            self.journal.finish()

    def wait_written(self, timeout: float | None) -> bool:
        """Wait until the ended run is in MLflow, written here or by the background writer it
        was handed to; True when it is (a run kept local: when its files are written). False
        when ``timeout`` seconds passed first, or when it did not get there
        (:meth:`unwritten` says why)."""
        if self.handed_off is None:
            flushed = self.recorder.flush(timeout)
            return flushed and (self.in_mlflow or isinstance(self.recorder, LocalRecorder))
        limit = float("inf") if timeout is None else timeout
        done = wait_for_writers(self.target.project_root, limit, [self.handed_off])
        return done and not waiting(self.handed_off)

    def unwritten(self) -> Unwritten | None:
        """Why the ended run is not in MLflow, once nothing here or in its background writer
        will put it there; None while it may still get there, or when it did."""
        from reprokit.capturing.redact import redact_text

        recorder, journal = self.recorder, self.handed_off or self.journal_path
        if not isinstance(recorder, BackgroundRecorder) or self.in_mlflow:
            return None
        if self.handed_off is not None:
            if writing(self.handed_off) or not waiting(self.handed_off):
                return None
            reason = writer_failure(self.handed_off)
        elif recorder.pending:
            return None
        else:  # what MLflow said first (credentials redacted: a RecordError's are already)
            reason = None if recorder.failure is None else redact_text(recorder.failure)
        kept = str(journal) if journal is not None and journal.exists() else None
        uri, held = self.target.display_uri, self.unjournaled
        return Unwritten(uri, kept, reason, held, self.journal_refused if held else "")

    def _write_results(self) -> None:
        if self.folder is not None:
            self.folder.write_text(RESULTS_FILE, to_json(self.results))
            self._write_inputs()


def _encoded(declared: Result) -> dict[str, Any]:
    """``to_builtins(declared)``, at a fraction of its cost (a result declared in a loop pays it
    each time): only the array records need converting, the value is JSON already."""
    fields = dict(vars(declared))
    for key in ("array", "index", "columns"):
        if fields[key]:
            fields[key] = to_builtins(fields[key])
    return fields


def _journal_event(op: Op) -> tuple[str, dict[str, Any]] | None:
    """The journal event of a queued MLflow operation (local ``Call`` work has none)."""
    if isinstance(op, OpenRun):
        fields = {"run_name": op.run_name, "start_ms": op.start_ms}
        return "start", fields | {"tags": dict(op.tags), "params": dict(op.params)}
    if isinstance(op, LogBatch):
        metrics = [list(metric) for metric in op.metrics]
        return "log", {"metrics": metrics, "params": dict(op.params), "tags": dict(op.tags)}
    if isinstance(op, LogDatasets):
        return "datasets", {"specs": [asdict(spec) for spec in op.specs]}
    if isinstance(op, Upload):
        return "upload", {"folder": str(op.folder), "artifact_path": op.artifact_path}
    if isinstance(op, Close):
        return "end", {"status": op.status, "end_ms": op.end_ms}
    return None


def _snapshot_json(snapshot: Snapshot, data: bytes | None) -> bytes:
    """snapshot.json, its data manifest ``data`` (one line of JSON: see
    :func:`~reprokit.capturing.hashing.manifest_compact`) written into it as it is; without
    it (msgspec could not write the manifest), the standard library's JSON of all of it."""
    import msgspec

    whole = None
    if data is not None or snapshot.data is None:
        raw = None if data is None else msgspec.Raw(data)
        whole = compact_json(dataclass_replace(snapshot, data=raw))  # type: ignore[arg-type]
    return to_json(snapshot).encode("utf-8") if whole is None else laid_out(whole)
