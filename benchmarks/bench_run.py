"""What ``reprokit.runner`` adds over bare papermill, and what ``--jobs 2`` gains.

Run from the repository root::

    python benchmarks/bench_run.py           # full run: 3 repeats, median (about a minute)
    python benchmarks/bench_run.py --quick   # CI smoke test: 1 repeat (under 30 s)

Figures, each against a baseline measured in the same run, on the same 8 tiny notebooks (one
``x = 1`` cell each, kernel ``python3``):

- ``bare_papermill_s``: ``papermill.execute_notebook`` on each notebook in turn (defaults,
  no progress bar) — the baseline;
- ``run_jobs1_s``: ``reprokit.run(..., jobs=1, record=False)`` on the same 8; the
  per-notebook overhead ``(run_jobs1_s - bare_papermill_s) / 8`` (target < 0.3 s; it can be
  negative: reprokit kills each kernel at once where papermill waits for a graceful exit);
- ``run_jobs2_s``: the same with ``jobs=2``; ``speedup_jobs2`` = ``run_jobs1_s / run_jobs2_s``
  (target >= 1.8 on a machine with at least 2 free cores);
- ``run_record_s``: ``jobs=1, record=True`` into a fresh SQLite store (MLflow's import and
  schema creation included once), per-notebook cost of recording against ``run_jobs1_s``.

Results go to ``benchmarks/results/bench_run.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_run.json"
NOTEBOOKS = 8


def _make_notebooks(folder: Path) -> list[Path]:
    paths = []
    for index in range(NOTEBOOKS):
        node = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
        node.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "P"}
        node.cells = [nbformat.v4.new_code_cell("x = 1")]  # type: ignore[no-untyped-call]
        path = folder / f"nb{index}.ipynb"
        nbformat.write(node, path)  # type: ignore[no-untyped-call]
        paths.append(path)
    return paths


def _bare(paths: list[Path], out: Path) -> None:
    import papermill  # type: ignore[import-untyped]

    for path in paths:
        papermill.execute_notebook(
            str(path), str(out / path.name), progress_bar=False, cwd=str(path.parent)
        )


def _reprokit(paths: list[Path], out: Path, jobs: int, record: bool) -> None:
    from reprokit import ExecutionOptions, run

    execution = ExecutionOptions(device="cpu", jobs=jobs, output_dir=out)
    outcomes = run(paths, execution=execution, record=record)
    bad = [o for o in outcomes if not o.ok or o.record_error]
    if bad:
        raise SystemExit(f"benchmark notebook failed: {bad[0]}")


def _time(function: Callable[[], None], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat (CI smoke test)")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        base = Path(tmp)
        (base / "pyproject.toml").write_text("[project]\nname = 'bench'\n")
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        paths = _make_notebooks(base)
        counter = iter(range(1000))

        def out() -> Path:
            return base / "out" / str(next(counter))

        _bare(paths[:1], _mkdir(base / "warm"))  # page cache, kernelspec lookup
        bare = _time(lambda: _bare(paths, _mkdir(out())), repeats)
        jobs1 = _time(lambda: _reprokit(paths, out(), 1, False), repeats)
        jobs2 = _time(lambda: _reprokit(paths, out(), 2, False), repeats)
        record = _time(lambda: _reprokit(paths, out(), 1, True), 1)
    report = {
        "notebooks": NOTEBOOKS,
        "repeats": repeats,
        "bare_papermill_s": bare,
        "run_jobs1_s": jobs1,
        "run_jobs2_s": jobs2,
        "run_record_s": record,
        "overhead_per_notebook_s": (jobs1 - bare) / NOTEBOOKS,
        "ratio_run_vs_bare": jobs1 / bare,
        "speedup_jobs2": jobs1 / jobs2,
        "record_per_notebook_s": (record - jobs1) / NOTEBOOKS,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "quick": args.quick,
    }
    print(f"bare papermill, 8 notebooks     {bare:7.2f} s  (baseline)")
    print(
        f"reprokit run jobs=1       {jobs1:7.2f} s  ratio {jobs1 / bare:.2f}, "
        f"overhead {report['overhead_per_notebook_s']:+.3f} s/notebook (target < 0.3)"
    )
    print(f"reprokit run jobs=2       {jobs2:7.2f} s  speed-up {jobs1 / jobs2:.2f}x (>= 1.8)")
    print(
        f"reprokit run jobs=1+MLflow {record:7.2f} s  ratio {record / jobs1:.2f} to jobs=1, "
        f"{report['record_per_notebook_s']:+.3f} s/notebook"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}", file=sys.stderr)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


if __name__ == "__main__":
    main()
