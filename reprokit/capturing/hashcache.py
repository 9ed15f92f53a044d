"""A persistent cache of file digests, so that an unchanged dataset costs a ``stat`` per file.

Location: ``$REPROKIT_CACHE_DIR/hashes.sqlite3``, else ``$XDG_CACHE_HOME/reprokit/``, else
``~/.cache/reprokit/``.  Every entry is keyed on the algorithm and the file's absolute
path (raw bytes) and keeps the ``stat`` fingerprint ``(dev, ino, size, mtime_ns,
ctime_ns)`` seen when the file was hashed, ``hashed_at_ns`` (``time.time_ns()`` taken
*before* the first byte was read) and the digest.  An entry is served only when the
file's current fingerprint equals it.  Two tables hold entries:

- ``file_digest``: one row per file hashed on its own;
- ``folder_digest``: one row per folder met while hashing a tree, holding all its files'
  entries column by column (``names``: file names joined by NUL, in directory order;
  ``stamps``: per file little-endian ``dev, ino`` (uint64), ``size, mtime_ns, ctime_ns``
  (int64); ``hashed``: one ``hashed_at_ns`` (int64) for every file, or one per file;
  ``digests``: the raw digests end to end).  A tree's entries come back in one range
  query on the path; a folder whose listing is unchanged is matched by comparing the
  packed ``stat`` fingerprints of all its files with ``stamps`` in one bytes comparison
  (no per-file entry object), and never rewritten.  SQLite then costs well under 1 µs per
  file instead of ~3 µs per row for reading and writing a row per file, which matters
  next to the ~2 µs of a ``stat``.

Racy entries (git's "racy git" problem): a file written again within the filesystem's
timestamp granularity after we read it can keep the same size, mtime and ctime.  So a
row is trusted only when both its mtime and ctime are more than ``racy_margin_ns``
(default 2 s: FAT's granularity, above ext4/XFS/btrfs/APFS and NFS's usual 1 s) older
than its ``hashed_at_ns``.  A racy row is ignored and the file hashed again; the new row,
written later, is usually safe.  Hence a dataset hashed within 2 s of being written
is re-hashed once more next time.  (A network filesystem whose server clock is more than
the margin behind ours defeats this rule, as it defeats git's.)

Robustness: WAL journal, a busy timeout (``timeout_s``, default 2 s) and one short
``BEGIN IMMEDIATE`` transaction per batch make concurrent processes safe.  A corrupt file
(garbage, truncated, a foreign schema) is moved aside to ``hashes.sqlite3.corrupt`` and
rebuilt; a locked, read-only or uncreatable cache turns caching off for a minute.  Both
raise a :class:`~reprokit.exceptions.ReprokitWarning`, never an error.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import struct
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from reprokit.capturing._cachedb import CacheDB, write
from reprokit.capturing._hashworker import (
    STAT_KEY,
    count_known,
    interrupts_deferred,
    joined,
    open_folder,
)
from reprokit.capturing.walk import Folder, Tree

if TYPE_CHECKING:
    from reprokit.capturing._pool import Stampers

__all__ = [
    "DEFAULT_RACY_MARGIN_NS",
    "CacheStats",
    "Fresh",
    "HashCache",
    "TreeMatch",
    "default_cache",
    "default_cache_path",
    "pack_entry",
    "stat_key",
]

DEFAULT_RACY_MARGIN_NS = 2_000_000_000

_SELECT_ONE = (
    "SELECT dev, ino, size, mtime_ns, ctime_ns, hashed_at_ns, digest FROM file_digest "
    "WHERE algorithm = ? AND path = ?"
)
_INSERT_ONE = "INSERT OR REPLACE INTO file_digest VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_SELECT_TREE = (
    "SELECT substr(path, ?), names, stamps, hashed, digests FROM folder_digest "
    "WHERE algorithm = ? AND (path = ? OR (path >= ? AND path < ?))"
)
_KNOWS_TREE = (
    "SELECT 1 FROM folder_digest "
    "WHERE algorithm = ? AND (path = ? OR (path >= ? AND path < ?)) LIMIT 1"
)
_INSERT_FOLDER = "INSERT OR REPLACE INTO folder_digest VALUES (?, ?, ?, ?, ?, ?)"
_DELETE_FOLDER = "DELETE FROM folder_digest WHERE algorithm = ? AND path = ?"

STAMP = struct.Struct("<QQqqqq")
"""dev, ino, size, mtime_ns, ctime_ns, hashed_at_ns: the head of a packed entry."""
KEY = STAT_KEY  # dev, ino, size, mtime_ns, ctime_ns: what a file's ``stat`` must still show
_HASHED = struct.Struct("<q")
_DIGEST_SIZE = {"blake3": 32, "sha256": 32, "md5": 16}
_FIELDS, _SIZE, _MTIME, _CTIME = 5, 2, 3, 4  # fields of KEY: how many, which


def pack_entry(st: os.stat_result, hashed_at_ns: int, hexdigest: str) -> bytes:
    """The packed cache entry of a file with stat ``st``, hashed from ``hashed_at_ns`` on."""
    head = STAMP.pack(
        st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, hashed_at_ns
    )
    return head + bytes.fromhex(hexdigest)


def stat_key(st: os.stat_result) -> bytes:
    """The packed fingerprint (:data:`KEY`) of a file whose ``stat`` is ``st``."""
    return KEY.pack(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def default_cache_path() -> Path:
    """Where the user's cache lives (see the module docstring)."""
    if base := os.environ.get("REPROKIT_CACHE_DIR"):
        return Path(base) / "hashes.sqlite3"
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = Path(xdg) if xdg else Path.home() / ".cache"
    return root / "reprokit" / "hashes.sqlite3"


def _signed(value: int) -> int:
    """dev/ino are unsigned 64-bit; SQLite integers are signed."""
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclass
class CacheStats:
    hits: int = 0  # served from the cache
    misses: int = 0  # no entry for the file
    stale: int = 0  # an entry whose stat fingerprint differs from the file's
    racy: int = 0  # a matching entry not trusted (file changed too soon before hashing)
    written: int = 0  # entries written


@dataclass
class _Cached:
    """A folder's row: its file names and their entries, column by column."""

    names: list[bytes]
    stamps: bytes  # KEY per file
    hashed: bytes  # one _HASHED for all files, or one per file
    digests: bytes  # raw, ``width`` bytes each
    width: int

    def column(self, field: int) -> list[int]:
        """One field of KEY for every file (little-endian int64)."""
        if sys.byteorder == "little":
            return memoryview(self.stamps).cast("q")[field::_FIELDS].tolist()
        return [row[field] for row in KEY.iter_unpack(self.stamps)]

    def hashed_at(self) -> list[int]:
        times = [value for (value,) in _HASHED.iter_unpack(self.hashed)]
        return times * len(self.names) if len(times) == 1 else times

    def racy(self, margin_ns: int) -> set[int]:
        """Positions of the entries too close to their file's last change to be trusted."""
        mtimes, ctimes = self.column(_MTIME), self.column(_CTIME)
        if len(self.hashed) == _HASHED.size:  # one time: one comparison for the folder
            (hashed_at,) = _HASHED.unpack(self.hashed)
            if max(mtimes + ctimes) + margin_ns < hashed_at:
                return set()
        times = zip(mtimes, ctimes, self.hashed_at(), strict=True)
        return {j for j, (m, c, h) in enumerate(times) if max(m, c) + margin_ns >= h}

    def part(self, j: int) -> tuple[bytes, bytes, bytes]:
        """The j-th file's key, hashed time and raw digest."""
        hashed = self.hashed if len(self.hashed) == _HASHED.size else self.hashed[8 * j : 8 * j + 8]
        digest = self.digests[self.width * j : self.width * (j + 1)]
        return self.stamps[KEY.size * j : KEY.size * (j + 1)], hashed, digest

    def hexdigests(self) -> list[str]:
        return self.digests.hex(" ", self.width).split(" ")


@dataclass
class TreeMatch:
    """What the cache knows about a tree's files (aligned with ``Tree.rels``)."""

    digests: list[str | None]
    sizes: list[int]
    todo: list[int] = field(default_factory=list)  # indices of files to hash
    cached: dict[bytes, _Cached] = field(default_factory=dict)  # folder rel -> entries


@dataclass
class Fresh:
    """Entries of the files of a tree just hashed (aligned with ``Tree.rels``)."""

    keys: Sequence[bytes | None]  # stat_key of each file hashed, None for one served
    hashed_at_ns: int  # taken before the first of them was read
    raws: Sequence[bytes | None]  # the raw digest of each file hashed, None for one served


class HashCache:
    """A persistent file-digest cache in one SQLite file (see the module docstring)."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        racy_margin_ns: int = DEFAULT_RACY_MARGIN_NS,
        timeout_s: float = 2.0,
        warn: bool = True,
    ) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.racy_margin_ns = racy_margin_ns
        self.stats = CacheStats()
        self._db = CacheDB(self.path, timeout_s=timeout_s, warn=warn)

    def __repr__(self) -> str:
        return f"HashCache({str(self.path)!r})"

    def __enter__(self) -> HashCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def last_problem(self) -> str | None:
        """Why the cache was last turned off (None if it never was)."""
        return self._db.last_problem

    def usable(self) -> bool:
        """Open it (creating or rebuilding as needed); False while caching is off."""
        return self._db.usable()

    def close(self) -> None:
        self._db.close()

    # -- trees -------------------------------------------------------------------------

    def match_tree(
        self,
        algorithm: str,
        root: bytes,
        tree: Tree,
        jobs: int | None = None,
        started: Stampers | None = None,
    ) -> TreeMatch:
        """Every entry under folder ``root`` in one query, then a ``stat`` per file.

        A file that cannot be stat'ed is left to hash, where its error is reported. ``jobs``:
        at most that many processes ``stat`` (:func:`~reprokit.capturing._pool.stamp_folders`);
        ``started``: worker interpreters started during the walk for it.
        """
        from reprokit.capturing._pool import stamp_folders

        count = len(tree.rels)
        match = TreeMatch([None] * count, [0] * count)
        match.cached = self._db.run(lambda conn: _select_tree(conn, algorithm, root), {})
        prefix = _with_slash(root)
        known = [folder for folder in tree.folders if folder.rel in match.cached]
        names = [(folder.rel, folder.names) for folder in known]
        stamps = stamp_folders(prefix, names, jobs=jobs, started=started)
        stamps_of = dict(zip((folder.rel for folder in known), stamps, strict=True))
        for folder in tree.folders:
            cached = match.cached.get(folder.rel)
            if cached is None:
                self.stats.misses += len(folder.names)
                match.todo.extend(folder.indices)
                continue
            joined = stamps_of[folder.rel]
            if joined is not None and self._serve_all(folder, cached, joined, match):
                continue
            if joined is None:  # one cannot be stat'ed: find which, file by file
                keys = _each_stat_key(prefix, tree, folder)
            else:
                keys = [joined[at : at + KEY.size] for at in range(0, len(joined), KEY.size)]
            self._match_each(folder, cached, keys, match)
        match.todo.sort()
        return match

    def knows_tree(self, algorithm: str, root: bytes) -> bool:
        """Whether any folder at or under ``root`` has entries here (one indexed look-up)."""
        prefix = _with_slash(root)
        args = (algorithm, root, prefix, prefix[:-1] + b"0")
        return self._db.run(lambda conn: bool(conn.execute(_KNOWS_TREE, args).fetchone()), False)

    def _serve_all(self, folder: Folder, cached: _Cached, joined: bytes, match: TreeMatch) -> bool:
        """The common case, in bulk: the same names, every fingerprint equal, none racy."""
        if cached.names != folder.names or joined != cached.stamps:
            return False
        if cached.racy(self.racy_margin_ns):
            return False
        digests, sizes = cached.hexdigests(), cached.column(_SIZE)
        indices = folder.indices
        if isinstance(indices, range) and indices.step == 1:
            match.digests[indices.start : indices.stop] = digests
            match.sizes[indices.start : indices.stop] = sizes
        else:
            for index, digest, size in zip(indices, digests, sizes, strict=True):
                match.digests[index] = digest
                match.sizes[index] = size
        self.stats.hits += len(indices)
        return True

    def _match_each(
        self, folder: Folder, cached: _Cached, keys: Sequence[bytes | None], match: TreeMatch
    ) -> None:
        """File by file: names added or gone, fingerprints changed, racy entries."""
        position = {name: j for j, name in enumerate(cached.names)}
        racy, stats = cached.racy(self.racy_margin_ns), self.stats
        for k, (name, index) in enumerate(zip(folder.names, folder.indices, strict=True)):
            j = position.get(name)
            if j is None:
                stats.misses += 1
                match.todo.append(index)
                continue
            key, _, digest = cached.part(j)
            if keys[k] is None:  # cannot be stat'ed: its error comes when it is hashed
                match.todo.append(index)
            elif keys[k] != key:
                stats.stale += 1
                match.todo.append(index)
            elif j in racy:
                stats.racy += 1
                match.todo.append(index)
            else:
                stats.hits += 1
                match.digests[index] = digest.hex()
                match.sizes[index] = KEY.unpack(key)[_SIZE]

    def store_tree(
        self, algorithm: str, root: bytes, tree: Tree, match: TreeMatch, fresh: Fresh
    ) -> int:
        """Rewrite, in one transaction, the folders whose entries changed.

        Folders cached under ``root`` but not walked this time are dropped.
        """
        head = _with_slash(root)
        rows: list[tuple[object, ...]] = []
        walked = set()
        for folder in tree.folders:
            walked.add(folder.rel)
            cached = match.cached.get(folder.rel)
            if not folder.names:
                if cached is not None:
                    walked.discard(folder.rel)  # delete its row below
                continue
            columns = _columns(folder, cached, fresh)
            if columns is not None:
                path = head + folder.rel if folder.rel else root
                rows.append((algorithm, path, b"\0".join(folder.names), *columns))
        gone = [(algorithm, head + f if f else root) for f in match.cached if f not in walked]
        if not rows and not gone:
            return 0
        statements: list[tuple[str, Sequence[tuple[object, ...]]]] = [
            (_INSERT_FOLDER, rows),
            (_DELETE_FOLDER, gone),
        ]
        if not self._db.run(lambda conn: write(conn, statements), 0):
            return 0
        written = count_known(fresh.keys)
        self.stats.written += written
        return written

    # -- single files ------------------------------------------------------------------

    def match_file(self, algorithm: str, path_abs: bytes, st: os.stat_result) -> str | None:
        """The cached digest of one file whose current ``stat`` is ``st``, if trusted."""
        args = (algorithm, path_abs)
        none: list[tuple[int, int, int, int, int, int, str]] = []
        rows = self._db.run(lambda conn: conn.execute(_SELECT_ONE, args).fetchall(), none)
        if not rows:
            self.stats.misses += 1
            return None
        dev, ino, size, mtime_ns, ctime_ns, hashed_at_ns, digest = rows[0]
        key = KEY.pack(dev % (1 << 64), ino % (1 << 64), size, mtime_ns, ctime_ns)
        if key != stat_key(st):
            self.stats.stale += 1
            return None
        if max(mtime_ns, ctime_ns) + self.racy_margin_ns >= hashed_at_ns:
            self.stats.racy += 1
            return None
        self.stats.hits += 1
        return str(digest)

    def store_files(self, algorithm: str, items: Sequence[tuple[bytes, bytes]]) -> int:
        """Remember (absolute path, packed entry) pairs, in one transaction."""
        rows: list[tuple[object, ...]] = []
        for path_abs, entry in items:
            dev, ino, *rest = STAMP.unpack_from(entry)
            digest = entry[STAMP.size :].hex()
            rows.append((algorithm, path_abs, _signed(dev), _signed(ino), *rest, digest))
        if not self._db.run(lambda conn: write(conn, [(_INSERT_ONE, rows)]), 0):
            return 0
        self.stats.written += len(rows)
        return len(rows)


def _each_stat_key(prefix: bytes, tree: Tree, folder: Folder) -> list[bytes | None]:
    """The fingerprint of each file of ``folder``, None for those that cannot be stat'ed."""
    with _opened_folder(prefix + folder.rel) as dir_fd:
        names = folder.names
        if dir_fd is None:  # no descriptor (or no dir_fd here): the whole paths
            names = [prefix + tree.rels[i] for i in folder.indices]
        return [_stat_key_of(name, dir_fd) for name in names]


def _stat_key_of(name: bytes, dir_fd: int | None) -> bytes | None:
    try:
        return stat_key(os.stat(name, dir_fd=dir_fd))
    except OSError:
        return None


def _columns(folder: Folder, cached: _Cached | None, fresh: Fresh) -> tuple[bytes, ...] | None:
    """A folder's ``stamps, hashed, digests`` to write; None if its row is unchanged."""
    indices = folder.indices
    if isinstance(indices, range) and indices.step == 1:
        keys = fresh.keys[indices.start : indices.stop]
    else:
        keys = [fresh.keys[i] for i in indices]
    hashed_now = count_known(keys)
    if not hashed_now and cached is not None and cached.names == folder.names:
        return None
    hashed = _HASHED.pack(fresh.hashed_at_ns)
    if hashed_now == len(keys):  # all just hashed: the first hash of a folder
        return joined(keys), hashed, _raw_digests(fresh, indices)
    assert cached is not None  # a file not hashed now was served from its row
    position = {name: j for j, name in enumerate(cached.names)}
    stamps, times, raws = [], [], []
    for name, key, index in zip(folder.names, keys, indices, strict=True):
        if key is None:
            key, time, raw = cached.part(position[name])
        else:
            time, raw = hashed, fresh.raws[index]  # type: ignore[assignment]
        stamps.append(key)
        times.append(time)
        raws.append(raw)
    uniform = len(set(times)) == 1
    return b"".join(stamps), times[0] if uniform else b"".join(times), b"".join(raws)


def _raw_digests(fresh: Fresh, indices: Sequence[int]) -> bytes:
    """The raw digests of a folder's files (all just hashed), joined."""
    if isinstance(indices, range) and indices.step == 1:
        return joined(fresh.raws[indices.start : indices.stop])
    return joined([fresh.raws[i] for i in indices])


@contextlib.contextmanager
def _opened_folder(path: bytes) -> Iterator[int | None]:
    """:func:`~reprokit.capturing._hashworker.open_folder` for the ``with``, closed after."""
    fd = None
    try:
        with interrupts_deferred():
            fd = open_folder(path)
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


def _with_slash(path: bytes) -> bytes:
    return path if path.endswith(b"/") else path + b"/"


def _select_tree(conn: sqlite3.Connection, algorithm: str, root: bytes) -> dict[bytes, _Cached]:
    """Folder rel -> its cached names and entries, for ``root`` and every folder below."""
    prefix = _with_slash(root)
    upper = prefix[:-1] + b"0"  # "0" sorts right after "/": the end of the prefix range
    width = _DIGEST_SIZE[algorithm]
    cached: dict[bytes, _Cached] = {}
    args = (len(prefix) + 1, algorithm, root, prefix, upper)
    for folder, names, stamps, hashed, digests in conn.execute(_SELECT_TREE, args):
        split = names.split(b"\0")
        count = len(split)
        sound = len(stamps) == count * KEY.size and len(digests) == count * width
        if sound and len(hashed) in (_HASHED.size, count * _HASHED.size):
            cached[folder] = _Cached(split, stamps, hashed, digests, width)
        # else damaged: rewritten after hashing
    return cached


_defaults: dict[Path, HashCache] = {}


def default_cache() -> HashCache:
    """The process-wide cache at :func:`default_cache_path` (looked up on every call)."""
    path = default_cache_path()
    cache = _defaults.get(path)
    if cache is None:
        cache = _defaults[path] = HashCache(path)
    return cache
