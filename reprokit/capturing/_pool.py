"""Hashing many files of one folder: in this process, or spread over worker processes.

Python spends ~10 µs per small file (open, fstat, read, hash, close) and threads make it
worse (the GIL), so above ``PARALLEL_MIN_FILES`` files the work is split over one worker
process per core, this one included.  Process k takes files k, k+n, k+2n, ...
(interleaving balances sizes without knowing them); workers send back raw digests, sizes
and packed ``stat`` fingerprints, and the caller writes the cache (one transaction).  Files of
``DEFER_FROM`` bytes or more are handed back unhashed and hashed here afterwards with
BLAKE3's own thread pool.

How workers start (measured in ``benchmarks/bench_hash.py``):

- ``fork`` (``os.fork`` and a pipe, no ``multiprocessing``) when this process has a single
  OS thread, e.g. the command line: it costs about a millisecond per worker.
- otherwise (Jupyter kernels run threads; a fork after BLAKE3's or a BLAS thread pool
  started can deadlock the child) a fresh ``python -m reprokit.capturing._pool`` per worker,
  fed through stdin/stdout.  Unlike ``multiprocessing``'s spawn and forkserver it never
  re-imports the user's ``__main__``, so a script without ``if __name__ == "__main__"``
  is not run again.  It costs ~50 ms, hence the higher threshold.

Any failure to start or run a worker falls back to hashing its share here.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import stat
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from reprokit.capturing._filehash import SMALL_FILE, digest_large, new_hasher, open_file
from reprokit.capturing.hashcache import KEY
from reprokit.capturing.walk import oserror_reason

PARALLEL_MIN_FILES = {"fork": 2_000, "spawn": 8_000}
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

    def as_tuple(self) -> tuple[Any, ...]:
        return (self.raw, self.sizes, self.keys, self.errors, self.deferred)

    def hexdigests(self) -> list[str | None]:
        """The digests in hex, made in one pass."""
        if None in self.raw:
            return [None if raw is None else raw.hex() for raw in self.raw]
        return list(map(bytes.hex, self.raw))  # type: ignore[arg-type]


def _small_digester(algorithm: str) -> Callable[[bytes], bytes]:
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


def hash_batch(
    prefix: bytes,
    rels: Sequence[bytes],
    algorithm: str,
    *,
    keys: bool = False,
    defer_from: int | None = None,
    threads: bool = True,
) -> Batch:
    """Hash ``prefix + rel`` for each rel here; ``keys``: also their cache fingerprints."""
    batch = Batch([], [], hashed_at_ns=time.time_ns())  # before any byte is read
    small = _small_digester(algorithm)
    fstat, read, close, is_reg, pack = os.fstat, os.read, os.close, stat.S_ISREG, KEY.pack
    digests, sizes, packed = batch.raw, batch.sizes, batch.keys
    for index, rel in enumerate(rels):
        raw: bytes | None = None
        size = 0
        try:
            fd = open_file(prefix + rel)
            try:
                st = fstat(fd)
                size = st.st_size
                if (
                    size < SMALL_FILE
                    and is_reg(st.st_mode)
                    and len(data := read(fd, size + 1)) <= size
                ):
                    raw = small(data)
                else:
                    raw = _other(fd, st, index, batch, algorithm, defer_from, threads)
            finally:
                close(fd)
        except OSError as exc:
            batch.errors.append((index, oserror_reason(exc)))
        digests.append(raw)
        sizes.append(size)
        if keys:
            packed.append(
                None
                if raw is None
                else pack(st.st_dev, st.st_ino, size, st.st_mtime_ns, st.st_ctime_ns)
            )
    return batch


def _other(
    fd: int,
    st: os.stat_result,
    index: int,
    batch: Batch,
    algorithm: str,
    defer_from: int | None,
    threads: bool,
) -> bytes | None:
    """Not a small regular file: an error, a file deferred, or a large one hashed now."""
    if not stat.S_ISREG(st.st_mode):
        batch.errors.append((index, "not a regular file"))
        return None
    if defer_from is not None and st.st_size >= defer_from:
        batch.deferred.append(index)
        return None
    return bytes.fromhex(_digest_rest(fd, st.st_size, algorithm, threads))


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


def hash_files(
    prefix: bytes,
    rels: Sequence[bytes],
    algorithm: str,
    *,
    keys: bool = False,
    jobs: int | None = None,
    method: str | None = None,
) -> Batch:
    """Hash many files under one folder, over worker processes when it pays."""
    workers = min(default_jobs() if jobs is None else max(1, jobs), len(rels))
    method = method or start_method()
    if method == "spawn" and _spawn_broken:
        workers = 1
    if jobs is None and len(rels) < PARALLEL_MIN_FILES[method]:
        workers = 1
    if workers <= 1:
        return hash_batch(prefix, rels, algorithm, keys=keys)
    task = (prefix, algorithm, keys)
    shares = [list(rels[k::workers]) for k in range(workers)]
    merged = Batch([None] * len(rels), [0] * len(rels), workers=workers)
    merged.hashed_at_ns = time.time_ns()  # before any worker reads a byte
    # share 0 is hashed here while the workers run: one process fewer to start and no
    # pickling for that share
    handles: list[Handle] = [None]
    if method == "fork":
        handles += [_start_forked(task, share) for share in shares[1:]]
    else:  # start every interpreter first, then feed them: their start-ups overlap
        procs = [_start_spawned() for _ in shares[1:]]
        handles += [_feed(proc, task, share) for proc, share in zip(procs, shares[1:], strict=True)]
    if keys:
        merged.keys = [None] * len(rels)
    try:
        for k, share in enumerate(shares):
            part = _finish(handles[k])
            handles[k] = None
            if part is None:  # share 0, or a worker that could not start or died
                part = hash_batch(prefix, share, algorithm, keys=keys, defer_from=DEFER_FROM)
            _merge(merged, part, k, workers)
    finally:  # interrupted (Ctrl-C): leave no worker running and no zombie behind
        for handle in handles:
            _kill(handle)
    _hash_deferred(prefix, rels, algorithm, merged)
    return merged


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


def _merge(merged: Batch, part: Batch, k: int, workers: int) -> None:
    merged.raw[k::workers] = part.raw
    merged.sizes[k::workers] = part.sizes
    if merged.keys:
        merged.keys[k::workers] = part.keys
    merged.errors.extend((k + workers * j, why) for j, why in part.errors)
    merged.deferred.extend(k + workers * j for j in part.deferred)


def _hash_deferred(prefix: bytes, rels: Sequence[bytes], algorithm: str, merged: Batch) -> None:
    if merged.deferred:
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


def _run_share(task: tuple[bytes, str, bool], share: list[bytes]) -> tuple[Any, ...]:
    prefix, algorithm, keys = task
    # one thread per worker: the workers already fill the cores
    batch = hash_batch(prefix, share, algorithm, keys=keys, defer_from=DEFER_FROM, threads=False)
    return batch.as_tuple()


def _start_forked(task: tuple[bytes, str, bool], share: list[bytes]) -> Handle:
    try:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
    except OSError:
        return None
    if pid == 0:  # child: compute, send, leave without running the parent's exit hooks
        code = 1
        try:
            os.close(read_fd)
            with os.fdopen(write_fd, "wb") as out:
                pickle.dump(_run_share(task, share), out, protocol=pickle.HIGHEST_PROTOCOL)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    return (pid, read_fd)


def _start_spawned() -> Handle:
    import subprocess

    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "reprokit.capturing._pool"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
    except (OSError, ValueError):
        return None


def _feed(proc: Handle, task: tuple[bytes, str, bool], share: list[bytes]) -> Handle:
    if proc is None:
        return None
    try:
        pickle.dump((task, share), proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        proc.stdin.close()
    except OSError:  # the interpreter died at start-up (BrokenPipeError)
        proc.kill()
        proc.wait()
        return None
    return proc


def _finish(handle: Handle) -> Batch | None:
    """Wait for a worker; its Batch, or None if it failed."""
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
        fields = pickle.loads(data)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError):
        return None
    return Batch(*fields)


def _serve() -> None:
    """Entry point of a spawned worker: a pickled (task, share) in, a pickled result out."""
    task, share = pickle.load(sys.stdin.buffer)
    result = _run_share(task, share)
    pickle.dump(result, sys.stdout.buffer, protocol=pickle.HIGHEST_PROTOCOL)
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    import importlib

    # the module proper, not this __main__ copy, so that pickled classes resolve
    importlib.import_module("reprokit.capturing._pool")._serve()
