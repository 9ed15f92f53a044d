"""The background recorder: MLflow work happens off the notebook's thread.

The session hands operations to :class:`BackgroundRecorder` and returns at once; one daemon
thread executes them in order. Whatever piled up meanwhile is merged first (all pending
``LogBatch`` become one ``log_batch``), so a loop of 1,000 results costs one database round
trip, not 1,000 (an idle thread that receives a metric waits :data:`BATCH_WINDOW_S` for more).

Failures never reach the notebook as exceptions: they are kept as messages (naming the
redacted tracking URI) that the session turns into a warning at its next call. Once
connecting or opening the run has failed, later MLflow operations are skipped (one message
says so); local-file operations (``Call``) still run.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from reprokit.exceptions import RecordError
from reprokit.recording.mapping import DatasetSpec
from reprokit.recording.target import TrackingTarget
from reprokit.recording.writer import Metric, MlflowRunWriter, RunEndStatus, now_ms


@dataclass(frozen=True)
class OpenRun:
    run_name: str | None
    tags: Mapping[str, str]
    params: Mapping[str, str]
    start_ms: int
    on_open: Callable[[str, str | None], None] | None = None  # (run_id, artifact_uri)


@dataclass(frozen=True)
class LogBatch:
    metrics: Sequence[Metric] = ()
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LogDatasets:
    specs: Sequence[DatasetSpec]


@dataclass(frozen=True)
class Upload:
    folder: Path
    artifact_path: str


@dataclass(frozen=True)
class Close:
    status: RunEndStatus
    end_ms: int
    on_closed: Callable[[], None] | None = None  # once MLflow has the run closed


@dataclass(frozen=True)
class Call:
    """Local work (writing a file) that should not block the notebook either."""

    description: str
    function: Callable[[], object]


Op = OpenRun | LogBatch | LogDatasets | Upload | Close | Call

BATCH_WINDOW_S = 0.05
CONNECT_SWITCH_INTERVAL_S = 0.0005


class BackgroundRecorder:
    """Executes recording operations in order on one daemon thread."""

    def __init__(
        self, target: TrackingTarget, after_batch: Callable[[], None] | None = None
    ) -> None:
        self.writer = MlflowRunWriter(target)
        self._after_batch = after_batch  # e.g. fsync the run's journal, off the notebook thread
        self._queue: queue.SimpleQueue[Op | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 1  # connecting, which the thread starts with
        self._errors: list[str] = []
        self.failure: str | None = None  # the first MLflow error (why a run is not in MLflow)
        self._broken = False
        self._closed = False
        self._handed_off = False
        # local file writes on a thread of their own: they must not wait behind MLflow's
        # import, and the interpreter finishes them before it exits (a script that ends right
        # after `end` still leaves a complete run folder for the background writer to upload)
        self._files = ThreadPoolExecutor(1, "reprokit-files")
        self._barriers: dict[int, Future[None]] = {}  # Upload/Close op -> files written before it
        self._thread = threading.Thread(target=self._main, name="reprokit-recorder", daemon=True)
        self._thread.start()

    # --- the notebook's side -----------------------------------------------------------

    def submit(self, op: Op) -> None:
        with self._lock:
            if self._closed:
                return
            self._pending += 1
            if isinstance(op, Close):
                self._closed = True
            if isinstance(op, Call):
                self._files.submit(self._write_file, op)
                return
            if isinstance(op, Upload | Close):
                self._barriers[id(op)] = self._files.submit(_nothing)
        self._queue.put(op)

    def _write_file(self, op: Call) -> None:
        try:
            self._execute(op.function, op.description, mlflow=False)
        finally:
            self._done(1)

    def _files_written(self, op: Op) -> None:
        """Wait until the file writes submitted before ``op`` are done (they are uploaded)."""
        with self._lock:
            barrier = self._barriers.pop(id(op), None)
        if barrier is not None:
            barrier.result()

    def flush(self, timeout: float | None) -> bool:
        """Wait until everything submitted is done; False if ``timeout`` ran out first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def take_errors(self) -> list[str]:
        with self._lock:
            errors, self._errors = self._errors, []
        return errors

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending

    @property
    def run_id(self) -> str | None:
        return self.writer.run_id

    @property
    def broken(self) -> bool:
        return self._broken

    def hand_off(self, then: Callable[[], None]) -> None:
        """Send nothing more to MLflow (the operation under way finishes; queued local writes
        still run), then call ``then`` on the thread: another process writes the run."""
        with self._lock:
            self._handed_off = True
            self._pending += 1
            barrier = self._files.submit(_nothing)

        def after_the_files() -> None:
            barrier.result()
            then()

        self._queue.put(Call("handing the run over", after_the_files))

    @property
    def handed_off(self) -> bool:
        return self._handed_off

    def stop(self) -> None:
        """Let the threads end once their queues are empty (after Close)."""
        self._queue.put(None)
        self._files.shutdown(wait=False)

    # --- the thread's side -----------------------------------------------------------

    def _main(self) -> None:
        try:
            self._execute(self._connect, "connecting")
        finally:
            self._done(1)
        while True:
            op = self._queue.get()
            if op is None:
                return
            if isinstance(op, LogBatch):
                # a loop declaring results submits one op per value: let them pile up a little,
                # so SQLite sees one write per window instead of one per value (and this thread
                # takes the GIL from the notebook that much less often)
                time.sleep(BATCH_WINDOW_S)
            batch = self._drain([op])
            if self._after_batch is not None:
                self._execute(self._after_batch, "syncing the journal", mlflow=False)
            for item in _merge(batch):
                self._run_op(item)
            self._done(len(batch))

    def _drain(self, batch: list[Op]) -> list[Op]:
        while True:
            try:
                op = self._queue.get_nowait()
            except queue.Empty:
                return batch
            if op is None:
                self._queue.put(None)  # keep the stop signal for the main loop
                return batch
            batch.append(op)

    def _connect(self) -> None:
        # MLflow's import is a second of pure-Python work holding the GIL: with the default
        # 5 ms switch interval, each time the notebook's thread hands the GIL over (to ZMQ's
        # I/O thread for a display_data, say) it waits up to 5 ms to get it back. A shorter
        # interval while importing keeps the notebook responsive; the default comes back after.
        interval = sys.getswitchinterval()
        sys.setswitchinterval(min(interval, CONNECT_SWITCH_INTERVAL_S))
        try:
            self.writer.connect()
        finally:
            sys.setswitchinterval(interval)

    def _run_op(self, op: Op) -> None:
        self._files_written(op)
        if isinstance(op, Call):
            self._execute(op.function, op.description, mlflow=False)
        elif isinstance(op, OpenRun):
            self._execute(lambda: self._open(op), "opening the run")
        elif isinstance(op, LogBatch):
            self._execute(lambda: self._log(op), "logging")
        elif isinstance(op, LogDatasets):
            self._execute(lambda: self.writer.log_datasets(op.specs), "logging datasets")
        elif isinstance(op, Upload):
            self._execute(lambda: self.writer.upload(op.folder, op.artifact_path), "upload")
        else:
            self._execute(lambda: self._close(op), "closing the run")

    def _close(self, op: Close) -> None:
        self.writer.close(op.status, op.end_ms)
        if op.on_closed is not None:
            op.on_closed()

    def _log(self, op: LogBatch) -> None:
        self.writer.log_batch(metrics=op.metrics, params=op.params, tags=op.tags)

    def _open(self, op: OpenRun) -> None:
        run_id = self.writer.open_run(
            run_name=op.run_name, tags=op.tags, params=op.params, start_ms=op.start_ms
        )
        if op.on_open is not None:
            op.on_open(run_id, self.writer.artifact_uri)

    def _execute(self, function: Callable[[], object], what: str, *, mlflow: bool = True) -> None:
        if mlflow and (self._broken or self._handed_off):
            return
        try:
            function()
        except RecordError as exc:
            self._record(str(exc), fatal=mlflow and self.writer.run_id is None, mlflow=mlflow)
        except Exception as exc:  # never let the thread die: the notebook must go on
            text = f"reprokit recorder: {what} failed: {type(exc).__name__}: {exc}"
            self._record(text, fatal=False, mlflow=mlflow)

    def _record(self, message: str, *, fatal: bool, mlflow: bool) -> None:
        if mlflow and self.failure is None:
            self.failure = message.strip().splitlines()[0] if message.strip() else message
        if fatal:
            self._broken = True
            message += (
                "; nothing more is sent to MLflow for this run (results stay in the notebook)"
            )
        with self._lock:
            self._errors.append(message)

    def _done(self, count: int) -> None:
        with self._idle:
            self._pending -= count
            self._idle.notify_all()


def _nothing() -> None:
    """A marker in the file-writing queue: done once everything before it is."""


def _merge(ops: list[Op]) -> list[Op]:
    """Consecutive LogBatch operations become one (later tags/params win); of several uploads
    of one folder only the last is kept (it copies everything the earlier ones would have)."""
    last_upload = {
        (op.folder, op.artifact_path): i for i, op in enumerate(ops) if isinstance(op, Upload)
    }
    merged: list[Op] = []
    for index, op in enumerate(ops):
        if isinstance(op, Upload) and last_upload[(op.folder, op.artifact_path)] != index:
            continue
        last = merged[-1] if merged else None
        if isinstance(op, LogBatch) and isinstance(last, LogBatch):
            merged[-1] = LogBatch(
                metrics=[*last.metrics, *op.metrics],
                params={**last.params, **op.params},
                tags={**last.tags, **op.tags},
            )
        else:
            merged.append(op)
    return merged


__all__ = [
    "BackgroundRecorder",
    "Call",
    "Close",
    "LogBatch",
    "LogDatasets",
    "OpenRun",
    "Upload",
    "now_ms",
]
