"""How fast reprokit hashes data, against b3sum / sha256sum / md5sum measured in the same run.

Run from the repository root::

    python benchmarks/bench_hash.py            # 4 GiB file, 100,000 small files (~3 min)
    python benchmarks/bench_hash.py --quick    # 256 MiB, 5,000 files (CI smoke test, < 30 s)
    python benchmarks/bench_hash.py --big-gib 2 --files 50000 --repeat 5

Every figure is the best of ``--repeat`` runs (seconds), taken right after a warm-up pass
that puts the data in the page cache (this machine reclaims cold page cache quickly), and
is printed with its ratio to its baseline (``x`` > 1: reprokit is faster).

1. One large file: ``b3sum FILE`` against the API in this process (``hash_file``), a fresh
   ``python -c`` calling the API and the ``reprokit hash --no-cache FILE`` command (both
   with interpreter start-up); ``sha256sum``/``md5sum`` against ``--algo sha256``/``md5``,
   and the physical ceiling: ``hashlib`` over bytes already in memory.
2. Many small files (0-8 KiB in folders of 1,000): ``find -print0 | xargs -0 -P<cores>
   b3sum`` and an ``os.stat`` loop over every file as baselines; reprokit's first hash
   with an empty cache (the cache being written), its cached re-hash, no cache, one
   process, ``reprokit hash DIR`` (a fresh process: interpreter start-up included), and
   each worker start method.  In this process BLAKE3's thread pool is running after
   part 1, so the API starts ``spawn`` workers; the command line uses ``fork``.  The
   tree is hashed only after the 2 s racy margin has passed since it was written,
   otherwise no entry could be trusted.

Generated data lives in a temporary folder removed at the end.  Results go to
``benchmarks/results/bench_hash.json``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reprokit.capturing import _pool
from reprokit.capturing.hashcache import DEFAULT_RACY_MARGIN_NS, HashCache
from reprokit.capturing.hashing import hash_file, hash_path
from reprokit.capturing.walk import walk_tree

RESULTS = Path(__file__).resolve().parent / "results" / "bench_hash.json"


def best(repeat: int, run: Callable[[], object], warm: Callable[[], object] | None = None) -> float:
    """Best wall time of ``repeat`` runs, each after ``warm()`` (default: one untimed run).

    Rounded to 0.1 ms, as it goes to the JSON results.
    """
    (warm or run)()
    times = []
    for _ in range(repeat):
        if warm is not None:
            warm()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return round(min(times), 4)


def sh(*args: str, env: dict[str, str] | None = None) -> Callable[[], object]:
    def run() -> object:
        return subprocess.run(args, check=True, stdout=subprocess.DEVNULL, env=env)

    return run


def report(results: dict[str, Any], section: str, name: str, seconds: float, base: str) -> None:
    """Record a figure and print it with its ratio to the baseline ``base`` of its section."""
    figures = results.setdefault(section, {})
    figures[name] = round(seconds, 4)
    baseline = figures[base]
    ratio = baseline / seconds if seconds else float("inf")
    results.setdefault("ratios", {})[f"{section}.{name}"] = round(ratio, 3)
    print(f"  {name:42s} {seconds:8.3f} s   x{ratio:5.2f} vs {base}")


def make_big_file(path: Path, size: int) -> None:
    block = os.urandom(64 << 20)
    with path.open("wb") as out:
        for offset in range(0, size, len(block)):
            out.write(block[: min(len(block), size - offset)])


def make_small_files(root: Path, count: int) -> None:
    rng = random.Random(0)
    pool = os.urandom(1 << 20)
    for i in range(count):
        folder = root / f"d{i // 1000:04d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True)
        size = rng.randint(0, 8192)
        start = rng.randint(0, len(pool) - size)
        (folder / f"f{i:06d}.bin").write_bytes(pool[start : start + size])


def read_all(paths: list[str]) -> None:
    for path in paths:
        with open(path, "rb") as handle:
            while handle.read(1 << 20):
                pass


def _in_memory(path: Path, algorithm: str, repeat: int) -> float:
    """hashlib over bytes already in memory: no reading at all, the physical ceiling."""
    data = path.read_bytes()
    return best(repeat, lambda: hashlib.new(algorithm, data).hexdigest())


def bench_big(work: Path, size: int, repeat: int, results: dict[str, Any]) -> None:
    path = work / "big.bin"
    make_big_file(path, size)
    target = str(path)
    warm = lambda: read_all([target])  # noqa: E731
    python = sys.executable
    env = dict(os.environ, REPROKIT_CACHE_DIR=str(work / "cli-cache"))
    print(f"\n1. one file of {size / 2**30:.2f} GiB")
    results["big_file"] = {"bytes": size}
    if shutil.which("b3sum"):
        results["big_file"]["b3sum"] = best(repeat, sh("b3sum", target), warm)
        print(f"  {'b3sum':42s} {results['big_file']['b3sum']:8.3f} s")
        report(
            results,
            "big_file",
            "api hash_file",
            best(repeat, lambda: hash_file(path), warm),
            "b3sum",
        )
        code = f"from reprokit.capturing.hashing import hash_file; print(hash_file({target!r}))"
        report(
            results,
            "big_file",
            "python -c api",
            best(repeat, sh(python, "-c", code), warm),
            "b3sum",
        )
        cli = shutil.which("reprokit")
        if cli:
            run = sh(cli, "hash", "--no-cache", target, env=env)
            report(results, "big_file", "reprokit hash CLI", best(repeat, run, warm), "b3sum")
    for algorithm, tool in (("sha256", "sha256sum"), ("md5", "md5sum")):
        if not shutil.which(tool):
            continue
        results["big_file"][tool] = best(1, sh(tool, target), warm)
        print(f"  {tool:42s} {results['big_file'][tool]:8.3f} s")
        run = functools.partial(hash_file, path, algorithm=algorithm)
        report(results, "big_file", f"api hash_file {algorithm}", best(repeat, run, warm), tool)
        ceiling = _in_memory(path, algorithm, repeat)
        report(results, "big_file", f"hashlib {algorithm} in memory (ceiling)", ceiling, tool)
    path.unlink()


def bench_small(work: Path, count: int, repeat: int, results: dict[str, Any]) -> None:
    root = work / "small"
    make_small_files(root, count)
    written_at = time.monotonic()
    cores = _pool.default_jobs()
    files = [str(p) for p in sorted(root.rglob("*.bin"))]
    warm = lambda: read_all(files)  # noqa: E731
    print(f"\n2. {count} small files (0-8 KiB), {cores} cores")
    section: dict[str, Any] = {"files": count, "cores": cores}
    results["small_files"] = section
    stat_loop = lambda: [os.stat(p) for p in files]  # noqa: E731
    section["os.stat loop"] = best(repeat, stat_loop, warm)
    print(f"  {'os.stat loop':42s} {section['os.stat loop']:8.3f} s")
    if shutil.which("b3sum"):
        xargs = f"find {root} -type f -print0 | xargs -0 -P{cores} b3sum > /dev/null"
        section["xargs b3sum"] = best(repeat, sh("sh", "-c", xargs), warm)
        print(f"  {'find | xargs -P b3sum':42s} {section['xargs b3sum']:8.3f} s")
    base = "xargs b3sum" if "xargs b3sum" in section else "os.stat loop"
    time.sleep(max(0.0, DEFAULT_RACY_MARGIN_NS / 1e9 + 0.2 - (time.monotonic() - written_at)))
    caches = iter(range(10**6))

    def first_hash(jobs: int | None = None) -> object:
        with HashCache(work / f"cache-{next(caches)}.sqlite3") as cache:
            return hash_path(root, cache=cache, jobs=jobs)

    report(
        results, "small_files", "first hash (cache written)", best(repeat, first_hash, warm), base
    )
    report(
        results,
        "small_files",
        "no cache",
        best(repeat, lambda: hash_path(root, cache=None), warm),
        base,
    )
    serial = best(repeat, lambda: first_hash(jobs=1), warm)
    report(results, "small_files", "first hash, one process", serial, base)
    with HashCache(work / "cache-kept.sqlite3") as cache:
        hash_path(root, cache=cache)
        cached = best(repeat, lambda: hash_path(root, cache=cache))
        assert cache.stats.hits >= count, cache.stats
    report(results, "small_files", "cached re-hash", cached, "os.stat loop")
    cli = shutil.which("reprokit")
    if cli:  # a fresh, single-threaded process: the fork start method
        envs = (dict(os.environ, REPROKIT_CACHE_DIR=str(work / f"cli-{i}")) for i in range(10**6))

        def first() -> object:
            return sh(cli, "hash", str(root), env=next(envs))()

        report(results, "small_files", "reprokit hash CLI, first", best(repeat, first, warm), base)
        kept = dict(os.environ, REPROKIT_CACHE_DIR=str(work / "cli-kept"))
        again = sh(cli, "hash", str(root), env=kept)
        report(
            results, "small_files", "reprokit hash CLI, cached", best(repeat, again), "os.stat loop"
        )
    tree = walk_tree(os.fsencode(root), str(root))
    prefix = os.fsencode(root) + b"/"
    for method in ("fork", "spawn"):
        run = lambda m=method: _pool.hash_files(prefix, tree.rels, "blake3", jobs=cores, method=m)  # noqa: E731
        report(
            results,
            "small_files",
            f"hash_files {cores} workers, {method}",
            best(repeat, run, warm),
            base,
        )
    shutil.rmtree(root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, < 30 s")
    parser.add_argument("--big-gib", type=float, default=None, help="large file size [4]")
    parser.add_argument("--files", type=int, default=None, help="small files [100000]")
    parser.add_argument("--repeat", type=int, default=None, help="runs per figure [3]")
    args = parser.parse_args()
    big = int((args.big_gib or (0.25 if args.quick else 4.0)) * 2**30)
    count = args.files or (5_000 if args.quick else 100_000)
    repeat = args.repeat or (2 if args.quick else 3)
    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cores": _pool.default_jobs(),
            "start_method_here": _pool.start_method(),
        },
        "params": {"quick": args.quick, "repeat": repeat, "big_bytes": big, "files": count},
    }
    work = Path(tempfile.mkdtemp(prefix="reprokit-bench-hash-"))
    try:
        bench_big(work, big, repeat, results)
        bench_small(work, count, repeat, results)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
