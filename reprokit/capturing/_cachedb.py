"""The hash cache's SQLite file: opening it, and surviving whatever state it is in.

Corruption (garbage, truncation, a foreign or newer schema) moves the file aside to
``<name>.corrupt`` and starts afresh; anything else (locked past the busy timeout,
read-only, an uncreatable folder, a full disk) turns the cache off for a minute.  Both
with a :class:`~reprokit.exceptions.ReprokitWarning`; no operation ever raises.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from reprokit.exceptions import ReprokitWarning

SCHEMA_VERSION = 2  # 2: folder_digest holds its files' entries column by column
APPLICATION_ID = 0x52504B43  # "RPKC": tells our file from any other SQLite database
RETRY_AFTER_S = 60.0  # a cache turned off is tried again after this long
_CORRUPT = ("SQLITE_CORRUPT", "SQLITE_NOTADB")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS file_digest (
    algorithm TEXT NOT NULL,
    path BLOB NOT NULL,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    hashed_at_ns INTEGER NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (algorithm, path)
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS folder_digest (
    algorithm TEXT NOT NULL,
    path BLOB NOT NULL,
    names BLOB NOT NULL,
    stamps BLOB NOT NULL,
    hashed BLOB NOT NULL,
    digests BLOB NOT NULL,
    PRIMARY KEY (algorithm, path)
) WITHOUT ROWID""",
)

UPGRADABLE: dict[int, tuple[str, ...]] = {
    # schema 1 packed each file's entry row by row; its folder rows are only a cache
    1: ("DROP TABLE IF EXISTS folder_digest",),
}

_T = TypeVar("_T")


class ForeignSchemaError(sqlite3.DatabaseError):
    """The file is an SQLite database, but not (this version of) ours."""


class CacheDB:
    """One SQLite connection, opened lazily, re-opened after a fork, never raising."""

    def __init__(self, path: Path, *, timeout_s: float, warn: bool) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self.warn = warn
        self.last_problem: str | None = None  # why the cache was last turned off
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._inode: int | None = None
        self._off_until = 0.0
        self._lock = threading.Lock()

    def run(self, op: Callable[[sqlite3.Connection], _T], default: _T) -> _T:
        """``op(connection)``, or ``default`` when the cache is off or fails."""
        with self._lock:
            for attempt in range(2):
                conn = self._connection()
                if conn is None:
                    return default
                try:
                    return op(conn)
                except sqlite3.DatabaseError as exc:
                    if attempt == 0 and is_corrupt(exc):
                        self._move_aside(str(exc))
                        continue
                    self._turn_off(describe(exc))
                    return default
            return default

    def usable(self) -> bool:
        with self._lock:
            return self._connection() is not None

    def close(self) -> None:
        with self._lock:
            self._close()

    def _connection(self) -> sqlite3.Connection | None:
        if self._pid != os.getpid():  # forked: never touch the parent's connection
            self._conn, self._pid = None, os.getpid()
        if self._conn is not None:
            return self._conn
        if time.monotonic() < self._off_until:
            return None
        for attempt in range(2):
            try:
                self._conn = self._open()
                return self._conn
            except OSError as exc:
                self._turn_off(f"cannot create {self.path.parent}: {exc.strerror or exc}")
                return None
            except sqlite3.DatabaseError as exc:
                if attempt == 0 and is_corrupt(exc):
                    self._move_aside(str(exc))
                    continue
                self._turn_off(describe(exc))
                return None
        return None

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            prepare(conn, self.timeout_s)
            self._inode = os.stat(self.path).st_ino
        except BaseException:
            conn.close()
            raise
        return conn

    def _close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
        self._conn = None

    def _move_aside(self, why: str) -> None:
        """Rename a corrupt file away, unless another process already replaced it."""
        self._close()
        try:
            if self._inode is None or os.stat(self.path).st_ino == self._inode:
                os.replace(self.path, self.path.with_name(self.path.name + ".corrupt"))
                for suffix in ("-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(f"{self.path}{suffix}")
        except OSError as exc:
            self._turn_off(f"unusable ({why}) and cannot be moved aside: {exc.strerror or exc}")
            return
        self._inode = None
        self._warn(f"hash cache {self.path} was unusable ({why}); rebuilt it")

    def _turn_off(self, why: str) -> None:
        self._close()
        self.last_problem = why
        self._off_until = time.monotonic() + RETRY_AFTER_S
        self._warn(f"hash cache {self.path}: {why}; hashing without the cache")

    def _warn(self, message: str) -> None:
        if self.warn:
            warnings.warn(message, ReprokitWarning, stacklevel=5)


def _into_wal(conn: sqlite3.Connection, timeout_s: float) -> None:
    """``PRAGMA journal_mode = WAL``, tried again for up to ``timeout_s`` while the file is
    locked: where several processes open a new cache at once, SQLite can answer "database is
    locked" to the switch at once, without waiting out its busy timeout (1 process in 240,
    six at a time, measured), and that process then hashed without the cache."""
    deadline = time.monotonic() + timeout_s
    pause = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL").fetchone()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


PAGE_SIZE = 16384
"""Bytes per page of a new cache file: a folder's row of 1,000 files is about 90 KB, in 6
overflow pages instead of 23 of SQLite's default 4 KiB; writing the rows of a first hash of
100,000 files takes 0.014 s instead of 0.045 s."""


def prepare(conn: sqlite3.Connection, timeout_s: float = 5.0) -> None:
    """WAL mode and our schema; raises on a file that is not our database."""
    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # a new file only: an old one keeps its own
    _into_wal(conn, timeout_s)
    conn.execute("PRAGMA synchronous = NORMAL")
    if _identity(conn) == (APPLICATION_ID, SCHEMA_VERSION):
        return
    try:
        conn.execute("BEGIN IMMEDIATE")  # one creator at a time; others wait, then see it
        app_id, version = _identity(conn)
        if app_id != APPLICATION_ID:
            if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise ForeignSchemaError("not a reprokit hash cache")
        elif version not in (0, *UPGRADABLE, SCHEMA_VERSION):
            raise ForeignSchemaError(f"a hash cache of schema {version}, not {SCHEMA_VERSION}")
        for statement in UPGRADABLE.get(version, ()):
            conn.execute(statement)
        for statement in SCHEMA:
            conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def _identity(conn: sqlite3.Connection) -> tuple[int, int]:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    return int(app_id), int(conn.execute("PRAGMA user_version").fetchone()[0])


def write(
    conn: sqlite3.Connection,
    statements: Sequence[tuple[str, Sequence[tuple[object, ...]]]],
) -> int:
    """Run ``executemany`` for each (sql, rows) in one short transaction; rows written."""
    try:  # BEGIN inside: a Ctrl-C as it returns must not leave the transaction (and lock) open
        conn.execute("BEGIN IMMEDIATE")
        for sql, rows in statements:
            if rows:
                conn.executemany(sql, rows)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise
    return sum(len(rows) for _, rows in statements)


def is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    if isinstance(exc, ForeignSchemaError):
        return True
    if "no such table" in str(exc) or "no such column" in str(exc):
        return True  # our identity but not our tables: a damaged or half-made cache
    name = getattr(exc, "sqlite_errorname", None)  # Python >= 3.11
    if name is not None:
        return any(str(name).startswith(code) for code in _CORRUPT)
    text = str(exc)
    return "not a database" in text or "malformed" in text


def describe(exc: sqlite3.Error) -> str:
    text = str(exc)
    return "locked by another process" if "locked" in text else text
