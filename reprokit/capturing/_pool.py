"""Hashing many files of one folder: in this process, or spread over worker processes.

Python spends ~10 µs per small file (open, fstat, read, hash, close) and threads make it
worse (the GIL), so above ``PARALLEL_MIN_FILES`` files the work is split over one worker
process per core, this one included.  The files are cut into blocks of consecutive files
that the processes claim one at a time from the counter of a shared :class:`Feed` file
(:class:`~reprokit.capturing._hashworker.Claims`): one that gets more of the machine, or
started earlier, takes more, so they finish within a block of each other whatever the
files' sizes.  On a first hash the workers start while the folder is still being walked
(:class:`Ahead`) and hash each block of ``STREAM_BLOCK`` files as soon as the walk has met
it, through the feed; otherwise the blocks are made once the files to hash are known
(:func:`block_size`).  Workers write each block's outcome as soon as it is hashed to a
temporary file of their own, read once they are done (:class:`_Replies`): raw digests,
sizes and ``stat`` fingerprints, each joined in one ``bytes`` and kept so
(:class:`~reprokit.capturing._hashworker.Joined`) up to the cache, which stores them joined
per folder, and for a whole folder the folder digest's input lines (made in parallel rather
than by the caller once all are done); the caller writes the cache (one transaction).  Files of
``DEFER_FROM`` bytes or more are handed back unhashed and hashed here afterwards with
BLAKE3's own thread pool.  The ``stat`` calls that check a cached tree of
``STAT_PARALLEL_MIN_FILES`` files or more are shared the same way, by folder
(:func:`stamp_folders`); where workers are spawned, they start during the walk
(:class:`Stampers`).

How workers start (measured in ``benchmarks/bench_hash.py``):

- ``fork`` (``os.fork`` and a pipe, no ``multiprocessing``) when this process has a single
  OS thread, e.g. the command line: it costs about a millisecond per worker.
- otherwise (Jupyter kernels run threads; a fork after BLAKE3's or a BLAS thread pool
  started can deadlock the child) a fresh interpreter per worker running
  ``_hashworker.py`` as a script, its job sent through stdin (:mod:`marshal`, from a
  helper thread) and its blocks read from the feed.  Unlike
  ``multiprocessing``'s spawn and forkserver it never re-imports the user's ``__main__``,
  so a script without ``if __name__ == "__main__"`` is not run again.  It costs ~40 ms,
  hence the higher threshold.

Any failure to start or run a worker falls back to hashing its share here.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import marshal
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TypeVar, cast

from reprokit._fsutil import usable_cores
from reprokit.capturing._filehash import HEX_LENGTH
from reprokit.capturing._hashworker import (
    FEED_HEADER,
    RECORD,
    STAT_KEY,
    WRITE_FAILED,
    Joined,
    Share,
    fcntl,
    hash_blocks,
    hash_share,
    interrupts_deferred,
    joined,
    run_job,
    stamp_share,
    unpack_share,
)

PARALLEL_MIN_FILES = {"fork": 2_000, "spawn": 8_000}
STAT_PARALLEL_MIN_FILES = 20_000
"""Below this many files, a cached tree's ``stat`` calls stay in this process: a worker's
start and the exchange cost more than half the calls save (threads do not help: each call is
too short to release the GIL for long, and they fight over it)."""
DEFER_FROM = 64 << 20
STREAM_BLOCK = 512
"""Files per block while the folder is still being walked (how many it has is not known)."""

_spawn_broken = False  # set once a spawned worker failed: do not try again


@dataclass
class Batch:
    """Per-file outcome, aligned with the ``rels`` hashed."""

    raw: Sequence[bytes | None]  # raw digests (None: an error, or deferred)
    sizes: list[int]
    keys: Sequence[bytes | None] = field(default_factory=list)  # hashcache.stat_key of each
    errors: list[tuple[int, str]] = field(default_factory=list)  # (index, reason)
    deferred: list[int] = field(default_factory=list)  # large files left to the caller
    workers: int = 0  # worker processes used (0: all hashed in this process)
    hashed_at_ns: int = 0  # taken before the first byte was read (the racy rule)
    lines: list[bytes] | None = None  # the folder digest's input, block by block (if asked)

    @classmethod
    def of(cls, share: Share) -> Batch:
        raw, sizes, keys, errors, deferred, hashed_at_ns, lines = share
        return cls(raw, sizes, keys, errors, deferred, hashed_at_ns=hashed_at_ns, lines=lines)

    def hexdigests(self) -> list[str | None]:
        """The digests in hex, made in one pass."""
        if isinstance(self.raw, Joined):  # one call for them all
            hexes = self.raw.data.hex(" ", self.raw.width).split(" ") if self.raw else []
            return cast(list[str | None], hexes)
        if None in self.raw:
            return [None if raw is None else raw.hex() for raw in self.raw]
        return list(map(bytes.hex, self.raw))  # type: ignore[arg-type]


def fd_room() -> int:
    """How many processes hashing at once (this one included) this process has file
    descriptors for: each worker takes 3 or 4 here, and each process one per file it has
    open. At least 1."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return 1 << 16
    if soft == resource.RLIM_INFINITY:
        return 1 << 16
    try:
        used = len(os.listdir("/proc/self/fd"))
    except OSError:
        used = 64
    return max(1, (soft - used - 16) // 4)


def hash_batch(
    prefix: bytes,
    rels: Sequence[bytes],
    algorithm: str,
    *,
    keys: bool = False,
    defer_from: int | None = None,
    threads: bool = True,
    block: int = 0,
) -> Batch:
    """Hash ``prefix + rel`` for each rel here; ``keys``: also their cache fingerprints;
    ``block``: also the folder digest's input lines of every ``block`` files."""
    return Batch.of(hash_share(prefix, rels, algorithm, keys, defer_from, threads, block))


def default_jobs() -> int:
    return usable_cores()


def start_method() -> str:
    """``fork`` when this process has exactly one OS thread, else ``spawn``."""
    if hasattr(os, "fork") and _thread_count() == 1:
        return "fork"
    return "spawn"


def _thread_count() -> int:
    """OS threads of this process (BLAKE3's and BLAS pools included); 0 when unknown."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Threads:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class Ahead:
    """Workers that hash a folder's files while the walk is still finding them: once the walk
    (:meth:`seen`) has met :data:`PARALLEL_MIN_FILES` files, one worker per core but one
    starts, and every :data:`STREAM_BLOCK` files met become a block they can claim from the
    :class:`Feed`. :meth:`finish` then adds the last block and hashes what is left with them;
    :meth:`close` stops them when the hashing turned out to need something else (it is not
    the whole folder walked: a cache served some of it)."""

    def __init__(self, jobs: int | None, task: Job) -> None:
        """``jobs``: as :func:`hash_files` takes it (None: one per core; 0: start none);
        ``task``: what :func:`task` gives for the hashing to come."""
        method = start_method()
        usable = jobs != 0 and fcntl is not None and not (method == "spawn" and _spawn_broken)
        self._wanted = (default_jobs() if jobs is None else max(1, jobs)) - 1 if usable else 0
        self._method, self._task = method, task
        self._crew: _Crew | None = None
        self._rels: list[bytes] | None = None  # the walk's list of files
        self._fed = 0  # how many of them are in blocks

    def __enter__(self) -> Ahead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def seen(self, rels: list[bytes]) -> None:
        """The walk has met the files ``rels`` so far (one list, growing)."""
        if self._crew is None:
            if self._wanted < 1 or len(rels) < PARALLEL_MIN_FILES[self._method]:
                return
            self._wanted = min(self._wanted, fd_room() - 1)
            if self._wanted < 1:
                return
            feed = Feed()
            self._crew, self._rels = _Crew(self._task, self._method, feed), rels
            self._add(rels, complete=False)
            if feed.fd is None:  # no file to feed them through: the workers start after
                self.close()
                self._crew, self._wanted = None, 0
                return
            self._crew.start(self._wanted)  # kept as each starts: an interruption kills all
            return
        self._add(rels, complete=False)

    def _add(self, rels: list[bytes], complete: bool) -> None:
        assert self._crew is not None
        stop = len(rels) if complete else len(rels) - len(rels) % STREAM_BLOCK
        blocks = [rels[at : at + STREAM_BLOCK] for at in range(self._fed, stop, STREAM_BLOCK)]
        self._fed = stop
        if blocks or complete:
            self._crew.feed.add(blocks, complete=complete)

    def finish(self, task: Job, rels: Sequence[bytes]) -> Batch | None:
        """``rels`` hashed, if they are the files walked and ``task`` what the workers were
        started for; else None, and the workers (if any) are stopped."""
        if self._crew is None or rels is not self._rels or task != self._task:
            self.close()
            return None
        self._add(self._rels, complete=True)
        return self._crew.collect()

    def close(self) -> None:
        if self._crew is not None:
            self._crew.close()


def task(
    prefix: bytes, algorithm: str, *, keys: bool = False, lines: bool = False
) -> tuple[bytes, str, bool, int, bool]:
    """What every process hashing blocks is told (see :func:`hash_files`)."""
    return (prefix, algorithm, keys, DEFER_FROM, lines)


def hash_files(
    prefix: bytes,
    rels: Sequence[bytes],
    algorithm: str,
    *,
    keys: bool = False,
    jobs: int | None = None,
    method: str | None = None,
    lines: bool = False,
    ahead: Ahead | None = None,
) -> Batch:
    """Hash many files under one folder, over worker processes when it pays; ``lines``: also
    the folder digest's input lines of these files (``Batch.lines``, None where a file could
    not be hashed or was left to this process); ``ahead``: workers that may have started on
    them during the walk."""
    told = task(prefix, algorithm, keys=keys, lines=lines)
    if ahead is not None and (streamed := ahead.finish(told, rels)) is not None:
        return streamed
    workers = min(default_jobs() if jobs is None else max(1, jobs), len(rels))
    method = method or start_method()
    if method == "spawn" and _spawn_broken:
        workers = 1
    if jobs is None and len(rels) < PARALLEL_MIN_FILES[method]:
        workers = 1
    if workers > 1:
        workers = min(workers, fd_room())
    if workers <= 1:
        return hash_batch(prefix, rels, algorithm, keys=keys, block=len(rels) if lines else 0)
    block = block_size(len(rels), workers)
    blocks = [list(rels[at : at + block]) for at in range(0, len(rels), block)]
    with _Crew(told, method, Feed()) as crew:
        crew.feed.add(blocks, complete=True, records=method != "fork")  # a fork has them
        crew.start(min(workers, len(blocks)) - 1)  # none started for nothing
        return crew.collect()


class Feed:
    """The temporary file through which blocks of files reach the workers, and the counter
    they claim them from (:class:`~reprokit.capturing._hashworker.Claims`): a header, then the
    blocks, added as the caller makes them. The file has no name (removed as it is made), so
    nothing is left behind whatever stops this process; workers get its descriptor (a fork
    inherits it, a spawned interpreter is passed it). ``fd`` is None where it cannot be made
    (no temporary folder): workers are then given every block and take their own share. Once
    a block cannot be written (a full disk), the header says it is complete: the workers
    claim no more, and this process hashes the blocks not in the file."""

    def __init__(self) -> None:
        self.blocks: list[list[bytes]] = []  # added so far
        self.offset = FEED_HEADER.size  # where the next block goes
        self.fd: int | None = None
        self.complete = False  # the header says it holds every block (or no file: all given)
        self._sealed = False  # a write failed: the file takes no more blocks
        self._published = 0  # blocks the header says the file holds
        self._file: BinaryIO | None = None
        self._high: int | None = None  # a copy of the file's descriptor above 2
        try:
            self._file = tempfile.TemporaryFile(prefix="reprokit-blocks-")  # noqa: SIM115
            fd = self._file.fileno()
            if fd < 3 and fcntl is not None:  # 0-2 closed here: a spawned worker's stdio
                fd = self._high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)  # would replace it
            os.pwrite(fd, FEED_HEADER.pack(0, 0, 0), 0)
            self.fd = fd
        except OSError:
            self.close()

    def add(self, blocks: list[list[bytes]], *, complete: bool, records: bool = True) -> None:
        """Append ``blocks`` (``records``: False for workers that have them in memory), then
        say in the header how many there are and whether that is all (``complete``)."""
        self.blocks.extend(blocks)
        if self.fd is None or self._sealed:
            self.complete = complete if self.fd is None else self.complete
            return
        if records:
            dumped = [marshal.dumps(block) for block in blocks]
            data = b"".join([RECORD.pack(len(d)) + d for d in dumped])
            try:
                if os.pwrite(self.fd, data, self.offset) != len(data):
                    raise OSError(errno.ENOSPC, "short write")
            except OSError:
                if not self._published:  # none in it yet (a full disk): as if there were no
                    self.close()  # file, which the workers started after are told
                    self.complete = complete
                    return
                self._sealed = True  # the file holds the blocks before these, and no more
                self._head(len(self.blocks) - len(blocks), True)
                return
            self.offset += len(data)
        self._head(len(self.blocks), complete)

    def _head(self, published: int, complete: bool) -> None:
        assert self.fd is not None
        with contextlib.suppress(OSError):  # no locks there (ENOLCK): nobody claims anyway
            fcntl.lockf(self.fd, fcntl.LOCK_EX)
        try:
            os.pwrite(self.fd, FEED_HEADER.pack(0, published, complete)[8:], 8)
            self.complete, self._published = complete, published
        except OSError:  # workers waiting for more would wait for ever: stopped at collect
            self._sealed = True
        finally:
            with contextlib.suppress(OSError):
                fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self.fd = None
        high, self._high = self._high, None
        if high is not None:
            with contextlib.suppress(OSError):
                os.close(high)
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()


class _Crew:
    """The processes hashing the blocks of one :class:`Feed`: this one and its workers, whose
    replies (:class:`_Replies`) are read once they are done."""

    def __init__(self, told: Job, method: str, feed: Feed) -> None:
        self.task, self.method, self.feed = told, method, feed
        self.handles: list[Handle] = []
        self.replies: list[_Replies] = []
        self.hashed_at_ns = time.time_ns()  # before any worker reads a byte

    def __enter__(self) -> _Crew:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, workers: int) -> None:
        """Start ``workers`` worker processes on the feed; a forked one has the blocks added
        so far in memory, a spawned one reads them from the feed (or, without a feed file,
        is sent them all). Each writes its replies to a file of its own (read once it is
        done), or where none can be made to a pipe read by a thread started after the last
        fork."""
        feed, count = self.feed, workers + 1
        for k in range(1, count):
            known = feed.blocks if self.method == "fork" or feed.fd is None else []
            offset = feed.offset if known else FEED_HEADER.size
            job = ("blocks", self.task, feed.fd, k, count, known, offset)
            with interrupts_deferred():  # the worker is in the list before it can be lost
                replies = _Replies(feed.blocks, self.task[1])
                self.replies.append(replies)
                if self.method == "fork":
                    self.handles.append(_start_forked(job, replies.fd))
                else:
                    self.handles.append(_feed(_start_spawned(feed.fd, replies.fd), job))
        with interrupts_deferred():  # a thread made is a thread started (join() needs it)
            for replies, handle in zip(self.replies, self.handles, strict=True):
                replies.watch(handle)

    def collect(self) -> Batch:
        """This process claims and hashes blocks too (the feed complete), then takes each
        worker's; the blocks nobody returned are hashed here."""
        feed = self.feed
        blocks, count = feed.blocks, len(self.handles) + 1
        job = ("blocks", self.task, feed.fd, 0, count, blocks, feed.offset)
        if not feed.complete:  # workers may wait for blocks that never come: all done here
            self._kill()
            job = ("blocks", self.task, None, 0, 1, blocks, 0)
        parts = [hash_blocks(job, threads=True)]
        for k, handle in enumerate(self.handles):
            _reap(handle)  # it has ended: its replies are all there
            self.handles[k] = None  # reaped: never to be signalled again (its pid is free)
            try:
                parts.append(self.replies[k].join())
            finally:  # after the join: a pipe's reader thread must not see it closed
                _close(handle)
        merged = _gather(itertools.chain.from_iterable(parts), blocks, self.task)
        merged.workers, merged.hashed_at_ns = count, self.hashed_at_ns
        return merged

    def close(self) -> None:
        """Stop the workers still running (an interruption, a failure), remove the feed."""
        try:
            self._kill()
        finally:
            self.feed.close()

    def _kill(self) -> None:
        """Stop the workers, let their replies' threads see the end, then close the pipes
        (not before: a thread could read a descriptor number used again meanwhile)."""
        try:
            for handle in self.handles:
                _stop(handle)
        finally:
            try:
                for replies in self.replies:
                    replies.discard()
            finally:
                for k, handle in enumerate(self.handles):
                    _close(handle)
                    self.handles[k] = None


def _gather(parts: Iterable[tuple[int, Share]], blocks: list[list[bytes]], task: Job) -> Batch:
    """The outcome of every file of ``blocks``, from each block's (``parts``: block number,
    outcome); a block that a failed worker had claimed (its outcome lost) is hashed here, and
    so are the files left for this process (:func:`_hash_deferred`)."""
    prefix, algorithm, keys, defer_from, lines = task
    done: list[Batch | None] = [None] * len(blocks)
    for number, share in parts:
        done[number] = Batch.of(share)
    for number, files in enumerate(blocks):
        if done[number] is None:
            block = len(files) if lines else 0
            done[number] = hash_batch(
                prefix, files, algorithm, keys=keys, defer_from=defer_from, block=block
            )
    outcomes = cast(list[Batch], done)
    if not any(part.errors or part.deferred for part in outcomes):
        return _joined(outcomes, HEX_LENGTH[algorithm] // 2, keys, lines)
    count = sum(map(len, blocks))
    merged = Batch([None] * count, [0] * count, [None] * count if keys else [])
    merged.lines = [b""] * len(blocks) if lines else None
    for number, part in enumerate(outcomes):
        _merge(merged, part, number, len(blocks[0]))
    _hash_deferred(prefix, list(itertools.chain.from_iterable(blocks)), algorithm, merged)
    return merged


def _joined(outcomes: list[Batch], width: int, keys: bool, lines: bool) -> Batch:
    """The blocks' ``outcomes`` (every file hashed) one after the other: their digests (of
    ``width`` bytes) and fingerprints joined (:class:`Joined`), as workers send them, not
    split per file."""
    raw = Joined(b"".join([joined(part.raw) for part in outcomes]), width)
    stamps = b"".join([joined(part.keys) for part in outcomes]) if keys else b""
    sizes = list(itertools.chain.from_iterable(part.sizes for part in outcomes))
    batch = Batch(raw, sizes, Joined(stamps, STAT_KEY.size))
    if lines and all(part.lines is not None for part in outcomes):
        batch.lines = [part.lines[0] if part.lines else b"" for part in outcomes]
    return batch


def _blocks_of(
    got: Any, blocks: list[list[bytes]], algorithm: str
) -> list[tuple[int, Share]] | None:
    """A worker's reply, a list of (block number, :data:`~._hashworker.Packed`), unpacked;
    None where it does not fit ``blocks``."""
    if not isinstance(got, list):
        return None
    shares = []
    for item in got:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], int)):
            return None
        number, packed = item
        share = (
            unpack_share(packed, len(blocks[number]), algorithm)
            if 0 <= number < len(blocks)
            else None
        )
        if share is None:
            return None
        shares.append((number, share))
    return shares


def block_size(files: int, workers: int) -> int:
    """Files in a block (see the module docstring): about 64 blocks per worker, so that they
    end within a short block of each other, at most 2,048 files each."""
    return max(1, min(2048, -(-files // (workers * 64))))


class Stampers:
    """Interpreters started while a tree the cache knows is walked, ready to ``stat`` its
    files (:func:`stamp_folders`) once the walk is done: in a process with threads (a kernel)
    a worker is a fresh interpreter, whose ~40 ms start-up then overlaps the walk instead of
    following it. Started once the walk has met :data:`STAT_PARALLEL_MIN_FILES` files; a fork
    (one thread) costs a millisecond and is made when needed. Those not taken are stopped at
    :meth:`close`."""

    def __init__(self, jobs: int | None) -> None:
        """``jobs``: as :func:`stamp_folders` takes it; 0: start none."""
        usable = jobs != 0 and start_method() == "spawn" and not _spawn_broken
        self._wanted = min(default_jobs(), max(1, jobs or default_jobs())) - 1 if usable else 0
        self._handles: list[Handle] = []
        self._folders = 1  # read so far: the root
        self._sized = False  # _wanted bounded by the descriptors left

    def __enter__(self) -> Stampers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def seen(self, rels: list[bytes]) -> None:
        """The walk has met the files ``rels`` so far (told once per sub-folder read: the
        folders read are one more than the calls, and :func:`stamp_folders` uses no more
        workers than folders, this process one of them)."""
        self._folders += 1
        if self._wanted < 1 or len(rels) < STAT_PARALLEL_MIN_FILES:
            return
        if not self._sized:
            self._sized, self._wanted = True, min(self._wanted, fd_room() - 1)
        while len(self._handles) < min(self._wanted, self._folders - 1):
            with interrupts_deferred():  # kept as each starts: an interruption kills all
                self._handles.append(_start_spawned())

    def take(self, count: int) -> list[Handle]:
        """Up to ``count`` of the started interpreters, no longer this object's to stop."""
        taken, self._handles = self._handles[:count], self._handles[count:]
        return taken

    def close(self) -> None:
        """Kill and reap those not taken. A Ctrl-C meanwhile waits for the end (each is killed
        first, then reaped: a few ms): else it would leave the rest waiting for a job."""
        with interrupts_deferred():
            handles, self._handles = self._handles, []
            _kill_all(handles)


def stamp_folders(
    prefix: bytes,
    folders: Sequence[tuple[bytes, Sequence[bytes]]],
    *,
    jobs: int | None = None,
    method: str | None = None,
    started: Stampers | None = None,
) -> list[bytes | None]:
    """The joined ``stat`` fingerprints of each ``(rel, names)`` folder under ``prefix`` (None:
    one of its files cannot be stat'ed), over worker processes (one per core, at most
    ``jobs``) when there are :data:`STAT_PARALLEL_MIN_FILES` files or more; ``started``:
    spawned workers that may be ready for them."""
    total = sum(len(names) for _, names in folders)
    workers = min(default_jobs(), max(1, jobs or default_jobs()), len(folders))
    method = method or start_method()
    if (method == "spawn" and _spawn_broken) or total < STAT_PARALLEL_MIN_FILES:
        workers = 1
    if workers > 1:
        workers = min(workers, fd_room())
    if workers <= 1:
        return stamp_share(prefix, folders)
    shares = [folders[k::workers] for k in range(workers)]
    parts = _over_workers(
        method,
        [("stat", prefix, share) for share in shares],
        lambda k: stamp_share(prefix, shares[k]),
        lambda k, got: got if isinstance(got, list) and len(got) == len(shares[k]) else None,
        started if method == "spawn" else None,
    )
    merged: list[bytes | None] = [None] * len(folders)
    for k, part in enumerate(parts):
        merged[k::workers] = part
    return merged


T = TypeVar("T")


def _over_workers(
    method: str,
    jobs: list[Job],
    here: Callable[[int], T],
    accept: Callable[[int, Any], T | None],
    started: Stampers | None = None,
) -> list[T]:
    """Each job's result, in order: job 0 done here (``here(0)``: one process fewer to start,
    nothing to send) while jobs 1… run in workers (``started``: spawned ones already started,
    used first); what a worker sends back is kept if ``accept(k, got)`` takes it, else (it
    could not start, died, sent garbage) its job is done here too."""
    handles: list[Handle] = [None]
    results: list[T] = []
    try:
        if started is not None:
            with interrupts_deferred():  # in the list before an interruption can lose one
                handles.extend(started.take(len(jobs) - 1))
        _start_all(method, jobs[1:], handles)
        for k in range(len(jobs)):
            got = accept(k, _finish(handles[k])) if k else None
            handles[k] = None
            results.append(here(k) if got is None else got)
    finally:  # interrupted (Ctrl-C): leave no worker running and no zombie behind
        with interrupts_deferred():  # a second Ctrl-C must not leave the rest running
            _kill_all(handles)
    return results


def _kill_all(handles: list[Handle]) -> None:
    """Kill every worker first (they die at once, not one after the other), then reap each
    and close its pipes."""
    for handle in handles:
        if handle is not None and not isinstance(handle, tuple) and handle.returncode is None:
            with contextlib.suppress(OSError):
                handle.kill()
    for handle in handles:
        _kill(handle)


def _kill(handle: Handle) -> None:
    _stop(handle)
    _close(handle)


def _stop(handle: Handle) -> None:
    """Kill a worker and reap it (its pipes stay open until :func:`_close`)."""
    if isinstance(handle, tuple):
        with contextlib.suppress(OSError):  # ECHILD: reaped already, its pid not ours: left
            if os.waitpid(handle[0], os.WNOHANG)[0] == 0:
                os.kill(handle[0], signal.SIGKILL)
                os.waitpid(handle[0], 0)
    elif handle is not None:
        handle.kill()
        handle.wait()


def _merge(merged: Batch, part: Batch, number: int, block: int) -> None:
    """Put the outcome of block ``number`` (files ``number * block`` on) in ``merged`` (made
    of lists)."""
    start = number * block
    stop = start + len(part.raw)
    cast(list[bytes | None], merged.raw)[start:stop] = part.raw
    merged.sizes[start:stop] = part.sizes
    if merged.keys:
        cast(list[bytes | None], merged.keys)[start:stop] = part.keys
    merged.errors.extend((start + j, why) for j, why in part.errors)
    merged.deferred.extend(start + j for j in part.deferred)
    if merged.lines is not None and part.lines is None:
        merged.lines = None  # a file failed or was deferred: the caller makes the lines
    elif merged.lines is not None and part.lines is not None:
        merged.lines[number] = part.lines[0] if part.lines else b""


def _hash_deferred(prefix: bytes, rels: Sequence[bytes], algorithm: str, merged: Batch) -> None:
    if merged.deferred:
        merged.lines = None
        merged.deferred.sort()
        wanted = bool(merged.keys)
        big = hash_batch(prefix, [rels[i] for i in merged.deferred], algorithm, keys=wanted)
        raws, stamps = cast(list[bytes | None], merged.raw), cast(list[bytes | None], merged.keys)
        for j, index in enumerate(merged.deferred):
            raws[index] = big.raw[j]
            merged.sizes[index] = big.sizes[j]
            if wanted:
                stamps[index] = big.keys[j]
        merged.errors.extend((merged.deferred[j], why) for j, why in big.errors)
        merged.deferred = []
    merged.errors.sort()


# -- workers -------------------------------------------------------------------------------

Handle = Any  # (pid, read fd) for a fork, a Popen for a spawn, None when it failed


Job = tuple[Any, ...]  # what _hashworker.run_job takes


def _start_all(method: str, jobs: list[Job], handles: list[Handle]) -> None:
    """A worker per job, appended to ``handles`` (after the first, this process's place) as
    each starts, so that an interruption meanwhile leaves none unkilled; spawned interpreters
    are all started first (but those already in ``handles``), then fed, so that their
    start-ups overlap."""
    if method == "fork":
        for job in jobs:
            with interrupts_deferred():  # listed before an interruption can lose it
                handles.append(_start_forked(job))
        return
    while len(handles) < len(jobs) + 1:
        with interrupts_deferred():
            handles.append(_start_spawned())
    for proc, job in zip(handles[1:], jobs, strict=True):
        _feed(proc, job)


def _start_forked(job: Job, out: int | None = None) -> Handle:
    """A forked worker on ``job``: ``(pid, the read end of the pipe it writes to)``, or with
    ``out`` (a file's descriptor) ``(pid, None)``, writing to that file."""
    read_fd: int | None = None
    try:
        read_fd, write_fd = os.pipe() if out is None else (None, out)
        pid = os.fork()
    except OSError:
        if read_fd is not None:
            os.close(read_fd)
            os.close(write_fd)
        return None
    if pid == 0:  # child: compute, send, leave without running the parent's exit hooks
        code = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller stops it if need be
            if read_fd is not None:
                os.close(read_fd)
            with os.fdopen(write_fd, "wb", closefd=out is None) as handle:
                run_job(job, handle)
            code = 0
        finally:
            os._exit(code)
    if read_fd is not None:
        os.close(write_fd)
    return (pid, read_fd)


def _start_spawned(feed: int | None = None, out: int | None = None) -> Handle:
    """A fresh interpreter running ``_hashworker.py``, passed the descriptor ``feed`` (a
    :class:`Feed`'s), its output to the file ``out`` (a descriptor) or else to a pipe. Its
    error output is dropped: a worker that fails is made up for here."""
    import subprocess

    try:
        return subprocess.Popen(
            [sys.executable, os.path.join(os.path.dirname(__file__), "_hashworker.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE if out is None else out,
            stderr=subprocess.DEVNULL,
            pass_fds=() if feed is None else (feed,),
        )
    except (OSError, ValueError):
        return None


def _feed(proc: Handle, job: Job) -> Handle:
    """Send a spawned worker its job from a helper thread: without a feed file the job holds
    every block (1 MB for 50,000 files), more than a pipe holds, and writing it here would wait
    for the worker's interpreter to start (~40 ms) instead of hashing meanwhile."""
    if proc is None:
        return None
    import threading

    data = marshal.dumps(job)

    def send() -> None:
        with contextlib.suppress(OSError, ValueError):  # died at start-up, or stopped
            proc.stdin.write(data)
            proc.stdin.close()

    threading.Thread(target=send, name="reprokit-feed", daemon=True).start()
    return proc


def _finish(handle: Handle) -> Any:
    """Wait for a worker; the first record it sent, or None if it failed."""
    if handle is None:
        return None
    try:
        return next(_records(_reader(handle)), None)
    finally:
        _reap(handle)
        _close(handle)


def _reader(handle: Handle) -> Callable[[int], bytes]:
    """What reads a live worker's output (``handle`` not None)."""
    if isinstance(handle, tuple):
        read_fd = handle[1]
        return lambda size: os.read(read_fd, size)
    return handle.stdout.read  # type: ignore[no-any-return]


def _records(read: Callable[[int], bytes]) -> Iterator[Any]:
    """The records (see :func:`~reprokit.capturing._hashworker.send`) read with ``read``,
    up to the end of its output, one cut short, or one that is not :mod:`marshal`."""
    while (head := _read_exactly(read, RECORD.size)) is not None:
        data = _read_exactly(read, RECORD.unpack(head)[0])
        if data is None:
            return
        try:
            yield marshal.loads(data)
        except (EOFError, ValueError, TypeError):
            return


def _read_exactly(read: Callable[[int], bytes], size: int) -> bytes | None:
    chunks, left = [], size
    try:
        while left and (chunk := read(min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
    except (OSError, ValueError):  # stopped (its pipe closed)
        return None
    return None if left else b"".join(chunks)


class _Replies:
    """What one worker of a :class:`_Crew` sends back, block by block (checked against
    ``blocks``). It writes them to an unnamed temporary file, read once it has ended: a
    pipe would have to be read as the replies come, on a thread that takes the interpreter
    lock from this process's hashing at each one (0.03-0.04 s of 100,000 files). Where no
    such file can be made, it writes to a pipe, read on a helper thread."""

    def __init__(self, blocks: list[list[bytes]], algorithm: str) -> None:
        self.got: list[tuple[int, Share]] = []
        self._blocks, self._algorithm = blocks, algorithm
        self._thread: Any = None
        self._file: BinaryIO | None = None
        with contextlib.suppress(OSError):
            self._file = tempfile.TemporaryFile(prefix="reprokit-replies-")  # noqa: SIM115

    @property
    def fd(self) -> int | None:
        """The descriptor the worker writes to (None: a pipe of its own)."""
        return None if self._file is None else self._file.fileno()

    def watch(self, handle: Handle) -> None:
        """The worker started (``handle``, None if it did not); replies that come through a
        pipe are read from now on, on a helper thread."""
        import threading

        if handle is not None and self._file is None:
            reader = _reader(handle)
            self._thread = threading.Thread(
                target=self._read, args=(reader,), name="reprokit-replies", daemon=True
            )
            self._thread.start()

    def _read(self, read: Callable[[int], bytes]) -> None:
        for item in _records(read):
            got = _blocks_of([item], self._blocks, self._algorithm)
            if got is None:  # garbage: what follows is not trusted either
                break
            self.got.extend(got)
        with contextlib.suppress(OSError, ValueError):  # what is left is read to its end,
            while read(1 << 16):  # so that a worker writing to a pipe is not left waiting
                pass

    def join(self) -> list[tuple[int, Share]]:
        """Once the worker has ended and been reaped (:func:`_reap`, :func:`_stop`): the
        blocks it sent."""
        try:
            if self._thread is None and self._file is not None:
                self._read(_file_reader(self._file.fileno()))
        finally:  # the thread joined, the file closed once, whatever lands meanwhile
            self.discard()
        return self.got

    def discard(self) -> None:
        """Once the worker has been stopped: its replies are not wanted (not read); also the
        end of :meth:`join`."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        file, self._file = self._file, None
        if file is not None:
            file.close()


def _file_reader(fd: int) -> Callable[[int], bytes]:
    """``read(size)`` of the file ``fd`` from its start (its offset is not used: a forked
    worker shares it)."""
    offset = 0

    def read(size: int) -> bytes:
        nonlocal offset
        data = os.pread(fd, size, offset)
        offset += len(data)
        return data

    return read


def _reap(handle: Handle) -> None:
    """Wait for a worker that has ended (or was stopped); remember a spawned one that failed."""
    global _spawn_broken  # remembered for the rest of the process
    if isinstance(handle, tuple):
        with contextlib.suppress(OSError):
            os.waitpid(handle[0], 0)
    elif handle is not None and handle.wait() not in (0, WRITE_FAILED):
        _spawn_broken = True


def _close(handle: Handle) -> None:
    """Close the pipes to a worker that has been reaped."""
    if isinstance(handle, tuple):
        if handle[1] is not None:
            with contextlib.suppress(OSError):
                os.close(handle[1])
    elif handle is not None:
        for pipe in (handle.stdin, handle.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
