"""Data hashed by the runner while a kernel starts, for that kernel's ``%repro start``.

A kernel takes a second or more to start; over 100,000 data files the start cell's hashing
(a ``stat`` per file, the hash cache asked, the folder's Merkle digest) takes half a second
more. ``reprokit run`` hashes the data a notebook's first ``%repro start`` names while its
kernel starts (:class:`Prehash`, started by :mod:`reprokit.runner.datahash`), and the kernel
takes that manifest instead of hashing again (:func:`take_prehashed`) if, and only if:

- nothing under the data changed from before the runner hashed it until the start cell
  began: every folder (and file) is watched with Linux ``inotify`` from before it is read,
  and any event (a write, an attribute, a file created, removed or renamed, the event queue
  overflowing) means the kernel hashes itself; a tree the watch cannot cover (a symbolic
  link in it, more folders than the user's inotify watches) is not hashed ahead;
- the hashing gave no warning (a special file skipped: the notebook should show it) and
  no error, and each path still leads to what was hashed (its real path, device, inode);
- the kernel asks for exactly what was hashed, in the start cell: the same paths as
  written, from the same working folder, relative to the same project root, with the same
  algorithm (after that cell the runner withdraws the manifest).

``inotify`` does not hear of writes through a hard link from outside the data, through a
shared memory map, or from another machine (NFS): docs/hashing.md says what that means.

The manifest goes through a file in a folder only the user can read (``mkdtemp``), named
to the kernel by :data:`PREHASHED_ENV`; it is put there once the start cell begins, read
once (then removed), and checked field by field before use. Elsewhere (no ``inotify``, the
API, a second ``%repro start``) the kernel hashes as it always did.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import shutil
import stat
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reprokit.capturing.model import DataManifest

PREHASHED_ENV = "REPROKIT_PREHASHED"
"""Where the kernel finds the manifest the runner made (a file that may not exist)."""

_FORMAT = 1
_MAX_BYTES = 1 << 30
"""The largest manifest file read (10M files is about 1 GB)."""


@dataclass(frozen=True)
class DataRequest:
    """What a ``%repro start --data`` hashes: ``paths`` as written, from the working folder
    ``cwd``, shown relative to the project root ``relative_to``."""

    paths: tuple[str, ...]
    cwd: str
    relative_to: str
    algorithm: str = "blake3"

    def as_list(self) -> list[Any]:
        return [list(self.paths), self.cwd, self.relative_to, self.algorithm]

    def absolute(self) -> list[str]:
        return [os.path.join(self.cwd, path) for path in self.paths]


class Prehash:
    """The runner's side: the data hashed on a thread while the kernel starts, under a watch;
    :meth:`publish` as the start cell begins; :meth:`close` once the notebook is done."""

    def __init__(self, request: DataRequest, folder: Path) -> None:
        self.request, self.folder = request, folder
        self.path = folder / "data.marshal"
        self.watch: FolderWatch | None = None
        self._names: list[tuple[str, int, int]] | None = None
        self._payload: bytes | None = None
        self._lock, self._closed = threading.Lock(), False
        self._thread = threading.Thread(target=self._hash, name="reprokit-prehash", daemon=True)
        self._thread.start()

    @classmethod
    def start(cls, request: DataRequest) -> Prehash:
        """Watch then hash ``request``'s data, on a thread of its own (the kernel starts
        meanwhile)."""
        return cls(request, Path(tempfile.mkdtemp(prefix="reprokit-prehash-")))

    def _hash(self) -> None:
        from reprokit.capturing.hashing import manifest_of

        try:
            if not _known(self.request):
                return
            # what each path leads to, through the folders and links above it: those are not
            # watched (a parent renamed or a link retargeted changes nothing under the data)
            self._names = _identity(self.request.absolute())
            if not self._watched():
                return
            request = self.request
            manifest = manifest_of(
                request.absolute(), request.algorithm, "default", request.relative_to, _JOBS
            )
        except Exception:  # the kernel meets the same error, and says it in the notebook
            return
        # a special file skipped is a warning the notebook should show: the kernel's to give
        if not any(entry.skipped for entry in manifest.entries) and self._same_names():
            self._payload = marshal.dumps([_FORMAT, self.request.as_list(), _encoded(manifest)])

    def _watched(self) -> bool:
        """Set the watch (False: a tree no watch can cover, or closed meanwhile)."""
        watch = FolderWatch.over(self.request.absolute())
        with self._lock:
            if watch is not None and not self._closed:
                self.watch = watch
                return True
        if watch is not None:
            watch.close()
        return False

    def publish(self) -> bool:
        """Put the manifest where the kernel looks, if it was made and nothing under the
        data changed since it was watched; True if so. Called as the start cell begins."""
        self._thread.join()
        if self.watch is None or self._payload is None:
            return False
        clean = self._same_names() and not self.watch.changed()
        self.watch.close()
        if not clean:
            return False
        partial = self.path.with_suffix(".partial")
        with open(partial, "wb") as handle:
            handle.write(self._payload)
        os.replace(partial, self.path)  # whole or not at all
        return True

    def _same_names(self) -> bool:
        try:
            return _identity(self.request.absolute()) == self._names
        except OSError:
            return False

    def retract(self) -> None:
        """The start cell is over: a manifest it did not take (it failed first) is no one's
        now; code of the notebook may have run since."""
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    def close(self) -> None:
        """Remove what is left (the manifest if the kernel did not take it), stop the watch.
        A hashing not done yet (the kernel failed first) ends on its own: nothing waits."""
        with self._lock:
            self._closed = True
            if self.watch is not None:
                self.watch.close()
        shutil.rmtree(self.folder, ignore_errors=True)


_JOBS = None
"""Processes that hash ahead: as many as the hashing takes by default (over 100k cached
files a second process ``stat``s half of them: measured faster than this one alone, even as
the kernel starts beside them)."""


def _identity(paths: list[str]) -> list[tuple[str, int, int]]:
    """Each path's real path, device and inode."""
    found = []
    for path in paths:
        st = os.stat(path)
        found.append((os.path.realpath(path), st.st_dev, st.st_ino))
    return found


def _known(request: DataRequest) -> bool:
    """Whether the hash cache knows every folder asked for: a tree hashed before, whose
    re-check is a ``stat`` per file. A first hash of a large tree is left to the kernel, with
    every core, when it asks (it could take minutes: the start cell would wait for it)."""
    from reprokit.capturing.hashcache import default_cache

    cache = default_cache()
    for path in request.absolute():
        absolute = os.path.abspath(path)
        if os.path.isdir(absolute) and not cache.knows_tree(
            request.algorithm, os.fsencode(absolute)
        ):
            return False
    return True


def _encoded(manifest: DataManifest) -> list[Any]:
    from reprokit.capturing.hashing import entry_lists

    rows = []
    for entry in manifest.entries:
        lists = entry_lists(entry) if entry.kind == "dir" else None
        fields = [entry.path, entry.kind, entry.size, entry.algorithm, entry.digest]
        rows.append([*fields, list(entry.skipped), None if lists is None else list(lists)])
    return rows


def take_prehashed(
    paths: list[str | os.PathLike[str]], algorithm: str, relative_to: Path
) -> DataManifest | None:
    """The kernel's side: the manifest the runner made for exactly this request, or None
    (none made, already taken, not valid, or for another request). Read once."""
    where = os.environ.get(PREHASHED_ENV)
    if not where or not all(isinstance(p, str) for p in paths):
        return None
    os.environ.pop(PREHASHED_ENV, None)  # once: a second %repro start hashes itself
    raw = _read_once(where)
    if raw is None:
        return None
    asked = DataRequest(tuple(map(str, paths)), os.getcwd(), str(relative_to), algorithm)
    try:
        version, request, rows = marshal.loads(raw)
        if version != _FORMAT or request != asked.as_list():
            return None
        made = DataManifest(entries=tuple(_decoded(row) for row in rows))
    except (ValueError, TypeError, EOFError):  # not what the runner writes: left alone
        return None
    with contextlib.suppress(OSError):
        os.unlink(where)  # the runner's, for this very request: read once
    return made


def _read_once(where: str) -> bytes | None:
    """The file's bytes; None unless it is a regular file of this user."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(where, flags)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        mine = not hasattr(os, "getuid") or st.st_uid == os.getuid()
        if not stat.S_ISREG(st.st_mode) or not mine or st.st_size > _MAX_BYTES:
            return None
        with os.fdopen(os.dup(fd), "rb") as handle:
            return handle.read(_MAX_BYTES + 1)
    finally:
        os.close(fd)


def _decoded(row: Any) -> Any:
    from reprokit.capturing.hashing import folder_entry
    from reprokit.capturing.model import DataEntry

    path, kind, size, algorithm, digest, skipped, lists = row
    texts = (path, algorithm, digest, *skipped)
    if not all(isinstance(t, str) for t in texts) or type(size) is not int:
        raise ValueError("bad entry")
    if kind == "file" and lists is None:
        return DataEntry(path=path, kind=kind, size=size, algorithm=algorithm, digest=digest)
    if kind != "dir" or not isinstance(lists, list) or len(lists) != 3:
        raise ValueError("bad entry")
    names, sizes, digests = lists
    _check_lists(names, sizes, digests)
    known = {"size": size, "algorithm": algorithm, "digest": digest, "skipped": tuple(skipped)}
    return folder_entry(path, (names, sizes, digests), **known)


def _check_lists(names: Any, sizes: Any, digests: Any) -> None:
    lists = (names, sizes, digests)
    if not all(isinstance(x, list) for x in lists) or not len(names) == len(sizes) == len(digests):
        raise ValueError("bad file lists")
    if not all(type(s) is int for s in sizes) or not all(isinstance(t, str) for t in names):
        raise ValueError("bad file lists")
    if not all(isinstance(d, str) for d in digests):
        raise ValueError("bad file lists")


_IN_CHANGES = 0x2 | 0x4 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800
"""IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE, IN_MOVED_FROM/TO, IN_CREATE, IN_DELETE,
IN_DELETE_SELF, IN_MOVE_SELF (an overflow of the queue is reported whatever the mask)."""


class FolderWatch:
    """Linux ``inotify`` watches on the folders of a tree (and on files named directly, with
    their folder), each set before the folder is read: whatever changes under them from then
    on is reported by :meth:`changed`."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd

    @classmethod
    def over(cls, paths: list[str]) -> FolderWatch | None:
        """A watch over ``paths`` (files or folders); None where inotify is missing, a
        symbolic link is met (its target would go unwatched) or a watch cannot be added."""
        libc = _libc()
        if libc is None:
            return None
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            return None
        watch = cls(fd)
        try:
            for path in paths:
                if not watch._cover(libc, os.fsencode(path)):
                    watch.close()
                    return None
        except OSError:
            watch.close()
            return None
        return watch

    def _cover(self, libc: Any, path: bytes) -> bool:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            return False
        if not stat.S_ISDIR(st.st_mode):  # the file, and its folder (renamed over, removed)
            return self._add(libc, path) and self._add(libc, os.path.dirname(path) or b".")
        pending = [path]
        while pending:
            folder = pending.pop()
            if not self._add(libc, folder):  # before it is read: nothing added goes unseen
                return False
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_symlink():
                        return False
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(os.path.join(folder, entry.name))
        return True

    def _add(self, libc: Any, path: bytes) -> bool:
        assert self.fd is not None
        return bool(libc.inotify_add_watch(self.fd, path, _IN_CHANGES) >= 0)

    def changed(self) -> bool:
        """Whether anything was reported since the watch began (closed: True)."""
        if self.fd is None:
            return True
        try:
            return bool(os.read(self.fd, 1 << 16))
        except BlockingIOError:
            return False
        except OSError:
            return True

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)


def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # here: a kernel taking a manifest needs no watch

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    except (OSError, AttributeError):
        return None
    return libc
