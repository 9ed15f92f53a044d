"""The loop that hashes a list of files in one process, and a spawned worker's entry point.

:mod:`reprokit.capturing._pool` runs :func:`hash_share` in this process and in its
workers.  A spawned worker runs this file as a script (``python .../_hashworker.py``): it
then imports only the standard library, ``blake3`` and :mod:`_filehash` as a sibling,
never the ``reprokit`` package, so it starts in ~40 ms instead of ~110 ms through
``python -m`` and the package's imports.

Per file: ``open``, ``fstat``, one ``read``, a digest, ``close`` and (for the cache) the
packed ``stat`` fingerprint; about 9 µs for 1 KiB, two thirds of it in the kernel.
"""

from __future__ import annotations

import array
import binascii
import contextlib
import marshal
import os
import stat
import struct
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, BinaryIO, cast, overload

if __package__:
    from reprokit.capturing._filehash import (
        HEX_LENGTH,
        SMALL_FILE,
        digest_large,
        new_hasher,
        open_file,
        oserror_reason,
    )
else:  # run as a script: this folder is sys.path[0] (unless -P / PYTHONSAFEPATH)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _filehash import (  # type: ignore[no-redef,import-not-found]
        HEX_LENGTH,
        SMALL_FILE,
        digest_large,
        new_hasher,
        open_file,
        oserror_reason,
    )

STAT_KEY = struct.Struct("<QQqqq")
"""dev, ino, size, mtime_ns, ctime_ns: what a file's ``stat`` must still show to be served
from the hash cache."""

Share = tuple[
    Sequence[bytes | None],  # raw digests (None: an error, or deferred)
    list[int],  # sizes
    Sequence[bytes | None],  # STAT_KEY of each file hashed (when asked for)
    list[tuple[int, str]],  # errors: (index, reason)
    list[int],  # deferred: indices of files of ``defer_from`` bytes or more
    int,  # hashed_at_ns: taken before the first byte was read (the racy rule)
    list[bytes] | None,  # Merkle lines of each block of files (when asked for and whole)
]
"""What hashing a list of files gives, aligned with it. The digests and fingerprints are
lists while they are made here, :class:`Joined` when a worker's block came back whole."""

Made = tuple[
    list[bytes | None],
    list[int],
    list[bytes | None],
    list[tuple[int, str]],
    list[int],
    int,
    list[bytes] | None,
]
"""A :data:`Share` being made in this process (its lists grow)."""

Packed = tuple[bytes, bytes, bytes, list[tuple[int, str]], list[int], int, list[bytes] | None]
"""A block's :data:`Share` as a worker sends it back: the raw digests, the sizes (int64) and
the ``stat`` fingerprints each joined into one ``bytes`` (zeros for a file that has none), so
that :mod:`marshal` writes and reads three objects per block rather than three per file
(100,000 files: 0.04 s less at the end of a first hash, when the caller waits for them)."""


def small_digester(algorithm: str) -> Callable[[bytes], bytes]:
    """Raw digest of bytes in memory; BLAKE3 reuses one hasher (a third less per file)."""
    if algorithm == "blake3":
        import blake3

        hasher = blake3.blake3()
        update, digest, reset = hasher.update, hasher.digest, hasher.reset

        def one(data: bytes) -> bytes:
            update(data)
            raw: bytes = digest()
            reset()
            return raw

        return one
    import hashlib

    constructor = getattr(hashlib, algorithm)
    return lambda data: constructor(data).digest()


def hash_share(
    prefix: bytes,
    rels: Sequence[bytes],
    algorithm: str,
    keys: bool,
    defer_from: int | None,
    threads: bool,
    block: int = 0,
) -> Share:
    """Hash ``prefix + rel`` for each rel; ``keys``: also their cache fingerprints; ``block``
    (not 0): also the :func:`merkle_lines` of every ``block`` files, made in parallel here.
    A Ctrl-C lands between two runs of :data:`HELD_FILES` small files, or while a large one
    is hashed, never between a file's opening and the code that closes it (its descriptor
    would be lost)."""
    share: Made = ([], [], [], [], [], time.time_ns(), None)  # the time before any read
    small = small_digester(algorithm)
    how = (algorithm, keys, defer_from, threads)
    at = 0
    while at < len(rels):
        stop = min(at + HELD_FILES, len(rels))
        with interrupts_deferred():
            at = _hash_run(prefix, rels, range(at, stop), how, small, share)
        if at < stop:  # a large file: hashed with interrupts let through
            _hash_large(prefix + rels[at], at, how, share)
            at += 1
    return (*share[:6], _blocks_of_lines(rels, share, block))


HELD_FILES = 256
"""Small files hashed with ``SIGINT`` held back (a few ms)."""


def _hash_large(
    path: bytes, index: int, how: tuple[str, bool, int | None, bool], share: Made
) -> None:
    """Hash one file of :data:`SMALL_FILE` bytes or more (by :func:`_digest_rest`), appending
    its outcome to ``share``; opened with interrupts held back until it is sure to be closed."""
    algorithm, keys, _, threads = how
    raw, size, st, fd = None, 0, None, None
    try:
        try:
            with interrupts_deferred():
                fd = open_file(path)
            st = os.fstat(fd)
            size = st.st_size
            if stat.S_ISREG(st.st_mode):
                raw = bytes.fromhex(_digest_rest(fd, size, algorithm, threads))
            else:
                share[3].append((index, "not a regular file"))
        finally:
            if fd is not None:
                os.close(fd)
    except OSError as exc:
        share[3].append((index, oserror_reason(exc)))
    share[0].append(raw)
    share[1].append(size)
    if keys:
        fields = (st.st_dev, st.st_ino, size, st.st_mtime_ns, st.st_ctime_ns) if st else ()
        share[2].append(STAT_KEY.pack(*fields) if raw is not None else None)


def _hash_run(
    prefix: bytes,
    rels: Sequence[bytes],
    run: range,
    how: tuple[str, bool, int | None, bool],
    small: Callable[[bytes], bytes],
    share: Made,
) -> int:
    """Hash the files ``rels[run]``, appending their outcome to ``share``, up to the first one
    of :data:`SMALL_FILE` bytes or more to hash here: where it stopped (``run.stop``: all)."""
    algorithm, keys, defer_from, threads = how
    raws, sizes, packed, errors, deferred, _, _ = share
    fstat, read, close, is_reg, pack = os.fstat, os.read, os.close, stat.S_ISREG, STAT_KEY.pack
    for index in run:
        raw: bytes | None = None
        size = 0
        try:
            fd = open_file(prefix + rels[index])
            try:
                st = fstat(fd)
                size = st.st_size
                if (
                    size < SMALL_FILE
                    and is_reg(st.st_mode)
                    and len(data := read(fd, size + 1)) <= size
                ):
                    raw = small(data)
                elif not is_reg(st.st_mode):
                    errors.append((index, "not a regular file"))
                elif defer_from is not None and size >= defer_from:
                    deferred.append(index)
                elif size >= SMALL_FILE:
                    return index  # closed, nothing appended: :func:`_hash_large`'s
                else:  # a small file that grew since fstat
                    raw = bytes.fromhex(_digest_rest(fd, size, algorithm, threads))
            finally:
                close(fd)
        except OSError as exc:
            errors.append((index, oserror_reason(exc)))
        raws.append(raw)
        sizes.append(size)
        if keys:
            key = (
                None
                if raw is None
                else pack(st.st_dev, st.st_ino, size, st.st_mtime_ns, st.st_ctime_ns)
            )
            packed.append(key)
    return run.stop


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """``SIGINT`` held back for the time of the ``with`` and delivered at its end (so that,
    e.g., a worker started or a file opened in it is recorded, then stopped or closed,
    instead of being lost). Only in the main thread, where Python runs its signal handlers
    (no other thread is interrupted), and only where a Python handler is set."""
    import signal
    import threading

    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return
    held: list[tuple[int, Any]] = []
    signal.signal(signal.SIGINT, lambda signum, frame: held.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            previous(*held[0])


def _blocks_of_lines(rels: Sequence[bytes], share: Share, block: int) -> list[bytes] | None:
    """The :func:`merkle_lines` of every ``block`` files hashed; None unless each was."""
    raws, sizes, _, errors, deferred, _, _ = share
    if not block or errors or deferred:
        return None
    digests = cast(list[bytes], raws)  # no error, none deferred: every digest is there
    cuts = range(0, len(rels), block)
    return [
        merkle_lines(rels[a : a + block], sizes[a : a + block], digests[a : a + block])
        for a in cuts
    ]


def merkle_lines(rels: Sequence[bytes], sizes: Sequence[int], raws: Sequence[bytes]) -> bytes:
    """``<rel> NUL <size> NUL <hex digest> LF`` of each file: the part of a folder digest's
    input (see :mod:`reprokit.capturing.hashing`) these files make, where the file names'
    bytes are the relative paths' (a file system encoding of UTF-8 with surrogateescape)."""
    hexlify, files = binascii.hexlify, zip(rels, sizes, raws, strict=True)
    return b"".join([b"%b\0%d\0%b\n" % (r, s, hexlify(d)) for r, s, d in files])


def _digest_rest(fd: int, size: int, algorithm: str, threads: bool) -> str:
    """A large file, or a small one that grew since fstat: hash from the start."""
    if size >= SMALL_FILE:
        return digest_large(fd, size, algorithm, threads=threads)
    hasher = new_hasher(algorithm)
    offset = 0
    while data := os.pread(fd, 1 << 20, offset):
        hasher.update(data)
        offset += len(data)
    return hasher.hexdigest()


def folder_stamps(folder: bytes, names: Sequence[bytes]) -> bytes | None:
    """The :data:`STAT_KEY` of each of ``names`` (files of ``folder``, a path ending in
    ``/``), joined; None if one cannot be stat'ed. One comprehension: at ~3 µs a ``stat``,
    every Python step per file shows."""
    stat, pack = os.stat, STAT_KEY.pack
    dir_fd = None
    try:
        with interrupts_deferred():  # a Ctrl-C lands once it is sure to be closed
            dir_fd = open_folder(folder)
        if dir_fd is None:  # no descriptor (or no dir_fd here): the whole paths
            names = [folder + name for name in names]
        return b"".join(
            [
                pack(
                    (s := stat(name, dir_fd=dir_fd)).st_dev,
                    s.st_ino,
                    s.st_size,
                    s.st_mtime_ns,
                    s.st_ctime_ns,
                )
                for name in names  # relative to the folder's descriptor: a shorter lookup
            ]
        )
    except OSError:
        return None
    finally:
        if dir_fd is not None:
            os.close(dir_fd)


def stamp_share(prefix: bytes, folders: Sequence[tuple[bytes, Sequence[bytes]]]) -> list[Any]:
    """:func:`folder_stamps` of each ``(rel, names)`` under ``prefix``."""
    return [folder_stamps(prefix + rel + (b"/" if rel else b""), names) for rel, names in folders]


def open_folder(path: bytes) -> int | None:
    """A descriptor of the folder ``path`` to ``stat`` its files by name, or None (it cannot
    be opened, or this platform has no ``dir_fd``: whole paths then)."""
    if os.stat not in os.supports_dir_fd:
        return None
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags)
    except OSError:
        return None


try:
    import fcntl as fcntl  # re-exported: the caller locks the same feed
except ImportError:  # Windows: no shared counter, each process takes its own blocks
    fcntl = None  # type: ignore[assignment]


FEED_HEADER = struct.Struct("<QQQ")
"""The head of a feed file: the number of the next block to claim, how many blocks the file
holds so far, and 1 once it holds them all. Each block follows as a 4-byte little-endian
length and the :mod:`marshal` form of its list of relative paths."""
RECORD = struct.Struct("<I")


class Claims:
    """The blocks one of ``n`` processes (the k-th) hashes: taken one at a time from the
    counter in the ``feed`` file (its descriptor) that they all share (under ``lockf``, whose
    locks belong to a process, not to a descriptor a fork shares), so that a process that
    gets more of the machine takes more blocks and they all finish within a block of each
    other. Blocks may still be added to the feed (the folder is being walked): a process
    that finds none to claim waits for more until the feed says it holds them all. Without
    a feed file (or ``fcntl``), ``known`` is every block and this process takes k, k+n, ...

    ``known``: the blocks this process has already (in memory); ``offset``: where the next
    one starts in the feed."""

    def __init__(
        self, feed: int | None, known: list[list[bytes]], offset: int, k: int, n: int
    ) -> None:
        self.blocks: list[list[bytes] | tuple[int, int]] = list(known)  # or (offset, length)
        self.offset, self.k, self.n, self.taken = offset, k, n, 0
        self.fd = None
        if feed is not None and fcntl is not None:
            with contextlib.suppress(OSError):  # not there: nothing claimed, the caller hashes
                self.fd = os.dup(feed)
            self.blocks = self.blocks if self.fd is not None else []
        self.parent = os.getppid()

    def next(self) -> tuple[int, list[bytes]] | None:
        """A block claimed (its number and files), or None: no more for this process."""
        if self.fd is None:
            number, self.taken = self.k + self.taken * self.n, self.taken + 1
            return (
                (number, cast(list[bytes], self.blocks[number]))
                if number < len(self.blocks)
                else None
            )
        wait = 0.0005
        try:
            while (claimed := self._claim()) == -1:
                if os.getppid() != self.parent:  # the caller is gone: nobody adds more
                    return None
                time.sleep(wait)
                wait = min(2 * wait, 0.01)
            return None if claimed is None else (claimed, self._block(claimed))
        except (OSError, EOFError, ValueError, TypeError, struct.error):
            return None  # no locks there (ENOLCK), a feed cut short: claim no more (what
            # none claimed is hashed by the caller)

    def _claim(self) -> int | None:
        """The next block's number (claimed), -1: none yet, None: none left."""
        assert self.fd is not None
        fcntl.lockf(self.fd, fcntl.LOCK_EX)  # owned by the process: forks take turns too
        try:
            head = os.pread(self.fd, FEED_HEADER.size, 0)
            number, published, complete = cast(tuple[int, int, int], FEED_HEADER.unpack(head))
            if number < published:
                os.pwrite(self.fd, (number + 1).to_bytes(8, "little"), 0)
                return number
            return None if complete else -1
        finally:
            with contextlib.suppress(OSError):
                fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def _block(self, number: int) -> list[bytes]:
        """Block ``number``'s files: known, or read from the feed (the blocks before it that
        are not known yet are skipped over, not read: other processes hash them)."""
        assert self.fd is not None
        while len(self.blocks) <= number:
            (length,) = RECORD.unpack(os.pread(self.fd, RECORD.size, self.offset))
            self.blocks.append((self.offset + RECORD.size, length))
            self.offset += RECORD.size + length
        block = self.blocks[number]
        if isinstance(block, tuple):  # where it is in the feed
            data = os.pread(self.fd, block[1], block[0])
            if len(data) != block[1]:
                raise EOFError("a block cut short")
            block = self.blocks[number] = marshal.loads(data)
        return cast(list[bytes], block)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)


Blocks = list[tuple[int, Share]]  # (block number, what hashing it gave)


class Joined(Sequence[bytes]):
    """Records of ``width`` bytes joined in one ``bytes`` (``data``), read as a sequence of
    them: a worker's digests or fingerprints of a block as they come, so that a caller that
    needs them joined again (the hash cache, a folder's hex digests) never splits them into
    one object per file (100,000 files: 0.04 s in the caller)."""

    __slots__ = ("data", "width")

    def __init__(self, data: bytes, width: int) -> None:
        self.data, self.width = data, width

    def __len__(self) -> int:
        return len(self.data) // self.width

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[bytes]: ...

    def __getitem__(self, index: int | slice) -> bytes | Sequence[bytes]:
        width = self.width
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step == 1:
                return Joined(self.data[start * width : max(start, stop) * width], width)
            return [self[j] for j in range(start, stop, step)]
        at = index + len(self) if index < 0 else index
        if not 0 <= at < len(self):
            raise IndexError("record index out of range")
        return self.data[at * width : (at + 1) * width]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Joined):
            return (self.data, self.width) == (other.data, other.width)
        if isinstance(other, (list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Joined({len(self)} records of {self.width} bytes)"


def joined(records: Sequence[bytes | None]) -> bytes:
    """``records`` (none of them None) as one ``bytes``."""
    if isinstance(records, Joined):
        return records.data
    return b"".join(cast(Sequence[bytes], records))


def count_known(records: Sequence[bytes | None]) -> int:
    """How many of ``records`` are not None (a :class:`Joined` has no None)."""
    return len(records) if isinstance(records, Joined) else len(records) - list(records).count(None)


def pack_share(share: Share, algorithm: str) -> Packed:
    """``share`` as :data:`Packed`; :func:`unpack_share` turns it back."""
    raws, sizes, keys, errors, deferred, hashed_at_ns, lines = share
    if errors or deferred:  # some files have no digest (nor fingerprint)
        blank, no_key = bytes(HEX_LENGTH[algorithm] // 2), bytes(STAT_KEY.size)
        raws = [blank if raw is None else raw for raw in raws]
        keys = [no_key if key is None else key for key in keys]
    joined = b"".join(cast(list[bytes], raws)), b"".join(cast(list[bytes], keys))
    packed_sizes = array.array("q", sizes).tobytes()
    return joined[0], packed_sizes, joined[1], errors, deferred, hashed_at_ns, lines


def unpack_share(packed: Any, files: int, algorithm: str) -> Share | None:
    """The :data:`Share` of a block of ``files`` files from its :data:`Packed` form; None
    where it does not fit them (a worker's reply is checked, not trusted)."""
    width, key = HEX_LENGTH[algorithm] // 2, STAT_KEY.size
    if not _packed_fits(packed, files, width, key):
        return None
    digests, packed_sizes, keys, errors, deferred, hashed_at_ns, lines = packed
    sizes = array.array("q", packed_sizes).tolist()
    if not (errors or deferred):  # every file hashed: the records stay joined
        stamped = Joined(keys, key) if keys else Joined(b"", key)
        return Joined(digests, width), sizes, stamped, [], [], hashed_at_ns, lines
    raws: list[bytes | None] = [digests[at : at + width] for at in range(0, len(digests), width)]
    stamps: list[bytes | None] = [keys[at : at + key] for at in range(0, len(keys), key)]
    for j in [*(j for j, _ in errors), *deferred]:
        raws[j] = None
        if stamps:
            stamps[j] = None
    return raws, sizes, stamps, errors, deferred, hashed_at_ns, lines


def _packed_fits(packed: Any, files: int, width: int, key: int) -> bool:
    """Whether ``packed`` is a :data:`Packed` of ``files`` files, every position in range."""
    if not (isinstance(packed, tuple) and len(packed) == 7):
        return False
    joined, sizes, keys, errors, deferred, hashed_at_ns, lines = packed
    if not all(isinstance(x, bytes) for x in (joined, sizes, keys)):
        return False
    if len(joined) != files * width or len(sizes) != files * 8 or len(keys) not in (0, files * key):
        return False
    if not (isinstance(errors, list) and isinstance(deferred, list)):
        return False
    pairs = all(isinstance(e, tuple) and len(e) == 2 and isinstance(e[1], str) for e in errors)
    positions = [e[0] for e in errors] + deferred if pairs else [None]
    if not all(isinstance(j, int) and 0 <= j < files for j in positions):
        return False
    whole = lines is None or (isinstance(lines, list) and len(lines) == 1)
    return (
        isinstance(hashed_at_ns, int) and whole and all(isinstance(x, bytes) for x in lines or ())
    )


def hash_blocks(
    job: tuple[Any, ...],
    threads: bool = False,
    emit: Callable[[int, Share], None] | None = None,
) -> Blocks:
    """``("blocks", (prefix, algorithm, keys, defer_from, lines), feed, k, n, known, offset)``:
    hash the blocks of files (lists of rels) this process claims (:class:`Claims`), each with
    its :func:`merkle_lines` when ``lines``; each one is given to ``emit`` as soon as it is
    hashed if given (and not kept), else they are returned."""
    (prefix, algorithm, keys, defer_from, lines), feed, k, n, known, offset = job[1:]
    claims, done = Claims(feed, known, offset, k, n), []
    try:
        while (claimed := claims.next()) is not None:
            number, rels = claimed
            block = len(rels) if lines else 0
            share = hash_share(prefix, rels, algorithm, keys, defer_from, threads, block)
            if emit is None:
                done.append((number, share))
            else:
                emit(number, share)
    finally:
        claims.close()
    return done


def send(out: BinaryIO, value: Any) -> None:
    """Write ``value`` to ``out`` as a record: its :mod:`marshal` form's length
    (:data:`RECORD`), then that form."""
    data = marshal.dumps(value)
    out.write(RECORD.pack(len(data)) + data)
    out.flush()


def run_job(job: tuple[Any, ...], out: BinaryIO) -> None:
    """One worker's job, its results :func:`sent <send>` to ``out``: ``("blocks", ...)``, a
    record ``(number, packed share)`` per block as soon as it is hashed (:func:`hash_blocks`,
    :func:`pack_share`), so that the caller reads them while the hashing goes on;
    ``("stat", prefix, [(rel, names), ...])``, one record: the folders' stamps."""
    if job[0] == "stat":
        send(out, stamp_share(job[1], job[2]))
        return
    algorithm = job[1][1]
    hash_blocks(job, emit=lambda number, share: send(out, (number, pack_share(share, algorithm))))


def serve() -> None:
    """A spawned worker: a job (:func:`run_job`) on stdin, its results on stdout, in
    :mod:`marshal` form (the same interpreter writes and reads them; ``pickle`` would cost a
    third of the start-up to import). One thread: the workers already fill the cores."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the caller, which stops us
    try:
        run_job(marshal.loads(sys.stdin.buffer.read()), sys.stdout.buffer)
    except OSError:  # e.g. its replies' file is on a full disk: the caller hashes the rest
        os._exit(WRITE_FAILED)
    os._exit(0)  # every reply written (each is flushed): the caller waits for this exit to
    # read them, not for the interpreter's clean-up


WRITE_FAILED = 3
"""A spawned worker's exit status when its job or replies could not be read or written: a
fault of where they go, not of the interpreter (which is tried again next time)."""


if __name__ == "__main__":
    serve()
