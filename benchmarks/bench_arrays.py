"""What declaring a large array result costs, against ``numpy.save`` of it to the same folder.

Run from the repository root::

    python benchmarks/bench_arrays.py           # 10**8 float32 (400 MB), 5 rounds
    python benchmarks/bench_arrays.py --quick   # 10**7 float32 (40 MB), CI smoke test (< 30 s)
    python benchmarks/bench_arrays.py --device cuda  # also a CUDA tensor (needs a GPU)

``reprokit.result('a', a)`` in a notebook runs ``encode_result`` with the run's folder as the
writer: statistics, digest, a seeded sample and the ``.npy`` sidecar. It is timed here in
process (no kernel, no MLflow: those cost the same for any result) and alternated
(A B A B …, ``benchmarks/_ab.py``) with its baseline ``numpy.save(folder / "a.npy", a)``,
each after the previous files were removed (untimed). Pairs (ratio = measured / baseline):

- ``result() float32``: a C-contiguous array of standard normals (target ≤ 2);
- ``result() float32, native vs numpy statistics``: the same ``result()`` against itself with
  ``REPROKIT_NATIVE=0``, which computes the statistics with numpy instead of the one C pass
  built at install (``native statistics`` says whether it is; without it, no pair);
- ``result() float32 vs its parts in turn``: the same ``result()`` against the statistics,
  the BLAKE3 digest and ``numpy.save`` run one after another on one thread. A ratio of 0.5 is
  the two cores fully overlapped; ``two-core floor / numpy.save`` is half the parts' time
  over ``numpy.save``'s (min of each): below it no pass doing all three on two cores can go,
  which shows whether the target is in reach on the machine at hand;
- on a 2-core machine, ``result() float32 vs the parts on two bare threads``: against the
  same parts on two threads with no pipeline (statistics then a share of the write, BLAKE3
  then the rest, the share balancing the parts' times measured just before); ``bare two
  threads / numpy.save`` is that plain pass over ``numpy.save``: the target's figure for the
  parts themselves, memory contention included;
- ``result() float32, 1% NaN``: the same with NaNs (the block-wise NaN canonicalisation);
- ``result() float32, transposed``: a 2-D array walked in C order through a transposed view
  (copied block by block), against ``numpy.save`` of the same view;
- on a machine of four processors or more, ``result() float32, N summarising threads``: the
  pass as it runs there (N threads summarise the chunks, the caller writes them, one hashes)
  against the two-thread pass a 2-core machine runs, on the same array;
- ``numpy.save + fsync`` against ``numpy.save``: what a durable write would add (the sidecar
  is renamed into place but not fsync'ed);
- with ``--device cuda`` (a GPU and torch needed), ``result() torch.float32 on cuda``: the
  same normals as a CUDA tensor, against ``numpy.save(t.cpu().numpy())``, which makes the same
  copy to the host (target ≤ 2, as on the CPU).

Figures: the peak extra memory of one ``result()`` traced by ``tracemalloc`` (numpy reports
its buffers to it), as a fraction of the array's bytes (target ≤ 0.5); the same for
``write_lock`` of a lock holding that result, which copies its ``.npy`` file beside the lock
(``reprokit record``), and the seconds that copy takes (it is fsync'ed).

The folder is a temporary one under ``--dir`` (default: the system's temporary folder).
Results go to ``benchmarks/results/bench_arrays.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _ab import Pair, Results, alternate  # noqa: E402

from reprokit._fsutil import usable_cores  # noqa: E402
from reprokit.recording.folder import RunFolder  # noqa: E402
from reprokit.recording.lock import write_lock  # noqa: E402
from reprokit.recording.lock_model import (  # noqa: E402
    LOCK_SCHEMA_VERSION,
    Lock,
    LockParameters,
    NotebookSource,
)
from reprokit.results import arraypass, encode_result, native  # noqa: E402


def make_array(n: int, nan_fraction: float = 0.0) -> Any:
    rng = np.random.default_rng(0)
    a = rng.standard_normal(n, dtype=np.float32)
    if nan_fraction:
        a[rng.random(n) < nan_fraction] = np.nan
    return a


def clearer(folder: Path) -> Callable[[], None]:
    def clear() -> None:
        for item in folder.iterdir():
            if item.is_dir():
                shutil.rmtree(item)
            else:
                item.unlink()

    return clear


def pair(results: Results, name: str, array: Any, folder: Path, repeat: int, target: str) -> Pair:
    writer = RunFolder(folder)
    return results.add(
        alternate(
            name,
            lambda: encode_result("a", array, writer=writer),
            lambda: np.save(folder / "a.npy", array),
            repeat=repeat,
            baseline_name="numpy.save",
            target=target,
            before=clearer(folder),
        )
    )


def native_pair(results: Results, array: Any, folder: Path, repeat: int) -> None:
    """``result()`` with the native statistics against the same with numpy's
    (``REPROKIT_NATIVE=0``); where the library is not built, only says so."""
    results.figure("native statistics", native.available())
    if not native.available():
        return
    writer = RunFolder(folder)

    def with_numpy() -> None:
        os.environ["REPROKIT_NATIVE"] = "0"
        try:
            encode_result("a", array, writer=writer)
        finally:
            del os.environ["REPROKIT_NATIVE"]

    results.add(
        alternate(
            "result() float32, native vs numpy statistics",
            lambda: encode_result("a", array, writer=writer),
            with_numpy,
            repeat=repeat,
            baseline_name="the same, REPROKIT_NATIVE=0",
            before=clearer(folder),
        )
    )


def parts_one_by_one(array: Any, folder: Path) -> None:
    """The pass's three parts, one after another on this thread: the statistics, the BLAKE3
    digest of the elements, and ``numpy.save``. Half of this is the floor of any pass that
    does all three on two cores."""
    from reprokit.capturing.values import ArrayHasher

    arraypass.array_stats(array)
    hasher = ArrayHasher(array)
    for block in arraypass.blocks(array, 1 << 22):
        hasher.update(block, canonical=True)
    np.save(folder / "a.npy", array)


def floor_pair(results: Results, array: Any, folder: Path, repeat: int, save_s: float) -> None:
    """``result()`` against its parts run one after another (a ratio of 0.5: the two cores
    fully overlapped), and what that floor is against ``numpy.save`` (``save_s``, its min)."""
    parts = results.add(
        alternate(
            "result() float32 vs its parts in turn",
            lambda: encode_result("a", array, writer=RunFolder(folder)),
            lambda: parts_one_by_one(array, folder),
            repeat=repeat,
            baseline_name="stats, BLAKE3, numpy.save in turn",
            before=clearer(folder),
        )
    )
    floor = min(parts.baseline) / min(2, usable_cores()) / save_s
    results.figure("two-core floor / numpy.save", round(floor, 2))


def part_seconds(array: Any, folder: Path) -> tuple[float, float, float]:
    """The best of three of each part alone: statistics, BLAKE3, ``numpy.save``."""
    from reprokit.capturing.values import ArrayHasher

    def digest() -> None:
        hasher = ArrayHasher(array)
        for block in arraypass.blocks(array, 1 << 22):
            hasher.update(block, canonical=True)

    clear = clearer(folder)
    parts = (lambda: arraypass.array_stats(array), digest, lambda: np.save(folder / "a.npy", array))
    best = []
    for part in parts:
        times = []
        for _ in range(3):
            clear()
            start = time.perf_counter()
            part()
            times.append(time.perf_counter() - start)
        best.append(min(times))
    return best[0], best[1], best[2]


def bare_two_threads(array: Any, folder: Path, share: float) -> None:
    """The three parts on two threads with no pipeline: this thread takes the statistics then
    writes the first ``share`` of the file, a second thread hashes the elements then writes
    the rest. ``share`` balances the two threads' measured work, so this is the plain way of
    putting the parts on two cores; what it takes beyond the arithmetic floor is what two
    threads reading memory at once cost on the machine."""
    import threading

    from reprokit.capturing.values import ArrayHasher

    header = arraypass.npy_header(array)
    data = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    cut = int(data.size * share) // 4096 * 4096
    fd = os.open(folder / "a.npy", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)

    def write(low: int, high: int) -> None:
        for start in range(low, high, 1 << 24):
            os.pwrite(fd, data[start : min(high, start + (1 << 24))], len(header) + start)

    def hash_then_write() -> None:
        hasher = ArrayHasher(array)
        hasher.update(array.reshape(-1), canonical=True)
        hasher.hexdigest()
        write(cut, data.size)

    try:
        os.write(fd, header)
        os.posix_fallocate(fd, len(header), data.size)
        helper = threading.Thread(target=hash_then_write)
        helper.start()
        arraypass.array_stats(array)
        write(0, cut)
        helper.join()
    finally:
        os.close(fd)


def bare_pair(results: Results, array: Any, folder: Path, repeat: int, save_s: float) -> None:
    """``result()`` against :func:`bare_two_threads`, and that plain two-thread pass against
    ``numpy.save`` (``save_s``, its min): the figure the target is measured by, for the
    parts alone on this machine's two cores."""
    stats_s, hash_s, write_s = part_seconds(array, folder)
    share = min(1.0, max(0.0, (hash_s + write_s - stats_s) / (2 * write_s)))
    bare = results.add(
        alternate(
            "result() float32 vs the parts on two bare threads",
            lambda: encode_result("a", array, writer=RunFolder(folder)),
            lambda: bare_two_threads(array, folder, share),
            repeat=repeat,
            baseline_name="stats + write, BLAKE3 + write, on two threads",
            before=clearer(folder),
        )
    )
    results.figure("bare two threads / numpy.save", round(min(bare.baseline) / save_s, 2))


def spread_pair(results: Results, array: Any, folder: Path, repeat: int) -> None:
    """On four processors or more: the pass spread over its summarising threads against the
    two-thread pass of a 2-core machine (``summarising_threads`` held at 1), same array."""
    threads = arraypass.summarising_threads()
    results.figure("summarising threads", threads)
    if threads < 2:
        return
    writer = RunFolder(folder)

    def two_thread_pass() -> None:
        spread = arraypass.summarising_threads
        arraypass.summarising_threads = lambda: 1
        try:
            encode_result("a", array, writer=writer)
        finally:
            arraypass.summarising_threads = spread

    results.add(
        alternate(
            f"result() float32, {threads} summarising threads",
            lambda: encode_result("a", array, writer=writer),
            two_thread_pass,
            repeat=repeat,
            baseline_name="the two-thread pass",
            before=clearer(folder),
        )
    )


def cuda_pair(results: Results, array: Any, folder: Path, repeat: int) -> None:
    """``result()`` of a CUDA tensor against saving its host copy (the copy both must make)."""
    import torch

    tensor = torch.from_numpy(array).cuda()
    torch.cuda.synchronize()
    writer = RunFolder(folder)
    results.add(
        alternate(
            "result() torch.float32 on cuda",
            lambda: encode_result("a", tensor, writer=writer),
            lambda: np.save(folder / "a.npy", tensor.cpu().numpy()),
            repeat=repeat,
            baseline_name="numpy.save(t.cpu().numpy())",
            target="<= 2",
            before=clearer(folder),
        )
    )
    results.figure("cuda device", torch.cuda.get_device_name(0))


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def save_synced(path: Path, array: Any) -> None:
    with path.open("wb") as handle:
        np.save(handle, array)
        handle.flush()
        os.fsync(handle.fileno())


def peak_fraction(array: Any, folder: Path) -> float:
    """Peak memory traced during one ``result()``, over the array's bytes."""
    clearer(folder)()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        encode_result("a", array, writer=RunFolder(folder))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return round(float(peak / array.nbytes), 4)


def lock_write(array: Any, folder: Path) -> tuple[float, float]:
    """Peak memory traced while a lock holding ``array`` by reference is written (its file
    copied into the lock's sidecar folder), over the array's bytes; and that write's time."""
    clearer(folder)()
    run = folder / "run"
    run.mkdir()
    result = encode_result("a", array, writer=RunFolder(run))
    lock = Lock(
        schema_version=LOCK_SCHEMA_VERSION,
        reprokit_version="bench",
        created_at="2026-01-01T00:00:00Z",
        notebook=NotebookSource(path="nb.ipynb", digest="blake3:0"),
        parameters=LockParameters(),
        results={"a": result},
    )
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start = time.perf_counter()
        write_lock(lock, folder / "nb.repro.json")
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return round(peak / array.nbytes, 4), round(seconds, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10**7 elements, 3 rounds")
    parser.add_argument("--size", type=int, default=None, help="elements [10**8]")
    parser.add_argument("--repeat", type=int, default=None, help="rounds of A B [5]")
    parser.add_argument("--dir", default=None, help="where the temporary folder is made")
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu", help="cuda: a CUDA tensor too"
    )
    args = parser.parse_args()
    if args.device == "cuda" and not _cuda_available():
        parser.error("--device cuda: torch is not installed or sees no CUDA device")
    n = args.size or (10**7 if args.quick else 10**8)
    repeat = args.repeat or (3 if args.quick else 5)
    results = Results("bench_arrays", params={"elements": n, "repeat": repeat})
    work = Path(tempfile.mkdtemp(prefix="reprokit-bench-arrays-", dir=args.dir))
    try:
        a = make_array(n)
        print(f"{n} float32 ({a.nbytes / 1e6:.0f} MB) in {work}")
        saved = pair(results, "result() float32", a, work, repeat, "<= 2")
        native_pair(results, a, work, repeat)
        floor_pair(results, a, work, repeat, min(saved.baseline))
        if usable_cores() == 2:
            bare_pair(results, a, work, repeat, min(saved.baseline))
        spread_pair(results, a, work, repeat)
        if args.device == "cuda":
            cuda_pair(results, a, work, repeat)
        results.figure("peak extra memory / array bytes", peak_fraction(a, work))
        fraction, seconds = lock_write(a, work)
        results.figure("write_lock peak extra memory / array bytes", fraction)
        results.figure("write_lock seconds (sidecar copied, fsync'ed)", seconds)
        side = int(np.sqrt(n))
        transposed = a[: side * side].reshape(side, side).T
        pair(results, "result() float32, transposed", transposed, work, repeat, "<= 2")
        results.figure(
            "peak extra memory / array bytes, transposed", peak_fraction(transposed, work)
        )
        del transposed
        with_nan = make_array(n, 0.01)
        pair(results, "result() float32, 1% NaN", with_nan, work, repeat, "<= 2")
        del with_nan
        results.add(
            alternate(
                "numpy.save + fsync",
                lambda: save_synced(work / "b.npy", a),
                lambda: np.save(work / "a.npy", a),
                repeat=repeat,
                baseline_name="numpy.save",
                before=clearer(work),
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results.write()


if __name__ == "__main__":
    main()
