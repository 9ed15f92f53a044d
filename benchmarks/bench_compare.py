"""Throughput of ``reprokit.compare.arrays.compare_arrays`` on large float32 arrays.

Run from the repository root::

    python benchmarks/bench_compare.py           # two 10**8-element float32 arrays (400 MB each)
    python benchmarks/bench_compare.py --quick   # 10**7 elements, CI smoke test (< 1 min)

``b = a * (1 + u)`` with ``|u| <= 1e-6`` (within ``rtol=1e-5, atol=1e-8``). Each figure is a
pair from ``benchmarks/_ab.py``: reprokit's call and ``numpy.allclose(b, a, rtol, atol)`` (what
one would write by hand; it builds several full-size temporaries) run alternately (A B, B A,
…) ``--repeat`` times each, min and median of both, ratio **measured / baseline** (below 1:
reprokit is faster), and GB/s of ONE side's array data (``a.nbytes / best time``; both sides
are read, so memory traffic is twice that):

- ``within``: ``compare_arrays(a, b, Tolerance(rtol=1e-5, atol=1e-8))`` (every element passes);
- ``within, 1 thread``: the same on one thread (the threading gain);
- ``identical``: ``compare_arrays(a, a.copy())`` (the bitwise fast path);
- ``differs (1% out)``: 1% of the elements moved out of tolerance (first/worst location kept);
- ``summarize_array``: BLAKE3 digest, statistics, 1024-element sample, what recording a large
  array costs when only its summary is kept;
- ``within, against the floor``: ``within`` against a raw chunked ``np.subtract`` pass reading
  both arrays once (the memory-bandwidth floor: no comparison can beat it by much).

Figures also give the peak memory ``tracemalloc`` traced (numpy reports its buffers to it) as
a fraction of one side: the comparison walks both arrays in chunks, ``allclose`` does not.

Results go to ``benchmarks/results/bench_compare.json``.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _ab import Results, alternate  # noqa: E402

from reprokit.compare import arrays  # noqa: E402
from reprokit.compare.summary import summarize_array  # noqa: E402
from reprokit.comparison import Tolerance  # noqa: E402

RTOL, ATOL = 1e-5, 1e-8


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


def peak_fraction(run: Callable[[], object], nbytes: int) -> float:
    """Peak memory ``tracemalloc`` traced during ``run()`` (numpy reports its buffers), over
    the bytes of one side."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        run()
        return round(tracemalloc.get_traced_memory()[1] / nbytes, 4)
    finally:
        tracemalloc.stop()


def check_answers(a: Any, b: Any, same: Any, moved: Any, tol: Tolerance) -> None:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10**7 elements, fewer repeats")
    parser.add_argument("--size", type=int, default=None, help="elements per array")
    parser.add_argument("--repeat", type=int, default=None, help="rounds of A B [5]")
    args = parser.parse_args()
    n = args.size or (10**7 if args.quick else 10**8)
    repeat = args.repeat or (3 if args.quick else 5)
    tol = Tolerance(rtol=RTOL, atol=ATOL)
    a, b = make_arrays(n)
    same = a.copy()
    moved = b.copy()
    moved[::100] += 1.0
    check_answers(a, b, same, moved, tol)
    params = {"elements": n, "dtype": "float32", "bytes_one_side": a.nbytes, "repeat": repeat}
    results = Results("bench_compare", params=params | {"rtol": RTOL, "atol": ATOL})
    print(f"{n:,} float32 elements per side ({a.nbytes / 1e6:.0f} MB)")
    allclose = functools.partial(np.allclose, b, a, rtol=RTOL, atol=ATOL)
    measured: dict[str, Callable[[], object]] = {
        "within": lambda: arrays.compare_arrays(a, b, tol),
        "within, 1 thread": lambda: one_thread(a, b, tol),
        "identical": lambda: arrays.compare_arrays(a, same, tol),
        "differs (1% out)": lambda: arrays.compare_arrays(a, moved, tol),
        "summarize_array": lambda: summarize_array(a),
    }
    for name, run in measured.items():
        pair = alternate(name, run, allclose, repeat=repeat, baseline_name="numpy.allclose")
        results.add(pair)
        results.figure(f"{name}: GB/s of one side", round(a.nbytes / min(pair.measured) / 1e9, 2))
    floor = alternate(
        "within, against the floor",
        measured["within"],
        lambda: raw_subtract(a, b),
        repeat=repeat,
        baseline_name="raw np.subtract pass",
    )
    results.add(floor)
    for name in ("within", "differs (1% out)", "summarize_array"):
        results.figure(f"{name}: peak memory / one side", peak_fraction(measured[name], a.nbytes))
    results.figure("numpy.allclose: peak memory / one side", peak_fraction(allclose, a.nbytes))
    results.write()


if __name__ == "__main__":
    main()
