"""Low-level file hashing: an open file descriptor in, a hex digest out.

Kept free of heavy imports: ``hashlib`` is imported only for sha256/md5, ``mmap`` and
``threading`` only for large files, so ``reprokit hash FILE`` starts fast.

Reading strategy (measured in ``benchmarks/bench_hash.py``):

- small files (< ``SMALL_FILE``): one ``read(size + 1)``, the extra byte telling EOF
  apart from a file that grew since ``fstat`` without a second system call;
- large files, BLAKE3: ``mmap`` + one ``update`` with BLAKE3's own thread pool
  (``max_threads=AUTO``), as fast as ``b3sum`` (which also maps the file);
- large files, sha256/md5: 4 MiB ``preadv`` reads on a helper thread overlapped with
  hashing on the caller's thread (``hashlib`` releases the GIL), which approaches
  ``hashlib`` over bytes already in memory.

Known limit shared with ``b3sum``: a file truncated by another process *while* it is
mapped raises SIGBUS; files that are written to while hashed are not supported.
"""

from __future__ import annotations

import errno
import os
from typing import Any, Protocol

SUPPORTED_ALGORITHMS: tuple[str, ...] = ("blake3", "sha256", "md5")
HEX_LENGTH: dict[str, int] = {"blake3": 64, "sha256": 64, "md5": 32}

SMALL_FILE = 1 << 20  # read in one go below this size
_CHUNK = 4 << 20  # read size for large files hashed with hashlib

_BASE_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
# O_NONBLOCK: a file swapped for a FIFO between the directory walk and open() must not
# block us; it has no effect on regular files.  O_NOATIME saves an inode write where the
# kernel allows it (owner or CAP_FOWNER); elsewhere open() fails with EPERM and we retry.
_NOATIME = getattr(os, "O_NOATIME", 0)
_open_flags = _BASE_FLAGS | _NOATIME


_REASONS = {
    errno.ENOENT: "no such file or directory",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ELOOP: "symbolic link loop",
    errno.ENOTDIR: "not a directory",
    errno.EISDIR: "is a directory",
}


def oserror_reason(exc: OSError) -> str:
    """A short lower-case reason for an OSError, stable across platforms where we can."""
    if exc.errno in _REASONS:
        return _REASONS[exc.errno]
    return (exc.strerror or type(exc).__name__).lower()


class Hasher(Protocol):
    def update(self, data: Any, /) -> object: ...

    def hexdigest(self) -> str: ...


def new_hasher(algorithm: str, *, threads: bool = False) -> Hasher:
    """A fresh hasher; ``threads`` lets BLAKE3 use all cores (worth it above ~1 MiB)."""
    if algorithm == "blake3":
        import blake3

        if threads:
            return blake3.blake3(max_threads=blake3.blake3.AUTO)
        return blake3.blake3()
    import hashlib

    return hashlib.new(algorithm)


def open_file(path: bytes | str) -> int:
    """``os.open`` for reading with the flags above; OSError propagates."""
    global _open_flags  # one process-wide downgrade after the first EPERM
    try:
        return os.open(path, _open_flags)
    except PermissionError:
        if not _open_flags & _NOATIME:
            raise
        _open_flags = _BASE_FLAGS
        return os.open(path, _open_flags)


def digest_small(fd: int, size: int, algorithm: str) -> str:
    """Digest of a small file: one read; a file that grew since fstat is read to its end."""
    data = os.read(fd, size + 1)
    if len(data) <= size:
        if algorithm == "blake3":
            import blake3

            return blake3.blake3(data).hexdigest()
        hasher = new_hasher(algorithm)
        hasher.update(data)
        return hasher.hexdigest()
    hasher = new_hasher(algorithm)
    hasher.update(data)
    _update_from_reads(fd, hasher)
    return hasher.hexdigest()


def _update_from_reads(fd: int, hasher: Hasher) -> None:
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    while n := os.readv(fd, [buf]):
        hasher.update(view[:n])


def digest_large(fd: int, size: int, algorithm: str, *, threads: bool) -> str:
    """Digest of a large file; ``threads`` allows helper threads (BLAKE3 pool or a reader)."""
    if algorithm == "blake3":
        return _blake3_mmap(fd, size, threads=threads)
    hasher = new_hasher(algorithm)
    if threads:
        _update_pipelined(fd, hasher)
    else:
        _update_from_reads(fd, hasher)
    return hasher.hexdigest()


def _blake3_mmap(fd: int, size: int, *, threads: bool) -> str:
    import mmap

    hasher = new_hasher("blake3", threads=threads)
    with mmap.mmap(fd, size, prot=mmap.PROT_READ) as mapped:
        hasher.update(mapped)
    _update_from_reads_at(fd, hasher, size)  # bytes appended since fstat, if any
    return hasher.hexdigest()


def _update_from_reads_at(fd: int, hasher: Hasher, offset: int) -> None:
    while data := os.pread(fd, _CHUNK, offset):
        hasher.update(data)
        offset += len(data)


def _update_pipelined(fd: int, hasher: Hasher) -> None:
    """Read ahead on one helper thread while this thread hashes (both drop the GIL)."""
    import queue
    import threading

    free: queue.SimpleQueue[bytearray | None] = queue.SimpleQueue()
    full: queue.SimpleQueue[tuple[bytearray, int] | OSError] = queue.SimpleQueue()
    for _ in range(3):
        free.put(bytearray(_CHUNK))

    def read_ahead() -> None:
        offset = 0
        while (buf := free.get()) is not None:
            try:
                got = os.preadv(fd, [buf], offset)
            except OSError as exc:
                full.put(exc)
                return
            full.put((buf, got))
            if got == 0:
                return
            offset += got

    reader = threading.Thread(target=read_ahead, name="reprokit-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            item = full.get()
            if isinstance(item, OSError):
                raise item
            buf, got = item
            if got == 0:
                return
            hasher.update(memoryview(buf)[:got])
            free.put(buf)
    finally:
        free.put(None)  # wakes the reader if it waits for a buffer
        reader.join()


def digest_fd(fd: int, size: int, algorithm: str, *, threads: bool = True) -> str:
    """Digest of the regular file open on ``fd`` whose ``fstat`` size is ``size``."""
    if size < SMALL_FILE:
        return digest_small(fd, size, algorithm)
    return digest_large(fd, size, algorithm, threads=threads)
