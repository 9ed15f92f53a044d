"""Hashing many files of one folder: in this process, or spread over worker processes.

Python spends ~10 µs per small file (open, fstat, read, hash, close) and threads make it
worse (the GIL), so above ``PARALLEL_MIN_FILES`` files the work is split over one worker
process per core, this one included.  The files are cut into blocks of consecutive files
(:func:`block_size`) that the processes claim one at a time from a shared counter
(:class:`~reprokit.capturing._hashworker.Claims`): one that gets more of the machine, or
started earlier, takes more, so they finish within a block of each other whatever the
files' sizes; workers send back, block by block, raw digests, sizes, packed ``stat``
fingerprints and, for a whole folder, the folder digest's input lines (made in parallel
rather than by the caller once all are done), and the caller writes the cache (one
transaction).  Spawned workers are started while the folder is walked (:class:`Ahead`).  Files of
``DEFER_FROM`` bytes or more are handed back unhashed and hashed here afterwards with
BLAKE3's own thread pool.  The ``stat`` calls that check a cached tree of
``STAT_PARALLEL_MIN_FILES`` files or more are shared the same way, by folder
(:func:`stamp_folders`).

How workers start (measured in ``benchmarks/bench_hash.py``):

- ``fork`` (``os.fork`` and a pipe, no ``multiprocessing``) when this process has a single
  OS thread, e.g. the command line: it costs about a millisecond per worker.
- otherwise (Jupyter kernels run threads; a fork after BLAKE3's or a BLAS thread pool
  started can deadlock the child) a fresh interpreter per worker running
  ``_hashworker.py`` as a script, fed through stdin/stdout (:mod:`marshal`; its share is
  written from a helper thread while this process hashes its own).  Unlike
  ``multiprocessing``'s spawn and forkserver it never re-imports the user's ``__main__``,
  so a script without ``if __name__ == "__main__"`` is not run again.  It costs ~40 ms,
  hence the higher threshold.

Any failure to start or run a worker falls back to hashing its share here.
"""

from __future__ import annotations

import contextlib
import itertools
import marshal
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from reprokit.capturing._hashworker import (
    Share,
    hash_blocks,
    hash_share,
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

_spawn_broken = False  # set once a spawned worker failed: do not try again


@dataclass
class Batch:
    """Per-file outcome, aligned with the ``rels`` hashed."""

    raw: list[bytes | None]  # raw digests (None: an error, or deferred)
    sizes: list[int]
    keys: list[bytes | None] = field(default_factory=list)  # hashcache.stat_key of each
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
        if None in self.raw:
            return [None if raw is None else raw.hex() for raw in self.raw]
        return list(map(bytes.hex, self.raw))  # type: ignore[arg-type]


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
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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
    """Spawned workers started while a folder is still being walked (:meth:`seen` once it
    holds :data:`PARALLEL_MIN_FILES` files), so that their interpreters (~40 ms) are up when
    the shares are ready instead of starting then; :meth:`close` kills those not taken. Not
    for a forked worker, which starts in a millisecond with its share in memory."""

    def __init__(self, jobs: int | None = None) -> None:
        """``jobs``: as :func:`hash_files` takes it (None: one per core; 0: start none)."""
        spawning = jobs != 0 and start_method() == "spawn" and not _spawn_broken
        self._wanted = (default_jobs() if jobs is None else max(1, jobs)) - 1 if spawning else 0
        self._started: list[Handle] = []

    def __enter__(self) -> Ahead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def seen(self, files: int) -> None:
        """The walk has met ``files`` files so far."""
        if self._wanted and files >= PARALLEL_MIN_FILES["spawn"]:
            wanted, self._wanted = self._wanted, 0
            for _ in range(wanted):  # kept as each starts: an interruption kills them all
                self._started.append(_start_spawned())

    def take(self) -> Handle:
        """A worker started ahead (None if it could not start), else a new one."""
        return self._started.pop(0) if self._started else _start_spawned()

    def close(self) -> None:
        while self._started:
            _kill(self._started.pop())


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
    not be hashed or was left to this process)."""
    workers = min(default_jobs() if jobs is None else max(1, jobs), len(rels))
    method = method or start_method()
    if method == "spawn" and _spawn_broken:
        workers = 1
    if jobs is None and len(rels) < PARALLEL_MIN_FILES[method]:
        workers = 1
    if workers <= 1:
        return hash_batch(prefix, rels, algorithm, keys=keys, block=len(rels) if lines else 0)
    block = block_size(len(rels), workers)
    blocks = [list(rels[at : at + block]) for at in range(0, len(rels), block)]
    workers = min(workers, len(blocks))  # none started for nothing
    task = (prefix, algorithm, keys, DEFER_FROM, lines)
    merged = Batch([None] * len(rels), [0] * len(rels), workers=workers)
    merged.hashed_at_ns = time.time_ns()  # before any worker reads a byte
    merged.keys = [None] * len(rels) if keys else []
    merged.lines = [b""] * len(blocks) if lines else None
    with _counter() as counter:
        jobs_ = [("blocks", task, counter, k, workers, blocks) for k in range(workers)]
        parts = _over_workers(
            method,
            jobs_,
            lambda k: hash_blocks(jobs_[k], threads=True),  # after a failed worker: none left
            lambda k, got: _blocks_of(got, blocks, algorithm),
            ahead,
        )
    _gather(merged, itertools.chain.from_iterable(parts), blocks, task)
    _hash_deferred(prefix, rels, algorithm, merged)
    return merged


def _gather(
    merged: Batch, parts: Iterable[tuple[int, Share]], blocks: list[list[bytes]], task: Job
) -> None:
    """Put each block's outcome where its files are in ``merged``; a block that a failed
    worker had claimed (its outcome lost) is hashed here."""
    prefix, algorithm, keys, defer_from, lines = task
    done: list[Batch | None] = [None] * len(blocks)
    for number, share in parts:
        done[number] = Batch.of(share)
    for number, files in enumerate(blocks):
        part = done[number] or hash_batch(
            prefix,
            files,
            algorithm,
            keys=keys,
            defer_from=defer_from,
            block=len(files) if lines else 0,
        )
        _merge(merged, part, number, len(blocks[0]))


@contextlib.contextmanager
def _counter() -> Iterator[str | None]:
    """A file holding the number of the next block to claim (0), removed after; None when
    it cannot be made: each process then takes its own blocks."""
    try:
        fd, path = tempfile.mkstemp(prefix="reprokit-blocks-")
    except OSError:
        yield None
        return
    try:
        written = True
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(bytes(8))  # fails on a full disk (when the file is closed)
        except OSError:
            written = False
        yield path if written else None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


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


def stamp_folders(
    prefix: bytes,
    folders: Sequence[tuple[bytes, Sequence[bytes]]],
    *,
    jobs: int | None = None,
    method: str | None = None,
    ahead: Ahead | None = None,
) -> list[bytes | None]:
    """The joined ``stat`` fingerprints of each ``(rel, names)`` folder under ``prefix`` (None:
    one of its files cannot be stat'ed), over worker processes (one per core, at most
    ``jobs``) when there are :data:`STAT_PARALLEL_MIN_FILES` files or more."""
    total = sum(len(names) for _, names in folders)
    workers = min(default_jobs(), max(1, jobs or default_jobs()), len(folders))
    method = method or start_method()
    if (method == "spawn" and _spawn_broken) or total < STAT_PARALLEL_MIN_FILES:
        workers = 1
    if workers <= 1:
        return stamp_share(prefix, folders)
    shares = [folders[k::workers] for k in range(workers)]
    parts = _over_workers(
        method,
        [("stat", prefix, share) for share in shares],
        lambda k: stamp_share(prefix, shares[k]),
        lambda k, got: got if isinstance(got, list) and len(got) == len(shares[k]) else None,
        ahead,
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
    ahead: Ahead | None = None,
) -> list[T]:
    """Each job's result, in order: job 0 done here (``here(0)``: one process fewer to start,
    nothing to send) while jobs 1… run in workers; what a worker sends back is kept if
    ``accept(k, got)`` takes it, else (it could not start, died, sent garbage) its job is done
    here too. Spawned workers are taken from ``ahead`` first."""
    handles: list[Handle] = [None]
    results: list[T] = []
    try:
        _start_all(method, jobs[1:], handles, ahead or Ahead(0))
        for k in range(len(jobs)):
            got = accept(k, _finish(handles[k])) if k else None
            handles[k] = None
            results.append(here(k) if got is None else got)
    finally:  # interrupted (Ctrl-C): leave no worker running and no zombie behind
        for handle in handles:
            _kill(handle)
    return results


def _kill(handle: Handle) -> None:
    if handle is None:
        return
    if isinstance(handle, tuple):
        pid, read_fd = handle
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        with contextlib.suppress(OSError):
            os.close(read_fd)
    else:
        handle.kill()
        handle.wait()
        for pipe in (handle.stdin, handle.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def _merge(merged: Batch, part: Batch, number: int, block: int) -> None:
    """Put the outcome of block ``number`` (files ``number * block`` on) in ``merged``."""
    start = number * block
    stop = start + len(part.raw)
    merged.raw[start:stop] = part.raw
    merged.sizes[start:stop] = part.sizes
    if merged.keys:
        merged.keys[start:stop] = part.keys
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
        for j, index in enumerate(merged.deferred):
            merged.raw[index] = big.raw[j]
            merged.sizes[index] = big.sizes[j]
            if wanted:
                merged.keys[index] = big.keys[j]
        merged.errors.extend((merged.deferred[j], why) for j, why in big.errors)
        merged.deferred = []
    merged.errors.sort()


# -- workers -------------------------------------------------------------------------------

Handle = Any  # (pid, read fd) for a fork, a Popen for a spawn, None when it failed


Job = tuple[Any, ...]  # what _hashworker.run_job takes


def _start_all(method: str, jobs: list[Job], handles: list[Handle], ahead: Ahead) -> None:
    """A worker per job, appended to ``handles`` as each starts (so that an interruption
    meanwhile leaves none unkilled); spawned interpreters are all started first, then fed, so
    that their start-ups overlap."""
    if method == "fork":
        for job in jobs:
            handles.append(_start_forked(job))
        return
    first = len(handles)
    for _ in jobs:
        handles.append(ahead.take())
    for proc, job in zip(handles[first:], jobs, strict=True):
        _feed(proc, job)


def _start_forked(job: Job) -> Handle:
    try:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
    except OSError:
        return None
    if pid == 0:  # child: compute, send, leave without running the parent's exit hooks
        code = 1
        try:
            os.close(read_fd)
            result = run_job(job)
            with os.fdopen(write_fd, "wb") as out:
                out.write(marshal.dumps(result))
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    return (pid, read_fd)


def _start_spawned() -> Handle:
    import subprocess

    try:
        return subprocess.Popen(
            [sys.executable, os.path.join(os.path.dirname(__file__), "_hashworker.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
    except (OSError, ValueError):
        return None


def _feed(proc: Handle, job: Job) -> Handle:
    """Send a spawned worker its share from a helper thread: the share (1 MB for 50,000
    files) is more than a pipe holds, and writing it here would wait for the worker's
    interpreter to start (~40 ms) instead of hashing this process's share meanwhile."""
    if proc is None:
        return None
    import threading

    data = marshal.dumps(job)

    def send() -> None:
        with contextlib.suppress(OSError):  # died at start-up: _finish finds no result
            proc.stdin.write(data)
            proc.stdin.close()

    threading.Thread(target=send, name="reprokit-feed", daemon=True).start()
    return proc


def _finish(handle: Handle) -> Any:
    """Wait for a worker; what its job returned, or None if it failed."""
    global _spawn_broken  # remembered for the rest of the process
    if handle is None:
        return None
    if isinstance(handle, tuple):
        pid, read_fd = handle
        with os.fdopen(read_fd, "rb") as source:
            data = source.read()
        os.waitpid(pid, 0)
    else:
        data = handle.stdout.read()
        handle.stdout.close()
        if handle.wait() != 0:
            _spawn_broken = True
    try:
        return marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        return None
