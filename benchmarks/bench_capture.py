"""How long ``reprokit.capturing.snapshot.capture()`` takes, against the obvious baselines.

Run from the repository root::

    python benchmarks/bench_capture.py           # full run (about a minute)
    python benchmarks/bench_capture.py --quick   # CI smoke test (a few seconds)

Figures (median of the repeats, milliseconds), each with its ratio to a baseline measured
in the same run:

- ``warm``: ``capture()`` again in a process that already captured once (what a notebook
  pays for every ``%repro`` call after the first), with its per-collector breakdown;
- ``cold``: a fresh ``python`` that imports reprokit and captures once, timed inside the
  process (import + capture) and as the whole subprocess (interpreter start included);
- baselines: ``pip freeze`` as a subprocess (what many tools run to list packages), and a
  bare ``importlib.metadata`` walk over all distributions, warm (in process) and cold (a
  fresh process, import included);
- ``import``: ``python -X importtime -c "import reprokit.capturing.snapshot"``, its
  cumulative time and which heavy modules (numpy, torch, ...) it pulls in (must be none).

Results go to ``benchmarks/results/bench_capture.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_capture.json"
HEAVY = ("numpy", "torch", "mlflow", "papermill", "pandas", "rich")

COLD_CAPTURE = """
import time
t0 = time.perf_counter()
from reprokit.capturing.snapshot import capture
capture()
print((time.perf_counter() - t0) * 1000)
"""
COLD_METADATA = """
import time
t0 = time.perf_counter()
import importlib.metadata
{d.metadata["Name"]: d.version for d in importlib.metadata.distributions()}
print((time.perf_counter() - t0) * 1000)
"""


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def subprocess_ms(args: list[str], repeats: int) -> tuple[float, float | None]:
    """(median wall ms of the subprocess, median of the ms it printed itself, if any)."""
    walls, inner = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=True)
        walls.append((time.perf_counter() - start) * 1000)
        last = out.stdout.strip().splitlines()[-1:] or [""]
        with contextlib.suppress(ValueError):  # the subprocess printed no figure
            inner.append(float(last[0]))
    return statistics.median(walls), (statistics.median(inner) if inner else None)


def warm_breakdown(repeats: int) -> dict[str, float]:
    from reprokit.capturing import accelerator, envvars, git, pyenv, system, threads

    collectors: dict[str, Callable[[], object]] = {
        "python": pyenv.collect_python,
        "platform": system.collect_platform,
        "packages": pyenv.collect_packages,
        "imported": pyenv.collect_imported,
        "threadpools": threads.collect_threadpools,
        "environment": envvars.collect_environment,
        "accelerator": accelerator.collect_accelerator,
        "git (alone, not overlapped)": lambda: git.collect_git(ROOT),
    }
    return {name: round(median_ms(fn, repeats), 3) for name, fn in collectors.items()}


def import_cost() -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import reprokit.capturing.snapshot"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    cumulative_us = 0
    imported = set()
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (part.strip() for part in line.split(":", 1)[1].split("|"))
        imported.add(name.strip())
        if name.strip() == "reprokit.capturing.snapshot":
            cumulative_us = int(cumulative)
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY)
    return {"cumulative_ms": cumulative_us / 1000, "heavy_modules": heavy}


def ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 2) if denominator else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats (CI smoke test)")
    args = parser.parse_args()
    warm_n, cold_n, freeze_n = (5, 2, 1) if args.quick else (50, 7, 5)

    sys.path.insert(0, str(ROOT))
    import importlib.metadata

    from reprokit.capturing.snapshot import capture

    capture(root=ROOT)  # first capture: fills the per-process caches
    warm = median_ms(lambda: capture(root=ROOT), warm_n)
    breakdown = warm_breakdown(warm_n)
    walk = median_ms(
        lambda: {d.metadata["Name"]: d.version for d in importlib.metadata.distributions()},
        warm_n,
    )
    cold_wall, cold_inner = subprocess_ms([sys.executable, "-c", COLD_CAPTURE], cold_n)
    meta_wall, meta_inner = subprocess_ms([sys.executable, "-c", COLD_METADATA], cold_n)
    bare_wall, _ = subprocess_ms([sys.executable, "-c", "pass"], cold_n)
    freeze, _ = subprocess_ms([sys.executable, "-m", "pip", "freeze", "--quiet"], freeze_n)
    imports = import_cost()

    ratios = {
        "pip_freeze / warm_capture": ratio(freeze, warm),
        "importlib_walk_warm / warm_capture": ratio(walk, warm),
        "pip_freeze / cold_capture_subprocess": ratio(freeze, cold_wall),
        "cold_capture_subprocess / bare_python": ratio(cold_wall, bare_wall),
        "cold_capture_in_process / importlib_walk_cold_in_process": ratio(
            cold_inner or 0.0, meta_inner or 0.0
        ),
    }
    results = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "quick": args.quick,
        "repeats": {"warm": warm_n, "cold": cold_n, "pip_freeze": freeze_n},
        "warm_capture_ms": round(warm, 3),
        "warm_breakdown_ms": breakdown,
        "cold_capture_in_process_ms": cold_inner,
        "cold_capture_subprocess_ms": round(cold_wall, 1),
        "bare_python_subprocess_ms": round(bare_wall, 1),
        "pip_freeze_subprocess_ms": round(freeze, 1),
        "importlib_metadata_walk_warm_ms": round(walk, 3),
        "importlib_metadata_walk_cold_in_process_ms": meta_inner,
        "importlib_metadata_walk_cold_subprocess_ms": round(meta_wall, 1),
        "import_snapshot": imports,
        "ratios": ratios,
    }
    print(f"warm capture()                    {warm:8.2f} ms")
    for name, ms in breakdown.items():
        print(f"  {name:<31} {ms:8.2f} ms")
    print(f"cold capture() in process         {cold_inner or 0:8.2f} ms (import + first capture)")
    print(
        f"cold capture() subprocess         {cold_wall:8.1f} ms (bare python: {bare_wall:.1f} ms)"
    )
    print(f"pip freeze subprocess             {freeze:8.1f} ms")
    print(f"importlib.metadata walk, warm     {walk:8.2f} ms")
    print(f"importlib.metadata walk, cold     {meta_inner or 0:8.2f} ms (import included)")
    print(
        f"import reprokit.capturing.snapshot  {imports['cumulative_ms']:8.2f} ms, "
        f"heavy modules: {imports['heavy_modules'] or 'none'}"
    )
    for name, value in ratios.items():
        print(f"ratio {name:<55} {value:8.2f}x")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
