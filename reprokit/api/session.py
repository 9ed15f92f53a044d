"""The plain-function API of a recorded run: ``start``, ``result``, ``end`` and friends.

One run is active per process. ``start`` captures the snapshot (cheap) and hands the MLflow
work to a background thread, so the cell returns before MLflow is even imported; ``result``
encodes the value, emits it into the notebook and queues the metric; ``end`` (or the kernel's
exit) closes the run with its status, and returns at once: when MLflow is not done within
:data:`END_GRACE_S` (its import takes seconds), a background writer process finishes the run
(:mod:`reprokit.recording.handoff`); ``flush`` after ``end`` waits for it. The status:

- ``KILLED`` if a cell was interrupted (KeyboardInterrupt) since ``start``;
- ``FAILED`` if a cell raised any other uncaught error since ``start``;
- ``FINISHED`` otherwise. ``end(status=...)`` overrides it.

Recording problems (server down, unwritable store) never stop the notebook: they appear as a
:class:`~reprokit.exceptions.ReprokitWarning` naming the tracking URI (credentials removed)
after the cell, or at the next reprokit call; results still go into the notebook and the
run's local folder.

``result`` and ``data`` before any ``start`` start a run with default settings and say so with
a ReprokitWarning (a declared result is never dropped); ``seed`` before ``start`` seeds now and
is recorded by the next run.

Environment read here: ``REPROKIT_DEVICE`` (see :func:`device`), ``REPROKIT_PARAMS`` (a JSON
object of notebook parameters recorded as MLflow params, set by a runner),
``REPROKIT_FLUSH_TIMEOUT`` (seconds ``end`` waits for MLflow when it does not hand the run
over, default 60), ``REPROKIT_MLFLOW``
(``off``: keep the run local, never import MLflow — set by ``reprokit run``, which records the
executed notebook itself; see :mod:`reprokit.recording.recorded_run`); where runs go is
resolved by :mod:`reprokit.recording.target`, the run's local folder by
:mod:`reprokit.recording.folder`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reprokit._warn import one_line, warn_user
from reprokit.exceptions import UsageError

if TYPE_CHECKING:
    from reprokit.capturing.model import DataManifest, SeedRecord, Snapshot
    from reprokit.recording.recorded_run import RecordedRun, RunStatus
    from reprokit.recording.target import TrackingTarget
    from reprokit.recording.writer import RunEndStatus
    from reprokit.results.model import Result

__all__ = [
    "data",
    "device",
    "end",
    "env",
    "flush",
    "result",
    "results",
    "seed",
    "start",
    "status",
]

STATUSES: tuple[RunEndStatus, ...] = ("FINISHED", "FAILED", "KILLED")
DEVICE_ENV = "REPROKIT_DEVICE"
PARAMS_ENV = "REPROKIT_PARAMS"
FLUSH_TIMEOUT_ENV = "REPROKIT_FLUSH_TIMEOUT"
END_GRACE_S = 0.05
"""How long ``end`` waits for MLflow before handing the run to a background writer process."""

_lock = threading.RLock()
_active: RecordedRun | None = None
_last_run: RecordedRun | None = None
_last_status: RunStatus | None = None
_pending_seed: SeedRecord | None = None
_exit_hook_registered = False


_warn = warn_user


def _surface_problems(run: RecordedRun | None = None) -> None:
    """Turn recording problems into warnings (never into exceptions)."""
    run = run or _active
    if run is not None:
        for message in run.take_problems():
            _warn(message)


# --- start ---------------------------------------------------------------------------


def _start_seeds(seed: int | None, deterministic: bool) -> SeedRecord | None:
    """``seed_everything`` with ``seed`` (else the seed set before the run started);
    deterministic without a seed still sets what must precede CUDA and torch's switches."""
    from reprokit.capturing.seeds import (
        deterministic_requested,
        make_deterministic,
        seed_everything,
    )

    if seed is not None:
        return seed_everything(seed, deterministic)
    if deterministic_requested(deterministic):
        make_deterministic()
    return _pending_seed


def start(
    *,
    experiment: str | None = None,
    run_name: str | None = None,
    seed: int | None = None,
    deterministic: bool = False,
    data: Sequence[str | bytes | os.PathLike[str]] = (),
    tracking_uri: str | None = None,
    params: Mapping[str, object] | None = None,
    notebook: str | None = None,
) -> RunStatus:
    """Capture the environment, seed, hash ``data`` and open an MLflow run (in the background).

    A run already active in this process is ended first (with its own status). ``params`` (and
    ``REPROKIT_PARAMS``) are recorded as MLflow params; ``notebook`` overrides the detected
    notebook path. Raises :class:`~reprokit.exceptions.PathError` for a data path that cannot be
    hashed; nothing is recorded then.
    """
    from reprokit.capturing.snapshot import capture
    from reprokit.recording.recorded_run import RecordedRun
    from reprokit.report.render import run_note_markdown

    global _active, _pending_seed
    with _lock:
        if _active is not None:
            end()
        source, path, target = _where(notebook, tracking_uri, experiment)
        merged_params = _initial_params(params)
        seeds = _start_seeds(seed, deterministic)
        snapshot = capture(data=list(data), seeds=seeds, root=target.project_root)
        # MLflow's import and connection start now, on the run's background thread, and
        # overlap the notebook's next cells (started after the capture, which would otherwise
        # compete with it for the GIL)
        run = RecordedRun(
            target,
            snapshot,
            notebook=path,
            in_notebook=source.in_notebook,
            run_name=run_name,
            params=merged_params | (_seed_params(seeds) if seeds else {}),
            device=_requested_device() or ("cuda" if snapshot.accelerator.available else "cpu"),
            note=run_note_markdown(snapshot, notebook=path),
        )
        _active, _pending_seed = run, None
        _attach_hooks()
        _emit_snapshot(run)
        _warn_if_refused(target, snapshot)
        _surface_problems(run)
        return run.status()


def _warn_if_refused(target: TrackingTarget, snapshot: Snapshot) -> None:
    """Say at the start, not only when the run is lost, that MLflow will refuse the store."""
    from reprokit.recording.target import refuses_file_store
    from reprokit.report.describe import describe_refused_file_store

    version = snapshot.packages.get("mlflow-skinny") or snapshot.packages.get("mlflow")
    if version is not None and refuses_file_store(target.uri, version):
        _warn(describe_refused_file_store(target.display_uri, version))


def _where(
    notebook: str | None, tracking_uri: str | None, experiment: str | None
) -> tuple[Any, str | None, TrackingTarget]:
    """The running notebook or script, its path, and where its run goes."""
    from reprokit.recording.context import detect_source
    from reprokit.recording.target import resolve_target

    source = detect_source()
    path = notebook or source.path
    # a notebook's project is found from its folder; a script's from the working directory
    # (``python -m tool`` makes argv[0] a file inside site-packages)
    origin = Path(path).parent if path and (notebook or source.in_notebook) else Path.cwd()
    return (
        source,
        path,
        resolve_target(start=origin, tracking_uri=tracking_uri, experiment=experiment),
    )


def _seed_params(seeds: SeedRecord) -> dict[str, str]:
    from reprokit.recording.mapping import seed_params

    return seed_params(seeds)


def _initial_params(params: Mapping[str, object] | None) -> dict[str, str]:
    from reprokit.capturing.redact import redact_mapping, redact_parameters

    merged: dict[str, str] = {"device": _requested_device() or "auto"}
    given = {str(k): v for k, v in {**_env_params(), **(params or {})}.items()}
    # a secret-named key inside a list or mapping is redacted before the value becomes text
    merged |= {k: str(v) for k, v in redact_parameters(given).items()}
    # a parameter named like a secret, or holding a credential, is never recorded verbatim
    return redact_mapping(merged.items())


def _env_params() -> dict[str, object]:
    raw = os.environ.get(PARAMS_ENV)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{PARAMS_ENV} is not valid JSON: {exc}", option=PARAMS_ENV) from None
    if not isinstance(value, dict):
        raise UsageError(f"{PARAMS_ENV} must be a JSON object", option=PARAMS_ENV)
    return value


def _emit_snapshot(run: RecordedRun) -> None:
    from reprokit.report.display import emit, snapshot_bundle

    metadata = run.metadata()
    emit(snapshot_bundle(run.snapshot, metadata), metadata)


# --- results, seeds, data --------------------------------------------------------------


def _ensure_run(call: str) -> RecordedRun:
    if _active is None:
        _warn(
            f"reprokit.{call}() was called before reprokit.start() (%repro start): a run was "
            "started with default settings; call start first to choose the experiment, seed "
            "and data"
        )
        start()
    assert _active is not None
    return _active


def result(
    name: str,
    value: Any,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    device_rtol: float | None = None,
    device_atol: float | None = None,
) -> None:
    """Declare an outcome: recorded in the notebook (display_data), the run folder and MLflow.

    Values: None/bool/int/float/str, nested lists and str-keyed dicts of those, numpy arrays and
    scalars, torch tensors, pandas Series and DataFrames. ``rtol``/``atol`` are the tolerance a
    later verification compares with (finite numbers >= 0, else a UsageError);
    ``device_rtol``/``device_atol`` replace them when it runs on another kind of device than
    the reference (CPU against CUDA differ by design). A name
    declared again replaces the earlier value (with a ReprokitWarning). Raises
    :class:`~reprokit.results.ResultValueError` for a value that cannot be recorded (naming the
    result and the type). Before any ``start``, a run is started with default settings (see
    the module docstring). Returns None, so that a result declared on a cell's last line is
    not displayed twice.
    """
    from reprokit.recording.spool import append_output
    from reprokit.report.display import emit, result_bundle

    with _lock:
        _surface_problems()
        run = _ensure_run("result")
        declared, replaced = run.add_result(
            name, value, rtol=rtol, atol=atol, device_rtol=device_rtol, device_atol=device_atol
        )
        if replaced:
            _warn(f"result {name!r} was declared before in this run; the later value wins")
        bundle, metadata = result_bundle(declared), {"local_dir": run.local_dir}
        append_output(bundle, {"reprokit": metadata})  # a runner's: kept if never shown
        emit(bundle, metadata)


def results() -> dict[str, Result]:
    """The results declared in the active run (or, after ``end``, in the run that ended)."""
    with _lock:
        run = _active if _active is not None else _last_run
        return dict(run.results) if run is not None else {}


def seed(value: int, *, deterministic: bool = False) -> SeedRecord:
    """Seed random, numpy and torch (see ``seed_everything``) and record it in the run.

    The first seed of a run is the MLflow param ``seed``; a later one updates the
    ``reprokit.seed`` tag and is appended to ``reprokit/seeds.json`` (MLflow params cannot
    change). Before ``start``, the seed is kept for the next run.
    """
    from reprokit.capturing.seeds import seed_everything

    global _pending_seed
    with _lock:
        _surface_problems()
        record = seed_everything(value, deterministic)
        if _active is None:
            _pending_seed = record
        else:
            _active.add_seed(record)
        return record


def data(
    *paths: str | bytes | os.PathLike[str],
    expect: str | Sequence[str] | None = None,
    algorithm: str = "blake3",
) -> DataManifest:
    """Hash ``paths`` (``str``, ``os.PathLike`` or ``bytes``, decoded as the file system does)
    and add them to the run's inputs (MLflow dataset inputs, data.json).

    ``expect`` is one ``ALGO:HEX`` digest per path (in order); a mismatch raises
    :class:`~reprokit.exceptions.DigestMismatchError` naming the path and both digests, and
    nothing is added. The expected digests' algorithm is used for hashing.
    """
    from reprokit.capturing.hashing import check_expected, hash_paths

    if not paths:
        raise UsageError("reprokit.data() needs at least one path")
    expected = [expect] if isinstance(expect, str) else list(expect or [])
    if expected and len(expected) != len(paths):
        raise UsageError(
            f"{len(paths)} path(s) but {len(expected)} expected digest(s): give one per path"
        )
    with _lock:
        _surface_problems()
        run = _ensure_run("data")
        algo = _expected_algorithm(expected) or algorithm
        root = run.target.project_root
        manifest = hash_paths(list(paths), algorithm=algo, relative_to=root)
        for entry, spec in zip(manifest.entries, expected, strict=False):
            check_expected(entry, spec, root=root)
        run.add_data(manifest.entries)
        return manifest


def _expected_algorithm(expected: list[str]) -> str | None:
    from reprokit.capturing.hashing import parse_expected

    algorithms = {parse_expected(spec)[0] for spec in expected}
    if len(algorithms) > 1:
        raise UsageError("all expected digests of one call must use the same algorithm")
    return algorithms.pop() if algorithms else None


# --- end, flush, status, env, device -----------------------------------------------------------


def end(status: RunEndStatus | None = None) -> RunStatus:
    """Close the run: MLflow gets it at once, or from a background writer process when it is
    not done within :data:`END_GRACE_S` (``flush()`` waits for that; see the module docstring,
    also for the status; ``status`` is read case-insensitively).

    Without an active run it warns and returns the last run's status. Recording problems are
    reported as warnings and listed in the returned ``errors``.
    """
    global _active, _last_run, _last_status
    given = None if status is None else _end_status(status)
    with _lock:
        run = _active
        if run is None:
            _warn("no reprokit run is active: nothing to end")
            return _status_of_last()
        final = given or run.outcome()
        _active, _last_run = None, run
        run.refresh_accelerator()  # torch imported, CUDA started since the start
        run.close(final, _flush_timeout(), grace=END_GRACE_S)
        _surface_problems(run)
        _last_status = run.status(final)
        _report_unwritten(run)
        return _last_status


def _end_status(status: str) -> RunEndStatus:
    for known in STATUSES:
        if status.upper() == known:
            return known
    raise UsageError(
        f"status must be one of {', '.join(STATUSES)}, got {status!r}",
        option="status",
        value=status,
    )


def _status_of_last() -> RunStatus:
    from reprokit.recording.recorded_run import RunStatus

    return _last_status if _last_status is not None else RunStatus(active=False)


def _flush_timeout() -> float:
    raw = os.environ.get(FLUSH_TIMEOUT_ENV, "60")
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise UsageError(f"{FLUSH_TIMEOUT_ENV}={raw!r} is not a number of seconds") from None


def flush(timeout: float | None = None) -> bool:
    """Wait until everything recorded so far has reached MLflow (the run stays open).

    After ``end``, wait for the ended run: ``end`` returns before MLflow has it when MLflow
    is slow (its first import alone takes seconds) and a background writer process finishes
    it. Returns True when the ended run is in MLflow; False if ``timeout`` seconds passed
    first, or when it did not get there (MLflow refused it, the store could not be reached):
    then a warning names the tracking URI, the reason and the journal kept for
    ``reprokit sync``. True at once when there is nothing to wait for. Recording problems are
    reported as warnings, as at any call.
    """
    with _lock:
        run, last = _active, _last_run
    if run is None and last is not None:
        # events a full disk refused: written now if it takes them, and the run then recorded
        written = last.write_held() and last.wait_written(timeout)
        with _lock:
            _report_unwritten(last)
        return written
    if run is None:
        return True
    done = run.recorder.flush(timeout)
    with _lock:
        _surface_problems(run)
    return done and not run.recorder.broken  # MLflow refused the run: its journal keeps it


def settle(timeout: float = 60.0) -> str:
    """Wait until the active run's local files are written; return the recording problems not
    reported yet, one per line (not as warnings).

    The runner evaluates this in a kernel after its last cell, silently, before it kills the
    kernel (no exit hook runs then): a run kept local writes its folder's files on a thread
    (:class:`~reprokit.recording.recorded_run.LocalRecorder`), and what it wrote after the
    last cell must not be lost, nor its problems. The run stays open."""
    with _lock:
        run = _active
        if run is not None:  # the kernel is killed next: no end, no exit hook to take them
            run.refresh_accelerator()
    if run is None:
        return ""
    done = run.recorder.flush(timeout)
    with _lock:
        problems = run.take_problems()
    if not done:
        problems.append(f"the run's files were still being written after {timeout:g} s")
    return "\n".join(map(one_line, problems))  # as the kernel shows a warning


def status() -> RunStatus:
    """The active run's status, or that of the last run when none is active."""
    with _lock:
        _surface_problems()
        if _active is None and _last_run is not None:
            _report_unwritten(_last_run)  # its background writer may have failed since
        return _status_of_last() if _active is None else _active.status()


def _report_unwritten(run: RecordedRun) -> None:
    """Warn, once, that the ended ``run`` did not reach MLflow (and will not without
    ``reprokit sync``); the last status says so too. Nothing while it may still get there."""
    from reprokit.report.describe import describe_unwritten

    global _last_status
    unwritten = run.unwritten()
    if unwritten is None or run is not _last_run or _last_status is None:
        return
    message = describe_unwritten(unwritten)
    if message not in _last_status.errors:
        errors = (*_last_status.errors, message)
        _last_status = replace(_last_status, recording=False, errors=errors)
        _warn(message)


def env() -> Snapshot:
    """A fresh snapshot of the environment, with the active run's seeds and data."""
    from reprokit.capturing.model import DataManifest
    from reprokit.capturing.snapshot import capture
    from reprokit.recording.target import find_project_root

    with _lock:
        _surface_problems()
        run = _active
        if run is None:
            return capture(seeds=_pending_seed, root=find_project_root(Path.cwd()))
        seeds = run.seeds[-1] if run.seeds else None
        snapshot = capture(seeds=seeds, root=run.target.project_root)
        manifest = DataManifest(entries=tuple(run.entries)) if run.entries else None
        return replace(snapshot, data=manifest)


def _requested_device() -> str | None:
    raw = os.environ.get(DEVICE_ENV, "").strip().lower()
    return None if raw in ("", "auto") else raw


def device() -> str:
    """The device the notebook should compute on: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    ``REPROKIT_DEVICE`` (set by a runner: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``) is honoured;
    asking for CUDA where none is visible raises :class:`~reprokit.exceptions.UsageError`.
    Without a request: ``"cuda"`` when an already imported torch (else NVML) sees a CUDA
    device (torch is never imported to find out),
    else ``"cpu"``. The choice is recorded as the run's ``reprokit.device`` tag.
    """
    requested = _requested_device()
    if requested is None:
        chosen = "cuda" if _cuda_available() else "cpu"
    elif requested == "cpu":
        chosen = "cpu"
    elif requested == "cuda" or (requested.startswith("cuda:") and requested[5:].isdigit()):
        if not _cuda_available():
            raise UsageError(
                f"{DEVICE_ENV}={requested} but no CUDA device is visible to this process",
                option=DEVICE_ENV,
            )
        chosen = requested
    else:
        raise UsageError(
            f"{DEVICE_ENV}={requested!r}: expected cpu, cuda, cuda:N or auto", option=DEVICE_ENV
        )
    _tag_device(chosen)
    return chosen


def _cuda_available() -> bool:
    from reprokit.capturing.accelerator import cuda_visible

    return cuda_visible()


def _tag_device(chosen: str) -> None:
    with _lock:
        if _active is not None:
            _active.tag({"reprokit.device": chosen})


# --- IPython and interpreter exit ------------------------------------------------------------


def on_post_run_cell(outcome: Any) -> None:
    """IPython ``post_run_cell`` callback: count failed cells, report recording errors."""
    run = _active
    if run is None:
        return
    error = getattr(outcome, "error_in_exec", None) or getattr(outcome, "error_before_exec", None)
    run.note_cell(error)
    _surface_problems(run)


def _spool_cell_started(info: Any = None) -> None:
    from reprokit.recording.spool import cell_started

    cell_started()


def _spool_cell_done(outcome: Any) -> None:
    from reprokit.recording.spool import cell_done

    cell_done(getattr(outcome, "execution_count", None))


def _attach_hooks() -> None:
    """Once per process: end the run at exit; in IPython, watch every cell's outcome.

    The exit hook is registered with ``threading._register_atexit`` where it exists: those
    hooks run at the start of interpreter shutdown, before ``concurrent.futures`` refuses new
    work and before thread-pool-creating imports fail with "can't register atexit after
    shutdown" (MLflow's import and its HTTP uploads use thread pools, and at exit the
    background thread may still be importing MLflow). ``concurrent.futures.thread`` is
    imported first so that its own hook is registered before ours and runs after it.
    """
    global _exit_hook_registered
    if not _exit_hook_registered:
        import concurrent.futures.thread  # noqa: F401  (see above)

        register = getattr(threading, "_register_atexit", atexit.register)
        register(_end_at_exit)
        _exit_hook_registered = True
    from reprokit.recording.context import ipython_shell

    shell = ipython_shell()
    if shell is not None and on_post_run_cell not in shell.events.callbacks["post_run_cell"]:
        shell.events.register("post_run_cell", on_post_run_cell)
        from reprokit.recording import spool

        if spool.take_spool():  # a runner's kernel: each cell's results keyed to its In [N]
            shell.events.register("pre_run_cell", _spool_cell_started)
            shell.events.register("post_run_cell", _spool_cell_done)
    elif shell is None and sys.excepthook is not _script_excepthook:
        global _previous_excepthook
        _previous_excepthook = sys.excepthook
        sys.excepthook = _script_excepthook


_previous_excepthook: Callable[..., Any] = sys.__excepthook__


def _script_excepthook(kind: type[BaseException], error: BaseException, tb: Any) -> None:
    """In a script, an uncaught exception fails the run (KILLED for Ctrl-C) before exit."""
    run = _active
    if run is not None:
        run.note_cell(error)
    _previous_excepthook(kind, error, tb)


def _end_at_exit() -> None:
    """Close the run as the interpreter exits (a kernel shut down without ``%repro end``).

    Jupyter's kernel manager sends SIGTERM 2.5 s after its shutdown request and SIGKILL 2.5 s
    later; SIGTERM would end the process at once, in the middle of writing the run. While the
    run is being closed SIGTERM is therefore ignored: the process is exiting anyway, and this
    buys the time until SIGKILL.
    """
    if _active is None:
        if _last_run is not None:  # events a full disk refused: a last chance to write them
            with contextlib.suppress(Exception):
                _last_run.write_held()
        return
    restore = _ignore_sigterm()
    try:
        end()
    except Exception as exc:  # exiting: report, never raise
        _warn(f"reprokit could not end the run at exit: {exc}")
    finally:
        restore()


def _ignore_sigterm() -> Callable[[], None]:
    import signal

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore
