"""Throughput of ``reprokit.compare.arrays.compare_arrays`` on large float32 arrays.

Run from the repository root::

    python benchmarks/bench_compare.py           # two 10**8-element float32 arrays (400 MB each)
    python benchmarks/bench_compare.py --quick   # 10**7 elements, CI smoke test (< 30 s)

``b = a * (1 + u)`` with ``|u| <= 1e-6`` (within ``rtol=1e-5, atol=1e-8``). Figures are the
median of the repeats, in seconds and in GB/s of ONE side's array data (``a.nbytes / time``;
both sides are read, so memory traffic is twice that), each with its ratio to baselines
measured in the same run:

- ``within``: ``compare_arrays(a, b, Tolerance(rtol=1e-5, atol=1e-8))`` (every element passes);
- ``within_1_thread``: the same on one thread (the threading gain);
- ``identical``: ``compare_arrays(a, a.copy())`` (the bitwise fast path);
- ``differs``: 1% of the elements moved out of tolerance (first/worst location kept);
- ``summarize``: ``summarize_array(a)`` (BLAKE3 digest, statistics, 1024-element sample), what
  recording a large array costs when only its summary is kept;
- baselines: ``numpy.allclose(a, b, rtol, atol)`` (what one would write by hand; it builds
  several full-size temporaries), and a raw chunked ``np.subtract`` pass reading both arrays
  once (the memory-bandwidth floor: no comparison can beat it by much).

Results go to ``benchmarks/results/bench_compare.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reprokit.compare import arrays  # noqa: E402
from reprokit.compare.summary import summarize_array  # noqa: E402
from reprokit.comparison import Tolerance  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "bench_compare.json"
RTOL, ATOL = 1e-5, 1e-8


def median_s(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_arrays(n: int) -> tuple[Any, Any]:
    rng = np.random.default_rng(0)
    a = rng.standard_normal(n, dtype=np.float32)
    u = rng.uniform(-1e-6, 1e-6, size=n).astype(np.float32)
    u += 1
    u *= a
    return a, u


def raw_subtract(a: Any, b: Any) -> None:
    out = np.empty(1 << 18, a.dtype)
    for i in range(0, a.size, out.size):
        j = min(i + out.size, a.size)
        np.subtract(a[i:j], b[i:j], out=out[: j - i])


def one_thread(a: Any, b: Any, tol: Tolerance) -> object:
    saved = arrays.MAX_WORKERS
    arrays.MAX_WORKERS = 1
    try:
        return arrays.compare_arrays(a, b, tol)
    finally:
        arrays.MAX_WORKERS = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10**7 elements, fewer repeats")
    parser.add_argument("--size", type=int, default=None, help="elements per array")
    args = parser.parse_args()
    n = args.size or (10**7 if args.quick else 10**8)
    repeats = 3 if args.quick else 5
    tol = Tolerance(rtol=RTOL, atol=ATOL)

    a, b = make_arrays(n)
    same = a.copy()
    moved = b.copy()
    moved[::100] += 1.0
    checks = {
        "within": arrays.compare_arrays(a, b, tol).status,
        "identical": arrays.compare_arrays(a, same, tol).status,
        "differs": arrays.compare_arrays(a, moved, tol).status,
        "allclose": bool(np.allclose(b, a, rtol=RTOL, atol=ATOL)),
    }
    expected = {
        "within": "within_tolerance",
        "identical": "reproduced",
        "differs": "differs",
        "allclose": True,
    }
    if checks != expected:
        raise SystemExit(f"wrong answers: {checks}")

    timings = {
        "within": median_s(lambda: arrays.compare_arrays(a, b, tol), repeats),
        "within_1_thread": median_s(lambda: one_thread(a, b, tol), repeats),
        "identical": median_s(lambda: arrays.compare_arrays(a, same, tol), repeats),
        "differs": median_s(lambda: arrays.compare_arrays(a, moved, tol), repeats),
        "summarize": median_s(lambda: summarize_array(a), repeats),
        "numpy_allclose": median_s(lambda: np.allclose(b, a, rtol=RTOL, atol=ATOL), repeats),
        "raw_subtract": median_s(lambda: raw_subtract(a, b), repeats),
    }
    one_side = a.nbytes
    figures: dict[str, dict[str, float]] = {}
    print(f"{n:,} float32 elements per side ({one_side / 1e6:.0f} MB); GB/s of one side")
    for name, seconds in timings.items():
        figures[name] = {
            "seconds": seconds,
            "gb_per_s_one_side": one_side / seconds / 1e9,
            "speedup_vs_numpy_allclose": timings["numpy_allclose"] / seconds,
            "time_vs_raw_subtract": seconds / timings["raw_subtract"],
        }
        f = figures[name]
        print(
            f"{name:>16}: {seconds:8.4f} s {f['gb_per_s_one_side']:7.2f} GB/s  "
            f"x{f['speedup_vs_numpy_allclose']:6.1f} vs allclose  "
            f"{f['time_vs_raw_subtract']:5.2f}x raw subtract time"
        )
    report = {
        "benchmark": "bench_compare",
        "quick": args.quick,
        "elements": n,
        "dtype": "float32",
        "bytes_one_side": one_side,
        "rtol": RTOL,
        "atol": ATOL,
        "repeats": repeats,
        "unit": "GB/s = bytes of one side / median seconds",
        "figures": figures,
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "platform": platform.platform(),
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
