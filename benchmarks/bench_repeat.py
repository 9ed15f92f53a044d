"""What measuring the noise costs: ``record --repeat 3 --jobs 2`` against a single ``record``.

Run from the repository root::

    python benchmarks/bench_repeat.py           # full run: 3 alternated pairs (about 2 min)
    python benchmarks/bench_repeat.py --quick   # CI smoke test: 1 pair, no warm-up

Both sides record the same small notebook (a numpy result, a printed line) into a fresh
project with an embedded SQLite MLflow store, through the Python API (``reprokit.record``), so
kernels, MLflow recording and the lock are all included:

- baseline ``record``: one execution, the lock written;
- measured ``record_repeat3_jobs2``: ``repeat=RepeatOptions(runs=3)`` with ``jobs=2`` — three
  executions (two at once), compared with each other, spreads and volatile cells in the lock.

Target: ratio <= 2 on 2 cores (three kernels in two rounds, plus the comparison). The pair is
measured alternately (:func:`benchmarks._ab.alternate`), so both sides see the same load.
Results go to ``benchmarks/results/bench_repeat.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _ab import Results, alternate

CELLS = [
    "import numpy as np\nimport reprokit",
    "values = np.linspace(0.0, 1.0, 1000)\nprint('mean', values.mean())",
    "reprokit.result('total', float(values.sum()), rtol=1e-12)",
]


def _notebook(folder: Path) -> Path:
    node = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    node.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "P"}
    node.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]  # type: ignore[no-untyped-call]
    path = folder / "small.ipynb"
    nbformat.write(node, path)  # type: ignore[no-untyped-call]
    return path


def _record(path: Path, out: Path, runs: int, jobs: int) -> None:
    from reprokit import ExecutionOptions, RepeatOptions, record

    execution = ExecutionOptions(device="cpu", jobs=jobs, output_dir=out)
    (outcome,) = record([path], execution=execution, repeat=RepeatOptions(runs=runs))
    if outcome.lock_path is None:
        raise SystemExit(f"benchmark notebook was not recorded: {outcome}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one pair, no warm-up (CI)")
    args = parser.parse_args()
    results = Results("bench_repeat", params={"quick": args.quick, "runs": 3, "jobs": 2})
    with tempfile.TemporaryDirectory(prefix="bench-repeat-") as tmp:
        base = Path(tmp)
        (base / "pyproject.toml").write_text("[project]\nname = 'bench'\n")
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        os.environ.setdefault("PYTHONHASHSEED", "0")
        os.chdir(base)
        path = _notebook(base)
        counter = iter(range(1000))

        def out() -> Path:
            return base / "out" / str(next(counter))

        results.add(
            alternate(
                "record_repeat3_jobs2",
                lambda: _record(path, out(), 3, 2),
                lambda: _record(path, out(), 1, 1),
                repeat=1 if args.quick else 3,
                baseline_name="record",
                target="<= 2",
                warmup=not args.quick,
            )
        )
    results.write()


if __name__ == "__main__":
    main()
