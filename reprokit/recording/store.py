"""An embedded SQLite store that is never half-made.

MLflow creates a fresh ``mlflow.db`` by running some sixty alembic migrations in place; a
process killed meanwhile leaves the file at an intermediate revision (``_alembic_tmp_*``
tables), and concurrent first uses race each other's migrations. So reprokit makes the store
itself, before MLflow opens it:

- creation is serialised across processes by an ``flock`` on ``<database>.lock`` beside it;
- it is atomic: MLflow creates and migrates a temporary copy in the same folder
  (``.<database>.<pid>.creating``), which is then renamed over the database (``os.replace``). A
  kill leaves no store, or a complete one, and maybe its temporary copy: the next creation,
  ``reprokit sync`` and ``reprokit gc`` remove such a copy, holding the lock (so no creator is
  at work), once its pid is no live process or it is older than :data:`STALE_CREATION_S`.

A store found half-made (``_alembic_tmp_*`` tables, tables without an alembic revision, or a
revision behind MLflow's head while a ``-journal`` is beside it) is moved aside and made again
when it holds no run (nothing is lost), and refused with one line saying how to repair it when
it does. The quick check uses ``sqlite3`` only; MLflow is imported to create a store, or to read
its head revision when a leftover ``-journal`` makes that worth knowing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from reprokit._fsutil import process_exists
from reprokit.exceptions import RecordError

LOCK_SUFFIX = ".lock"
BROKEN_SUFFIX = ".half-made"
CREATING_SUFFIX = ".creating"
STALE_CREATION_S = 600.0
"""A temporary store older than this is a leftover even if its pid is a live process (one that
got the pid of a killed creator since): creating a store takes seconds."""
_TMP_PREFIX = "_alembic_tmp_"


@contextlib.contextmanager
def file_lock(path: Path, *, wait: bool = True) -> Iterator[bool]:
    """An exclusive ``flock`` on ``path`` (created if needed), held for the ``with`` block;
    without ``wait``, True only when no other process held it (False: not taken)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
        else:
            yield True
    finally:
        os.close(fd)  # closing releases the lock


def ensure_store(database: Path) -> None:
    """Make sure ``database`` is a complete MLflow store (create it, or repair a half-made one
    that holds no run); raise :class:`RecordError` (one line, how to repair) otherwise."""
    if _looks_complete(database):
        return
    with file_lock(database.with_name(database.name + LOCK_SUFFIX)):
        # asked again: another process may have made it meanwhile
        problem = store_problem(database, quick=not _journal_of(database).exists())
        if problem is None:
            return
        if problem != "absent":
            _set_aside(database, problem)
        _remove(stale_creations(database))
        _create(database)


def _looks_complete(database: Path) -> bool:
    """The cheap check of every connect: no ``-journal`` left over and nothing half-made."""
    if _journal_of(database).exists():
        return False
    return store_problem(database, quick=True) is None


def store_problem(database: Path, *, quick: bool = False) -> str | None:
    """None for a complete store; ``"absent"``; else what is wrong with it, in a few words."""
    if not database.exists() or database.stat().st_size == 0:
        return "absent"
    try:
        tables, revision = _tables_and_revision(database)
    except sqlite3.DatabaseError as exc:
        return f"not a readable SQLite database ({exc})"
    leftovers = sorted(t for t in tables if t.startswith(_TMP_PREFIX))
    if leftovers:
        return f"table {leftovers[0]} left by an interrupted migration"
    if not tables:
        return "absent"
    if revision is None or "runs" not in tables or "experiments" not in tables:
        return "MLflow tables without a schema revision: an interrupted creation"
    if not quick:
        head = _head_revision()
        if revision != head:
            return f"schema revision {revision}, not MLflow's {head}: an interrupted migration"
    return None


def _tables_and_revision(database: Path) -> tuple[set[str], str | None]:
    connection = sqlite3.connect(f"file:{database}?mode=rw", uri=True, timeout=30)
    try:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        tables = {str(name) for (name,) in rows}
        revision = None
        if "alembic_version" in tables:
            found = connection.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = None if found is None else str(found[0])
        return tables, revision
    finally:
        connection.close()


def _journal_of(database: Path) -> Path:
    return database.with_name(database.name + "-journal")


def _head_revision() -> str:
    from mlflow.store.db.utils import _get_latest_schema_revision

    return str(_get_latest_schema_revision())


def _run_count(database: Path) -> int:
    try:
        connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
        try:
            return int(connection.execute("SELECT count(*) FROM runs").fetchone()[0])
        finally:
            connection.close()
    except sqlite3.DatabaseError:
        return 0  # no runs table (or no readable file): nothing recorded to lose


def _set_aside(database: Path, problem: str) -> None:
    runs = _run_count(database)
    if runs:
        raise RecordError(
            f"{database}: the MLflow store is half-made ({problem}) and holds {runs} run(s), so "
            f"reprokit will not replace it: back it up, drop the {_TMP_PREFIX}* tables and run "
            f"`mlflow db upgrade sqlite:///{database}`, or move it aside to start a new store",
            uri=f"sqlite:///{database}",
            action="opening the database",
        )
    aside = database.with_name(f"{database.name}{BROKEN_SUFFIX}-{time.strftime('%Y%m%dT%H%M%S')}")
    os.replace(database, aside)
    with contextlib.suppress(FileNotFoundError):
        os.replace(_journal_of(database), aside.with_name(aside.name + "-journal"))


def _create(database: Path) -> None:
    """MLflow creates and migrates a copy in the same folder; the copy is renamed into place."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    temporary = _creation_of(database, os.getpid())
    for leftover in (temporary, _journal_of(temporary)):
        leftover.unlink(missing_ok=True)
    try:
        artifacts = (database.parent / "mlartifacts").as_uri()
        store = SqlAlchemyStore("sqlite:///" + temporary.as_posix(), artifacts)
        store.engine.dispose()
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, database)
    finally:
        for leftover in (temporary, _journal_of(temporary)):
            leftover.unlink(missing_ok=True)


def _creation_of(database: Path, pid: int) -> Path:
    return database.with_name(f".{database.name}.{pid}{CREATING_SUFFIX}")


def stale_creations(database: Path) -> list[tuple[Path, int]]:
    """The temporary stores (``.<database>.<pid>.creating``, and their ``-journal``) that
    killed creators left beside ``database``, with their sizes: those whose pid is no live
    process, or that are older than :data:`STALE_CREATION_S`. Only a list: deleting one is safe
    only while holding the creation lock (:func:`remove_stale_creations`)."""
    found: list[tuple[Path, int]] = []
    prefix = f".{database.name}."
    with contextlib.suppress(OSError):
        for entry in os.scandir(database.parent):
            pid, _, rest = entry.name.removeprefix(prefix).partition(".")
            if not entry.name.startswith(prefix) or not pid.isdigit():
                continue
            if rest not in (CREATING_SUFFIX[1:], CREATING_SUFFIX[1:] + "-journal"):
                continue
            with contextlib.suppress(OSError):
                st = entry.stat(follow_symlinks=False)
                old = time.time() - st.st_mtime > STALE_CREATION_S
                if stat.S_ISREG(st.st_mode) and (old or not process_exists(int(pid))):
                    found.append((Path(entry.path), st.st_size))
    return sorted(found)


def remove_stale_creations(database: Path) -> int:
    """Delete :func:`stale_creations`, holding the creation lock: every creator holds it while
    its temporary store exists, so none is at work meanwhile; nothing is deleted while another
    process holds it. The bytes freed."""
    if not stale_creations(database):
        return 0  # and no lock file made where there was none
    with file_lock(database.with_name(database.name + LOCK_SUFFIX), wait=False) as held:
        return _remove(stale_creations(database)) if held else 0


def _remove(leftovers: list[tuple[Path, int]]) -> int:
    freed = 0
    for path, size in leftovers:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            freed += size
    return freed
