"""The MLflow run writer: the one place reprokit talks to MLflow.

Every write is batched: params, metrics and tags go through ``MlflowClient.log_batch`` (chunked
to MLflow's per-call limits), dataset inputs through one ``log_inputs``, artifacts through one
``log_artifacts`` of the run's local folder. MLflow is imported when :meth:`connect` runs, on
the recorder's background thread. Connecting to an embedded SQLite store first makes sure it is
complete (:mod:`reprokit.recording.store`), then replays the run journals that dead processes
left for it (:mod:`reprokit.recording.replay`).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from reprokit._fsutil import complete_files, has_partial_writes
from reprokit.exceptions import RecordError
from reprokit.notebook.files import mark_output_folder
from reprokit.recording.mapping import DatasetSpec
from reprokit.recording.objects import intern_tree, link_tree, local_artifact_dir, objects_folder
from reprokit.recording.target import TrackingTarget, sqlite_path

_DATASET_ATTEMPTS = 3  # log_inputs tries: concurrent writers of one dataset race on its row
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
CONNECT_TIMEOUT_S = 5.0
# servers whose port is probed before MLflow is asked (MLflow retries a database for ~100 s)
_DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306, "mssql": 1433}
_QUIET_LOGGERS = ("mlflow.store.db.utils", "alembic.runtime.migration", "alembic")
# MLflow's HTTP client defaults to 7 retries, backing off up to 2 minutes between them (about
# 4 minutes per call to a server answering 503) and 120 s per request; every record is
# journaled first, so reprokit's own writes give up in seconds and `reprokit sync` replays
# them later. Each is used only where the user did not set the variable.
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",  # 4 tries, 0 + 2 + 4 s apart (+ up to 1 s jitter)
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",  # MLflow reads an integer
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",  # seconds without an answer, per try
}
_limits_set: set[str] = set()  # the names of HTTP_LIMITS this process set itself


Metric = tuple[str, float, int, int]  # key, value, timestamp (ms), step

RunEndStatus = Literal["FINISHED", "FAILED", "KILLED"]
"""How an MLflow run ended (MLflow's ``RunStatus`` names)."""

RunState = Literal["RUNNING", RunEndStatus]
"""An MLflow run's state: running, or how it ended."""


def default_run_name() -> str:
    """``reprokit-YYYYmmdd-HHMMSS-xxxx``, made without the global ``random`` generator.

    Left without a name, MLflow draws one from the global ``random`` generator, on the
    background thread, after the notebook seeded it: the notebook's ``random`` stream would
    then depend on timing (and every run with the same seed would get the same name).
    """
    return f"reprokit-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"


def now_ms() -> int:
    return int(time.time() * 1000)


class MlflowRunWriter:
    """Writes one run. Methods raise :class:`RecordError` with the redacted URI on failure."""

    def __init__(self, target: TrackingTarget) -> None:
        self.target = target
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.artifact_uri: str | None = None
        self._artifacts_of: str | None = None  # the run artifact_uri belongs to
        self.reachable = False  # the store passed the quick checks; MLflow is being imported
        self._client: Any = None

    def _fail(self, action: str, exc: BaseException) -> RecordError:
        from reprokit.capturing.redact import redact_text

        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        detail = redact_text(detail.replace(self.target.uri, self.target.display_uri))
        return RecordError(
            f"MLflow at {self.target.display_uri}: {action} failed: {detail}",
            uri=self.target.display_uri,
            action=action,
            unavailable=unanswered(exc),
        )

    @property
    def connected(self) -> bool:
        """:meth:`connect` succeeded (MLflow is imported and the store open)."""
        return self._client is not None

    @property
    def client(self) -> Any:
        """The ``MlflowClient`` once :meth:`connect` ran (for reading runs back)."""
        if self._client is None:
            raise RecordError(
                f"MLflow at {self.target.display_uri}: not connected", uri=self.target.display_uri
            )
        return self._client

    def connect(self, *, catch_up: bool = True) -> None:
        """Import MLflow and open the store (SQLite: create it, atomically, if needed); then,
        with ``catch_up``, complete the runs that dead processes left in their journals."""
        try:
            self._preflight()
            self.reachable = True
            quiet_mlflow()
            from mlflow.tracking import MlflowClient

            database = sqlite_path(self.target.uri)
            if database is not None:
                from reprokit.recording.store import ensure_store

                ensure_store(database)
            self._client = MlflowClient(tracking_uri=self.target.uri)
            if self.target.uri != self.target.display_uri:
                _silence_run_url(self._client)
        except RecordError:
            raise
        except Exception as exc:  # MLflow raises many types; all mean "cannot record here"
            raise self._fail("connecting", exc) from exc
        if catch_up:
            from reprokit.recording.replay import replay_pending

            replay_pending(self)

    def sharing(self, target: TrackingTarget) -> MlflowRunWriter:
        """A writer of another run (``target``: same store, maybe another experiment) that uses
        this writer's connection."""
        writer = MlflowRunWriter(target)
        writer._client = self.client
        return writer

    def _preflight(self) -> None:
        """Fail in seconds, not after MLflow's minutes of retries, when a server is down."""
        parts = urlsplit(self.target.uri)
        scheme = parts.scheme.split("+", 1)[0]  # postgresql+psycopg -> postgresql
        if scheme in _DEFAULT_PORTS and parts.hostname:
            port = parts.port or _DEFAULT_PORTS[scheme]
            try:
                socket.create_connection((parts.hostname, port), CONNECT_TIMEOUT_S).close()
            except OSError as exc:
                raise self._fail("connecting", exc) from None
        database = sqlite_path(self.target.uri)
        if database is not None and not database.parent.is_dir():
            raise self._fail(
                "opening the database", FileNotFoundError(f"no folder {database.parent}")
            )

    def open_run(
        self,
        *,
        run_name: str | None,
        tags: Mapping[str, str],
        params: Mapping[str, str],
        start_ms: int,
    ) -> str:
        """Create the run (and its experiment if needed) with its first tags and params."""
        try:
            self.experiment_id = self._experiment_id(self.target.experiment)
            run = self._client.create_run(
                self.experiment_id, start_time=start_ms, run_name=run_name or default_run_name()
            )
        except Exception as exc:
            raise self._fail(
                f"creating a run in experiment {self.target.experiment!r}", exc
            ) from exc
        self.run_id = run.info.run_id
        self.artifact_uri = run.info.artifact_uri
        self._artifacts_of = self.run_id
        self.log_batch(metrics=(), params=params, tags=tags)
        return str(self.run_id)

    def _experiment_id(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        if self.target.artifact_root is not None:  # notebook discovery must never look there
            mark_output_folder(Path(self.target.artifact_root))
        found = self._client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                self._client.restore_experiment(found.experiment_id)
            return str(found.experiment_id)
        location = self.target.artifact_location(name)
        try:
            return str(self._client.create_experiment(name, artifact_location=location))
        except MlflowException:
            found = self._client.get_experiment_by_name(name)  # created meanwhile by another run
            if found is None:
                raise
            return str(found.experiment_id)

    def log_batch(
        self,
        *,
        metrics: Sequence[Metric] = (),
        params: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Log everything in as few ``log_batch`` calls as MLflow's limits allow."""
        from mlflow.entities import Metric as MlflowMetric
        from mlflow.entities import Param, RunTag

        metric_list = [MlflowMetric(k, v, ts, step) for k, v, ts, step in metrics]
        param_list = [Param(k, v) for k, v in (params or {}).items()]
        tag_list = [RunTag(k, v) for k, v in (tags or {}).items()]
        while metric_list or param_list or tag_list:
            chunk_m, metric_list = (
                metric_list[:MAX_METRICS_PER_BATCH],
                metric_list[MAX_METRICS_PER_BATCH:],
            )
            chunk_p, param_list = _split(param_list, MAX_PARAMS_TAGS_PER_BATCH)
            chunk_t, tag_list = _split(tag_list, MAX_PARAMS_TAGS_PER_BATCH)
            try:
                self._client.log_batch(self._run(), metrics=chunk_m, params=chunk_p, tags=chunk_t)
            except Exception as exc:
                raise self._fail("logging params, metrics and tags", exc) from exc

    def log_datasets(self, specs: Sequence[DatasetSpec]) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag

        inputs = [
            DatasetInput(
                Dataset(s.name, s.digest, s.source_type, s.source, None, s.profile),
                [InputTag("mlflow.data.context", s.context)],
            )
            for s in specs
        ]
        for attempt in range(_DATASET_ATTEMPTS):
            try:
                self._client.log_inputs(self._run(), datasets=inputs)
                return
            except Exception as exc:
                # two writers logging the same dataset at once race on its row (a unique key
                # violation on a database store): one transaction, so again finds it there
                if attempt == _DATASET_ATTEMPTS - 1:
                    raise self._fail("logging dataset inputs", exc) from exc
                time.sleep(0.2 * (attempt + 1))

    def upload(self, folder: Path, artifact_path: str) -> None:
        """Upload ``folder`` as the run's artifacts ``artifact_path``. A folder of the
        project's ``.reprokit`` is first stored once per content (its files become read-only
        links to :mod:`~reprokit.recording.objects`); into a local artifact location its files
        are then hard-linked, not copied."""
        try:
            local = self._local_artifacts() if self._interned(folder) else None
            if local is not None:
                link_tree(folder, local / artifact_path)
            else:
                self._log_artifacts(folder, artifact_path)
        except Exception as exc:
            raise self._fail(f"uploading {folder} as artifacts", exc) from exc

    def _log_artifacts(self, folder: Path, artifact_path: str) -> None:
        """MLflow's upload of a folder; file by file when a killed writer left a temporary
        file in it (never uploaded as one of the run's files)."""
        if not has_partial_writes(folder):
            self._client.log_artifacts(self._run(), str(folder), artifact_path)
            return
        for path in complete_files(folder):
            inner = path.parent.relative_to(folder).as_posix()
            where = artifact_path if inner == "." else f"{artifact_path}/{inner}"
            self._client.log_artifact(self._run(), str(path), where)

    def _interned(self, folder: Path) -> bool:
        hidden = Path(self.target.project_root).resolve() / ".reprokit"
        if not folder.resolve().is_relative_to(hidden):
            return False  # a reviewer's --output-dir: the project's store is not touched
        intern_tree(folder, objects_folder(self.target.project_root))
        return True

    def _local_artifacts(self) -> Path | None:
        if self.artifact_uri is None or self._artifacts_of != self.run_id:
            self.artifact_uri = str(self._client.get_run(self._run()).info.artifact_uri)
            self._artifacts_of = self.run_id
        return local_artifact_dir(self.artifact_uri)

    def close(self, status: RunEndStatus, end_ms: int) -> None:
        try:
            self._client.set_terminated(self._run(), status=status, end_time=end_ms)
        except Exception as exc:
            raise self._fail(f"ending the run as {status}", exc) from exc

    def _run(self) -> str:
        if self.run_id is None:
            raise RecordError(
                f"MLflow at {self.target.display_uri}: the run was never opened",
                uri=self.target.display_uri,
            )
        return self.run_id


def _split(items: list[Any], size: int) -> tuple[list[Any], list[Any]]:
    return items[:size], items[size:]


def _silence_run_url(client: Any) -> None:
    """Stop this client from printing MLflow's "View run ... at URL" lines when a run ends:
    MLflow builds that URL from the tracking URI with its ``user:password@``. Only this client
    is changed (the process's other MLflow use, and its environment, are left alone); should
    MLflow move the method, its own switch for the line is set instead."""
    tracking = getattr(client, "_tracking_client", None)
    if tracking is not None and callable(getattr(tracking, "_log_url", None)):
        tracking._log_url = _no_run_url
    else:
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"


def _no_run_url(run_id: str) -> None:
    """What MLflow's ``_log_url`` does for a URI with credentials: print nothing."""


def quiet_mlflow() -> None:
    """Call before MLflow is imported. MLflow's INFO lines about table creation would land
    in whatever cell runs meanwhile.

    So would tqdm's "IProgress not found" warning, raised when MLflow imports ``tqdm.auto``
    in a kernel without ipywidgets: a warning about MLflow's own progress bars, not the
    user's code. And MLflow's usage telemetry (on by default since MLflow 3) is turned off
    unless the user set ``MLFLOW_DISABLE_TELEMETRY``: a record of a private project sends
    nothing to MLflow's servers, and its sending thread held every process that wrote to
    MLflow for about a second at exit.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    limit_mlflow_http()
    warnings.filterwarnings("ignore", message="IProgress not found", module="tqdm")
    for name in _QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


def limit_mlflow_http() -> None:
    """Bound MLflow's HTTP retries and timeouts (:data:`HTTP_LIMITS`) in a process of
    reprokit's own (the command line, its recording helper, a background writer): a tracking
    server that is down or answers 503 costs seconds, not minutes per call, and the journal
    keeps the run for ``reprokit sync``. A variable the user set is left as it is; so is an
    IPython session or a notebook's kernel, where the user's own MLflow calls keep MLflow's
    defaults (a kernel hands its runs to a background writer anyway)."""
    from reprokit.recording.context import ipython_shell

    if ipython_shell() is not None:
        return
    for name, value in HTTP_LIMITS.items():
        if name not in os.environ:
            os.environ[name] = value
            _limits_set.add(name)


def own_http_limits() -> frozenset[str]:
    """The variables of :data:`HTTP_LIMITS` that this process set (not the user): not passed
    on to the kernels the runner starts."""
    return frozenset(name for name in _limits_set if os.environ.get(name) == HTTP_LIMITS[name])


def unanswered(exc: BaseException) -> bool:
    """Whether ``exc`` says the store did not answer (rather than refused a request): a
    connection refused or cut, a timeout, or the server's 5xx answers past the retries, which
    MLflow reports as ``API request to ... failed with exception ...``."""
    seen: BaseException | None = exc
    for _ in range(8):  # the chain of causes, bounded
        if seen is None:
            return False
        if isinstance(seen, (ConnectionError, TimeoutError, socket.timeout)):
            return True
        if type(seen).__module__.split(".")[0] in ("requests", "urllib3") and any(
            word in type(seen).__name__ for word in ("Connection", "Timeout", "Retry", "MaxRetry")
        ):
            return True
        text = str(seen)
        if "failed with exception" in text or "failed with timeout exception" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False
