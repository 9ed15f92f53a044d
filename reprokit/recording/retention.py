"""Which run folders a project keeps, and what ``reprokit gc`` may delete.

A *run* is a folder under ``<project root>/.reprokit/runs/``: a live session's folder
(``runs/<UTC>-<hex>/``, its ``run.json`` names the notebook and the MLflow run) or one notebook
of a runner's batch (``runs/<UTC>-<hex>/<stem>/``, described by ``<stem>.run.json`` beside it).
Runs are kept when they are among the last ``keep`` of their notebook, when a lock anywhere in
the project names their MLflow run (``run_id``) or, for a lock recorded while MLflow was
unreachable (``run_id`` null), holds their snapshot (its ``captured_at``, to the millisecond, is
the one in the folder's ``snapshot.json``), when a process still writes them (it holds a
``flock`` on ``runs/<folder>.active`` from creation to end) or when a pending journal still has
to upload them. Everything else may go; then every object of the store that nothing links any
more (:func:`~reprokit.recording.objects.unreferenced_objects`). A lock that cannot be read
(merge-conflict markers, truncated, a FIFO, a link leading outside the project, a ``run_id``
that is not a string) may name any run: gc then removes nothing and raises
:class:`~reprokit.exceptions.LockError` naming it.

MLflow is not touched: its runs and their artifacts stay (in a local artifact location they are
hard links to the same objects, so pruning a run folder frees no byte of a run MLflow still
holds; ``mlflow gc`` deletes runs deleted in MLflow).
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import json
import os
import re
import shutil
import stat
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from reprokit._fsutil import atomic_write_text, is_partial_write, locked_by_another
from reprokit.exceptions import LockError
from reprokit.notebook.files import OUTPUT_MARKER
from reprokit.recording.handoff import WriterFailure, failed_writers
from reprokit.recording.journal import pending_journals, read_journal, startless, waiting
from reprokit.recording.lock_checks import load_lock_json, one_line
from reprokit.recording.objects import (
    is_object_name,
    objects_folder,
    stale_links,
    unreferenced_objects,
)

RUNS_DIR = "runs"
ACTIVE_SUFFIX = ".active"
RUN_INFO_SUFFIX = ".run.json"
ARRAYS = "arrays"  # a session folder's arrays (see reprokit.recording.folder)
SESSION = "(no notebook)"  # the group of session runs that did not know their notebook
DEFAULT_KEEP = 10
"""Runs kept per notebook by ``reprokit gc`` when ``--keep`` is not given."""
_SKIPPED_DIRS = {"node_modules", "__pycache__", "mlartifacts", "mlruns", "site-packages"}

KeepReason = Literal["recent", "locked", "active", "syncing", "undeletable"]
"""Why a run folder stays: among the last N of its notebook; a lock names its MLflow run (or,
naming none, holds its snapshot); a process still writes it; a journal still has to upload it;
deleting it failed (a file in it that this user may not delete, or it became a link)."""


@dataclass(frozen=True)
class RunEntry:
    """One run folder."""

    path: str
    notebook: str  # the notebook's path as recorded, else the folder's stem
    key: str  # sorts by time (the batch folder's UTC name, then the folder's mtime)
    run_id: str | None = None


@dataclass(frozen=True)
class GcResult:
    """What ``gc`` removed (or, with ``dry_run``, would remove), and what it kept and why."""

    removed: tuple[RunEntry, ...]
    kept: tuple[tuple[RunEntry, KeepReason], ...]
    objects_removed: int
    bytes_freed: int
    dry_run: bool


@dataclass(frozen=True)
class DiskUsage:
    """Disk used under ``.reprokit/`` (every file counted once, however many links it has)."""

    runs: int
    run_bytes: int  # bytes reachable from the run folders
    objects: int
    object_bytes: int  # bytes of the content-addressed store
    total_bytes: int  # runs, objects, journals and caches of .reprokit/, once each
    shared_bytes: int  # of run_bytes, bytes stored once in the objects and linked
    journals: int = 0  # runs journaled and not yet in MLflow (live or left by a dead process)
    writer_failures: tuple[WriterFailure, ...] = ()  # journals their background writer left
    startless: tuple[str, ...] = ()  # journals holding events but no start: kept, unreplayable


def project_of(start: Path) -> Path:
    """The root of the project ``start`` (an existing folder) is in; :class:`PathError` for
    a path that is missing or not a folder (a mistyped path must not read as 0 bytes)."""
    from reprokit.exceptions import PathError
    from reprokit.recording.target import find_project_root

    if not start.is_dir():
        raise PathError(str(start), "not a folder" if start.exists() else "no such folder")
    return find_project_root(start.resolve())


def runs_folder(project_root: str | os.PathLike[str]) -> Path:
    return Path(project_root) / ".reprokit" / RUNS_DIR


@contextlib.contextmanager
def writing(folder: Path) -> Iterator[None]:
    """Mark ``folder`` as being written for as long as the block runs (gc leaves it alone), or
    until the end of the enclosing :func:`held_until_done` block."""
    held = _held.get()
    if held is not None:
        held.enter_context(_marked(folder))
        yield
    else:
        with _marked(folder):
            yield


@contextlib.contextmanager
def held_until_done() -> Iterator[None]:
    """Folders marked by :func:`writing` inside the block stay marked until it ends, not only
    until their own ``with`` does: ``record`` writes its locks, which name the run folders,
    after the notebooks ran, and ``gc`` must not remove those folders meanwhile."""
    with contextlib.ExitStack() as stack:
        token = _held.set(stack)
        try:
            yield
        finally:
            _held.reset(token)


_held: contextvars.ContextVar[contextlib.ExitStack | None] = contextvars.ContextVar(
    "reprokit_held_markers", default=None
)


@contextlib.contextmanager
def _marked(folder: Path) -> Iterator[None]:
    marker = folder.with_name(folder.name + ACTIVE_SUFFIX)
    fd = hold_marker(marker)
    try:
        yield
    finally:
        release_marker(marker, fd)


def hold_marker(marker: Path) -> int | None:
    """Create and ``flock`` ``marker``; None when that is not possible (a read-only folder)."""
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT, 0o644)
    except OSError:
        return None
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def release_marker(marker: Path, fd: int | None) -> None:
    if fd is None:
        return
    with contextlib.suppress(OSError):
        marker.unlink()
    os.close(fd)


def _is_active(folder: Path) -> bool:
    return locked_by_another(folder.with_name(folder.name + ACTIVE_SUFFIX))


def write_run_info(folder: Path, notebook: str, run_id: str | None) -> None:
    """Name the notebook and MLflow run of a runner's output folder (beside it: not uploaded)."""
    info = {"notebook": notebook, "run_id": run_id}
    with contextlib.suppress(OSError):
        atomic_write_text(folder.with_name(folder.name + RUN_INFO_SUFFIX), json.dumps(info))


def name_run(folder: Path, run_id: str, notebook: str | None) -> None:
    """Write ``run_id`` where ``gc`` looks for the MLflow run of ``folder``, unless a run id is
    there already: a session's ``run.json``, a runner's ``<stem>.run.json`` beside its output
    folder. A session that ended before MLflow opened its run left ``run_id`` empty (or no
    ``run.json``), a runner killed before it wrote the file left none; the run was then opened
    from its journal, and without this ``gc`` would not see that a lock names it. Best effort;
    an unreadable file is left as it is."""
    top = folder.parent.name == RUNS_DIR and folder.parent.parent.name == ".reprokit"
    session = _is_session(folder) if top else (folder / "snapshot.json").exists()
    path = folder / "run.json" if session else folder.with_name(folder.name + RUN_INFO_SUFFIX)
    info = _read_info(path)
    if isinstance(info.get("run_id"), str) or (not info and os.path.lexists(path)):
        return
    if not isinstance(info.get("notebook"), str) and (notebook or not session):
        info["notebook"] = notebook or folder.name
    with contextlib.suppress(OSError):
        atomic_write_text(path, json.dumps(info | {"run_id": run_id}, indent=2))


def _read_info(path: Path, limit: int = 1_000_000) -> dict[str, object]:
    """A JSON object read from a regular file of at most ``limit`` bytes; else empty."""
    with contextlib.suppress(OSError, ValueError, RecursionError):
        if path.is_file() and not path.is_symlink() and path.stat().st_size <= limit:
            value = json.loads(path.read_text("utf-8"))
            if isinstance(value, dict):
                return value
    return {}


def _entry(folder: Path, info: dict[str, object], key: str, default: str) -> RunEntry:
    notebook, run_id = info.get("notebook"), info.get("run_id")
    return RunEntry(
        str(folder),
        str(notebook) if isinstance(notebook, str) and notebook else default,
        key,
        run_id if isinstance(run_id, str) else None,
    )


def find_runs(project_root: str | os.PathLike[str]) -> list[RunEntry]:
    """Every run folder of the project, oldest first."""
    found: list[RunEntry] = []
    base = runs_folder(project_root)
    for batch in _folders(base):
        if _is_session(batch):
            found.append(_entry(batch, _read_info(batch / "run.json"), _key(batch), SESSION))
            continue
        for unit in _folders(batch):
            info = _read_info(unit.with_name(unit.name + RUN_INFO_SUFFIX))
            found.append(_entry(unit, info, _key(batch, unit), unit.name))
    return found


def _folders(parent: Path) -> list[Path]:
    """The folders in ``parent``, sorted; never a symbolic link (gc deletes what it lists, and
    a link may lead anywhere: into the project's data, outside it)."""
    try:
        with os.scandir(parent) as entries:
            return sorted(Path(e.path) for e in entries if e.is_dir(follow_symlinks=False))
    except OSError:
        return []


def _key(batch: Path, folder: Path | None = None) -> str:
    """Sorts runs by time: the UTC second in the batch's name, then (two runs started in
    the same second) the time the run folder last changed."""
    try:
        changed = (folder or batch).stat().st_mtime_ns
    except OSError:
        changed = 0
    return f"{batch.name.partition('-')[0]}.{changed:020d}"


_SESSION_FILES = {"run.json", "snapshot.json", "requirements.txt", "data.json", "seeds.json"}


def _is_session(folder: Path) -> bool:
    """A session's run folder, not a runner's batch of notebook folders: a session writes
    its files (:mod:`~reprokit.recording.folder`) straight into it, a runner only folders
    and their ``<stem>.run.json``. A session killed before its first file was whole has left
    at most a partial write and ``arrays/``."""
    try:
        names = os.listdir(folder)
    except OSError:
        return False
    if not set(names) - {OUTPUT_MARKER}:
        return True  # an empty folder: a process killed right after making it
    if OUTPUT_MARKER in names or any(n.endswith(RUN_INFO_SUFFIX) for n in names):
        return False  # a session has neither (a notebook "data.json.ipynb" has a unit so named)
    if any(_is_file(folder / n) for n in _SESSION_FILES.intersection(names)):
        return True
    if any(is_partial_write(n) for n in names):
        return True
    return names == [ARRAYS] and not any(n.endswith(".ipynb") for n in _names(folder / ARRAYS))


def _is_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def _names(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


@dataclass(frozen=True)
class _Locked:
    """What the project's locks refer to: MLflow runs, and the snapshots (``captured_at``) of
    the locks that name no run (recorded while MLflow was unreachable)."""

    run_ids: frozenset[str]
    captures: frozenset[str]


def locked_run_ids(project_root: str | os.PathLike[str]) -> set[str]:
    """The MLflow run of every lock (``*.repro.json``) in the project, outside hidden folders.

    Raises :class:`~reprokit.exceptions.LockError` for a lock that cannot be read (not a
    regular file inside the project, not JSON, merge-conflict markers, a ``run_id`` that is not
    a string): such a lock may name any run, so no run folder is safe to delete."""
    return set(_locked(project_root).run_ids)


def _locked(project_root: str | os.PathLike[str]) -> _Locked:
    ids: set[str] = set()
    captures: set[str] = set()
    for path in _lock_files(project_root):
        run_id, captured_at = _lock_references(path)
        if run_id is not None:
            ids.add(run_id)
        elif captured_at is not None:
            captures.add(captured_at)
    return _Locked(frozenset(ids), frozenset(captures))


def _lock_files(project_root: str | os.PathLike[str]) -> Iterator[Path]:
    for directory, folders, names in os.walk(project_root):
        folders[:] = [f for f in folders if not f.startswith(".") and f not in _SKIPPED_DIRS]
        yield from (Path(directory) / name for name in names if name.endswith(".repro.json"))


def lock_run_id(path: Path) -> str | None:
    """The MLflow run the lock at ``path`` names; None when it names none (``run_id`` null or
    absent) or the file went since it was listed. Read as untrusted input
    (:func:`~reprokit.recording.lock_checks.load_lock_json`: a FIFO, a link leading outside
    the project, a file too large are refused before reading); :class:`LockError` when it
    cannot be read."""
    return _lock_references(path)[0]


def _lock_references(path: Path) -> tuple[str | None, str | None]:
    """The lock's ``run_id`` (:func:`lock_run_id`) and its snapshot's ``captured_at`` (None
    when it has none, or not as a string: it only ever keeps more)."""
    if not os.path.lexists(path):
        return None, None  # deleted since the walk listed it: it names nothing any more
    source = str(path)
    data = load_lock_json(path, source)
    if not isinstance(data, dict):
        raise LockError(source, f"not a lock: a JSON {type(data).__name__}, not an object")
    run_id = data.get("run_id")
    if run_id is not None and not isinstance(run_id, str):
        shown = one_line(repr(run_id)[:80])
        raise LockError(source, f"run_id must be a string or null, got {shown}", "run_id")
    snapshot = data.get("snapshot")
    captured_at = snapshot.get("captured_at") if isinstance(snapshot, dict) else None
    return run_id, captured_at if isinstance(captured_at, str) and captured_at else None


_CAPTURED_AT = re.compile(rb'"captured_at": *"([^"\\]{1,80})"')
_SNAPSHOT_HEAD = 1 << 16  # the key sorts second, after the small "accelerator" object


def _captured(folder: Path) -> set[str]:
    """``captured_at`` of the snapshots in a run folder: a session's own ``snapshot.json``, or
    those of the sessions inside a runner's notebook folder. Only the file's head is read (a
    snapshot with its data file lists can be many megabytes)."""
    found: set[str] = set()
    for path in (folder / "snapshot.json", *(f / "snapshot.json" for f in _folders(folder))):
        with contextlib.suppress(OSError):
            if not stat.S_ISREG(path.lstat().st_mode):
                continue
            with path.open("rb") as handle:
                match = _CAPTURED_AT.search(handle.read(_SNAPSHOT_HEAD))
            if match:
                found.add(match.group(1).decode("utf-8", "replace"))
    return found


def _locks_or_refuse(project_root: str | os.PathLike[str]) -> _Locked:
    """What the locks refer to, or a :class:`LockError` saying that gc removes nothing while
    a lock it cannot read is in the project."""
    try:
        return _locked(project_root)
    except LockError as exc:
        reason = (
            f"{exc.reason}; gc removed nothing: a lock it cannot read may name any run "
            "(fix the lock, or move it out of the project, then run gc again)"
        )
        raise LockError(_shown(exc.path), reason, exc.field) from None


def _shown(path: str) -> str:
    """``path`` relative to the working folder when it is inside it, as gc shows folders."""
    with contextlib.suppress(OSError, ValueError):
        return str(Path(path).relative_to(Path.cwd().resolve()))
    return path


def _uploading(project_root: str | os.PathLike[str]) -> list[Path]:
    """The folders pending journals name: those they upload, and the output folder of a run
    journaled as it started (a runner killed since: its replay names the run beside it)."""
    folders: list[Path] = []
    for path in pending_journals(project_root):
        with contextlib.suppress(OSError, UnicodeDecodeError):
            state = read_journal(path)
            named = [*state.uploads.values(), *([state.folder] if state.folder else [])]
            folders += [Path(f).resolve() for f in named]
    return folders


def _reason(
    entry: RunEntry, rank: int, keep: int, locked: _Locked, uploading: list[Path]
) -> KeepReason | None:
    path = Path(entry.path)
    if _is_active(path) or _is_active(path.parent):
        return "active"
    if entry.run_id is not None and entry.run_id in locked.run_ids:
        return "locked"
    if locked.captures and not locked.captures.isdisjoint(_captured(path)):
        return "locked"  # its lock was written while MLflow was down: no run id to match
    resolved = path.resolve()
    if any(f == resolved or resolved in f.parents or f in resolved.parents for f in uploading):
        return "syncing"
    return "recent" if rank < keep else None


def plan_gc(project_root: str | os.PathLike[str], keep: int) -> GcResult:
    """What :func:`collect` would do, done nothing (``dry_run``)."""
    locked = _locks_or_refuse(project_root)  # first: an unreadable lock stops gc
    entries = find_runs(project_root)
    uploading = _uploading(project_root)
    by_notebook: dict[str, list[RunEntry]] = defaultdict(list)
    for entry in entries:
        by_notebook[entry.notebook].append(entry)
    removed: list[RunEntry] = []
    kept: list[tuple[RunEntry, KeepReason]] = []
    for runs in by_notebook.values():
        for rank, entry in enumerate(sorted(runs, key=lambda e: e.key, reverse=True)):
            reason = _reason(entry, rank, keep, locked, uploading)
            if reason is None:
                removed.append(entry)
            else:
                kept.append((entry, reason))
    freed, objects = _bytes_freed(project_root, removed)
    return GcResult(tuple(removed), tuple(kept), objects, freed, dry_run=True)


def _bytes_freed(project_root: str | os.PathLike[str], removed: list[RunEntry]) -> tuple[int, int]:
    """Bytes and objects freed by deleting ``removed``: a file's bytes go when its last link
    outside the object store goes (the object is then unreferenced)."""
    gone = _Links()
    for entry in removed:
        gone.add(_file_stats(Path(entry.path)))
    gone.add([stats for _, stats in stale_links(objects_folder(project_root))])
    freed, objects = gone.freed(_stored_inodes(project_root))
    for _, size in unreferenced_objects(objects_folder(project_root)):
        freed, objects = freed + size, objects + 1
    return freed, objects


FileStat = tuple[int, int, int]  # inode, size, link count


def _file_stats(folder: Path) -> list[FileStat]:
    stats = []
    for path in _files(folder):
        with contextlib.suppress(OSError):
            st = path.lstat()
            stats.append((st.st_ino, st.st_size, st.st_nlink))
    return stats


def _stored_inodes(project_root: str | os.PathLike[str]) -> set[int]:
    store = objects_folder(project_root)
    inodes = set()
    for path in _files(store):
        if is_object_name(path):
            with contextlib.suppress(OSError):  # gone meanwhile
                inodes.add(path.lstat().st_ino)
    return inodes


class _Links:
    """The links to files that deleting run folders takes away, by inode."""

    def __init__(self) -> None:
        self.links: Counter[int] = Counter()
        self.sizes: dict[int, tuple[int, int]] = {}  # inode -> (size, link count)

    def add(self, stats: list[FileStat]) -> None:
        for inode, size, nlink in stats:
            self.links[inode] += 1
            self.sizes[inode] = (size, nlink)

    def freed(self, stored: set[int]) -> tuple[int, int]:
        """Bytes, and objects among them, whose last link outside the store goes."""
        freed = objects = 0
        for inode, (size, nlink) in self.sizes.items():
            if nlink - self.links[inode] - (inode in stored) <= 0:
                freed, objects = freed + size, objects + (inode in stored)
        return freed, objects


def _files(folder: Path) -> Iterator[Path]:
    for directory, _, names in os.walk(folder):
        for name in names:
            path = Path(directory) / name
            if not path.is_symlink():
                yield path


def collect(project_root: str | os.PathLike[str], keep: int) -> GcResult:
    """Delete the run folders :func:`plan_gc` lets go, then the objects nobody links; what
    it says it removed and freed is what went (a folder that stayed is listed as kept)."""
    plan = plan_gc(project_root, keep)
    base = runs_folder(project_root)
    removed: list[RunEntry] = []
    stayed: list[tuple[RunEntry, KeepReason]] = []
    gone = _Links()
    before = [_file_stats(Path(entry.path)) for entry in plan.removed]  # link counts untouched
    for path, link in list(stale_links(objects_folder(project_root))):
        with contextlib.suppress(OSError):
            path.unlink()
            gone.add([link])
    for entry, stats in zip(plan.removed, before, strict=True):
        why = _remove_run(Path(entry.path), base)
        if why is None:
            removed.append(entry)
            gone.add(stats)
        else:
            stayed.append((entry, why))
    _remove_stale_markers(base)
    freed, _ = gone.freed(set())  # a stored file's bytes are counted as its object goes
    objects = 0
    for path, size in list(unreferenced_objects(objects_folder(project_root))):
        try:
            path.unlink()
        except OSError:
            continue
        freed, objects = freed + size, objects + 1
    return GcResult(tuple(removed), plan.kept + tuple(stayed), objects, freed, False)


def _remove_run(folder: Path, base: Path) -> KeepReason | None:
    """Delete one run folder (a real folder at most two levels below ``base``, never through
    a link) and what describes it beside it; why it stays, or None when it went."""
    if _is_active(folder):
        return "active"  # started writing since the plan
    if folder.is_symlink() or folder.parent.is_symlink():
        return "undeletable"  # a link, which gc never follows
    if base.resolve() not in folder.resolve().parents:
        return "undeletable"
    shutil.rmtree(folder, ignore_errors=True)
    if folder.exists():
        return "undeletable"
    for suffix in (RUN_INFO_SUFFIX, ACTIVE_SUFFIX):
        with contextlib.suppress(OSError):
            folder.with_name(folder.name + suffix).unlink()
    _remove_if_empty(folder.parent, base)
    return None


def _remove_stale_markers(base: Path) -> None:
    """``<folder>.active`` files that no process holds, whose folder is gone (a process
    killed as it made them), and that are not new (one may be made before its folder)."""
    import time

    for marker in base.glob(f"*{ACTIVE_SUFFIX}") if base.is_dir() else ():
        folder = marker.with_name(marker.name.removesuffix(ACTIVE_SUFFIX))
        with contextlib.suppress(OSError):
            st = marker.lstat()
            if folder.exists() or folder.is_symlink() or not stat.S_ISREG(st.st_mode):
                continue
            if time.time() - st.st_mtime > _STALE_MARKER_S and not locked_by_another(marker):
                marker.unlink()


_STALE_MARKER_S = 60.0


def _remove_if_empty(folder: Path, base: Path) -> None:
    """Remove a runner's batch folder whose last notebook folder went (with the marker that
    keeps notebook discovery out of it); a folder holding anything else stays."""
    if folder.resolve() == base.resolve() or _is_active(folder):
        return
    with contextlib.suppress(OSError):
        if os.listdir(folder) == [OUTPUT_MARKER]:
            (folder / OUTPUT_MARKER).unlink()
        folder.rmdir()
        with contextlib.suppress(OSError):
            folder.with_name(folder.name + ACTIVE_SUFFIX).unlink()


def disk_usage(project_root: str | os.PathLike[str]) -> DiskUsage:
    """Bytes under ``.reprokit/``, each file once however many links it has."""
    hidden = Path(project_root) / ".reprokit"
    stored: dict[int, int] = {}
    for path in _files(objects_folder(project_root)):
        st = path.lstat()
        stored[st.st_ino] = st.st_size
    in_runs: dict[int, int] = {}
    for path in _files(runs_folder(project_root)):
        st = path.lstat()
        in_runs[st.st_ino] = st.st_size
    every: dict[int, int] = {}
    for path in _files(hidden) if hidden.is_dir() else ():
        st = path.lstat()
        every[st.st_ino] = st.st_size
    shared = sum(size for inode, size in in_runs.items() if inode in stored)
    journals = [path for path in pending_journals(project_root) if waiting(path)]
    kept = tuple(str(path) for path in journals if startless(path))  # sync cannot replay them
    return DiskUsage(
        runs=len(find_runs(project_root)),
        run_bytes=sum(in_runs.values()),
        objects=len(stored),
        object_bytes=sum(stored.values()),
        total_bytes=sum(every.values()),
        shared_bytes=shared,
        journals=len(journals) - len(kept),
        writer_failures=tuple(failed_writers(project_root)),
        startless=kept,
    )


__all__ = [
    "DEFAULT_KEEP",
    "DiskUsage",
    "GcResult",
    "KeepReason",
    "RunEntry",
    "collect",
    "disk_usage",
    "find_runs",
    "lock_run_id",
    "locked_run_ids",
    "name_run",
    "plan_gc",
    "runs_folder",
    "write_run_info",
    "writing",
]
