"""How fast reprokit hashes data, against b3sum / sha256sum / md5sum run alternately with it.

Run from the repository root::

    python benchmarks/bench_hash.py            # 1 GiB file, 100,000 files of 1 KiB (~3 min)
    python benchmarks/bench_hash.py --quick    # 64 MiB, 5,000 files (CI smoke test, < 1 min)
    python benchmarks/bench_hash.py --big-gib 4 --files 50000 --repeat 7

Every figure is a pair from ``benchmarks/_ab.py``: reprokit's command and its baseline run
alternately (A B, B A, …) ``--repeat`` times each after one untimed warm-up of each (which
also puts the data in the page cache), with the min and median of both sides and their
ratio **measured / baseline** (below 1: reprokit is faster).

1. One large file: the API in this process (``hash_file``) and ``reprokit hash --no-cache
   FILE`` (a fresh interpreter) against ``b3sum FILE``; ``--algo sha256``/``md5`` against
   ``sha256sum``/``md5sum``; the ceiling of sha256 (``hashlib`` over bytes already in
   memory) as a figure. Target: BLAKE3 API ≤ 1.1 x b3sum.
2. Many small files (``--file-kib`` each, 1,000 per folder): reprokit's first hash with an
   empty cache (the cache being written) and without a cache, in one process, through
   each worker start method and as ``reprokit hash DIR``, against ``find -print0 | xargs
   -0 -P<cores> b3sum`` (target for the first hash: ≤ 1.0); the cached re-hash (API and
   command) against a ``scandir`` + ``stat`` walk of the same tree, what any cached run
   must at least do (target: ≤ 1.5); so is the search for symbolic links leading out of the
   project that ``verify`` makes before it re-hashes the data (no ``stat`` per file
   needed). The tree is hashed only once the 2 s racy margin has passed since it was
   written, otherwise no entry could be trusted.

A baseline whose tool is not installed is left out (``b3sum`` is in Debian's ``b3sum``
package). Generated data lives in a temporary folder removed at the end; results go to
``benchmarks/results/bench_hash.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import itertools
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _ab import Results, alternate, command, timed  # noqa: E402

from reprokit.capturing import _pool  # noqa: E402
from reprokit.capturing.hashcache import DEFAULT_RACY_MARGIN_NS, HashCache  # noqa: E402
from reprokit.capturing.hashing import hash_file, hash_path  # noqa: E402
from reprokit.capturing.walk import links_outside, walk_tree  # noqa: E402


def make_big_file(path: Path, size: int) -> None:
    block = os.urandom(64 << 20)
    with path.open("wb") as out:
        for offset in range(0, size, len(block)):
            out.write(block[: min(len(block), size - offset)])


def make_small_files(root: Path, count: int, size: int) -> None:
    pool = os.urandom(1 << 20)
    for i in range(count):
        folder = root / f"d{i // 1000:04d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True)
        start = (i * 7919) % (len(pool) - size)
        (folder / f"f{i:06d}.bin").write_bytes(pool[start : start + size])


def scandir_stat_walk(root: Path) -> Callable[[], object]:
    """A ``scandir`` of every folder and a ``stat`` of every file: a cached run's floor."""

    def walk() -> int:
        count, stack = 0, [os.fsencode(root)]
        while stack:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        entry.stat()
                        count += 1
        return count

    return walk


def cli(*args: str, env: dict[str, str]) -> Callable[[], object]:
    """``python -m reprokit ARGS`` in a fresh interpreter (start-up included)."""
    return command(sys.executable, "-m", "reprokit", *args, env=env)


def bench_big(results: Results, work: Path, size: int, repeat: int) -> None:
    path = work / "big.bin"
    make_big_file(path, size)
    print(f"\n1. one file of {size / 2**30:.2f} GiB")
    env = dict(os.environ, REPROKIT_CACHE_DIR=str(work / "cli-cache"))
    if shutil.which("b3sum"):
        b3sum = command("b3sum", str(path))
        pair = functools.partial(alternate, repeat=repeat, baseline_name="b3sum")
        results.add(pair("blake3, API", lambda: hash_file(path), b3sum, target="<= 1.1"))
        run = cli("hash", "--no-cache", str(path), env=env)
        results.add(pair("blake3, reprokit hash --no-cache", run, b3sum))
    for algorithm, tool in (("sha256", "sha256sum"), ("md5", "md5sum")):
        if shutil.which(tool):
            api = functools.partial(hash_file, path, algorithm=algorithm)
            base = command(tool, str(path))
            results.add(
                alternate(f"{algorithm}, API", api, base, repeat=repeat, baseline_name=tool)
            )
    data = path.read_bytes()
    ceiling = min(timed(lambda: hashlib.sha256(data).hexdigest()) for _ in range(repeat))
    results.figure("sha256, hashlib in memory (ceiling) s", round(ceiling, 4))
    path.unlink()


def bench_small(results: Results, work: Path, count: int, size: int, repeat: int) -> None:
    root = work / "small"
    make_small_files(root, count, size)
    written_at = time.monotonic()
    cores = _pool.default_jobs()
    print(f"\n2. {count} files of {size} bytes, {cores} cores")
    # BLAKE3's thread pool (section 1) makes this process multi-threaded, as a kernel is:
    # workers are then spawned, not forked
    results.figure("worker start method, small files", _pool.start_method())
    walk = scandir_stat_walk(root)
    xargs = f"find {root} -type f -print0 | xargs -0 -P{cores} b3sum > /dev/null"
    base = command("sh", "-c", xargs) if shutil.which("b3sum") else walk
    base_name = f"find | xargs -P{cores} b3sum" if shutil.which("b3sum") else "scandir+stat walk"
    pair = functools.partial(alternate, repeat=repeat, baseline_name=base_name)
    time.sleep(max(0.0, DEFAULT_RACY_MARGIN_NS / 1e9 + 0.2 - (time.monotonic() - written_at)))
    with HashCache(work / "cache-first.sqlite3") as cache:  # the user's cache, not this tree
        assert cache.usable(), cache.last_problem

        def forget() -> None:  # untimed, before each first hash
            with contextlib.closing(sqlite3.connect(cache.path)) as conn, conn:
                conn.execute("DELETE FROM folder_digest")

        def first_hash(jobs: int | None = None) -> object:
            return hash_path(root, cache=cache, jobs=jobs)

        first = functools.partial(pair, before=forget)
        results.add(first("first hash (cache written)", first_hash, base, target="<= 1.0"))
        results.add(first("first hash, one process", lambda: first_hash(jobs=1), base))
    results.add(pair("no cache", lambda: hash_path(root, cache=None), base))
    caches = (str(work / f"cli-{n}") for n in itertools.count())

    def cli_first() -> object:  # a fresh interpreter and a fresh cache each time
        return cli("hash", str(root), env=dict(os.environ, REPROKIT_CACHE_DIR=next(caches)))()

    results.add(pair("reprokit hash DIR, first", cli_first, base))
    tree = walk_tree(os.fsencode(root), str(root))
    prefix = os.fsencode(root) + b"/"
    for method in ("fork", "spawn"):
        run = functools.partial(
            _pool.hash_files, prefix, tree.rels, "blake3", jobs=cores, method=method
        )
        results.add(pair(f"hash_files, {cores} workers, {method}", run, base))
    bench_cached(results, work, root, repeat, walk)
    shutil.rmtree(root)


def bench_cached(
    results: Results, work: Path, root: Path, repeat: int, walk: Callable[[], object]
) -> None:
    pair = functools.partial(alternate, repeat=repeat, baseline_name="scandir+stat walk")
    with HashCache(work / "cache-kept.sqlite3") as cache:
        hash_path(root, cache=cache)
        results.add(
            pair("cached re-hash", lambda: hash_path(root, cache=cache), walk, target="<= 1.5")
        )
        assert cache.stats.hits >= cache.stats.misses, cache.stats
    project = root.parent
    results.add(
        pair(
            "verify's check for links out of the project",
            lambda: links_outside(root, project),
            walk,
        )
    )
    kept = cli("hash", str(root), env=dict(os.environ, REPROKIT_CACHE_DIR=str(work / "cli-kept")))
    results.add(pair("reprokit hash DIR, cached", kept, walk))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, < 1 min")
    parser.add_argument("--big-gib", type=float, default=None, help="large file size [1]")
    parser.add_argument("--files", type=int, default=None, help="small files [100000]")
    parser.add_argument("--file-kib", type=float, default=1.0, help="size of each [1]")
    parser.add_argument("--repeat", type=int, default=None, help="rounds of A B [5]")
    args = parser.parse_args()
    big = int((args.big_gib or (1 / 16 if args.quick else 1.0)) * 2**30)
    count = args.files or (5_000 if args.quick else 100_000)
    size = int(args.file_kib * 1024)
    repeat = args.repeat or (2 if args.quick else 5)
    params = {"quick": args.quick, "repeat": repeat, "big_bytes": big, "files": count}
    params |= {"file_bytes": size, "cores": _pool.default_jobs()}
    results = Results("bench_hash", params=params | {"start_method_here": _pool.start_method()})
    work = Path(tempfile.mkdtemp(prefix="reprokit-bench-hash-"))
    try:
        bench_big(results, work, big, repeat)
        bench_small(results, work, count, size, repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results.write()


if __name__ == "__main__":
    main()
