"""A persistent cache of file digests, so that an unchanged dataset costs a ``stat`` per file.

Location: ``$REPROKIT_CACHE_DIR/hashes.sqlite3``, else ``$XDG_CACHE_HOME/reprokit/``, else
``~/.cache/reprokit/``.  Every entry is keyed on the algorithm and the file's absolute
path (raw bytes) and keeps the ``stat`` fingerprint ``(dev, ino, size, mtime_ns,
ctime_ns)`` seen when the file was hashed, ``hashed_at_ns`` (``time.time_ns()`` taken
*before* the first byte was read) and the digest.  An entry is served only when the
file's current fingerprint equals it.  Two tables hold entries:

- ``file_digest``: one row per file hashed on its own;
- ``folder_digest``: one row per folder met while hashing a tree, holding all its files'
  entries packed (``names``: file names joined by NUL, in directory order; ``stamps``:
  per file little-endian ``dev, ino`` (uint64), ``size, mtime_ns, ctime_ns,
  hashed_at_ns`` (int64), then the raw digest).  A tree's entries come back in one range
  query on the path; a folder whose listing is unchanged is matched by position (no
  per-file dictionary) and never rewritten.  SQLite then costs well under 1 µs per file
  instead of ~3 µs per row for reading and writing a row per file, which matters next
  to the ~4 µs of a ``stat``.

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reprokit.capturing._cachedb import CacheDB, write
from reprokit.capturing.walk import Tree

__all__ = [
    "DEFAULT_RACY_MARGIN_NS",
    "CacheStats",
    "HashCache",
    "TreeMatch",
    "default_cache",
    "default_cache_path",
    "pack_entry",
]

DEFAULT_RACY_MARGIN_NS = 2_000_000_000

_SELECT_ONE = (
    "SELECT dev, ino, size, mtime_ns, ctime_ns, hashed_at_ns, digest FROM file_digest "
    "WHERE algorithm = ? AND path = ?"
)
_INSERT_ONE = "INSERT OR REPLACE INTO file_digest VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_SELECT_TREE = (
    "SELECT substr(path, ?), names, stamps FROM folder_digest WHERE algorithm = ? "
    "AND (path = ? OR (path >= ? AND path < ?))"
)
_INSERT_FOLDER = "INSERT OR REPLACE INTO folder_digest VALUES (?, ?, ?, ?)"
_DELETE_FOLDER = "DELETE FROM folder_digest WHERE algorithm = ? AND path = ?"

STAMP = struct.Struct("<QQqqqq")
"""dev, ino, size, mtime_ns, ctime_ns, hashed_at_ns: the head of a packed entry."""
_DIGEST_SIZE = {"blake3": 32, "sha256": 32, "md5": 16}
_LAYOUTS = {name: struct.Struct(f"{STAMP.format}{n}s") for name, n in _DIGEST_SIZE.items()}

Entry = tuple[int, int, int, int, int, int, bytes]
"""An unpacked entry: dev, ino, size, mtime_ns, ctime_ns, hashed_at_ns, raw digest."""


def pack_entry(st: os.stat_result, hashed_at_ns: int, hexdigest: str) -> bytes:
    """The packed cache entry of a file with stat ``st``, hashed from ``hashed_at_ns`` on."""
    head = STAMP.pack(
        st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, hashed_at_ns
    )
    return head + bytes.fromhex(hexdigest)


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
    names: list[bytes]
    entries: list[Entry]


@dataclass
class TreeMatch:
    """What the cache knows about a tree's files (aligned with ``Tree.rels``)."""

    digests: list[str | None]
    sizes: list[int]
    todo: list[int] = field(default_factory=list)  # indices of files to hash
    cached: dict[bytes, _Cached] = field(default_factory=dict)  # folder rel -> entries


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

    def match_tree(self, algorithm: str, root: bytes, tree: Tree) -> TreeMatch:
        """Every entry under folder ``root`` in one query, then a ``stat`` per file.

        A file that cannot be stat'ed is left to hash, where its error is reported.
        """
        count = len(tree.rels)
        match = TreeMatch([None] * count, [0] * count)
        match.cached = self._db.run(lambda conn: _select_tree(conn, algorithm, root), {})
        prefix = _with_slash(root)
        for folder in tree.folders:
            cached = match.cached.get(folder.rel)
            if cached is None:
                self.stats.misses += len(folder.names)
                match.todo.extend(folder.indices)
                continue
            if cached.names == folder.names:  # listing unchanged: entries line up
                entries: Sequence[Entry | None] = cached.entries
            else:
                by_name = dict(zip(cached.names, cached.entries, strict=True))
                entries = [by_name.get(name) for name in folder.names]
            with _opened_folder(prefix + folder.rel) as dir_fd:
                names = folder.names
                if dir_fd is None:  # no descriptor (or no dir_fd here): the whole paths
                    names = [prefix + tree.rels[i] for i in folder.indices]
                self._match(names, dir_fd, folder.indices, entries, match)
        match.todo.sort()
        return match

    def _match(
        self,
        names: Sequence[bytes],
        dir_fd: int | None,
        indices: Sequence[int],
        entries: Sequence[Entry | None],
        match: TreeMatch,
    ) -> None:
        """Compare ``entries`` with the files ``names`` (in the folder open on ``dir_fd``, or
        absolute paths), which sit at ``indices`` of the tree; fill ``match``."""
        stats, margin, stat = self.stats, self.racy_margin_ns, os.stat
        digests, sizes, todo = match.digests, match.sizes, match.todo
        for name, index, entry in zip(names, indices, entries, strict=True):
            if entry is None:
                stats.misses += 1
                todo.append(index)
                continue
            try:
                st = stat(name, dir_fd=dir_fd)  # relative to its folder: a shorter lookup
            except OSError:
                todo.append(index)
                continue
            dev, ino, size, mtime_ns, ctime_ns, hashed_at_ns, digest = entry
            if (
                mtime_ns != st.st_mtime_ns
                or size != st.st_size
                or ctime_ns != st.st_ctime_ns
                or ino != st.st_ino
                or dev != st.st_dev
            ):
                stats.stale += 1
                todo.append(index)
            elif mtime_ns + margin >= hashed_at_ns or ctime_ns + margin >= hashed_at_ns:
                stats.racy += 1
                todo.append(index)
            else:
                stats.hits += 1
                digests[index] = digest.hex()
                sizes[index] = size

    def store_tree(
        self, algorithm: str, root: bytes, tree: Tree, match: TreeMatch, fresh: dict[int, bytes]
    ) -> int:
        """Rewrite, in one transaction, the folders whose entries changed.

        ``fresh``: index in ``tree.rels`` -> packed entry of each file just hashed.
        Folders cached under ``root`` but not walked this time are dropped.
        """
        head, layout = _with_slash(root), _LAYOUTS[algorithm]
        rows: list[tuple[object, ...]] = []
        walked = set()
        for folder in tree.folders:
            walked.add(folder.rel)
            path = head + folder.rel if folder.rel else root
            cached = match.cached.get(folder.rel)
            changed = cached is None or any(i in fresh for i in folder.indices)
            if not changed and cached is not None and cached.names == folder.names:
                continue
            if not folder.names:
                if cached is not None:
                    walked.discard(folder.rel)  # delete its row below
                continue
            known = dict(zip(cached.names, cached.entries, strict=True)) if cached else {}
            stamps = [
                fresh[i] if i in fresh else layout.pack(*known[name])
                for i, name in zip(folder.indices, folder.names, strict=True)
            ]
            rows.append((algorithm, path, b"\0".join(folder.names), b"".join(stamps)))
        gone = [(algorithm, head + f if f else root) for f in match.cached if f not in walked]
        if not rows and not gone:
            return 0
        statements: list[tuple[str, Sequence[tuple[object, ...]]]] = [
            (_INSERT_FOLDER, rows),
            (_DELETE_FOLDER, gone),
        ]
        if not self._db.run(lambda conn: write(conn, statements), 0):
            return 0
        self.stats.written += len(fresh)
        return len(fresh)

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
        entry = (dev % (1 << 64), ino % (1 << 64), size, mtime_ns, ctime_ns, hashed_at_ns)
        match = TreeMatch([None], [0])
        self._match([path_abs], None, [0], [(*entry, bytes.fromhex(digest))], match)
        return match.digests[0]

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


@contextlib.contextmanager
def _opened_folder(path: bytes) -> Iterator[int | None]:
    """A descriptor of the folder ``path`` for the ``with`` (None when it cannot be opened)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
    if os.stat not in os.supports_dir_fd:
        yield None
        return
    try:
        fd = os.open(path, flags)
    except OSError:
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)


def _with_slash(path: bytes) -> bytes:
    return path if path.endswith(b"/") else path + b"/"


def _select_tree(conn: sqlite3.Connection, algorithm: str, root: bytes) -> dict[bytes, _Cached]:
    """Folder rel -> its cached names and entries, for ``root`` and every folder below."""
    prefix = _with_slash(root)
    upper = prefix[:-1] + b"0"  # "0" sorts right after "/": the end of the prefix range
    layout = _LAYOUTS[algorithm]
    cached: dict[bytes, _Cached] = {}
    args = (len(prefix) + 1, algorithm, root, prefix, upper)
    for folder, names, stamps in conn.execute(_SELECT_TREE, args):
        split = names.split(b"\0")
        if len(split) * layout.size == len(stamps):  # else damaged: rewritten after hashing
            cached[folder] = _Cached(split, list(layout.iter_unpack(stamps)))
    return cached


_defaults: dict[Path, HashCache] = {}


def default_cache() -> HashCache:
    """The process-wide cache at :func:`default_cache_path` (looked up on every call)."""
    path = default_cache_path()
    cache = _defaults.get(path)
    if cache is None:
        cache = _defaults[path] = HashCache(path)
    return cache
